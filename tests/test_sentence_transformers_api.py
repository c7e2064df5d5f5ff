"""sentence-transformers' other calls, against sentence-transformers 6 (same models, inputs).

encode(precision=, truncate_dim=), truncate_dim at load, encode_query / encode_document,
similarity_pairwise, get_sentence_embedding_dimension, a settable max_seq_length; and from
sentence_transformers.util: dot_score, the pairwise scores, paraphrase_mining, community_detection
and quantize_embeddings.
"""

import warnings

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer, util

import flaubert_np
from flaubert_np import retrieval, similarity
from flaubert_np.quantization import quantize_embeddings
from flaubert_np.sentence import SentenceEncoder

pytestmark = pytest.mark.oracle

TOL = 1e-5
PROMPTS = {"query": "question : ", "document": "passage : "}


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


@pytest.fixture(scope="module")
def sentences(stsb_sentences) -> list[str]:
    """60 distinct STS sentences (duplicates would tie in the mining tests)."""
    return list(dict.fromkeys(stsb_sentences))[:60]


@pytest.fixture(scope="module")
def models(sentence_model):
    """(flaubert-np, sentence-transformers) on one model with query/document prompts."""
    path = sentence_model("mean", prompts=PROMPTS)
    torch.set_num_threads(1)  # tiny models: threads cost more than they bring
    return SentenceEncoder.from_pretrained(path), SentenceTransformer(str(path), device="cpu")


def unpack(bits: np.ndarray) -> np.ndarray:
    """binary (int8) or ubinary (uint8) packed embeddings -> one 0/1 per dimension."""
    as_uint8 = bits.astype(np.uint8) if bits.dtype == np.uint8 else (bits.astype(np.int16) + 128)
    return np.unpackbits(as_uint8.astype(np.uint8), axis=-1)


