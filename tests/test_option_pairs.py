"""Encoder parity over combined options: every pair of option values (tools/option_pairs.py:
causal, langs, sinusoidal, activation, layer_norm_eps, dims/heads, how padding is given,
token_type_ids, position_ids), each on a batch with padding, an all-padding row, a pad id inside
a row and a row of one token, and on a batch with no real token at all; through the plain and
the fast forward, against transformers 5.
"""

import itertools

import numpy as np
import pytest
from conftest import TOL, expected_path, load_both, max_diffs, our_forward

import option_pairs

CASES = option_pairs.cases()


def test_the_cases_hold_every_pair_of_option_values():
    factors = option_pairs.FACTORS
    wanted = {
        ((a, x), (b, y))
        for a, b in itertools.combinations(factors, 2)
        for x in factors[a]
        for y in factors[b]
    }
    held = {
        ((a, case[a]), (b, case[b]))
        for case in CASES.values()
        for a, b in itertools.combinations(factors, 2)
    }
    assert held == wanted
    for case in CASES.values():  # each value is one of its option's, every option set
        assert case.keys() == factors.keys()
        assert all(case[name] in values for name, values in factors.items())
    assert len(CASES) <= 20  # pairwise, not the 2,304 combinations
    assert CASES == option_pairs.cases()  # deterministic


def test_the_mixed_batch_has_every_kind_of_row():
    case = next(c for c in CASES.values() if c["padding"] == "pad_ids")
    mixed = option_pairs.batches(case, pad=2, seed=0)["mixed"]
    ids = mixed["input_ids"]
    assert (ids == 2).all(axis=1).sum() == 1  # an all-padding row
    assert ids[option_pairs.PAD_INSIDE] == 2 and ids[option_pairs.PAD_INSIDE[0], 0] != 2
    assert (ids != 2).all(axis=1).sum() == 1  # a full row, and the rest padded at the end
    assert sorted((ids != 2).sum(axis=1)) == [0, 1, 6, 7, option_pairs.SEQ]


@pytest.mark.oracle
@pytest.mark.usefixtures("torch_single_thread")
@pytest.mark.parametrize("batch", ["mixed", "no_real_token"])
@pytest.mark.parametrize("name", list(CASES))
def test_plain_and_fast_forward_match_transformers(flaubert_checkpoint, name, batch):
    import torch

    case = CASES[name]
    seed = list(CASES).index(name)
    ours, ref = load_both(flaubert_checkpoint(seed=seed, **option_pairs.model_config(case)))
    inputs = option_pairs.batches(case, ours.config.pad_index, seed)[batch]
    with torch.no_grad():
        expected = ref(
            **{k: torch.from_numpy(v) for k, v in inputs.items()},
            output_hidden_states=True,
            output_attentions=True,
        )
    expected_hidden = [t.numpy() for t in expected.hidden_states]

    plain, ran = our_forward(ours, inputs, "plain")
    assert ran == "plain"
    hidden, attn = max_diffs(plain, expected_hidden, [t.numpy() for t in expected.attentions])
    assert hidden <= TOL and attn <= TOL, (hidden, attn)

    fast, ran = our_forward(ours, inputs, "fast")
    assert ran == expected_path(ours, inputs)
    assert fast.last_hidden_state.dtype == np.float32
    assert np.abs(fast.last_hidden_state - plain.last_hidden_state).max() <= TOL
    assert np.abs(fast.last_hidden_state - expected_hidden[-1]).max() <= TOL
    if batch == "no_real_token":
        assert not fast.last_hidden_state.any()
