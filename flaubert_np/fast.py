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
   (blas.threads()). A batch of one sentence, or of few tokens, is one run, whose layers are cut
   into parts (whole heads of the attention, columns of the FFN: `parts`, again a rule of the
   batch alone), each computing its share of a branch's output, side by side; the shares are
   then added up in part order. So the element-wise work (GELU, norms, softmax) runs on every
   core too, and no sum depends on the number of threads.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flaubert_np import blas
from flaubert_np.config import FlaubertConfig
from flaubert_np.inputs import ModelInputs
from flaubert_np.params import FlaubertParams, Layer, LayerNorm

F32 = np.float32
F32_MIN = np.finfo(np.float32).min  # what transformers fills masked attention scores with
GELU_ROWS = 16  # rows per GELU step: four 16 x 3072 float32 blocks (~800 KB) stay in L2
FFN_ROWS = 2048  # tokens per FFN pass: caps the [tokens, 4 * dim] intermediate at ~25 MB
RUN_TOKENS = 512  # a batch of several sentences: runs of at least this many tokens, or 2
PARTS_TOKENS = 160  # a batch of fewer tokens (or of one sentence): one run, in parts instead
PARTS = 2  # a run alone in its batch: its layers cut into this many parts, side by side
SPLIT_PRODUCTS = 1 << 20  # ... if tokens x dim² reaches this (below, a thread costs more)
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
    threads = blas.threads()  # how many cores BLAS would keep busy: as many threads here
    helpers = blas.workers(threads - 1) if threads > 1 else None
    with blas.single_threaded():
        if len(runs) == 1:  # one sentence, or few tokens: the layers in parts, side by side
            encode_packed(params, config, *runs[0], PARTS, helpers)
        elif helpers is None:
            for run in runs:
                encode_packed(params, config, *run)
        else:
            helpers.run([functools.partial(encode_packed, params, config, *run) for run in runs])
    out = np.zeros((batch * seq, x.shape[1]), F32)
    out[real] = x
    return out.reshape(batch, seq, x.shape[1])


