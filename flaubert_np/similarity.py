"""Similarity scores and semantic search, as sentence_transformers.util does them.

Matrix scores (`cos_sim`, `dot_score`) compare every row of `a` with every row of `b`; the
`pairwise_*` scores compare row i of `a` with row i of `b` only.

Inputs are NumPy arrays (or lists); float16 is computed in float32 like sentence-transformers,
float32 and float64 stay as they are. A zero vector has similarity 0 with everything: vectors are
divided by max(||v||, 1e-12), as torch.nn.functional.normalize does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flaubert_np.pooling import normalize


def _as_float_matrix(x, name: str) -> np.ndarray:
    # [dim] or [n, dim] -> [n, dim]
    if isinstance(x, (list, tuple)) and not any(isinstance(v, np.ndarray) for v in x):
        x = np.asarray(x, dtype=np.float32)  # as torch.tensor(list) gives float32
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must hold floating-point numbers, got {x.dtype}")
    if x.dtype.itemsize < 4:
        x = x.astype(np.float32)  # scores rounded to float16 would tie spuriously
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [dim] or [n, dim], got shape {x.shape}")
    return x


def _check_same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} differ in dimension: {a.shape} vs {b.shape}")


def cos_sim(a, b) -> np.ndarray:
    """Cosine similarity of every row of `a` with every row of `b`: out[i, j] = cos(a[i], b[j])."""
    # [n, dim] or [dim], [m, dim] or [dim] -> [n, m]
    a = _as_float_matrix(a, "a")
    b = _as_float_matrix(b, "b")
    _check_same_dim(a, b, "a and b")
    return normalize(a) @ normalize(b).T


def dot_score(a, b) -> np.ndarray:
    """Dot product of every row of `a` with every row of `b`: out[i, j] = a[i] . b[j]."""
    # [n, dim] or [dim], [m, dim] or [dim] -> [n, m]
    a = _as_float_matrix(a, "a")
    b = _as_float_matrix(b, "b")
    _check_same_dim(a, b, "a and b")
    return a @ b.T


def _pairwise(
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Callable[[Any, Any], np.ndarray]:
    """A row-by-row score of two [n, dim] arrays (or two [dim] vectors: then one number)."""

    def pairwise(a: Any, b: Any) -> np.ndarray:
        single = np.ndim(a) == 1 and np.ndim(b) == 1
        a, b = _as_float_matrix(a, "a"), _as_float_matrix(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
        out = score(a, b)
        return out[0] if single else out

    pairwise.__name__, pairwise.__doc__ = score.__name__, score.__doc__
    return pairwise


@_pairwise
def pairwise_cos_sim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i] = cos(a[i], b[i])."""
    # [n, dim], [n, dim] -> [n]
    return (normalize(a) * normalize(b)).sum(axis=-1)


@_pairwise
def pairwise_dot_score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i] = a[i] . b[i]."""
    # [n, dim], [n, dim] -> [n]
    return (a * b).sum(axis=-1)


@_pairwise
def pairwise_euclidean_sim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i] = -||a[i] - b[i]||: higher is more similar."""
    # [n, dim], [n, dim] -> [n]
    return -np.linalg.norm(a - b, axis=-1)


@_pairwise
def pairwise_manhattan_sim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i] = -sum |a[i] - b[i]|: higher is more similar."""
    # [n, dim], [n, dim] -> [n]
    return -np.abs(a - b).sum(axis=-1)


# similarity_fn_name (config_sentence_transformers.json) -> its pairwise score
PAIRWISE_FUNCTIONS = {
    "cosine": pairwise_cos_sim,
    "dot": pairwise_dot_score,
    "euclidean": pairwise_euclidean_sim,
    "manhattan": pairwise_manhattan_sim,
}


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first; equal scores in index order."""
    # [n] -> [k]
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)  # every tie of the k-th score, in index order
    else:
        candidates = np.arange(len(scores))
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order[:k]]


def semantic_search(
    query_embeddings, corpus_embeddings, top_k: int = 10
) -> list[list[dict[str, int | float]]]:
    """For each query, the `top_k` corpus entries most cosine-similar to it.

    Returns one list per query of {"corpus_id": int, "score": float}, highest score first, like
    sentence_transformers.util.semantic_search. Equal scores come in corpus order here;
    sentence-transformers leaves their order to torch.topk and its heap.
    """
    # [n_queries, dim] or [dim], [n_corpus, dim] -> n_queries lists of min(top_k, n_corpus)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if np.ndim(corpus_embeddings) != 2:
        shape = np.shape(corpus_embeddings)
        raise ValueError(f"corpus_embeddings must be [n, dim], got shape {shape}")
    queries = _as_float_matrix(query_embeddings, "query_embeddings")
    corpus = _as_float_matrix(corpus_embeddings, "corpus_embeddings")
    _check_same_dim(queries, corpus, "query_embeddings and corpus_embeddings")
    corpus = normalize(corpus)  # once, not once per chunk of queries
    results = []
    chunk = 100  # queries scored at once: bounds the [chunk, n_corpus] score matrix
    for start in range(0, len(queries), chunk):
        scores = normalize(queries[start : start + chunk]) @ corpus.T  # [chunk, n_corpus]
        for row in scores:
            ids = _top_k(row, top_k)
            results.append([{"corpus_id": int(i), "score": float(row[i])} for i in ids])
    return results
