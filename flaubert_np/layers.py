"""The building blocks of FlauBERT, as small pure NumPy functions on float32 arrays.

Each mirrors a piece of transformers' modeling_flaubert.py (named in its docstring), so the two
can be read side by side. Linear weights are laid out [in, out], ready for `x @ w` (torch stores
them [out, in]; the model transposes them once, at load). Dropout is absent: this is inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

F32_MIN = np.finfo(np.float32).min  # what transformers fills masked attention scores with

# erf in float32, vectorised from fdlibm's s_erff.c (Sun Microsystems, 1993: "Permission to use,
# copy, modify, and distribute this software is freely granted, provided that this notice is
# preserved."). Its rational approximations, one per interval of |x|, stay within ~1 ulp.
_ERX = np.float32(8.4506291151e-01)  # fdlibm's c, the constant term near |x| = 1
_PP = (1.2837916613e-01, -3.2504209876e-01, -2.8481749818e-02, -5.7702702470e-03,
       -2.3763017452e-05)  # fmt: skip
_QQ = (1.0, 3.9791721106e-01, 6.5022252500e-02, 5.0813062117e-03, 1.3249473704e-04,
       -3.9602282413e-06)  # fmt: skip
_PA = (-2.3621185683e-03, 4.1485610604e-01, -3.7220788002e-01, 3.1834661961e-01,
       -1.1089469492e-01, 3.5478305072e-02, -2.1663755178e-03)  # fmt: skip
_QA = (1.0, 1.0642088205e-01, 5.4039794207e-01, 7.1828655899e-02, 1.2617121637e-01,
       1.3637083583e-02, 1.1984500103e-02)  # fmt: skip
_RA = (-9.8649440333e-03, -6.9385856390e-01, -1.0558626175e01, -6.2375331879e01,
       -1.6239666748e02, -1.8460508728e02, -8.1287437439e01, -9.8143291473e00)  # fmt: skip
_SA = (1.0, 1.9651271820e01, 1.3765776062e02, 4.3456588745e02, 6.4538726807e02,
       4.2900814819e02, 1.0863500214e02, 6.5702495575e00, -6.0424413532e-02)  # fmt: skip
_RB = (-9.8649431020e-03, -7.9928326607e-01, -1.7757955551e01, -1.6063638306e02,
       -6.3756646729e02, -1.0250950928e03, -4.8351919556e02)  # fmt: skip
_SB = (1.0, 3.0338060379e01, 3.2579251099e02, 1.5367296143e03, 3.1998581543e03,
       2.5530502930e03, 4.7452853394e02, -2.2440952301e01)  # fmt: skip


def _poly(coefs: tuple[float, ...], z: np.ndarray) -> np.ndarray:
    """coefs[0] + coefs[1] z + coefs[2] z² + ..., by Horner's rule in float32."""
    result = np.float32(coefs[-1]) * z + np.float32(coefs[-2])
    for c in reversed(coefs[:-2]):
        result = result * z + np.float32(c)
    return result


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float32, within 1e-7 of the exact value (NumPy has none).

    [...] -> [...]. Piecewise in |x|, as fdlibm's erff:
      |x| < 0.84375          erf(x) = x + x P(x²)/Q(x²)
      0.84375 <= |x| < 1.25  erf(x) = sign(x) (c + P(|x|-1)/Q(|x|-1)), c = 0.84506291151
      1.25 <= |x| < 6        erf(x) = sign(x) (1 - exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / |x|)
      |x| >= 6               erf(x) = sign(x)
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    out = x.copy()  # NaN stays NaN: it falls in no interval below

    small = a < 0.84375
    xs = x[small]
    z = xs * xs
    out[small] = xs + xs * (_poly(_PP, z) / _poly(_QQ, z))

    near_one = (a >= 0.84375) & (a < 1.25)
    s = a[near_one] - np.float32(1)
    out[near_one] = np.copysign(_ERX + _poly(_PA, s) / _poly(_QA, s), x[near_one])

    for low, high, r, q in ((1.25, 1 / 0.35, _RA, _SA), (1 / 0.35, 6.0, _RB, _SB)):
        tail = (a >= low) & (a < high)
        at = a[tail]
        s = np.float32(1) / (at * at)
        erfc = np.exp(-at * at - np.float32(0.5625) + _poly(r, s) / _poly(q, s)) / at
        out[tail] = np.copysign(np.float32(1) - erfc, x[tail])

    big = a >= 6
    out[big] = np.copysign(np.float32(1), x[big])
    return out


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x Φ(x), as torch.nn.functional.gelu computes it: x/2 (1 + erf(x/√2)).

    [...] -> [...]
    """
    return x * np.float32(0.5) * (np.float32(1) + erf(x * np.float32(math.sqrt(0.5))))


def relu(x: np.ndarray) -> np.ndarray:
    """[...] -> [...]"""
    return np.maximum(x, np.float32(0))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """torch.nn.LayerNorm over the last axis (biased variance, eps inside the square root).

    [..., dim] -> [..., dim]
    """
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps)) * weight + bias


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch.nn.Linear with the weight stored [in, out].

    [..., in] @ [in, out] + [out] -> [..., out]
    """
    # Flattened to 2-D: one BLAS call for the whole batch (NumPy would loop over a 3-D `x`).
    rows = x.reshape(-1, x.shape[-1])  # [n, in]
    return (rows @ weight + bias).reshape(*x.shape[:-1], weight.shape[1])


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
    x: np.ndarray,
    keep: np.ndarray,
    qkv_weight: np.ndarray,
    qkv_bias: np.ndarray,
    out_weight: np.ndarray,
    out_bias: np.ndarray,
    n_heads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head self-attention (transformers' MultiHeadAttention, without kv cache).

    x [batch, seq, dim]; keep: True where a query may attend a key, [batch, 1, 1, seq] (padding)
    or [1, 1, seq, seq] (causal); qkv_weight [dim, 3 * dim] = q_lin, k_lin, v_lin side by side.
    Returns the output [batch, seq, dim] and the attention weights [batch, n_heads, seq, seq].
    """
    q, k, v = np.split(linear(x, qkv_weight, qkv_bias), 3, axis=-1)  # 3 x [batch, seq, dim]
    q, k, v = (split_heads(t, n_heads) for t in (q, k, v))  # [batch, heads, seq, head_dim]
    q = q / np.float32(math.sqrt(q.shape[-1]))
    scores = q @ k.transpose(0, 1, 3, 2)  # [batch, heads, seq, seq]
    weights = masked_softmax(scores, keep)
    context = merge_heads(weights @ v)  # [batch, seq, dim]
    return linear(context, out_weight, out_bias), weights


def ffn(
    x: np.ndarray,
    lin1_weight: np.ndarray,
    lin1_bias: np.ndarray,
    lin2_weight: np.ndarray,
    lin2_bias: np.ndarray,
    activation: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """transformers' TransformerFFN: lin1 -> activation (GELU or ReLU) -> lin2.

    [batch, seq, dim] -> [batch, seq, 4 * dim] -> [batch, seq, dim]
    """
    return linear(activation(linear(x, lin1_weight, lin1_bias)), lin2_weight, lin2_bias)
