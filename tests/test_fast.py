"""flaubert_np.fast: each kernel against its plain version in layers.py, and the fast forward
against the plain forward and against transformers, on every configuration and input case of
tests/test_model.py."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
from conftest import CONFIGS, TOL, load_both, make_cases

from flaubert_np import blas, fast, layers
from flaubert_np.config import FlaubertConfig
from flaubert_np.inputs import check_inputs
from flaubert_np.params import LayerNorm

oracle = pytest.mark.oracle
RNG = np.random.default_rng(0)


@oracle
def test_bias_gelu_matches_the_plain_gelu():
    import torch

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
        (x + bias).astype(np.float64)
    )
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
        fast.layer_norm_(got, LayerNorm(w, b), eps)
        assert np.abs(got - layers.layer_norm(x, LayerNorm(w, b), eps)).max() <= 1e-5


@pytest.mark.parametrize("causal", [False, True])
def test_attention_of_equal_length_sentences_matches_the_masked_plain_one(causal):
    """Packed sentences, consecutive or not, against the plain batched attention with padding
    (and the causal triangle)."""
    dim, heads, length = 36, 3, 5
    lengths = [5, 3, 5, 5, 2]  # the 5-token sentences are not all consecutive
    n = sum(lengths)
    qkv = RNG.standard_normal((n, 3 * dim)).astype(np.float32)
    starts = np.cumsum(lengths) - lengths
    for chosen in ([0], [2, 3], [0, 2, 3]):
        context = np.full((n, dim), np.nan, np.float32)
        fast.attention_(qkv, context, starts[chosen], length, heads, causal)
        keep = np.tri(length, dtype=bool) if causal else np.ones((length, length), bool)
        for i in chosen:
            rows = slice(starts[i], starts[i] + length)
            q, k, v = (layers.split_heads(t[None], heads) for t in np.split(qkv[rows], 3, -1))
            weights = layers.masked_softmax(q @ k.transpose(0, 1, 3, 2), keep)
            expected = layers.merge_heads(weights @ v)[0]
            assert np.abs(context[rows] - expected).max() <= 1e-6
        written = np.concatenate([np.arange(starts[i], starts[i] + length) for i in chosen])
        assert np.isnan(np.delete(context, written, axis=0)).all()  # nothing else touched


@oracle
@pytest.mark.usefixtures("torch_single_thread")
@pytest.mark.parametrize("case", list(make_cases(FlaubertConfig(n_words=10))))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_forward_matches_reference_and_transformers(flaubert_checkpoint, name, case):
    """Every configuration (a causal one too: its cases pad only after the real tokens)."""
    import torch

    ours, ref = load_both(flaubert_checkpoint(**CONFIGS[name]))
    inputs = make_cases(ours.config)[case]
    checked = check_inputs(ours.config, **inputs,
                           has_lang_embeddings=ours.params.lang_embeddings is not None)  # fmt: skip
    assert fast.supports(ours.config, checked)
    got = fast.forward(ours.params, ours.config, checked)
    assert np.array_equal(got, ours(**inputs).last_hidden_state)  # what the model runs
    plain = ours(**inputs, reference=True).last_hidden_state
    with torch.no_grad():
        expected = ref(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state
    assert got.dtype == np.float32 and got.shape == plain.shape
    assert np.abs(got - plain).max() <= TOL
    assert np.abs(got - expected.numpy()).max() <= TOL


@oracle
def test_fast_forward_on_mixed_lengths_in_small_blocks(flaubert_checkpoint, monkeypatch):
    """Sentences of many lengths in an unsorted batch, attention_mask with holes, GELU and FFN
    in several blocks (the last ones partial): the same numbers as the reference forward."""
    monkeypatch.setattr(fast, "GELU_ROWS", 3)
    monkeypatch.setattr(fast, "FFN_ROWS", 7)
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 17, size=23)
    ids = rng.integers(3, ours.config.n_words, size=(23, 17))
    mask = (np.arange(17) < lengths[:, None]).astype(np.int64)
    mask[0, 2] = mask[5, 0] = 0  # holes: a token in the middle, the first token
    got = ours(ids, attention_mask=mask).last_hidden_state
    plain = ours(ids, attention_mask=mask, reference=True).last_hidden_state
    assert np.abs(got - plain).max() <= TOL
    assert np.all(got[mask == 0] == 0)


@oracle
def test_a_batch_without_any_real_token(flaubert_checkpoint):
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids = np.full((3, 5), ours.config.pad_index)
    checked = check_inputs(ours.config, ids)
    assert fast.split(checked.mask.sum(axis=1).astype(int)) == []
    got = fast.forward(ours.params, ours.config, checked)
    assert got.shape == (3, 5, 36) and got.dtype == np.float32 and not got.any()
    assert np.array_equal(got, ours(ids, reference=True).last_hidden_state)


@oracle
def test_which_forward_runs(flaubert_checkpoint, monkeypatch):
    calls = []
    monkeypatch.setattr(fast, "forward", lambda *args: calls.append(1) or _fail())
    ours, _ = load_both(flaubert_checkpoint())
    with pytest.raises(AssertionError, match="fast path taken"):
        ours([[5, 6, 7]])
    ours([[5, 6, 7]], output_hidden_states=True)  # reference
    ours([[5, 6, 7]], output_attentions=True)  # reference
    ours([[5, 6, 7]], trace={})  # reference
    ours([[5, 6, 7]], reference=True)  # reference, as asked
    causal, _ = load_both(flaubert_checkpoint(**CONFIGS["causal"]))
    causal([[5, 6, 7]], attention_mask=[[1, 0, 1]])  # reference: padding before a real token
    with pytest.raises(AssertionError, match="fast path taken"):
        causal([[5, 6, 7]], attention_mask=[[1, 1, 0]])  # fast: padding at the end only
    assert len(calls) == 2


def _fail():
    raise AssertionError("fast path taken")


def test_split_cuts_whole_sentences_into_balanced_runs(monkeypatch):
    monkeypatch.setattr(fast, "PARTS_TOKENS", 0)
    lengths = np.array([9, 0, 4, 7, 7, 1, 12, 3, 0, 5])
    for run_tokens, wanted in ((1, 8), (7, 4), (10, 4), (20, 2), (1000, 2)):  # 48 tokens
        monkeypatch.setattr(fast, "RUN_TOKENS", run_tokens)
        parts = fast.split(lengths)
        assert 2 <= len(parts) <= wanted  # fewer: two cuts nearest the same boundary
        rows = np.concatenate([[0], np.cumsum(lengths)])
        # the runs follow each other, sentences and rows alike, and cover the batch
        assert parts[0][0].start == 0 and parts[-1][0].stop == rows[-1]
        for (r1, s1), (r2, s2) in itertools.pairwise(parts):
            assert s1.stop <= s2.start and r1.stop == r2.start
        for r, s in parts:
            assert (r.start, r.stop) == (rows[s.start], rows[s.stop]) and r.stop > r.start
        # no run is further from an equal share than the longest sentence
        sizes = [r.stop - r.start for r, _ in parts]
        assert max(sizes) - rows[-1] / len(parts) <= lengths.max()


def test_split_leaves_a_single_sentence_or_a_few_tokens_whole(monkeypatch):
    assert fast.split(np.array([12])) == [(slice(0, 12), slice(0, 1))]
    assert fast.split(np.array([0, 12, 0])) == [(slice(0, 12), slice(0, 3))]  # one real
    assert fast.split(np.array([0, 0])) == []
    few = np.full(4, fast.PARTS_TOKENS // 4)
    assert fast.split(few[:-1]) == [(slice(0, len(few[:-1]) * few[0]), slice(0, 3))]  # one run
    assert len(fast.split(few)) == 2  # PARTS_TOKENS tokens: runs again
    monkeypatch.setattr(fast, "PARTS_TOKENS", 0)
    assert len(fast.split(np.array([1, 1]))) == 2


@oracle
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_fast_forward_in_runs_matches_reference(flaubert_checkpoint, monkeypatch, threads):
    """The runs the rule gives, whatever the thread count: the reference forward's numbers."""
    monkeypatch.setattr(fast, "RUN_TOKENS", 20)
    monkeypatch.setattr(fast, "PARTS_TOKENS", 0)
    monkeypatch.setattr(fast.blas, "threads", lambda: threads)
    runs = []
    encode_packed = fast.encode_packed
    monkeypatch.setattr(fast, "encode_packed",
                        lambda params, config, x, lengths, *args: runs.append(len(lengths))
                        or encode_packed(params, config, x, lengths, *args))  # fmt: skip
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    got = ours(ids, attention_mask=mask).last_hidden_state
    plain = ours(ids, attention_mask=mask, reference=True).last_hidden_state
    assert np.abs(got - plain).max() <= TOL
    assert np.all(got[mask == 0] == 0)
    expected_runs = [s.stop - s.start for _, s in fast.split(mask.sum(axis=1))]
    assert len(expected_runs) > 2 and sorted(runs) == sorted(expected_runs)


