"""flaubert_np.layers against exact math and against torch / transformers' own modules."""

import math

import numpy as np
import pytest

from flaubert_np import layers
from flaubert_np.params import FFN, Attention, LayerNorm, Linear

pytestmark = pytest.mark.oracle

RNG = np.random.default_rng(0)
oracle = pytest.mark.oracle


def _linear(module) -> Linear:
    """A torch.nn.Linear's weights, as params.py holds them ([in, out])."""
    return Linear(module.weight.detach().numpy().T, module.bias.detach().numpy())


@oracle
def test_gelu_is_the_exact_erf_gelu():
    import torch

    x = np.linspace(-12, 12, 100_001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.abs(layers.gelu(x) - exact).max() <= 1e-6
    # torch's own CPU kernel is itself ~1e-6 from exact; both agree far inside the parity bound.
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert np.abs(layers.gelu(x) - ref).max() <= 5e-6


def test_relu():
    x = np.float32([-2, -0.0, 0, 3])
    assert layers.relu(x).tolist() == [0, 0, 0, 3]


@oracle
def test_layer_norm_matches_torch():
    import torch

    x = (RNG.standard_normal((3, 7, 36)) * 5 + 2).astype(np.float32)
    w = RNG.standard_normal(36).astype(np.float32)
    b = RNG.standard_normal(36).astype(np.float32)
    for eps in (1e-12, 1e-6, 1e-5):
        ref = torch.nn.functional.layer_norm(
            torch.from_numpy(x), (36,), torch.from_numpy(w), torch.from_numpy(b), eps
        ).numpy()
        got = layers.layer_norm(x, LayerNorm(w, b), eps)
        assert got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-5


@oracle
def test_linear_matches_torch():
    import torch

    x = RNG.standard_normal((2, 5, 12)).astype(np.float32)
    w = RNG.standard_normal((20, 12)).astype(np.float32)  # torch layout [out, in]
    b = RNG.standard_normal(20).astype(np.float32)
    ref = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    assert np.abs(layers.linear(x, Linear(w.T, b)) - ref.numpy()).max() <= 1e-5


@oracle
def test_softmax_matches_torch_and_survives_large_scores():
    import torch

    x = (RNG.standard_normal((4, 9)) * 50).astype(np.float32)
    ref = torch.softmax(torch.from_numpy(x), dim=-1).numpy()
    assert np.abs(layers.softmax(x) - ref).max() <= 1e-6


@oracle
def test_masked_softmax_fills_with_float32_min_like_transformers():
    import torch

    scores = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    keep = np.ones((2, 1, 1, 4), dtype=bool)
    keep[0, ..., 2:] = False
    keep[1] = False  # a row with nothing to attend to
    t = torch.from_numpy(scores.copy())
    t.masked_fill_(~torch.from_numpy(keep).expand_as(t), torch.finfo(torch.float32).min)
    ref = torch.softmax(t, dim=-1).numpy()
    got = layers.masked_softmax(scores, keep)
    assert np.abs(got - ref).max() <= 1e-6
    assert np.all(got[0, ..., 2:] == 0)
    assert np.allclose(got[1], 0.25)  # all float32 min -> uniform, as in transformers


@oracle
def test_attention_matches_transformers_multiheadattention():
    import torch
    from transformers import FlaubertConfig
    from transformers.models.flaubert import modeling_flaubert

    dim, heads = 36, 3
    config = FlaubertConfig(emb_dim=dim, n_heads=heads)
    torch.manual_seed(0)
    module = modeling_flaubert.MultiHeadAttention(heads, dim, config=config).eval()
    x = RNG.standard_normal((2, 6, dim)).astype(np.float32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        ref_out, ref_weights = module(
            torch.from_numpy(x), torch.from_numpy(mask), output_attentions=True
        )
    att = Attention(*(_linear(getattr(module, n)) for n in ("q_lin", "k_lin", "v_lin", "out_lin")))
    out, weights = layers.attention(x, (mask != 0)[:, None, None, :], att, heads)
    assert out.shape == (2, 6, dim) and weights.shape == (2, heads, 6, 6)
    assert np.abs(out - ref_out.numpy()).max() <= 1e-5
    assert np.abs(weights - ref_weights.numpy()).max() <= 1e-6


@oracle
def test_ffn_matches_transformers_ffn_gelu_and_relu():
    import torch
    from transformers import FlaubertConfig
    from transformers.models.flaubert import modeling_flaubert

    for gelu_activation in (True, False):
        config = FlaubertConfig(emb_dim=16, gelu_activation=gelu_activation)
        torch.manual_seed(0)
        module = modeling_flaubert.TransformerFFN(16, 64, 16, config=config).eval()
        x = (RNG.standard_normal((2, 5, 16)) * 3).astype(np.float32)
        with torch.no_grad():
            ref = module(torch.from_numpy(x)).numpy()
        ff = FFN(_linear(module.lin1), _linear(module.lin2))
        got = layers.ffn(x, ff, layers.gelu if gelu_activation else layers.relu)
        assert np.abs(got - ref).max() <= 1e-5
