"""flaubert_np/distributed.py: the picklable EmbeddingFunction and the Dask helpers.

The Dask test starts a real dask.distributed LocalCluster: a scheduler and two worker processes,
each loading the model itself, and checks the embeddings against this process's, bit for bit.
"""

import os
import pickle

import dask.bag
import dask.dataframe
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from flaubert_np import embedding_function
from flaubert_np.distributed import EmbeddingFunction, as_sentences, embed_bag, embed_dataframe
from flaubert_np.hub import resolve_model_dir
from flaubert_np.sentence import SentenceEncoder


@pytest.fixture(scope="module")
def model_dir():
    """The embedded demo model's folder: the references here are flaubert-np's own encoder."""
    return str(resolve_model_dir("demo"))


@pytest.fixture(scope="module")
def sentences(stsb_sentences):
    return stsb_sentences[:120]


def test_the_function_lives_without_dask():
    """flaubert_np.embedding_function is its home (the CLI imports it without Dask); importing it
    from flaubert_np.distributed still works and pickles under the home module's name."""
    assert EmbeddingFunction is embedding_function.EmbeddingFunction
    assert as_sentences is embedding_function.as_sentences
    assert EmbeddingFunction.__module__ == "flaubert_np.embedding_function"


def test_pickles_as_location_and_options(model_dir, sentences):
    fn = EmbeddingFunction(model_dir, batch_size=8, normalize_embeddings=True)
    before = pickle.dumps(fn)
    fn(sentences[:3])  # loads the model in this process
    after = pickle.dumps(fn)
    assert after == before and len(after) < 1000  # the weights never travel with the function
    copy = pickle.loads(after)
    assert copy == fn and copy.options() == fn.options()
    assert copy.encoder is fn.encoder  # one encoder per process, shared by every copy


def test_matches_sentence_encoder(model_dir, sentences):
    fn = EmbeddingFunction(model_dir, batch_size=8, normalize_embeddings=True)
    want = SentenceEncoder.from_pretrained(model_dir).encode(
        sentences, batch_size=8, normalize_embeddings=True
    )
    got = fn(sentences)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # NumPy arrays (Ray Data batches) and pandas Series (Dask partitions) give the same rows.
    np.testing.assert_array_equal(fn(np.array(sentences)), got)
    np.testing.assert_array_equal(fn(pd.Series(sentences)), got)
    assert fn([]).shape == (0, fn.dimension) == (0, want.shape[1])
    # A blank string is a text, as in SentenceEncoder.encode: row i stays item i.
    np.testing.assert_allclose(fn(["", sentences[0]])[1], fn([sentences[0]])[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ("une phrase", TypeError, "not a single string"),
        (pd.DataFrame({"text": ["a"]}), TypeError, "not a whole DataFrame"),
        (["bonjour", None], ValueError, "item 1 is not a string"),
        (pd.Series(["bonjour", np.nan]), ValueError, "item 1 is not a string"),
        (("bonjour", 3), ValueError, r"item 1 is not a string \(int\)"),
    ],
)
def test_rejects_bad_input(texts, error, message):
    with pytest.raises(error, match=message):
        as_sentences(texts)


@pytest.mark.parametrize("bad", [{"model": ""}, {"model": "demo", "batch_size": 0}])
def test_rejects_bad_options(bad):
    with pytest.raises(ValueError, match="EmbeddingFunction"):
        EmbeddingFunction(**bad)


def test_local_cluster_matches_single_process(model_dir, sentences):
    fn = EmbeddingFunction(model_dir, batch_size=8)
    bag = dask.bag.from_sequence(sentences, npartitions=4)
    frame = pd.DataFrame({"id": range(len(sentences)), "text": sentences})
    ddf = dask.dataframe.from_pandas(frame, npartitions=3)
    # Single process, same partitions (a partition is sorted into batches as one encode call).
    bag_parts = [part.compute(scheduler="sync") for part in bag.to_delayed()]
    want_bag = np.concatenate([fn(part) for part in bag_parts])
    df_parts = [ddf.get_partition(i)["text"].compute(scheduler="sync") for i in range(3)]
    want_df = np.concatenate([fn(part) for part in df_parts])
    assert sum(map(len, bag_parts)) == sum(map(len, df_parts)) == len(sentences)

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        got_bag = embed_bag(bag, fn).compute()
        got_df = embed_dataframe(ddf, "text", fn).compute()
        loaded = client.run(lambda: (os.getpid(), len(embedding_function._ENCODERS)))
    pids = {pid for pid, _ in loaded.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two real worker processes
    assert all(n == 1 for _, n in loaded.values())  # each loaded the model once, itself
    np.testing.assert_array_equal(got_bag, want_bag)
    np.testing.assert_array_equal(got_df, want_df)


def test_embed_dataframe_names_a_missing_column(model_dir):
    ddf = dask.dataframe.from_pandas(pd.DataFrame({"text": ["a"]}), npartitions=1)
    with pytest.raises(KeyError, match="no column 'phrase'"):
        embed_dataframe(ddf, "phrase", EmbeddingFunction(model_dir))
