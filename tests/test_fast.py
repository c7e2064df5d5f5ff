"""flaubert_np.fast: each kernel against its plain version in layers.py, and the fast forward
against the plain forward and against transformers, on every configuration and input case of
tests/test_model.py."""

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TOL, load_both, make_cases, our_forward

from flaubert_np import fast, layers
from flaubert_np.config import FlaubertConfig

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("torch_single_thread")]
RNG = np.random.default_rng(0)


def test_bias_gelu_matches_the_plain_gelu():
    # every regime: 0, tiny, the body, the tails where erfc underflows, and huge values
    x = np.concatenate([
        np.linspace(-12, 12, 200_001), [0.0, -0.0, 1e-30, -1e-30, 1e-8, -40, 40, -3e38, 3e38],
    ]).astype(np.float32)  # fmt: skip
    # shaped [rows, features] with a row count that leaves a partial GELU_ROWS block
    width = 1000
    x = np.concatenate([x, np.zeros(-len(x) % width, np.float32)]).reshape(-1, width)
    assert x.shape[0] % fast.GELU_ROWS != 0
    bias = (RNG.standard_normal(width) * 0.1).astype(np.float32)
    got = x.copy()
    fast.bias_gelu_(got, bias)
    plain = layers.gelu(x + bias)
    assert got.dtype == np.float32
    assert np.abs(got - plain).max() <= 1e-6
    exact = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(
        (x + bias).astype(np.float64))
    assert np.abs(got - exact).max() <= 1e-6
    ref = torch.nn.functional.gelu(torch.from_numpy(x + bias)).numpy()
    finite = np.abs(x) < 1e30  # torch's own kernel overflows to inf near float32's max
    assert np.abs(got - ref)[finite].max() <= 5e-6
    assert np.isnan(fast_gelu(np.float32([np.nan]))).all()


def fast_gelu(x):
    out = x.reshape(1, -1).copy()
    fast.bias_gelu_(out, np.zeros(out.shape[1], np.float32))
    return out.reshape(x.shape)


def test_bias_relu_matches_the_plain_relu():
    x = RNG.standard_normal((5, 7)).astype(np.float32)
    bias = RNG.standard_normal(7).astype(np.float32)
    got = x.copy()
    fast.bias_relu_(got, bias)
    assert np.array_equal(got, layers.relu(x + bias))


def test_layer_norm_in_place_matches_the_plain_one():
    x = (RNG.standard_normal((37, 36)) * 5 + 2).astype(np.float32)
    w = RNG.standard_normal(36).astype(np.float32)
    b = RNG.standard_normal(36).astype(np.float32)
    for eps in (1e-12, 1e-5):
        got = x.copy()
        fast.layer_norm_(got, w, b, eps)
        assert np.abs(got - layers.layer_norm(x, w, b, eps)).max() <= 1e-5


def test_attention_of_equal_length_sentences_matches_the_masked_plain_one():
    """Packed sentences, consecutive or not, against the plain batched attention with padding."""
    dim, heads, length = 36, 3, 5
    lengths = [5, 3, 5, 5, 2]  # the 5-token sentences are not all consecutive
    n = sum(lengths)
    qkv = RNG.standard_normal((n, 3 * dim)).astype(np.float32)
    starts = np.cumsum(lengths) - lengths
    for chosen in ([0], [2, 3], [0, 2, 3]):
        context = np.full((n, dim), np.nan, np.float32)
        fast.attention_(qkv, context, starts[chosen], length, heads)
        for i in chosen:
            rows = slice(starts[i], starts[i] + length)
            q, k, v = (layers.split_heads(t[None], heads) for t in np.split(qkv[rows], 3, -1))
            weights = layers.softmax(q @ k.transpose(0, 1, 3, 2))
            expected = layers.merge_heads(weights @ v)[0]
            assert np.abs(context[rows] - expected).max() <= 1e-6
        written = np.concatenate([np.arange(starts[i], starts[i] + length) for i in chosen])
        assert np.isnan(np.delete(context, written, axis=0)).all()  # nothing else touched


@pytest.mark.parametrize("case", list(make_cases(FlaubertConfig(n_words=10))))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_forward_matches_plain_and_transformers(flaubert_checkpoint, name, case):
    ours, ref = load_both(flaubert_checkpoint(**CONFIGS[name]))
    inputs = make_cases(ours.config)[case]
    out, ran = our_forward(ours, inputs, "fast")
    # fast.py has no causal mask: the causal model falls back to the plain forward (asserted).
    assert ran == ("plain" if ours.config.causal else "fast")
    got = out.last_hidden_state
    plain = our_forward(ours, inputs, "plain")[0].last_hidden_state
    with torch.no_grad():
        expected = ref(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state
    assert got.dtype == np.float32 and got.shape == plain.shape
    assert np.abs(got - plain).max() <= TOL
    assert np.abs(got - expected.numpy()).max() <= TOL


def test_fast_forward_on_mixed_lengths_in_small_blocks(flaubert_checkpoint, monkeypatch):
    """Sentences of many lengths in an unsorted batch, attention_mask with holes, GELU and FFN
    in several blocks (the last ones partial): the same numbers as the plain forward."""
    monkeypatch.setattr(fast, "GELU_ROWS", 3)
    monkeypatch.setattr(fast, "FFN_ROWS", 7)
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 17, size=23)
    ids = rng.integers(3, ours.config.n_words, size=(23, 17))
    mask = (np.arange(17) < lengths[:, None]).astype(np.int64)
    mask[0, 2] = mask[5, 0] = 0  # holes: a token in the middle, the first token
    got = ours(ids, attention_mask=mask).last_hidden_state
    ours.fast = False
    try:
        plain = ours(ids, attention_mask=mask).last_hidden_state
    finally:
        ours.fast = True
    assert np.abs(got - plain).max() <= TOL
    assert np.all(got[mask == 0] == 0)


