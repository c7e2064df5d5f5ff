"""Paraphrase mining and community detection, as sentence_transformers.util does them.

`paraphrase_mining` finds the most similar pairs of sentences in a list: each sentence's `top_k`
nearest neighbours, pairs kept once, the `max_pairs` best returned as [score, i, j] (i < j),
highest score first. `community_detection` groups embeddings around central points: every
embedding whose cosine similarity with a centre is at least `threshold`, communities of at least
`min_community_size`, largest first, no embedding in two communities.

Equal scores come in index order here; sentence-transformers leaves their order to torch.topk.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flaubert_np.pooling import normalize
from flaubert_np.similarity import _as_float_matrix, _positive_int, cos_sim, nearest


def paraphrase_mining(
    model: Any,
    sentences: Sequence[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable[[np.ndarray, np.ndarray], np.ndarray] = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[float | int]]:
    """The most similar pairs of `sentences`, embedded with `model` (a SentenceEncoder):
    [score, i, j] with i < j, highest score first."""
    embeddings = model.encode(
        list(sentences),
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings,
        query_chunk_size=query_chunk_size,
        corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs,
        top_k=top_k,
        score_function=score_function,
    )


def paraphrase_mining_embeddings(
    embeddings: Any,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: Callable[[np.ndarray, np.ndarray], np.ndarray] = cos_sim,
) -> list[list[float | int]]:
    """paraphrase_mining on embeddings [n, dim]. `score_function` must be symmetric: one
    direction's score is kept per pair."""
    for name, value in (("query_chunk_size", query_chunk_size), ("max_pairs", max_pairs),
                        ("corpus_chunk_size", corpus_chunk_size), ("top_k", top_k)):  # fmt: skip
        _positive_int(value, name)
    embeddings = _as_float_matrix(embeddings, "embeddings")
    n = len(embeddings)
    pairs: list[tuple[float, int, int]] = []  # min-heap of (score, i, j), at most max_pairs
    queued: set[tuple[int, int]] = set()  # the (i, j) in `pairs`
    min_score = float("-inf")
    for q_start in range(0, n, query_chunk_size):
        queries = embeddings[q_start : q_start + query_chunk_size]
        # each query's top_k + 1 neighbours: itself (most likely) and top_k others
        values, idx = nearest(queries, embeddings, top_k + 1, corpus_chunk_size, score_function)
        rows = zip(values.tolist(), idx.tolist(), strict=True)
        for i, (row_values, row_idx) in enumerate(rows, q_start):
            others = [(j, score) for j, score in zip(row_idx, row_values, strict=True) if j != i]
            for j, score in others[:top_k]:
                if score <= min_score:
                    continue
                pair = (i, j) if i < j else (j, i)
                if pair in queued:
                    continue
                queued.add(pair)
                if len(pairs) < max_pairs:
                    heapq.heappush(pairs, (score, *pair))
                else:
                    evicted = heapq.heappushpop(pairs, (score, *pair))
                    queued.discard(evicted[1:])
                    min_score = evicted[0]
    return sorted(([score, i, j] for score, i, j in pairs), key=lambda x: x[0], reverse=True)


def community_detection(
    embeddings: Any,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Communities of embeddings [n, dim]: each a list of indices, its central point first, then
    the others by decreasing cosine similarity with it; largest community first."""
    _positive_int(min_community_size, "min_community_size")
    _positive_int(batch_size, "batch_size")
    if len(embeddings) == 0:
        return []
    embeddings = normalize(_as_float_matrix(embeddings, "embeddings"))
    if len(embeddings) < min_community_size:
        return []
    limit = np.asarray(threshold, dtype=embeddings.dtype)  # compared in the embeddings' dtype
    candidates: list[tuple[int, np.ndarray]] = []  # (centre, its members by decreasing score)
    starts = range(0, len(embeddings), batch_size)
    if show_progress_bar:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="Finding clusters")
    for start in starts:
        scores = embeddings[start : start + batch_size] @ embeddings.T  # [batch, n]
        for row, row_scores in enumerate(scores):
            members = np.flatnonzero(row_scores >= limit)
            if len(members) >= min_community_size:
                order = np.argsort(-row_scores[members], kind="stable")
                candidates.append((start + row, members[order]))
    candidates.sort(key=lambda c: len(c[1]), reverse=True)  # stable: equal sizes by centre

    communities = []
    used = np.zeros(len(embeddings), dtype=bool)  # already in a community
    for centre, members in candidates:
        if used[centre]:
            continue
        free = members[~used[members]]
        if len(free) >= min_community_size:
            community = [centre, *free[free != centre].tolist()]
            communities.append(community)
            used[community] = True
    return sorted(communities, key=len, reverse=True)
