"""pre_norm against transformers 4.57. transformers 5 cannot run it, so
tests/goldens/prenorm_tf4.npz holds transformers 4.57's outputs, made by
tools/goldens_prenorm_tf4.py with the pinned tools/requirements-goldens-tf4.txt: pre_norm crossed
pairwise with the other options (tools/option_pairs.py). The tests run every case the file holds
and check that it holds exactly the tool's spec.
"""

import json

import numpy as np
import pytest
from conftest import TOL, expected_path, max_diffs, our_forward, prenorm_cases

import goldens_prenorm_tf4 as tool
import option_pairs

INPUT_KEYS = ("input_ids", "attention_mask", "lengths", "langs", "token_type_ids", "position_ids")


def test_the_goldens_hold_the_tools_spec(prenorm_goldens):
    goldens, _ = prenorm_goldens
    assert str(goldens["transformers_version"]).startswith("4.57.")
    spec = tool.spec()
    assert prenorm_cases() == list(spec)
    for seed, (name, config) in enumerate(spec.items()):
        assert config["pre_norm"] is True
        saved = json.loads(str(goldens[f"{name}/config_json"]))
        assert {key: saved[key] for key in config} == config, name
        case = option_pairs.cases()[name]
        for batch, inputs in option_pairs.batches(case, saved["pad_index"], seed).items():
            stored = {k for k in INPUT_KEYS if f"{name}/{batch}/{k}" in goldens.files}
            assert stored == inputs.keys(), (name, batch)
            for key, value in inputs.items():
                assert np.array_equal(goldens[f"{name}/{batch}/{key}"], value), (name, batch, key)


def test_the_spec_crosses_pre_norm_with_every_pair_of_options():
    assert [option_pairs.model_config(c, pre_norm=True) for c in option_pairs.cases().values()] == (
        list(tool.spec().values())
    )


@pytest.mark.parametrize("batch", ["mixed", "no_real_token"])
@pytest.mark.parametrize("case", prenorm_cases())
def test_plain_and_fast_forward_match_transformers_4(prenorm_goldens, case, batch):
    goldens, load = prenorm_goldens
    model = load(case)
    assert model.config.pre_norm
    key = f"{case}/{batch}/"
    inputs = {k: goldens[key + k] for k in INPUT_KEYS if key + k in goldens.files}
    expected = goldens[key + "hidden_states"]

    plain, ran = our_forward(model, inputs, "plain")
    assert ran == "plain"
    hidden, attn = max_diffs(plain, expected, goldens[key + "attentions"])
    assert hidden <= TOL and attn <= TOL, (hidden, attn)

    fast, ran = our_forward(model, inputs, "fast")
    assert ran == expected_path(model, inputs)
    assert np.abs(fast.last_hidden_state - plain.last_hidden_state).max() <= TOL
    assert np.abs(fast.last_hidden_state - expected[-1]).max() <= TOL


@pytest.mark.oracle
def test_transformers_5_still_cannot_run_pre_norm(flaubert_checkpoint):
    """When this fails, upstream fixed pre_norm: compare against transformers 5 directly."""
    import torch
    import transformers

    ref = transformers.FlaubertModel.from_pretrained(flaubert_checkpoint(pre_norm=True)).eval()
    with pytest.raises(TypeError, match="not subscriptable"), torch.no_grad():
        ref(torch.tensor([[5, 6, 7]]))
