"""The fast forward pass: model.py's arithmetic, rearranged for speed on CPU.

`FlaubertModel.__call__` runs it unless hidden states, attention maps or a trace are asked for,
`reference=True` is passed, or `supports` declines the batch (a causal model with padding before
a real token); model.py's `forward` stays the reference, and tests/test_fast.py holds this one
to it (and to transformers) within 1e-5. FlauBERT base spends most of its time in matrix
products, which BLAS already does well; everything here is about the rest (docs/forward.md:
why, and what was measured and left out):

1. No padding. The real tokens of the batch are packed into one [n_tokens, dim] matrix; every
   linear layer, layer norm and GELU runs on real tokens only, and attention runs per group of
   sentences of the same length, which needs no padding mask.
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
5. Weights used as stored: torch's [out, in] matrices through transposed views (params.py). For
   a few rows (one short sentence), the product is computed transposed, weight first.
6. Every core busy, and the same bits whatever the thread count. A batch is cut into runs of
   whole sentences by a rule of the batch alone (`split`); each run is computed on
   single-threaded BLAS, and the runs are spread over as many threads as BLAS would use
   (blas.threads()). A batch of one sentence is one run, whose products are cut into column
   blocks (again by a rule of the batch alone), computed side by side. So the element-wise work
   (GELU, norms, softmax) runs on every core too, and no sum depends on the number of threads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flaubert_np import blas
from flaubert_np.config import FlaubertConfig
from flaubert_np.inputs import ModelInputs
from flaubert_np.params import FlaubertParams, Layer, LayerNorm

if TYPE_CHECKING:
    from concurrent.futures import Executor

F32 = np.float32
F32_MIN = np.finfo(np.float32).min  # what transformers fills masked attention scores with
GELU_ROWS = 16  # rows per GELU step: four 16 x 3072 float32 blocks (~800 KB) stay in L2
FFN_ROWS = 2048  # tokens per FFN pass: caps the [tokens, 4 * dim] intermediate at ~25 MB
RUN_TOKENS = 512  # a batch of several sentences: runs of at least this many tokens, or 2
COLUMN_BLOCKS = 2  # a batch of one sentence: each product cut into this many column blocks,
SPLIT_PRODUCTS = 1 << 20  # if it has this many multiply-adds (below, a thread costs more)
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


def layer_norm_(x: np.ndarray, norm: LayerNorm, eps: float) -> None:
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
    x *= norm.weight
    x += norm.bias


def attention_(
    qkv: np.ndarray,
    context: np.ndarray,
    starts: np.ndarray,
    length: int,
    n_heads: int,
    causal: bool = False,
) -> None:
    """Self-attention of sentences that all have `length` tokens: no padding mask to apply.

    qkv [n, 3 * dim] (q, k, v side by side, q already divided by √head_dim); starts: the first
    row of each sentence. Writes their rows of context [n, dim]. `causal`: a query sees only
    itself and the keys before it.
    """
    dim = context.shape[1]
    count = len(starts)
    rows: slice | np.ndarray
    if np.all(np.diff(starts) == length):  # consecutive sentences: a slice, no copy
        rows = slice(starts[0], starts[0] + count * length)
    else:
        rows = (starts[:, None] + np.arange(length)).reshape(-1)
    x = qkv[rows].reshape(count, length, 3, n_heads, dim // n_heads)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [count, heads, len, hd]
    scores = k @ q.transpose(0, 1, 3, 2)  # [count, heads, keys, queries]
    if causal:  # keys after the query: float32 min, as transformers
        scores[..., np.tri(length, k=-1, dtype=bool)] = F32_MIN
    scores -= scores.max(axis=-2, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-2, keepdims=True)
    heads = scores.transpose(0, 1, 3, 2) @ v  # [count, heads, queries, hd]
    context[rows] = heads.transpose(0, 2, 1, 3).reshape(count * length, dim)


# -- the forward pass --------------------------------------------------------------------------


def supports(config: FlaubertConfig, inputs: ModelInputs) -> bool:
    """Whether `forward` can run these inputs: any for a bidirectional model; for a causal
    one, only padding after the real tokens of each row (transformers' causal attention also
    attends padded keys before a real token, and fast.py computes no padded token)."""
    if not config.causal:
        return True
    mask = inputs.mask != 0
    return bool(np.array_equal(mask, np.arange(mask.shape[1]) < mask.sum(axis=1)[:, None]))


def forward(params: FlaubertParams, config: FlaubertConfig, inputs: ModelInputs) -> np.ndarray:
    """The last hidden state, as model.forward's: [batch, seq, dim] float32, zero at padded
    positions. Its bits depend on the inputs alone, not on the number of threads."""
    batch, seq = inputs.ids.shape
    keep = inputs.mask.reshape(-1) != 0
    real = np.flatnonzero(keep)  # the real tokens, row after row: the packed order
    lengths = keep.reshape(batch, seq).sum(axis=1)

    # Embeddings of the real tokens only, summed in the reference forward's order.
    x = params.embeddings[inputs.ids.reshape(-1)[real]]  # [n, dim] (a copy: a gather)
    x += params.position_embeddings[inputs.positions.reshape(-1)[real]]
    if inputs.langs is not None and params.lang_embeddings is not None:
        x += params.lang_embeddings[inputs.langs.reshape(-1)[real]]
    if inputs.token_type_ids is not None:
        x += params.embeddings[inputs.token_type_ids.reshape(-1)[real]]
    layer_norm_(x, params.layer_norm_emb, config.layer_norm_eps)

    runs = [(x[rows], lengths[sentences]) for rows, sentences in split(lengths)]
    workers = min(blas.threads(), max(len(runs), COLUMN_BLOCKS))
    pool = blas.pool(workers) if workers > 1 else None
    with blas.single_threaded():
        if len(runs) == 1:  # one sentence: its products in column blocks, side by side
            encode_packed(params, config, *runs[0], COLUMN_BLOCKS, pool)
        elif pool is None:
            for run in runs:
                encode_packed(params, config, *run)
        else:
            jobs = [pool.submit(encode_packed, params, config, *run) for run in runs]
            for job in jobs:
                job.result()
    out = np.zeros((batch * seq, x.shape[1]), F32)
    out[real] = x
    return out.reshape(batch, seq, x.shape[1])


def split(lengths: np.ndarray) -> list[tuple[slice, slice]]:
    """Cut a batch into runs of whole sentences, (packed rows, sentences) per run: aiming at a
    power of two of them (2, 4, 8, ...: as many as fit RUN_TOKENS tokens or more each, at least
    two), so that they share out evenly over 2, 4, 8 ... cores; fewer when a long sentence spans
    several cut points (the cuts fall on sentence boundaries). No run without a real token; one
    run for one sentence (attention needs all its tokens at once).

    A rule of the batch alone: BLAS may give a row other last bits in a product with another
    number of rows, so the runs must not depend on the number of threads.
    """
    tokens, sentences = int(lengths.sum()), int(np.count_nonzero(lengths))
    runs = min(sentences, 2 ** max(1, (tokens // RUN_TOKENS).bit_length() - 1))
    if runs == 0:
        return []
    rows = np.concatenate([[0], np.cumsum(lengths)])  # first packed row of each sentence, and n
    # Cut at the sentence boundaries closest to 1/runs, 2/runs, ... of the tokens.
    targets = tokens * np.arange(1, runs) / runs
    cuts = {int(np.abs(rows - target).argmin()) for target in targets}
    bounds = [0, *sorted(cuts - {0, len(lengths)}), len(lengths)]
    return [(slice(int(rows[a]), int(rows[b])), slice(a, b)) for a, b in itertools.pairwise(bounds)
            if rows[b] > rows[a]]  # fmt: skip


@dataclass(frozen=True, eq=False)
class Buffers:
    """Work arrays of one run, allocated once for all its layers."""

    qkv: np.ndarray  # [n, 3 * dim]
    context: np.ndarray  # [n, dim]
    branch: np.ndarray  # [n, dim]: a branch's output, before the residual sum
    hidden: np.ndarray  # [min(n, FFN_ROWS), ffn_dim]
    normed: np.ndarray  # [n, dim] with pre_norm (a branch's input), else [0, dim]

    @classmethod
    def empty(cls, n: int, config: FlaubertConfig) -> Buffers:
        dim = config.emb_dim
        return cls(qkv=np.empty((n, 3 * dim), F32), context=np.empty((n, dim), F32),
                   branch=np.empty((n, dim), F32),
                   hidden=np.empty((min(n, FFN_ROWS), config.ffn_dim), F32),
                   normed=np.empty((n if config.pre_norm else 0, dim), F32))  # fmt: skip


Piece = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x, weight, out): out <- x @ weight
Product = Callable[..., None]  # product(*pieces): each piece's out <- x @ weight


def encode_packed(
    params: FlaubertParams,
    config: FlaubertConfig,
    x: np.ndarray,
    lengths: np.ndarray,
    blocks: int = 1,
    pool: Executor | None = None,
) -> None:
    """All the layers, in place on x [n_tokens, dim]: the real tokens of sentences of `lengths`
    tokens (in that order, each sentence's tokens consecutive). Products cut into `blocks`
    column blocks, computed on `pool` if given (BLAS must be single-threaded)."""
    starts = np.cumsum(lengths) - lengths  # first row of each sentence
    groups = [(starts[lengths == length], int(length)) for length in np.unique(lengths)
              if length > 0]  # fmt: skip
    buffers = Buffers.empty(len(x), config)
    eps = config.layer_norm_eps

    def product(*products: Piece) -> None:
        _blocked_matmul(products, blocks, pool)

    for layer in params.layers:
        if config.pre_norm:  # x = x + attn(norm1(x)); x = x + ffn(norm2(x))
            normed = buffers.normed
            normed[...] = x
            layer_norm_(normed, layer.layer_norm1, eps)
            _attention_branch(normed, layer, groups, buffers, config, product)
            _residual(x, buffers.branch, layer.attention.out_lin.bias)
            normed[...] = x
            layer_norm_(normed, layer.layer_norm2, eps)
            _ffn_branch(normed, layer, buffers, config.gelu_activation, product)
            _residual(x, buffers.branch, layer.ffn.lin2.bias)
        else:  # x = norm1(x + attn(x)); x = norm2(x + ffn(x))
            _attention_branch(x, layer, groups, buffers, config, product)
            _residual(x, buffers.branch, layer.attention.out_lin.bias)
            layer_norm_(x, layer.layer_norm1, eps)
            _ffn_branch(x, layer, buffers, config.gelu_activation, product)
            _residual(x, buffers.branch, layer.ffn.lin2.bias)
            layer_norm_(x, layer.layer_norm2, eps)


def _blocked_matmul(products: Sequence[Piece], blocks: int, pool: Executor | None) -> None:
    """out <- x @ weight for each (x, weight, out), in `blocks` column blocks; a product below
    SPLIT_PRODUCTS multiply-adds in one piece (a rule of the shapes, not of the threads). On
    `pool`, one job per block does that block of every product: one hand-off for q, k and v."""
    jobs: list[list[Piece]] = [[] for _ in range(blocks)]
    for x, weight, out in products:
        if blocks == 1 or len(x) * weight.size < SPLIT_PRODUCTS:
            jobs[0].append((x, weight, out))
            continue
        bounds = np.linspace(0, out.shape[1], blocks + 1).astype(int)
        for job, (a, b) in zip(jobs, itertools.pairwise(bounds), strict=True):
            job.append((x, weight[:, a:b], out[:, a:b]))
    if pool is None:
        for job in jobs:
            _matmuls(job)
        return
    futures = [pool.submit(_matmuls, job) for job in jobs[1:] if job]
    _matmuls(jobs[0])
    for future in futures:
        future.result()


def _matmuls(pieces: list[Piece]) -> None:
    for x, weight, out in pieces:
        matmul_(x, weight, out)


def _attention_branch(
    x: np.ndarray,
    layer: Layer,
    groups: list[tuple[np.ndarray, int]],
    buffers: Buffers,
    config: FlaubertConfig,
    product: Product,
) -> None:
    """buffers.branch <- out_lin(attention(x)), without out_lin's bias."""
    att, qkv, dim = layer.attention, buffers.qkv, x.shape[1]
    # q, k and v straight into their columns of one buffer (an `out=` view is fine for BLAS).
    lins = (att.q_lin, att.k_lin, att.v_lin)
    product(*[(x, lin.weight, qkv[:, i * dim : (i + 1) * dim]) for i, lin in enumerate(lins)])
    for i, lin in enumerate(lins):
        qkv[:, i * dim : (i + 1) * dim] += lin.bias
    qkv[:, :dim] *= F32(1 / math.sqrt(dim // config.n_heads))  # q / √head_dim, as transformers
    for starts, length in groups:
        attention_(qkv, buffers.context, starts, length, config.n_heads, config.causal)
    product((buffers.context, att.out_lin.weight, buffers.branch))


def _ffn_branch(
    x: np.ndarray, layer: Layer, buffers: Buffers, use_gelu: bool, product: Product
) -> None:
    """buffers.branch <- lin2(act(lin1(x))), without lin2's bias; FFN_ROWS tokens at a time."""
    hidden, branch, ff = buffers.hidden, buffers.branch, layer.ffn
    activation = bias_gelu_ if use_gelu else bias_relu_
    for lo in range(0, len(x), len(hidden)):
        hi = min(lo + len(hidden), len(x))
        h = hidden[: hi - lo]
        product((x[lo:hi], ff.lin1.weight, h))
        activation(h, ff.lin1.bias)
        product((h, ff.lin2.weight, branch[lo:hi]))


def _residual(x: np.ndarray, branch: np.ndarray, bias: np.ndarray) -> None:
    """x <- x + (branch + bias)"""
    branch += bias
    x += branch
