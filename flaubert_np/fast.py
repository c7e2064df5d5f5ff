"""The fast forward pass: model.py's arithmetic, rearranged for speed on CPU.

`FlaubertModel.__call__` runs this unless hidden states or attention maps are asked for (or the
model is causal); the plain forward of model.py and layers.py stays the reference, and
tests/test_fast.py holds this one to it (and to transformers) within 1e-5. FlauBERT base spends
most of its time in matrix products, which BLAS already does well; everything here is about the
rest. Each change was measured (FlauBERT base, 2 cores; 32 x 32 tokens: 2.4 times the plain
forward's speed):

1. No padding. The real tokens of the batch are packed into one [n_tokens, dim] matrix; every
   linear layer, layer norm and GELU runs on real tokens only, and attention runs per group of
   sentences of the same length, which needs no mask at all.
2. No temporaries. Each layer writes into buffers allocated once per call (`np.matmul(out=)`,
   `+=`, `out=` everywhere): a fresh [n_tokens, 4 * dim] array per operation costs more in page
   faults and memory traffic than the arithmetic on it.
3. A cheap GELU. layers.gelu evaluates fdlibm's erf piece by piece (masks, gathers, scatters);
   here GELU(x) = relu(x) - |x|/2 erfc(|x|/√2), with erfc from Abramowitz & Stegun 7.1.26
   (|error| < 1.5e-7, the approximation torch's and oneDNN's vectorised GELU use): about twenty
   element-wise passes, done 16 rows at a time so that they stay in the L2 cache.
4. A softmax along contiguous memory. Attention scores are computed transposed, [keys, queries],
   so the softmax reduces along axis -2 (whole rows at a time, vectorised) rather than along
   short last-axis rows, which NumPy reduces one at a time.
5. Weights used as stored. torch's [out, in] matrices are used through transposed views (BLAS
   reads them in place, as fast as a copy laid out [in, out]): nothing is copied at load time,
   which keeps the start fast and the memory small (the weights stay memory-mapped). For a few
   rows (one short sentence), the product is computed transposed, weight first: 1x16 tokens,
   products 48 -> 38 ms.
6. Both cores for everything. A batch is cut into two runs of whole sentences, computed side by
   side on two threads, each with single-threaded BLAS (blas.py): the element-wise work runs on
   both cores as the matrix products do (1,376 -> 1,514 tokens/s at 32 x 32 on 2 cores).

Where the time goes now (tools/profile_fast.py: FlauBERT base, one run of 16 x 32 tokens on one
core): matrix products 83-85 %, at 85-90 % of the rate of one large product on that core; GELU
8-9 %, attention 3-4 %, layer norms 2 %, the rest 2 %. tools/bench.py measures the ceiling, the
products alone: on 2 cores, 1.1-1.3 times what this forward reaches.

Measured and left out, for no gain: the element-wise work alone split across a thread pool
(after each product OpenBLAS's idle threads spin on the other core, so the pool finds none free);
q, k and v as one fused product (1-3 %, within the noise, for 85 MB more memory); attention from
two threads while BLAS has two threads itself (OpenBLAS queues such calls on a lock: at times
1.4 s instead of 25 ms for a layer of 8 x 128).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from flaubert_np import blas

if TYPE_CHECKING:
    from flaubert_np.config import FlaubertConfig
    from flaubert_np.model import FlaubertModel, Layer

F32 = np.float32
GELU_ROWS = 16  # rows per GELU step: four 16 x 3072 float32 blocks (~800 KB) stay in L2
FFN_ROWS = 2048  # tokens per FFN pass: caps the [tokens, 4 * dim] intermediate at ~25 MB
RUNS = 2  # a batch of several sentences is computed as two runs, side by side on two cores
FEW_ROWS = 32  # up to this many rows, matmul_ computes the transposed product

# Abramowitz & Stegun 7.1.26: erfc(z) ≈ t (a1 + a2 t + ... + a5 t⁴) exp(-z²), t = 1/(1 + p z).
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
# GELU needs |x|/2 erfc(z) at z = |x|/√2: fold the 1/√2 into p and the 1/2 into the a's.
_GELU_P = F32(_AS_P * math.sqrt(0.5))
_GELU_A = tuple(F32(0.5 * a) for a in _AS_A)


# -- kernels: in place, on [rows, features] blocks ---------------------------------------------


def matmul_(x: np.ndarray, weight: np.ndarray, out: np.ndarray) -> None:
    """out <- x @ weight. [n, in] @ [in, out] -> [n, out]; weight: a transposed view of torch's
    [out, in] matrix.

    For few rows, as (weight.T @ x.T).T: BLAS then reads the weight as stored, and OpenBLAS is
    10-25 % faster at 4-32 rows (FlauBERT base; one sentence, or a short run); slower beyond.
    """
    if len(x) <= FEW_ROWS:
        out[...] = np.matmul(weight.T, np.ascontiguousarray(x.T)).T  # [out, in] @ [in, n]
    else:
        np.matmul(x, weight, out=out)


def bias_gelu_(x: np.ndarray, bias: np.ndarray) -> None:
    """x <- gelu(x + bias), in place. [n, f], [f]

    gelu(x) = x Φ(x) = relu(x) - |x|/2 erfc(|x|/√2): no sign to track, and for large |x| the
    correction term vanishes instead of cancelling.
    """
    rows = max(1, min(GELU_ROWS, len(x)))
    scratch = np.empty((3, rows, x.shape[1]), F32)
    with np.errstate(over="ignore"):  # x² = inf for |x| > 1.8e19: then exp(-inf) = 0, right
        for start in range(0, len(x), rows):
            xb = x[start : start + rows]
            absx, t, r = scratch[:, : len(xb)]
            xb += bias
            np.abs(xb, out=absx)
            np.multiply(absx, _GELU_P, out=t)
            t += F32(1)
            np.divide(F32(1), t, out=t)  # t = 1 / (1 + p |x|/√2)
            np.multiply(t, _GELU_A[-1], out=r)  # r = t (a1 + a2 t + ... + a5 t⁴) / 2, Horner
            for a in _GELU_A[-2::-1]:
                r += a
                r *= t
            np.multiply(xb, xb, out=t)
            t *= F32(-0.5)
            np.exp(t, out=t)  # exp(-x²/2)
            r *= t
            r *= absx  # |x|/2 erfc(|x|/√2)
            np.maximum(xb, F32(0), out=xb)
            xb -= r


def bias_relu_(x: np.ndarray, bias: np.ndarray) -> None:
    """x <- relu(x + bias), in place. [n, f], [f]"""
    x += bias
    np.maximum(x, F32(0), out=x)


def layer_norm_(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> None:
    """x <- layer_norm(x), in place, as layers.layer_norm. [n, dim]"""
    dim = F32(x.shape[-1])
    mean = x.sum(axis=-1, keepdims=True)
    mean /= dim
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None]  # sums of squares, without an [n, dim] square
    var /= dim
    var += F32(eps)
    np.sqrt(var, out=var)
    np.divide(F32(1), var, out=var)
    x *= var
    x *= weight
    x += bias


def attention_(qkv: np.ndarray, context: np.ndarray, starts: np.ndarray, length: int,
               n_heads: int) -> None:
    """Self-attention of sentences that all have `length` tokens: no mask to apply.

    qkv [n, 3 * dim] (q, k, v side by side, q already divided by √head_dim); starts: the first
    row of each sentence. Writes their rows of context [n, dim].
    """
    dim = context.shape[1]
    count = len(starts)
    if np.all(np.diff(starts) == length):  # consecutive sentences: a slice, no copy
        rows = slice(starts[0], starts[0] + count * length)
    else:
        rows = (starts[:, None] + np.arange(length)).reshape(-1)
    x = qkv[rows].reshape(count, length, 3, n_heads, dim // n_heads)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [count, heads, len, hd]
    scores = k @ q.transpose(0, 1, 3, 2)  # [count, heads, keys, queries]
    scores -= scores.max(axis=-2, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-2, keepdims=True)
    heads = scores.transpose(0, 1, 3, 2) @ v  # [count, heads, queries, hd]
    context[rows] = heads.transpose(0, 2, 1, 3).reshape(count * length, dim)


# -- the forward pass --------------------------------------------------------------------------


def forward(model: FlaubertModel, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
            langs: np.ndarray | None, token_type_ids: np.ndarray | None) -> np.ndarray:
    """The last hidden state, as model.py's plain forward (non-causal models).

    Inputs already checked by FlaubertModel.__call__: ids, mask (0/1), positions [batch, seq];
    langs (None when the model has no language embeddings) and token types, or None.
    Returns [batch, seq, dim] float32, zero at padded positions.
    """
    c = model.config
    batch, seq = ids.shape
    keep = mask.reshape(-1) != 0
    real = np.flatnonzero(keep)  # the real tokens, row after row: the packed order
    lengths = keep.reshape(batch, seq).sum(axis=1)

    # Embeddings of the real tokens only, summed in the plain forward's order.
    x = model.embeddings[ids.reshape(-1)[real]]  # [n, dim] (a copy: a gather)
    x += model.position_embeddings[positions.reshape(-1)[real]]
    if langs is not None:
        x += model.lang_embeddings[langs.reshape(-1)[real]]
    if token_type_ids is not None:
        x += model.embeddings[token_type_ids.reshape(-1)[real]]
    layer_norm_(x, model.layer_norm_emb_weight, model.layer_norm_emb_bias, c.layer_norm_eps)

    # Two runs of whole sentences, one per core, each with single-threaded BLAS: the element-wise
    # work (GELU, norms, softmax) then runs on both cores too, not only the matrix products.
    # The cut depends on the batch alone, never on the thread count (with one thread the runs
    # go one after the other): BLAS can give a row other last bits in a product with another
    # number of rows, and a batch must give the same bits on 1 thread or 2 (stream workers, Dask).
    parts = _split(lengths, RUNS)
    threads = blas.threads()
    if not parts or threads > RUNS:  # one sentence, or more cores than runs: BLAS threads it
        if len(real):
            encode_packed(model, x, lengths)
    else:
        runs = [(x[rows], lengths[sentences]) for rows, sentences in parts]
        with blas.single_threaded():
            if threads == 1:
                for run in runs:
                    encode_packed(model, *run)
            else:
                jobs = [blas.pool(RUNS).submit(encode_packed, model, *run) for run in runs]
                for job in jobs:
                    job.result()
    out = np.zeros((batch * seq, c.emb_dim), F32)
    out[real] = x
    return out.reshape(batch, seq, c.emb_dim)


def _split(lengths: np.ndarray, runs: int) -> list[tuple[slice, slice]]:
    """Cut a batch into up to `runs` runs of whole sentences with about as many tokens each:
    (packed rows, sentences) per run. No cut ([]) for a single sentence: attention needs all
    of a sentence's tokens at once."""
    runs = min(runs, int(np.count_nonzero(lengths)))
    if runs < 2:
        return []
    rows = np.concatenate([[0], np.cumsum(lengths)])  # first packed row of each sentence, and n
    # Cut at the sentence boundaries closest to 1/runs, 2/runs, ... of the tokens.
    targets = rows[-1] * np.arange(1, runs) / runs
    cuts = {int(np.abs(rows - target).argmin()) for target in targets}
    bounds = [0, *sorted(cuts - {0, len(lengths)}), len(lengths)]
    return [(slice(int(rows[a]), int(rows[b])), slice(a, b)) for a, b in itertools.pairwise(bounds)]


