"""The building blocks of FlauBERT, as small pure NumPy functions on float32 arrays.

Each mirrors a piece of transformers' modeling_flaubert.py (named in its docstring), so the two
can be read side by side; model.py's reference forward is made of them. Their weights come from
params.py (linear weights seen [in, out], ready for `x @ w`). Dropout is absent: this is
inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from flaubert_np.erf import erf
from flaubert_np.params import FFN, Attention, LayerNorm, Linear

F32_MIN = np.finfo(np.float32).min  # what transformers fills masked attention scores with


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x Φ(x), as torch.nn.functional.gelu computes it: x/2 (1 + erf(x/√2)).

    [...] -> [...]
    """
    return x * np.float32(0.5) * (np.float32(1) + erf(x * np.float32(math.sqrt(0.5))))


def relu(x: np.ndarray) -> np.ndarray:
    """[...] -> [...]"""
    return np.maximum(x, np.float32(0))


def layer_norm(x: np.ndarray, norm: LayerNorm, eps: float) -> np.ndarray:
    """torch.nn.LayerNorm over the last axis (biased variance, eps inside the square root).

    [..., dim] -> [..., dim]
    """
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps)) * norm.weight + norm.bias


def linear(x: np.ndarray, lin: Linear) -> np.ndarray:
    """torch.nn.Linear, its weight seen [in, out].

    [..., in] @ [in, out] + [out] -> [..., out]
    """
    # Flattened to 2-D: one BLAS call for the whole batch (NumPy would loop over a 3-D `x`).
    rows = x.reshape(-1, x.shape[-1])  # [n, in]
    return (rows @ lin.weight + lin.bias).reshape(*x.shape[:-1], lin.weight.shape[1])


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum as torch does.

    [..., n] -> [..., n]
    """
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def masked_softmax(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax of `scores` where `keep` is False, as transformers does: fill with float32 min.

    scores [..., q, k], keep broadcastable to it -> [..., q, k]. A row with nothing kept is
    all float32 min, so it comes out uniform (1/k), exactly as in transformers.
    """
    return softmax(np.where(keep, scores, F32_MIN))


def split_heads(x: np.ndarray, n_heads: int) -> np.ndarray:
    """[batch, seq, dim] -> [batch, n_heads, seq, dim // n_heads]"""
    batch, seq, dim = x.shape
    return x.reshape(batch, seq, n_heads, dim // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """[batch, n_heads, seq, head_dim] -> [batch, seq, n_heads * head_dim]"""
    batch, n_heads, seq, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, seq, n_heads * head_dim)


def attention(
    x: np.ndarray, keep: np.ndarray, att: Attention, n_heads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head self-attention (transformers' MultiHeadAttention, without kv cache).

    x [batch, seq, dim]; keep: True where a query may attend a key, [batch, 1, 1, seq] (padding)
    or [1, 1, seq, seq] (causal). Returns the output [batch, seq, dim] and the attention weights
    [batch, n_heads, seq, seq].
    """
    q, k, v = (split_heads(linear(x, lin), n_heads) for lin in (att.q_lin, att.k_lin, att.v_lin))
    q = q / np.float32(math.sqrt(q.shape[-1]))  # [batch, heads, seq, head_dim]
    scores = q @ k.transpose(0, 1, 3, 2)  # [batch, heads, seq, seq]
    weights = masked_softmax(scores, keep)
    context = merge_heads(weights @ v)  # [batch, seq, dim]
    return linear(context, att.out_lin), weights


def ffn(x: np.ndarray, ff: FFN, activation: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """transformers' TransformerFFN: lin1 -> activation (GELU or ReLU) -> lin2.

    [batch, seq, dim] -> [batch, seq, 4 * dim] -> [batch, seq, dim]
    """
    return linear(activation(linear(x, ff.lin1)), ff.lin2)
