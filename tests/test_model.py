"""FlaubertModel against transformers' FlaubertModel: every hidden state and attention map.

Each configuration is a random model that transformers builds and saves (tests/conftest.py's
flaubert_checkpoint); both implementations load the same folder and encode the same batches.
pre_norm, which transformers 5 cannot run, is checked against transformers 4.57 goldens in
tests/test_prenorm.py.
"""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch
from conftest import CONFIGS, TOL, load_both, make_cases, max_diffs, our_forward

from flaubert_np.config import FlaubertConfig

# Tiny models on two busy cores: one torch thread is faster, and changes no number that matters.
pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("torch_single_thread")]


@pytest.mark.parametrize("case", list(make_cases(FlaubertConfig(n_words=10))))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_with_transformers(flaubert_checkpoint, name, case):
    ours, ref = load_both(flaubert_checkpoint(**CONFIGS[name]))
    inputs = make_cases(ours.config)[case]
    with torch.no_grad():
        expected = ref(
            **{k: torch.from_numpy(v) for k, v in inputs.items()},
            output_hidden_states=True,
            output_attentions=True,
        )
    got, ran = our_forward(ours, inputs, "plain")
    assert ran == "plain"
    assert len(got.hidden_states) == ours.config.n_layers + 1
    hidden, attn = max_diffs(
        got, [t.numpy() for t in expected.hidden_states], [t.numpy() for t in expected.attentions]
    )
    assert hidden <= TOL and attn <= TOL, (hidden, attn)


def test_the_checkpoint_variants_are_what_they_claim(flaubert_checkpoint):
    head = safetensors.numpy.load_file(
        flaubert_checkpoint(**CONFIGS["lm_head_checkpoint"]) / "model.safetensors"
    )
    assert "pred_layer.proj.bias" in head and "transformer.embeddings.weight" in head
    folder = flaubert_checkpoint(**CONFIGS["float16_checkpoint"])
    header_len = int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((folder / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    ours, _ = load_both(folder)
    assert ours.embeddings.dtype == np.float32
    base, _ = load_both(flaubert_checkpoint(**CONFIGS["base_dims"]))
    assert base.layers[0].lin1_weight.shape == (768, 3072)


def test_padded_positions_are_zero_and_masked_keys_get_no_attention(flaubert_checkpoint):
    ours, _ = load_both(flaubert_checkpoint())
    inputs = make_cases(ours.config)["attention_mask"]
    out = ours(**inputs, output_hidden_states=True, output_attentions=True)
    padding = inputs["attention_mask"] == 0
    for h in out.hidden_states:
        assert np.all(h[padding] == 0)
    for a in out.attentions:
        assert np.all(a[:3][np.broadcast_to(padding[:3, None, None, :], a[:3].shape)] == 0)
        assert np.allclose(a[3], 1 / a.shape[-1])  # the all-padding row: uniform, as transformers


# The call interface: inputs as transformers takes them, bad inputs refused clearly.


def test_lists_and_arrays_give_the_same_output(flaubert_checkpoint):
    ours, _ = load_both(flaubert_checkpoint())
    ids = [[0, 5, 6, 7, 1], [0, 8, 1, 2, 2]]
    from_lists = ours(ids, attention_mask=[[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    from_arrays = ours(np.array(ids, dtype=np.int32), attention_mask=np.array(
        [[True] * 5, [True] * 3 + [False] * 2]))  # fmt: skip
    assert np.array_equal(from_lists.last_hidden_state, from_arrays.last_hidden_state)
    assert from_lists.hidden_states is None and from_lists.attentions is None
    assert from_lists.last_hidden_state.shape == (2, 5, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_ids": [1, 2, 3]}, r"input_ids must be 2-D \[batch, seq\], found shape \(3,\)"),
        ({"input_ids": [[1, 2], [3]]}, "input_ids rows have different lengths"),
        ({"input_ids": [[1.0, 2.0]]}, "input_ids must hold integers, found dtype float64"),
        ({"input_ids": [[]]}, r"input_ids is empty \(shape \(1, 0\)\)"),
        ({"input_ids": [[5, 99]]}, r"input_ids holds 99, outside \[0, 99\) \(n_words=99\)"),
        ({"input_ids": [[5, -1]]}, r"input_ids holds -1, outside \[0, 99\)"),
        ({"input_ids": [[5] * 41]}, "input_ids has 41 positions; this model has "
                                    "max_position_embeddings=40"),
        ({"input_ids": [[5, 6]], "attention_mask": [[1, 1, 1]]},
         r"attention_mask has shape \(1, 3\), expected \(1, 2\)"),
        ({"input_ids": [[5, 6]], "attention_mask": [[1, 2]]}, "attention_mask must hold only 0"),
        ({"input_ids": [[5, 6]], "lengths": [3]}, r"lengths must lie in \[0, 2\]"),
        ({"input_ids": [[5, 6]], "lengths": [1, 1]}, r"lengths has shape \(2,\), expected \(1,\)"),
        ({"input_ids": [[5, 6]], "position_ids": [[0, 40]]},
         r"position_ids holds 40, outside \[0, 40\) \(max_position_embeddings=40\)"),
        ({"input_ids": [[5, 6]], "position_ids": [0, 1]}, "position_ids must be 2-D"),
        ({"input_ids": [[5, 6]], "token_type_ids": [[0, 99]]}, "token_type_ids holds 99"),
        ({"input_ids": [[5, 6]], "langs": [[0]]}, r"langs has shape \(1, 1\), expected \(1, 2\)"),
    ],
)  # fmt: skip
def test_bad_inputs_raise_clear_errors(flaubert_checkpoint, kwargs, message):
    ours, _ = load_both(flaubert_checkpoint())
    with pytest.raises(ValueError, match=message):
        ours(**kwargs)


def test_langs_outside_the_language_table(flaubert_checkpoint):
    ours, _ = load_both(flaubert_checkpoint(n_langs=3))
    with pytest.raises(ValueError, match=r"langs holds 3, outside \[0, 3\) \(n_langs=3\)"):
        ours([[5, 6]], langs=[[0, 3]])


def test_position_ids_allow_sequences_longer_than_the_table(flaubert_checkpoint):
    ours, ref = load_both(flaubert_checkpoint())
    ids = np.full((1, 45), 7)
    positions = np.arange(45)[None] % 40
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids), position_ids=torch.from_numpy(positions))
    got = ours(ids, position_ids=positions)
    assert np.abs(got.last_hidden_state - expected.last_hidden_state.numpy()).max() <= TOL
