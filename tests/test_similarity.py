"""flaubert_np.similarity against sentence_transformers.util."""

import numpy as np
import pytest

from flaubert_np.similarity import cos_sim, semantic_search

DIM = 32


def _random(n, dim=DIM, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


def _reference_cos_sim(a, b):
    from sentence_transformers import util

    return util.cos_sim(a, b).numpy()


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (_random(5), _random(7, seed=1)),
        (_random(5)[0], _random(7, seed=1)),  # 1-D inputs are one row
        (_random(5), _random(7, seed=1)[3]),
        (_random(5)[1], _random(7, seed=1)[2]),
        (_random(4, dtype=np.float64), _random(6, seed=2, dtype=np.float64)),
        (_random(4, dtype=np.float16), _random(6, seed=3, dtype=np.float16)),  # computed in f32
    ],
)
def test_cos_sim_matches_sentence_transformers(a, b):
    got, want = cos_sim(a, b), _reference_cos_sim(a, b)
    assert got.shape == want.shape and got.ndim == 2
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.oracle
def test_cos_sim_zero_vectors_score_zero():
    a = _random(3)
    a[1] = 0.0
    b = np.vstack([_random(2, seed=4), np.zeros((1, DIM), np.float32)])
    got = cos_sim(a, b)
    np.testing.assert_allclose(got, _reference_cos_sim(a, b), rtol=0, atol=1e-6)
    assert not got[1].any() and not got[:, 2].any()
    assert np.isfinite(got).all()


@pytest.mark.oracle
def test_cos_sim_of_lists_and_self():
    a = _random(4, dim=5, seed=5)
    as_lists = a.tolist()
    np.testing.assert_allclose(
        cos_sim(as_lists, as_lists), _reference_cos_sim(as_lists, as_lists), rtol=0, atol=1e-6
    )
    assert cos_sim(as_lists, as_lists).dtype == np.float32
    np.testing.assert_allclose(np.diag(cos_sim(a, a)), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (_random(2), _random(2, dim=8), ValueError, r"differ in dimension: \(2, 32\) vs \(2, 8\)"),
        (np.zeros((2, 3, 4), np.float32), _random(2), ValueError, r"\[dim\] or \[n, dim\]"),
        (np.ones((2, DIM), np.int64), _random(2), TypeError, "floating-point numbers, got int64"),
    ],
)
def test_cos_sim_bad_inputs(a, b, error, match):
    with pytest.raises(error, match=match):
        cos_sim(a, b)


def _assert_same_hits(got, want):
    assert len(got) == len(want)
    for got_hits, want_hits in zip(got, want, strict=True):
        assert [h["corpus_id"] for h in got_hits] == [h["corpus_id"] for h in want_hits]
        np.testing.assert_allclose(
            [h["score"] for h in got_hits], [h["score"] for h in want_hits], rtol=0, atol=1e-6
        )
        for hit in got_hits:
            assert type(hit["corpus_id"]) is int and type(hit["score"]) is float
            assert set(hit) == {"corpus_id", "score"}


@pytest.mark.oracle
@pytest.mark.parametrize("top_k", [1, 5, 10, 299, 300, 1000])
def test_semantic_search_matches_sentence_transformers(top_k):
    import torch
    from sentence_transformers import util

    queries, corpus = _random(7, seed=6), _random(300, seed=7)
    got = semantic_search(queries, corpus, top_k=top_k)
    want = util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), top_k=top_k)
    _assert_same_hits(got, want)
    assert all(len(hits) == min(top_k, 300) for hits in got)


@pytest.mark.oracle
def test_semantic_search_many_queries_and_defaults():
    """More queries than one chunk of 100; numpy inputs as sentence-transformers takes them."""
    from sentence_transformers import util

    queries, corpus = _random(230, seed=8), _random(120, seed=9)
    _assert_same_hits(semantic_search(queries, corpus), util.semantic_search(queries, corpus))


@pytest.mark.oracle
def test_semantic_search_one_query_vector():
    from sentence_transformers import util

    queries, corpus = _random(3, seed=10), _random(50, seed=11)
    got = semantic_search(queries[0], corpus, top_k=4)
    _assert_same_hits(got, util.semantic_search(queries[0], corpus, top_k=4))
    assert len(got) == 1


def test_semantic_search_empty_corpus_and_queries():
    assert semantic_search(_random(2), np.zeros((0, DIM), np.float32)) == [[], []]
    assert semantic_search(np.zeros((0, DIM), np.float32), _random(3)) == []


def test_semantic_search_ties_come_in_corpus_order():
    """sentence-transformers leaves the order of equal scores unspecified; ours: lower id first,
    also when the tie straddles the top-k boundary."""
    base = _random(3, seed=12)
    corpus = np.vstack([base[1], base[0], base[2], base[0], base[0] * 2.0, base[1]])
    hits = semantic_search(base[0], corpus, top_k=2)[0]
    assert [h["corpus_id"] for h in hits] == [1, 3]
    hits = semantic_search(base[0], corpus, top_k=6)[0]
    assert [h["corpus_id"] for h in hits][:3] == [1, 3, 4]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_semantic_search_bad_top_k(top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        semantic_search(_random(1), _random(3), top_k=top_k)


def test_semantic_search_bad_shapes():
    with pytest.raises(ValueError, match=r"corpus_embeddings must be \[n, dim\]"):
        semantic_search(_random(1), _random(3)[0])
    with pytest.raises(ValueError, match="differ in dimension"):
        semantic_search(_random(1, dim=8), _random(3))