@oracle
def test_fast_forward_gives_the_same_bits_whatever_the_thread_count(
    flaubert_checkpoint, monkeypatch
):
    """A batch in runs, the same batch as one run in parts (it has fewer than PARTS_TOKENS
    tokens), and one sentence in parts, on 1 to 4 threads."""
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["base_dims"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    assert mask.sum() < fast.PARTS_TOKENS
    results = []
    for threads in (1, 2, 3, 4):
        monkeypatch.setattr(fast.blas, "threads", lambda threads=threads: threads)
        with monkeypatch.context() as runs:
            runs.setattr(fast, "PARTS_TOKENS", 0)
            in_runs = ours(ids, attention_mask=mask).last_hidden_state
        results.append((in_runs, ours(ids, attention_mask=mask).last_hidden_state,
                        ours(ids[:1]).last_hidden_state))  # fmt: skip
    for result in results[1:]:
        for got, first in zip(result, results[0], strict=True):
            assert np.array_equal(got, first)
    assert not np.array_equal(results[0][0], results[0][1])  # runs and parts: two ways


def _mixed_batch(n_words: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 17, size=11)
    ids = rng.integers(3, n_words, size=(11, 17))
    return ids, (np.arange(17) < lengths[:, None]).astype(np.int64)


@oracle
def test_forwards_from_several_threads_at_once(flaubert_checkpoint, monkeypatch):
    """A threaded server: four callers share the workers and BLAS's thread count, and each gets
    the numbers it would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(fast, "RUN_TOKENS", 20)
    monkeypatch.setattr(fast, "PARTS_TOKENS", 0)
    monkeypatch.setattr(fast, "SPLIT_PRODUCTS", 0)  # single sentences in parts, on the helpers
    ours, _ = load_both(flaubert_checkpoint(**CONFIGS["odd_sizes"]))
    ids, mask = _mixed_batch(ours.config.n_words)
    batches = [(np.roll(ids, k, axis=0), np.roll(mask, k, axis=0)) for k in range(8)]
    batches += [(ids[k : k + 1], mask[k : k + 1]) for k in range(4)]  # single sentences
    alone = [ours(i, attention_mask=m).last_hidden_state for i, m in batches]
    threads_before = blas.threads()
    with ThreadPoolExecutor(4) as callers:
        together = list(callers.map(lambda b: ours(b[0], attention_mask=b[1]).last_hidden_state,
                                    batches))  # fmt: skip
    for a, t in zip(alone, together, strict=True):
        assert np.array_equal(a, t)
    assert blas.threads() == threads_before  # every section closed


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


def test_parts_cut_whole_heads_and_ffn_columns(monkeypatch):
    """Every head and FFN column in exactly one part, in order; whole heads; one part when the
    run is too small to share out, or one per head at most."""
    config = FlaubertConfig(emb_dim=60, n_heads=5)  # head_dim 12, ffn_dim 240
    for n_parts in (1, 2, 3, 5, 8):
        got = fast.parts(config, 300, n_parts)
        assert len(got) == min(n_parts, 5)
        heads = np.concatenate([np.arange(60)[p.heads] for p in got])
        ffn = np.concatenate([np.arange(240)[p.ffn] for p in got])
        assert np.array_equal(heads, np.arange(60)) and np.array_equal(ffn, np.arange(240))
        for p in got:
            assert p.heads.start % 12 == 0 and p.heads.stop - p.heads.start == 12 * p.n_heads
    monkeypatch.setattr(fast, "SPLIT_PRODUCTS", 300 * 60 * 60 + 1)  # too small to share out
    assert len(fast.parts(config, 300, 2)) == 1


@pytest.mark.parametrize(("pre_norm", "causal"), [(False, False), (True, False), (False, True)])
def test_a_run_in_parts_is_the_same_in_turn_or_side_by_side(monkeypatch, pre_norm, causal):
    """Cut into 2 or 4 parts, run in turn or on helper threads: the same bits; and within 1e-5
    of the run in one part (which the tests above hold to the reference and transformers). Three
    sentences of two lengths, more rows than FEW_ROWS, the FFN and GELU in several blocks."""
    from flaubert_np import FlaubertModel

    model = FlaubertModel.from_pretrained("demo")  # 4 heads
    config = dataclasses.replace(model.config, pre_norm=pre_norm, causal=causal)
    monkeypatch.setattr(fast, "SPLIT_PRODUCTS", 0)
    monkeypatch.setattr(fast, "FFN_ROWS", 7)
    monkeypatch.setattr(fast, "GELU_ROWS", 3)
    lengths = np.array([9, 40, 9])
    x = RNG.standard_normal((int(lengths.sum()), config.emb_dim)).astype(np.float32)
    assert len(x) > fast.FEW_ROWS

    def run(n_parts, workers=None):
        out = x.copy()
        with blas.single_threaded():
            fast.encode_packed(model.params, config, out, lengths, n_parts, workers)
        return out

    whole = run(1)
    for n_parts in (2, 4):
        in_turn = run(n_parts)
        assert np.array_equal(in_turn, run(n_parts, blas.Workers(n_parts - 1)))
        assert np.array_equal(in_turn, run(n_parts, blas.Workers(1)))  # fewer threads than parts
        assert np.abs(in_turn - whole).max() <= TOL
        assert not np.array_equal(in_turn, whole)  # the parts did cut the sums