def encode_packed(model: FlaubertModel, x: np.ndarray, lengths: np.ndarray) -> None:
    """All the layers, in place on x [n_tokens, dim]: the real tokens of sentences of
    `lengths` tokens (in that order, each sentence's tokens consecutive)."""
    c = model.config
    n, dim = x.shape
    starts = np.cumsum(lengths) - lengths  # first row of each sentence
    groups = [(starts[lengths == length], int(length)) for length in np.unique(lengths)
              if length > 0]  # fmt: skip
    buffers = {
        "qkv": np.empty((n, 3 * dim), F32),
        "context": np.empty((n, dim), F32),
        "branch": np.empty((n, dim), F32),  # a branch's output, before the residual sum
        "hidden": np.empty((min(n, FFN_ROWS), c.ffn_dim), F32),
        "normed": np.empty((n, dim), F32) if c.pre_norm else None,
    }
    for layer in model.layers:
        if c.pre_norm:  # x = x + attn(norm1(x)); x = x + ffn(norm2(x))
            normed = buffers["normed"]
            _norm_copy(x, normed, layer.layer_norm1_weight, layer.layer_norm1_bias, c)
            _attention_branch(normed, layer, groups, buffers, c.n_heads)
            _residual(x, buffers["branch"], layer.out_lin_bias)
            _norm_copy(x, normed, layer.layer_norm2_weight, layer.layer_norm2_bias, c)
            _ffn_branch(normed, layer, buffers, c.gelu_activation)
            _residual(x, buffers["branch"], layer.lin2_bias)
        else:  # x = norm1(x + attn(x)); x = norm2(x + ffn(x))
            _attention_branch(x, layer, groups, buffers, c.n_heads)
            _residual(x, buffers["branch"], layer.out_lin_bias,
                      (layer.layer_norm1_weight, layer.layer_norm1_bias, c.layer_norm_eps))
            _ffn_branch(x, layer, buffers, c.gelu_activation)
            _residual(x, buffers["branch"], layer.lin2_bias,
                      (layer.layer_norm2_weight, layer.layer_norm2_bias, c.layer_norm_eps))


