"""flaubert_np.pooling against sentence-transformers' Pooling module and torch's normalize."""

import json
import re

import numpy as np
import pytest

from flaubert_np.pooling import POOLING_MODES, PoolingConfig, normalize, pool

DIM = 16


def _batch(lengths, seq=9, left_padding=False, dtype=np.float32, seed=0):
    """Random token embeddings [batch, seq, DIM] and the int64 mask of the given lengths."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((len(lengths), seq, DIM)).astype(dtype)
    positions = np.arange(seq)[None, :]
    lengths = np.array(lengths)[:, None]
    mask = positions >= seq - lengths if left_padding else positions < lengths
    return x, mask.astype(np.int64)


def _run_module(module, x, mask):
    import torch

    # a copy: sentence-transformers 3.x's max pooling wrote into its input
    features = {"token_embeddings": torch.tensor(x), "attention_mask": torch.tensor(mask)}
    return module(features)["sentence_embedding"].numpy()


def _reference(x, mask, mode):
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    return _run_module(Pooling(embedding_dimension=DIM, pooling_mode=mode), x, mask)


# full rows, padded rows, a row of length 1
RIGHT_PADDED = _batch([9, 5, 1, 3, 9])
ALL_MODES = [
    *POOLING_MODES,
    ("cls", "max", "mean"),
    ("mean", "mean_sqrt_len_tokens"),
    ("lasttoken", "weightedmean", "cls"),
]


@pytest.mark.oracle
@pytest.mark.parametrize("mode", ALL_MODES)
def test_parity_right_padding(mode):
    x, mask = RIGHT_PADDED
    got = pool(x, mask, mode)
    want = _reference(x, mask, mode)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_parity_left_padding(mode):
    """sentence-transformers 6.2 pools left-padded rows from their first real token."""
    x, mask = _batch([9, 5, 1, 3], left_padding=True, seed=1)
    np.testing.assert_allclose(pool(x, mask, mode), _reference(x, mask, mode), rtol=0, atol=1e-6)


@pytest.mark.oracle
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_parity_row_without_tokens(mode):
    """A fully padded row: zeros for the averages (the 1e-9 clamp), -inf for max."""
    x, mask = _batch([4, 0, 2], seed=2)
    got, want = pool(x, mask, mode), _reference(x, mask, mode)
    assert np.isfinite(got[1]).all() == (mode != "max")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.oracle
def test_parity_float16_accumulates_in_float32():
    x, mask = _batch([9, 5, 1], dtype=np.float16, seed=3)
    for mode in POOLING_MODES:
        got, want = pool(x, mask, mode), _reference(x, mask, mode)
        assert got.dtype == np.float16, mode
        # both sum in float32 and round once to float16; summation order may flip that rounding
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=mode)


def test_no_mask_means_every_token_is_real():
    x, _ = RIGHT_PADDED
    np.testing.assert_allclose(pool(x, None, "mean"), x.mean(axis=1), rtol=0, atol=1e-6)
    ones = np.ones(x.shape[:2], dtype=np.int64)
    np.testing.assert_array_equal(pool(x, None, "max"), pool(x, ones, "max"))


def test_bool_mask_is_the_same_as_int_mask():
    x, mask = RIGHT_PADDED
    for mode in POOLING_MODES:
        np.testing.assert_array_equal(pool(x, mask.astype(bool), mode), pool(x, mask, mode))


def test_padding_values_never_leak():
    x, mask = RIGHT_PADDED
    poisoned = np.where(mask[:, :, None] == 1, x, np.float32(1e4))
    for mode in POOLING_MODES:
        np.testing.assert_array_equal(pool(poisoned, mask, mode), pool(x, mask, mode), mode)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((RIGHT_PADDED[0], RIGHT_PADDED[1], "median"), "unknown pooling mode 'median'"),
        ((RIGHT_PADDED[0], RIGHT_PADDED[1], ["mean", "sum"]), "unknown pooling mode 'sum'"),
        ((RIGHT_PADDED[0], RIGHT_PADDED[1], []), "no pooling mode"),
        ((RIGHT_PADDED[0], RIGHT_PADDED[1][:, :4], "mean"), r"attention_mask has shape \(5, 4\)"),
        ((RIGHT_PADDED[0][0], RIGHT_PADDED[1], "mean"), r"\[batch, seq, dim\]"),
        ((RIGHT_PADDED[1][:, :, None], RIGHT_PADDED[1], "mean"), "must be a float array"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        pool(*args)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_torch(dtype):
    import torch

    x = np.random.default_rng(4).standard_normal((6, DIM)).astype(dtype)
    x[2] = 0.0  # a zero vector stays zero (the norm is clamped to 1e-12)
    x[3] *= 1e-14  # below the clamp: divided by 1e-12, not by its own norm
    want = torch.nn.functional.normalize(torch.from_numpy(x), p=2, dim=-1).numpy()
    got = normalize(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert not got[2].any()
    np.testing.assert_allclose(np.linalg.norm(got[[0, 1, 4, 5]], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(normalize(x[0]), want[0], rtol=0, atol=1e-6)  # 1-D input


# Pooling config.json files as each sentence-transformers generation writes them.
CONFIGS = {
    "3.x mean": {
        "word_embedding_dimension": DIM,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    },
    "3.x mean+max+cls": {
        "word_embedding_dimension": DIM,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": False,
    },
    "3.x all false": {
        "word_embedding_dimension": DIM,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
    },
    "2.x minimal": {"word_embedding_dimension": DIM, "pooling_mode_cls_token": True},
    "6.x single": {"embedding_dimension": DIM, "pooling_mode": "lasttoken", "include_prompt": True},
    "6.x list": {"embedding_dimension": DIM, "pooling_mode": ["mean", "cls"]},
    "6.x wins over legacy": {
        "embedding_dimension": DIM,
        "pooling_mode": "max",
        "pooling_mode_mean_tokens": True,
    },
}


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_layouts_read_as_sentence_transformers_does(tmp_path, name):
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    (tmp_path / "config.json").write_text(json.dumps(CONFIGS[name]))
    reference = Pooling.load(str(tmp_path))
    ours = PoolingConfig.from_file(tmp_path / "config.json")
    want_modes = reference.pooling_mode
    want_modes = (want_modes,) if isinstance(want_modes, str) else tuple(want_modes)
    assert ours.pooling_modes == want_modes
    assert ours.embedding_dimension == reference.embedding_dimension
    assert ours.include_prompt == reference.include_prompt
    assert ours.output_dimension == reference.get_embedding_dimension()

    x, mask = RIGHT_PADDED
    want = _run_module(reference, x, mask)
    np.testing.assert_allclose(pool(x, mask, ours.pooling_modes), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"embedding_dimension": DIM, "pooling_mode": "median"}, "unknown pooling mode 'median'"),
        ({"embedding_dimension": DIM, "pooling_mode": 3}, "must be a name or a list"),
        ({"pooling_mode": "mean"}, "no 'embedding_dimension'"),
        ({"embedding_dimension": "768"}, "embedding_dimension must be > 0"),
        ({"embedding_dimension": DIM, "include_prompt": "yes"}, "include_prompt must be a bool"),
        (
            {"embedding_dimension": DIM, "pooling_mode_cls_token": "x"},
            "pooling_mode_cls_token must be true or false, got 'x'",
        ),
        (
            {"word_embedding_dimension": DIM, "pooling_mode_max_tokens": 1},
            "pooling_mode_max_tokens must be true or false, got 1",
        ),
        ({"embedding_dimension": DIM, "pooling_mode_sum_tokens": True}, "pooling_mode_sum_tokens"),
    ],
)
def test_bad_configs(config, match):
    with pytest.raises(ValueError, match=match):
        PoolingConfig.from_dict(config)


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        PoolingConfig.from_file(path)
    with pytest.raises(ValueError, match=r"missing\.json"):
        PoolingConfig.from_file(tmp_path / "missing.json")