def test_which_forward_runs(flaubert_checkpoint, monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "forward", lambda *args: calls.append(1) or _fail())
    ours, _ = load_both(flaubert_checkpoint())
    with pytest.raises(AssertionError, match="fast path taken"):
        ours([[5, 6, 7]])
    ours([[5, 6, 7]], output_hidden_states=True)  # plain
    ours([[5, 6, 7]], output_attentions=True)  # plain
    causal, _ = load_both(flaubert_checkpoint(**CONFIGS["causal"]))
    causal([[5, 6, 7]])  # plain: fast.py has no causal mask
    ours.fast = False
    try:
        ours([[5, 6, 7]])  # plain, as asked
    finally:
        ours.fast = True
    assert len(calls) == 1


def _fail():
    raise AssertionError("fast path taken")


@pytest.mark.parametrize("runs", [2, 3, 5])
def test_split_cuts_whole_sentences_into_balanced_runs(runs):
    lengths = np.array([9, 0, 4, 7, 7, 1, 12, 3, 0, 5])
    parts = fast._split(lengths, runs)
    assert 2 <= len(parts) <= runs
    rows = np.concatenate([[0], np.cumsum(lengths)])
    # the runs follow each other, sentences and rows alike, and cover the batch
    assert parts[0][1].start == 0 and parts[-1][1].stop == len(lengths)
    for (r1, s1), (r2, s2) in itertools.pairwise(parts):
        assert s1.stop == s2.start and r1.stop == r2.start
    for r, s in parts:
        assert (r.start, r.stop) == (rows[s.start], rows[s.stop])
    # no run is further from an equal share than the longest sentence
    sizes = [r.stop - r.start for r, _ in parts]
    assert max(sizes) - rows[-1] / len(parts) <= lengths.max()


def test_split_leaves_a_single_sentence_whole():
    assert fast._split(np.array([12]), 2) == []
    assert fast._split(np.array([12, 0, 0]), 2) == []  # one real sentence
    assert len(fast._split(np.array([1, 1]), 2)) == 2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fast_forward_in_runs_matches_plain(flaubert_checkpoint, monkeypatch, threads):
    """Two runs of sentences (side by side on 2 threads, one after the other on 1; one piece
    with more threads than runs): the plain forward's numbers."""
    monkeypatch.setattr(fast.blas, "threads", lambda: threads)
    runs = []
    encode_packed = fast.encode_packed
    monkeypatch.setattr(fast, "encode_packed",
                        lambda model, x, lengths: runs.append(len(lengths))
                        or encode_packed(model, x, lengths))  # fmt: skip
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    got = ours(ids, attention_mask=mask).last_hidden_state
    plain = ours(ids, attention_mask=mask, output_hidden_states=True).last_hidden_state
    assert np.abs(got - plain).max() <= TOL
    assert np.all(got[mask == 0] == 0)
    expected_runs = [s.stop - s.start for _, s in fast._split(mask.sum(axis=1), fast.RUNS)]
    assert sorted(runs) == sorted(expected_runs if threads <= fast.RUNS else [len(ids)])


def test_fast_forward_gives_the_same_bits_on_one_thread_or_two(flaubert_checkpoint,
                                                              monkeypatch):
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(fast.blas, "threads", lambda threads=threads: threads)
        results.append(ours(ids, attention_mask=mask).last_hidden_state)
    assert np.array_equal(*results)


def _mixed_batch(n_words: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 17, size=11)
    ids = rng.integers(3, n_words, size=(11, 17))
    return ids, (np.arange(17) < lengths[:, None]).astype(np.int64)


def test_forwards_from_several_threads_at_once(flaubert_checkpoint, monkeypatch):
    """A threaded server: four callers share the pool and OpenBLAS's thread count, and each gets
    the numbers it would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(fast.blas, "threads", lambda: 2)
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    batches = [(np.roll(ids, k, axis=0), np.roll(mask, k, axis=0)) for k in range(8)]
    alone = [ours(i, attention_mask=m).last_hidden_state for i, m in batches]
    threads_before = fast.blas._openblas()[0]()
    with ThreadPoolExecutor(4) as callers:
        together = list(callers.map(lambda b: ours(b[0], attention_mask=b[1]).last_hidden_state,
                                    batches))  # fmt: skip
    for a, t in zip(alone, together, strict=True):
        assert np.array_equal(a, t)
    assert fast.blas._openblas()[0]() == threads_before  # every section closed


@pytest.mark.parametrize("rows", [1, 5, fast.FEW_ROWS, fast.FEW_ROWS + 1, 70])
def test_matmul_either_way_round_is_the_product(rows):
    """Few rows: the transposed product; more: the plain one. Both into a strided `out` view."""
    torch_layout = RNG.standard_normal((48, 40)).astype(np.float32)  # [out, in]
    x = RNG.standard_normal((rows, 40)).astype(np.float32)
    buffer = np.full((rows, 100), np.nan, np.float32)
    out = buffer[:, 10:58]  # columns of a wider buffer, as q, k and v in qkv
    fast.matmul_(x, torch_layout.T, out)
    expected = x.astype(np.float64) @ torch_layout.T.astype(np.float64)
    assert np.abs(out - expected).max() <= 1e-5
    assert np.isnan(buffer[:, :10]).all() and np.isnan(buffer[:, 58:]).all()