def _attention_branch(x: np.ndarray, layer: Layer, groups: list, buffers: dict,
                      n_heads: int) -> None:
    """buffers["branch"] <- out_lin(attention(x)), without out_lin's bias."""
    qkv, context = buffers["qkv"], buffers["context"]
    dim = x.shape[1]
    scale = F32(1 / math.sqrt(dim // n_heads))
    # q, k and v straight into their columns of one buffer (an `out=` view is fine for BLAS).
    for i, weight in enumerate((layer.q_lin_weight, layer.k_lin_weight, layer.v_lin_weight)):
        matmul_(x, weight, qkv[:, i * dim : (i + 1) * dim])

    qkv += layer.qkv_bias
    qkv[:, :dim] *= scale  # q / √head_dim, as transformers
    for starts, length in groups:
        attention_(qkv, context, starts, length, n_heads)
    matmul_(context, layer.out_lin_weight, buffers["branch"])


def _ffn_branch(x: np.ndarray, layer: Layer, buffers: dict, use_gelu: bool) -> None:
    """buffers["branch"] <- lin2(act(lin1(x))), without lin2's bias; FFN_ROWS tokens at a time."""
    hidden, branch = buffers["hidden"], buffers["branch"]
    activation = bias_gelu_ if use_gelu else bias_relu_
    for lo in range(0, len(x), len(hidden)):
        hi = min(lo + len(hidden), len(x))
        h = hidden[: hi - lo]
        matmul_(x[lo:hi], layer.lin1_weight, h)
        activation(h, layer.lin1_bias)
        matmul_(h, layer.lin2_weight, branch[lo:hi])


def _residual(x: np.ndarray, branch: np.ndarray, bias: np.ndarray,
              norm: tuple | None = None) -> None:
    """x <- x + (branch + bias), then layer-normed in place if `norm` = (weight, bias, eps)."""
    branch += bias
    x += branch
    if norm is not None:
        layer_norm_(x, *norm)


def _norm_copy(x: np.ndarray, out: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               config: FlaubertConfig) -> None:
    """out <- layer_norm(x), x untouched (pre_norm)."""
    out[...] = x
    layer_norm_(out, weight, bias, config.layer_norm_eps)
