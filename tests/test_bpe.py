"""flaubert_np/bpe.py: the heap BPE gives, token for token, what transformers' quadratic loop gives.

The reference is the loop flaubert-np ran before (transformers' FlaubertTokenizer.bpe without its
cache), kept here: rescan every adjacent pair for the lowest rank, merge that pair at every place,
left to right, and again. Words: the STS vocabulary's pieces and random words glued from them,
random strings of its characters, runs of one symbol (overlapping merges), and hypothesis' words
over hand-made merge tables with tied ranks. Only the last test needs transformers.
"""

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flaubert_np.bpe import bpe, read_merges


def quadratic_bpe(word: str, ranks: dict[tuple[str, ...], int]) -> list[str]:
    """transformers' loop: O(n) passes over the word, O(n^2) for a word without merges left."""
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        best = min(pairwise(symbols), key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        first, second = best
        merged, i = [], 0
        while i < len(symbols):
            if symbols[i] == first and i + 1 < len(symbols) and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


@pytest.fixture(scope="module", params=["uncased", "cased"])
def sts(request, bpe_vocab_dirs):
    """(merge ranks, vocabulary pieces without "</w>", their characters) of a 5,000-merge STS
    vocabulary learned by tools/learn_bpe.py."""
    ranks = read_merges(bpe_vocab_dirs[request.param] / "merges.txt")
    pieces = sorted({p.replace("</w>", "") for pair in ranks for p in pair} - {""})
    chars = sorted({c for p in pieces for c in p})
    return ranks, pieces, chars


def test_sts_vocabulary_words(sts):
    """Every piece as a word, and 5,000 words glued from 1 to 8 random pieces."""
    ranks, pieces, _ = sts
    rng = random.Random(0)
    words = pieces + ["".join(rng.choices(pieces, k=rng.randint(1, 8))) for _ in range(5000)]
    different = [w for w in words if bpe(w, ranks) != quadratic_bpe(w, ranks)]
    assert not different, different[:5]
    assert sum(len(bpe(w, ranks)) < len(w) for w in words) > len(words) // 2  # merges happened


def test_random_strings_of_the_vocabulary_characters(sts):
    ranks, _, chars = sts
    rng = random.Random(1)
    frequent = list("eaisnrtoluédcmp")  # so that merges.txt's pairs occur often
    for _ in range(5000):
        word = "".join(rng.choices(chars + frequent * 4, k=rng.randint(1, 40)))
        assert bpe(word, ranks) == quadratic_bpe(word, ranks), word


def test_runs_of_one_symbol(sts):
    """Overlapping occurrences: (e, e) in "eee" merges at 0 only, left to right."""
    ranks, _, chars = sts
    for char in [*chars[:40], "e", "l", "s"]:
        for n in range(1, 30):
            assert bpe(char * n, ranks) == quadratic_bpe(char * n, ranks), (char, n)
    for a, b in list(ranks)[:200]:
        for n in range(1, 6):
            word = ((a + b) * n).replace("</w>", "")
            if word:
                assert bpe(word, ranks) == quadratic_bpe(word, ranks), word


def test_hand_made_merges():
    """The example in bpe.py's docstring, a word without any known pair, one character."""
    ranks = {("a", "a"): 0, ("aa", "a"): 1, ("a", "b</w>"): 2}
    assert bpe("aaab", ranks) == ["aaa", "b</w>"] == quadratic_bpe("aaab", ranks)
    assert bpe("aaaa", ranks) == ["aaa", "a</w>"] == quadratic_bpe("aaaa", ranks)
    assert bpe("xyz", ranks) == ["x", "y", "z</w>"] == quadratic_bpe("xyz", ranks)
    assert bpe("a", ranks) == ["a</w>"] == quadratic_bpe("a", ranks)


def test_a_pair_is_merged_everywhere_before_the_pairs_it_creates():
    """(ab, a) ranks before (a, b), as no learned merges.txt has it: the quadratic loop still
    merges (a, b) at both places first, so (ab, a) never gets its chance."""
    ranks = {("ab", "a"): 0, ("a", "b"): 1}
    assert bpe("ababx", ranks) == ["ab", "ab", "x</w>"] == quadratic_bpe("ababx", ranks)


def test_tied_ranks_go_to_the_leftmost_pair_then_the_other():
    ranks = {("c", "d"): 0, ("a", "b"): 0}
    assert bpe("abcde", ranks) == ["ab", "cd", "e</w>"] == quadratic_bpe("abcde", ranks)
    ranks = {("a", "b"): 0, ("b", "c"): 0}
    assert bpe("bcabx", ranks) == ["bc", "ab", "x</w>"] == quadratic_bpe("bcabx", ranks)


SYMBOLS = ["a", "b", "a</w>", "b</w>", "aa", "ab", "ba", "aab", "aa</w>", "ab</w>", "aba"]


@settings(max_examples=2000, deadline=None)
@given(
    word=st.text(alphabet="ab", min_size=1, max_size=16),
    ranks=st.dictionaries(
        st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(SYMBOLS)),
        st.integers(0, 5),
        min_size=2,
        max_size=20,
    ),
)
def test_any_merge_table_even_with_tied_ranks(word, ranks):
    """Tied ranks never come from merges.txt (one rank a line) but a hand-made table may have
    them: the quadratic loop then takes the leftmost pair of the lowest rank, and so must we."""
    assert bpe(word, ranks) == quadratic_bpe(word, ranks)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_hypothesis_words_over_the_sts_merges(sts, data):
    ranks, pieces, chars = sts
    word = data.draw(
        st.lists(st.sampled_from(chars) | st.sampled_from(pieces), min_size=1, max_size=30).map(
            "".join
        )
    )
    assert bpe(word, ranks) == quadratic_bpe(word, ranks)


@pytest.mark.oracle
@pytest.mark.parametrize("casing", ["uncased", "cased"])
def test_long_word_parity_with_transformers(tokenizer_dirs, casing):
    """3,000 random letters without a space: transformers' bpe and tokenize, piece for piece."""
    import transformers

    from flaubert_np.tokenizer import FlaubertTokenizer

    folder = tokenizer_dirs[casing]
    ref = transformers.FlaubertTokenizer.from_pretrained(str(folder))
    ours = FlaubertTokenizer.from_pretrained(folder)
    letters = "abcdefghijklmnopqrstuvwxyzéèàçêô"
    letters += letters.upper() if casing == "cased" else ""
    rng = random.Random(casing)
    word = "".join(rng.choices(letters, k=3000))
    pieces = bpe(word, ours.bpe_ranks)
    assert pieces == ref.bpe(word).split(" ")
    assert len(pieces) < len(word)  # merged into pieces, not left as letters
    assert ours.tokenize(word) == ref.tokenize(word)
    assert ours.encode(word) == ref.encode(word)
