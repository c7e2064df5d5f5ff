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


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def nearest(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    corpus_chunk_size: int,
    score_function: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k highest-scoring corpus rows, scored `corpus_chunk_size` rows at a time:
    (scores, corpus ids), highest first, equal scores in corpus order."""
    # [q, dim], [n, dim] -> [q, min(k, n)], [q, min(k, n)]
    best = np.zeros((len(queries), 0), dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(corpus), corpus_chunk_size):
        scores = np.asarray(score_function(queries, corpus[start : start + corpus_chunk_size]))
        # the best so far come first, so that ties keep corpus order
        candidates = np.concatenate([best, scores], axis=1)
        keep = np.array([_top_k(row, k) for row in candidates], dtype=np.int64)
        keep = keep.reshape(len(queries), min(k, candidates.shape[1]))  # positions in candidates
        # a kept position is one of the best so far, or a row of this chunk
        n_best = best.shape[1]
        spare = np.zeros((len(queries), 1), dtype=np.int64)  # a column for positions >= n_best
        from_best = np.take_along_axis(np.hstack([best_ids, spare]), np.minimum(keep, n_best), 1)
        best_ids = np.where(keep < n_best, from_best, start + keep - n_best)
        best = np.take_along_axis(candidates, keep, axis=1)
    return best, best_ids


def semantic_search(
    query_embeddings: Any,
    corpus_embeddings: Any,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: Callable[[np.ndarray, np.ndarray], np.ndarray] = cos_sim,
) -> list[list[dict[str, int | float]]]:
    """For each query, the `top_k` corpus entries that score highest with it (cosine default).

    Returns one list per query of {"corpus_id": int, "score": float}, highest score first, like
    sentence_transformers.util.semantic_search. Equal scores come in corpus order here;
    sentence-transformers leaves their order to torch.topk and its heap.
    """
    # [n_queries, dim] or [dim], [n_corpus, dim] -> n_queries lists of min(top_k, n_corpus)
    _positive_int(top_k, "top_k")
    _positive_int(query_chunk_size, "query_chunk_size")
    _positive_int(corpus_chunk_size, "corpus_chunk_size")
    if np.ndim(corpus_embeddings) != 2:
        shape = np.shape(corpus_embeddings)
        raise ValueError(f"corpus_embeddings must be [n, dim], got shape {shape}")
    queries = _as_float_matrix(query_embeddings, "query_embeddings")
    corpus = _as_float_matrix(corpus_embeddings, "corpus_embeddings")
    _check_same_dim(queries, corpus, "query_embeddings and corpus_embeddings")
    score = score_function
    if score_function is cos_sim:  # normalise the corpus once, not once per chunk of queries
        corpus = normalize(corpus)

        def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return normalize(a) @ b.T

    results = []
    for start in range(0, len(queries), query_chunk_size):
        chunk = queries[start : start + query_chunk_size]
        scores, ids = nearest(chunk, corpus, top_k, corpus_chunk_size, score)
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            hits = zip(row_ids, row_scores, strict=True)
            results.append([{"corpus_id": i, "score": s} for i, s in hits])
    return results