def assert_same_quantization(ours, theirs, floats, precision):
    """Equal everywhere but where the reference's float value sits within float32 noise of a
    bucket boundary (0 for the binary precisions), where either side may round differently."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    floats = np.asarray(floats, dtype=np.float64)
    if precision.endswith("binary"):
        differ = unpack(ours) != unpack(theirs)
        near = np.abs(floats) <= TOL
        near = np.pad(near, ((0, 0), (0, differ.shape[1] - near.shape[1])))
    else:
        starts, ends = floats.min(axis=0), floats.max(axis=0)
        steps = (ends - starts) / 255
        position = (floats - starts) / steps
        near = np.abs(position - np.round(position)) * steps <= 3 * TOL
        differ = ours != theirs
    assert not (differ & ~near).any(), f"{int((differ & ~near).sum())} values differ"


# ---------------------------------------------------------------------------------------------
# encode(precision=, truncate_dim=), truncate_dim at load


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_encode_precision(models, sentences, precision):
    ours, reference = models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ranges computed from only 60 embeddings"
        got = ours.encode(sentences, precision=precision)
        expected = reference.encode(sentences, precision=precision)
    floats = reference.encode(sentences)
    if precision == "float32":
        assert got.dtype == np.float32 and max_diff(got, expected) <= TOL
    else:
        assert_same_quantization(got, expected, floats, precision)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = quantize_embeddings(ours.encode(sentences), precision)
        assert np.array_equal(got, again)


def test_encode_precision_of_one_sentence_needs_ranges(models):
    ours, reference = models
    with pytest.raises(ValueError, match="single embedding") as info:
        ours.encode("Une phrase.", precision="int8")
    with pytest.raises(ValueError, match="single embedding"):
        reference.encode("Une phrase.", precision="int8")
    assert "\n" not in str(info.value)
    got = ours.encode("Une phrase.", precision="ubinary")
    assert np.array_equal(got, reference.encode("Une phrase.", precision="ubinary"))


def test_encode_nothing_in_each_precision(models):
    ours = models[0]
    assert ours.encode([]).shape == (0, 32) and ours.encode([]).dtype == np.float32
    for precision, dtype in (("int8", np.int8), ("uint8", np.uint8)):
        assert ours.encode([], precision=precision).dtype == dtype
    assert ours.encode([], precision="binary").shape == (0, 4)


def test_bad_precision(models):
    with pytest.raises(ValueError, match="precision must be one of float32, int8, uint8, binary"):
        models[0].encode(["a"], precision="float16")


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dense", [None, "Tanh"])
def test_encode_truncate_dim(sentence_model, sentences, normalize, dense):
    path = sentence_model("mean", dense=dense)
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    got = ours.encode(sentences, truncate_dim=10, normalize_embeddings=normalize)
    expected = reference.encode(sentences, truncate_dim=10, normalize_embeddings=normalize)
    assert got.shape == expected.shape == (len(sentences), 10)
    assert max_diff(got, expected) <= TOL
    if normalize:  # truncated first, then normalised
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_truncate_dim_at_load(sentence_model, sentences):
    path = sentence_model("mean", dense="Tanh")
    ours = SentenceEncoder.from_pretrained(path, truncate_dim=12)
    reference = SentenceTransformer(str(path), device="cpu", truncate_dim=12)
    assert max_diff(ours.encode(sentences), reference.encode(sentences)) <= TOL
    assert ours.get_sentence_embedding_dimension() == reference.get_embedding_dimension() == 12
    # encode's truncate_dim wins over the encoder's
    got, expected = (
        ours.encode(sentences, truncate_dim=5),
        reference.encode(sentences, truncate_dim=5),
    )
    assert got.shape == (len(sentences), 5) and max_diff(got, expected) <= TOL
    assert ours.encode([]).shape == (0, 12)


def test_truncate_embeddings_context(models, sentences):
    ours, reference = models
    with ours.truncate_embeddings(7), reference.truncate_embeddings(7):
        got, expected = ours.encode(sentences), reference.encode(sentences)
        assert ours.get_embedding_dimension() == reference.get_embedding_dimension() == 7
    assert got.shape == (len(sentences), 7) and max_diff(got, expected) <= TOL
    assert ours.truncate_dim is None and ours.encode(sentences).shape == (len(sentences), 32)
    with pytest.raises(ValueError, match="truncate_dim"), ours.truncate_embeddings(0):
        pass
    assert ours.get_max_seq_length() == reference.get_max_seq_length() == 32


@pytest.mark.parametrize("dense", [None, "Tanh"])
def test_get_sentence_embedding_dimension(sentence_model, dense):
    path = sentence_model("mean", dense=dense)
    reference = SentenceTransformer(str(path), device="cpu")
    ours = SentenceEncoder.from_pretrained(path)
    assert ours.get_sentence_embedding_dimension() == reference.get_embedding_dimension()
    assert ours.get_embedding_dimension() == reference.get_embedding_dimension()
    wide = SentenceEncoder.from_pretrained(path, truncate_dim=1000)  # larger than the embeddings
    assert wide.get_embedding_dimension() == reference.get_embedding_dimension()


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8"])
def test_bad_truncate_dim(models, sentence_model, value):
    with pytest.raises(ValueError, match="truncate_dim must be a positive integer"):
        models[0].encode(["a"], truncate_dim=value)
    with pytest.raises(ValueError, match="truncate_dim must be a positive integer"):
        SentenceEncoder.from_pretrained(sentence_model("mean"), truncate_dim=value)


# ---------------------------------------------------------------------------------------------
# encode_query, encode_document


def test_encode_query_and_document_use_the_models_prompts(models, sentences):
    ours, reference = models
    query, document = ours.encode_query(sentences), ours.encode_document(sentences)
    assert max_diff(query, reference.encode_query(sentences)) <= TOL
    assert max_diff(document, reference.encode_document(sentences)) <= TOL
    assert max_diff(query, ours.encode(sentences, prompt_name="query")) == 0
    assert max_diff(document, ours.encode(sentences, prompt_name="document")) == 0
    assert max_diff(query, ours.encode(sentences)) > 0.01
    # an explicit prompt wins; other arguments go to encode
    got = ours.encode_query(sentences, prompt="autre : ", truncate_dim=8, precision="ubinary")
    expected = reference.encode_query(sentences, prompt="autre : ", truncate_dim=8,
                                      precision="ubinary")  # fmt: skip
    floats = reference.encode_query(sentences, prompt="autre : ", truncate_dim=8)
    assert_same_quantization(got, expected, floats, "ubinary")


@pytest.mark.parametrize(
    "prompts", [{"passage": "p : "}, {"corpus": "c : ", "query": "q : "}, None]
)
def test_encode_document_falls_back_as_sentence_transformers(sentence_model, sentences, prompts):
    path = sentence_model("mean", prompts=prompts)
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    assert max_diff(ours.encode_document(sentences), reference.encode_document(sentences)) <= TOL
    assert max_diff(ours.encode_query(sentences), reference.encode_query(sentences)) <= TOL


def test_set_pooling_include_prompt(sentence_model, sentences):
    ours = SentenceEncoder.from_pretrained(sentence_model("mean", prompts=PROMPTS))
    reference = SentenceTransformer(str(sentence_model("mean", prompts=PROMPTS)), device="cpu")
    with_prompt = ours.encode_query(sentences)
    ours.set_pooling_include_prompt(False)
    reference.set_pooling_include_prompt(False)
    got = ours.encode_query(sentences)
    assert max_diff(got, reference.encode_query(sentences)) <= TOL
    assert max_diff(got, with_prompt) > 0.01


# ---------------------------------------------------------------------------------------------
# similarity_pairwise, dot_score and the pairwise scores


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_pairwise(sentence_model, sentences, name):
    path = sentence_model("mean", similarity_fn_name=name)
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    a, b = ours.encode(sentences[:20]), ours.encode(sentences[20:40])
    got, expected = ours.similarity_pairwise(a, b), reference.similarity_pairwise(a, b).numpy()
    assert got.shape == expected.shape == (20,)
    assert max_diff(got, expected) <= TOL * max(1, np.abs(expected).max())
    assert np.allclose(got, np.diag(ours.similarity(a, b)), atol=TOL * max(1, np.abs(got).max()))


def _random(n, dim=24, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


@pytest.mark.parametrize(
    ("a", "b"),
    [(_random(5), _random(7, seed=1)), (_random(5)[0], _random(7, seed=1)),
     (_random(4, dtype=np.float64), _random(6, seed=2, dtype=np.float64)),
     ([[1.0, 2.0], [3.0, 4.0]], [[0.5, -1.0]])],
)  # fmt: skip
def test_dot_score(a, b):
    got, expected = flaubert_np.dot_score(a, b), util.dot_score(a, b).numpy()
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert max_diff(got, expected) <= TOL


@pytest.mark.parametrize("name", ["cos_sim", "dot_score", "euclidean_sim", "manhattan_sim"])
@pytest.mark.parametrize("shape", [(6, 24), (1,)])
def test_pairwise_scores(name, shape):
    a, b = _random(6, seed=3)[: shape[0]], _random(6, seed=4)[: shape[0]]
    if len(shape) == 1:
        a, b = a[0], b[0]
    got = getattr(similarity, f"pairwise_{name}")(a, b)
    expected = getattr(util, f"pairwise_{name}")(a, b).numpy()
    assert np.shape(got) == expected.shape and max_diff(got, expected) <= TOL


def test_pairwise_scores_need_the_same_shape():
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        similarity.pairwise_cos_sim(_random(3), _random(4))


# ---------------------------------------------------------------------------------------------
# max_seq_length


def test_max_seq_length_is_settable(sentence_model, sentences):
    path = sentence_model("mean")
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    assert ours.max_seq_length == reference.max_seq_length == 32
    before = ours.encode(sentences)
    ours.max_seq_length = reference.max_seq_length = 8
    assert ours.max_seq_length == 8
    got = ours.encode(sentences)
    assert max_diff(got, reference.encode(sentences)) <= TOL
    assert max_diff(got, before) > 0.01  # truncation at 8 tokens changes long sentences
    assert all(len(ids) <= 8 for ids in ours.tokenize(sentences)["input_ids"])


@pytest.mark.parametrize("value", [0, 65, 2.0, "8"])
def test_bad_max_seq_length(models, value):
    ours = models[0]
    with pytest.raises(ValueError, match=r"max_seq_length must be an integer from 1 to .*\(64\)"):
        ours.max_seq_length = value
    assert ours.max_seq_length == 32


# ---------------------------------------------------------------------------------------------
# torch-only options


def test_convert_to_tensor_and_device_say_flaubert_np_returns_numpy(models):
    ours = models[0]
    with pytest.raises(ValueError, match="flaubert-np returns NumPy arrays"):
        ours.encode(["a"], convert_to_tensor=True)
    with pytest.raises(ValueError, match="runs on the CPU with NumPy only"):
        ours.encode(["a"], device="cuda")
    with pytest.raises(ValueError, match="flaubert-np returns NumPy arrays"):
        ours.encode_query(["a"], convert_to_tensor=True)
    assert np.array_equal(ours.encode(["a"], device="cpu"), ours.encode(["a"]))


# ---------------------------------------------------------------------------------------------
# quantize_embeddings


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_embeddings(precision, dtype):
    embeddings = _random(150, dim=20, dtype=dtype)  # 20 bits: the last byte is padded
    calibration = _random(300, dim=20, seed=5, dtype=dtype)
    ranges = np.vstack([np.full(20, -1.0), np.full(20, 1.5)])
    for kwargs in ({}, {"calibration_embeddings": calibration}, {"ranges": ranges}):
        got = quantize_embeddings(embeddings, precision, **kwargs)
        expected = util.quantize_embeddings(embeddings, precision, **kwargs)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), kwargs
    assert flaubert_np.quantize_embeddings is quantize_embeddings


@pytest.mark.parametrize("precision", ["int8", "ubinary"])
def test_quantize_a_list(precision):
    vectors = list(_random(120, seed=6))
    got = quantize_embeddings(vectors, precision)
    assert np.array_equal(got, util.quantize_embeddings(vectors, precision))
    matrices = [_random(n, seed=n) for n in (3, 50, 70)]  # token embeddings: shared ranges
    got_list = quantize_embeddings(matrices, precision)
    expected = util.quantize_embeddings(matrices, precision)
    assert all(np.array_equal(g, e) for g, e in zip(got_list, expected, strict=True))
    assert quantize_embeddings([], precision) == []


def test_quantize_errors():
    with pytest.raises(ValueError, match="precision must be one of"):
        quantize_embeddings(_random(3), "int4")
    with pytest.raises(ValueError, match="must be floating point"):
        quantize_embeddings(_random(3).astype(np.int8), "int8")
    with pytest.raises(ValueError, match="single embedding"):
        quantize_embeddings(_random(1), "uint8")
    with pytest.warns(UserWarning, match="from only 3 embeddings"):
        quantize_embeddings(_random(3), "uint8")


# ---------------------------------------------------------------------------------------------
# paraphrase_mining, community_detection


@pytest.fixture(scope="module")
def reference_embeddings(models, sentences) -> np.ndarray:
    return models[1].encode(sentences)


@pytest.mark.parametrize(("top_k", "max_pairs"), [(100, 500000), (3, 50), (1, 10)])
def test_paraphrase_mining_embeddings(reference_embeddings, top_k, max_pairs):
    """Same embeddings in: the same pairs out, in the same order (small chunks here)."""
    got = retrieval.paraphrase_mining_embeddings(
        reference_embeddings,
        query_chunk_size=7,
        corpus_chunk_size=11,
        top_k=top_k,
        max_pairs=max_pairs,
    )
    expected = util.paraphrase_mining_embeddings(
        torch.from_numpy(reference_embeddings), top_k=top_k, max_pairs=max_pairs
    )
    assert [p[1:] for p in got] == [p[1:] for p in expected]
    assert max_diff([p[0] for p in got], [p[0] for p in expected]) <= 1e-6
    assert len(got) == min(max_pairs, len(got)) and len(got) > 0


def test_paraphrase_mining(models, sentences):
    ours, reference = models
    got = flaubert_np.paraphrase_mining(ours, sentences, top_k=5, max_pairs=40)
    expected = util.paraphrase_mining(reference, sentences, top_k=5, max_pairs=40)
    assert {tuple(p[1:]) for p in got} == {tuple(p[1:]) for p in expected}
    scores = dict((tuple(p[1:]), p[0]) for p in expected)
    assert max(abs(p[0] - scores[tuple(p[1:])]) for p in got) <= TOL
    assert [p[0] for p in got] == sorted((p[0] for p in got), reverse=True)
    # the prompt and truncate_dim reach encode
    got = flaubert_np.paraphrase_mining(
        ours,
        sentences,
        max_pairs=20,
        prompt_name="query",
        truncate_dim=8,
        score_function=flaubert_np.dot_score,
    )
    expected = util.paraphrase_mining(
        reference,
        sentences,
        max_pairs=20,
        prompt_name="query",
        truncate_dim=8,
        score_function=util.dot_score,
    )
    assert {tuple(p[1:]) for p in got} == {tuple(p[1:]) for p in expected}


@pytest.mark.parametrize("min_community_size", [1, 3, 10])
@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.95])  # 1.67% of scores: the diagonal
def test_community_detection(reference_embeddings, min_community_size, quantile):
    normalized = reference_embeddings / np.linalg.norm(reference_embeddings, axis=1, keepdims=True)
    threshold = float(np.quantile(normalized @ normalized.T, quantile))
    got = flaubert_np.community_detection(
        reference_embeddings,
        threshold=threshold,
        min_community_size=min_community_size,
        batch_size=16,
    )
    expected = util.community_detection(
        reference_embeddings, threshold=threshold, min_community_size=min_community_size
    )
    assert got == expected
    if min_community_size == 1:
        assert sorted(i for c in got for i in c) == list(range(len(reference_embeddings)))


def test_community_detection_defaults_and_edges(models, reference_embeddings, sentences):
    ours = models[0].encode(sentences)
    got = flaubert_np.community_detection(ours, threshold=0.9, min_community_size=5)
    expected = util.community_detection(reference_embeddings, threshold=0.9, min_community_size=5)
    assert [set(c) for c in got] == [set(c) for c in expected]
    assert [c[0] for c in got] == [c[0] for c in expected]
    assert flaubert_np.community_detection(ours) == util.community_detection(reference_embeddings)
    assert flaubert_np.community_detection(np.zeros((0, 4))) == []
    assert flaubert_np.community_detection(ours[:3], min_community_size=4) == []
    with pytest.raises(ValueError, match="min_community_size must be a positive integer"):
        flaubert_np.community_detection(ours, min_community_size=0)


# ---------------------------------------------------------------------------------------------
# semantic_search: sentence-transformers' parameters


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
@pytest.mark.parametrize(("query_chunk_size", "corpus_chunk_size"), [(100, 500000), (3, 7)])
def test_semantic_search_parameters(
    reference_embeddings, score, query_chunk_size, corpus_chunk_size
):
    queries, corpus = reference_embeddings[:10], reference_embeddings[10:]
    got = flaubert_np.semantic_search(
        queries, corpus, query_chunk_size, corpus_chunk_size, 5, getattr(flaubert_np, score)
    )
    expected = util.semantic_search(
        torch.from_numpy(queries),
        torch.from_numpy(corpus),
        query_chunk_size,
        corpus_chunk_size,
        5,
        getattr(util, score),
    )
    assert [[h["corpus_id"] for h in q] for q in got] == [
        [h["corpus_id"] for h in q] for q in expected
    ]
    assert (
        max_diff([h["score"] for q in got for h in q], [h["score"] for q in expected for h in q])
        <= TOL
    )
    with pytest.raises(ValueError, match="corpus_chunk_size must be a positive integer"):
        flaubert_np.semantic_search(queries, corpus, corpus_chunk_size=0)


def test_embedding_function_carries_prompt_and_max_seq_length(sentence_model, sentences):
    """The picklable function of --workers, Dask and Ray: same options, same numbers."""
    import pickle

    from flaubert_np.distributed import EmbeddingFunction

    path = str(sentence_model("mean", prompts=PROMPTS))
    short = pickle.loads(
        pickle.dumps(EmbeddingFunction(path, max_seq_length=6, prompt_name="query"))
    )
    plain = EmbeddingFunction(path)
    reference = SentenceTransformer(path, device="cpu")
    assert max_diff(plain(sentences), reference.encode(sentences)) <= TOL
    reference.max_seq_length = 6
    assert max_diff(short(sentences), reference.encode(sentences, prompt_name="query")) <= TOL
    assert plain.encoder.max_seq_length == 32  # the model they share is left as it was
    assert max_diff(plain(sentences), plain.encoder.encode(sentences)) == 0