def split(lengths: np.ndarray) -> list[tuple[slice, slice]]:
    """Cut a batch into runs of whole sentences, (packed rows, sentences) per run: aiming at a
    power of two of them (2, 4, 8, ...: as many as fit RUN_TOKENS tokens or more each, at least
    two), so that they share out evenly over 2, 4, 8 ... cores; fewer when a long sentence spans
    several cut points (the cuts fall on sentence boundaries). No run without a real token. One
    run for one sentence (attention needs all its tokens at once), and for fewer than
    PARTS_TOKENS tokens: products of so few rows run faster cut by columns (`parts`).

    A rule of the batch alone: BLAS may give a row other last bits in a product with another
    number of rows, so the runs must not depend on the number of threads.
    """
    tokens, sentences = int(lengths.sum()), int(np.count_nonzero(lengths))
    runs = min(sentences, 2 ** max(1, (tokens // RUN_TOKENS).bit_length() - 1))
    if tokens < PARTS_TOKENS:
        runs = min(runs, 1)
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
class Part:
    """A share of every layer: whole heads of the attention, columns of the FFN."""

    heads: slice  # columns of q, k, v and rows of out_lin: `n_heads` whole heads
    n_heads: int
    ffn: slice  # columns of lin1 and rows of lin2


def parts(config: FlaubertConfig, n_tokens: int, n_parts: int) -> list[Part]:
    """The layers of a run of `n_tokens` tokens cut into `n_parts` parts (at most one per head),
    or into one below SPLIT_PRODUCTS multiply-adds in out_lin's product: a rule of the shapes."""
    dim = config.emb_dim
    if n_tokens * dim * dim < SPLIT_PRODUCTS:
        n_parts = 1
    n_parts = min(n_parts, config.n_heads)
    head_dim = dim // config.n_heads
    heads = np.linspace(0, config.n_heads, n_parts + 1).astype(int)
    ffn = np.linspace(0, config.ffn_dim, n_parts + 1).astype(int)
    return [Part(slice(h0 * head_dim, h1 * head_dim), int(h1 - h0), slice(f0, f1))
            for (h0, h1), (f0, f1) in zip(itertools.pairwise(heads), itertools.pairwise(ffn),
                                          strict=True)]  # fmt: skip


@dataclass(frozen=True, eq=False)
class Buffers:
    """Work arrays of one part of a run, allocated once for all its layers."""

    qkv: np.ndarray  # [n, 3 * width]: q, k and v of the part's heads side by side
    context: np.ndarray  # [n, width]
    hidden: np.ndarray  # [min(n, FFN_ROWS), the part's FFN columns]

    @classmethod
    def empty(cls, n: int, part: Part) -> Buffers:
        width, ffn = part.heads.stop - part.heads.start, part.ffn.stop - part.ffn.start
        return cls(qkv=np.empty((n, 3 * width), F32), context=np.empty((n, width), F32),
                   hidden=np.empty((min(n, FFN_ROWS), ffn), F32))  # fmt: skip


def encode_packed(
    params: FlaubertParams,
    config: FlaubertConfig,
    x: np.ndarray,
    lengths: np.ndarray,
    n_parts: int = 1,
    workers: blas.Workers | None = None,
) -> None:
    """All the layers, in place on x [n_tokens, dim]: the real tokens of sentences of `lengths`
    tokens (in that order, each sentence's tokens consecutive). BLAS must be single-threaded.

    With `n_parts` > 1 (a run alone in its batch), each branch is cut into parts (`parts`): a
    part computes its heads' (or FFN columns') share of the branch's output, and the shares are
    added up in part order. On `workers`, the parts run side by side; without, in turn.
    """
    starts = np.cumsum(lengths) - lengths  # first row of each sentence
    groups = [(starts[lengths == length], int(length)) for length in np.unique(lengths)
              if length > 0]  # fmt: skip
    shares = parts(config, len(x), n_parts)
    buffers = [Buffers.empty(len(x), share) for share in shares]
    outs = np.empty((len(shares), *x.shape), F32)  # each part's share of a branch's output
    normed = np.empty_like(x) if config.pre_norm else x  # the branches' input
    eps = config.layer_norm_eps

    def branch(compute: Callable[..., None], *args: object) -> np.ndarray:
        """Every part's share of a branch: their sum, [n, dim]."""
        calls = [functools.partial(compute, *args, share, buf, out)
                 for share, buf, out in zip(shares, buffers, outs, strict=True)]  # fmt: skip
        if workers is None or len(calls) == 1:
            for call in calls:
                call()
        else:
            workers.run(calls)
        for out in outs[1:]:
            outs[0] += out
        return outs[0]

    for layer in params.layers:
        if config.pre_norm:  # x = x + attn(norm1(x)); x = x + ffn(norm2(x))
            normed[...] = x
            layer_norm_(normed, layer.layer_norm1, eps)
        attention = branch(_attention_part, normed, layer, groups, config)
        _residual(x, attention, layer.attention.out_lin.bias)
        if config.pre_norm:
            normed[...] = x
            layer_norm_(normed, layer.layer_norm2, eps)
        else:  # x = norm1(x + attn(x)); x = norm2(x + ffn(x))
            layer_norm_(x, layer.layer_norm1, eps)
        ffn = branch(_ffn_part, normed, layer, config.gelu_activation)
        _residual(x, ffn, layer.ffn.lin2.bias)
        if not config.pre_norm:
            layer_norm_(x, layer.layer_norm2, eps)


def _attention_part(
    x: np.ndarray,
    layer: Layer,
    groups: list[tuple[np.ndarray, int]],
    config: FlaubertConfig,
    part: Part,
    buffers: Buffers,
    out: np.ndarray,
) -> None:
    """out <- the part's heads' share of out_lin(attention(x)), without out_lin's bias."""
    att, qkv, heads = layer.attention, buffers.qkv, part.heads
    width = heads.stop - heads.start
    # q, k and v straight into their columns of one buffer (an `out=` view is fine for BLAS).
    for i, lin in enumerate((att.q_lin, att.k_lin, att.v_lin)):
        matmul_(x, lin.weight[:, heads], qkv[:, i * width : (i + 1) * width])
        qkv[:, i * width : (i + 1) * width] += lin.bias[heads]
    qkv[:, :width] *= F32(1 / math.sqrt(config.emb_dim // config.n_heads))  # q / √head_dim
    for starts, length in groups:
        attention_(qkv, buffers.context, starts, length, part.n_heads, config.causal)
    matmul_(buffers.context, att.out_lin.weight[heads], out)  # [n, width] @ [width, dim]


def _ffn_part(
    x: np.ndarray, layer: Layer, use_gelu: bool, part: Part, buffers: Buffers, out: np.ndarray
) -> None:
    """out <- the part's FFN columns' share of lin2(act(lin1(x))), without lin2's bias;
    FFN_ROWS tokens at a time."""
    ff, cols, hidden = layer.ffn, part.ffn, buffers.hidden
    activation = bias_gelu_ if use_gelu else bias_relu_
    for lo in range(0, len(x), len(hidden)):
        hi = min(lo + len(hidden), len(x))
        h = hidden[: hi - lo]
        matmul_(x[lo:hi], ff.lin1.weight[:, cols], h)
        activation(h, ff.lin1.bias[cols])
        matmul_(h, ff.lin2.weight[cols], out[lo:hi])


def _residual(x: np.ndarray, branch: np.ndarray, bias: np.ndarray) -> None:
    """x <- x + (branch + bias)"""
    branch += bias
    x += branch
