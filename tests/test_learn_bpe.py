"""tools/learn_bpe.py: an XLM/FlauBERT-format BPE vocabulary, learned correctly and reproducibly."""

import json
from collections import Counter
from itertools import pairwise

import pytest
from conftest import STSB

import learn_bpe

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]


def naive_merges(counts: Counter, n_merges: int) -> list[tuple[str, str]]:
    """Textbook BPE, recounting every pair at every step: the reference for train_merges."""
    words = {(*w[:-1], w[-1] + "</w>"): n for w, n in counts.items()}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for symbols, n in words.items():
            for pair in pairwise(symbols):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))  # most frequent, then smallest
        merges.append(best)
        merged_words = {}
        for symbols, n in words.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged_words[tuple(out)] = n
        words = merged_words
    return merges


@pytest.fixture(scope="module")
def sentences(stsb_sentences):
    return stsb_sentences[:1500]


def test_merges_equal_textbook_bpe(sentences):
    counts = learn_bpe.count_words(sentences[:300], lowercase=True)
    assert learn_bpe.train_merges(counts, 150) == naive_merges(counts, 150)


def test_merges_stop_when_every_word_is_whole():
    counts = Counter({"le": 3, "la": 1})
    merges = learn_bpe.train_merges(counts, 100)
    assert merges == naive_merges(counts, 100) == [("l", "e</w>"), ("l", "a</w>")]


def test_files_in_flaubert_format(sentences, tmp_path):
    out = learn_bpe.learn_bpe(sentences, 400, tmp_path / "v", lowercase=True)
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    lines = (out / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 401  # one merge a line, each ending in a newline
    merges = [tuple(line.split(" ")) for line in lines[:-1]]
    assert all(len(m) == 2 for m in merges)

    assert list(vocab)[:14] == SPECIALS
    assert sorted(vocab.values()) == list(range(len(vocab)))
    for left, right in merges:  # both sides and the result are in the vocabulary
        assert {left, right, left + right} <= vocab.keys()
        assert "</w>" not in left  # "</w>" only ends the right-hand side
    assert all(not c.isupper() for token in vocab for c in token.replace("</w>", ""))
    counts = learn_bpe.count_words(sentences, lowercase=True)
    assert merges == learn_bpe.train_merges(counts, 400)  # best rank first
    for word in counts:  # every character of every word has a piece
        assert {*word[:-1], word[-1] + "</w>"} <= vocab.keys()


def test_same_input_same_files(sentences, tmp_path):
    a = learn_bpe.learn_bpe(sentences, 300, tmp_path / "a", lowercase=False)
    b = learn_bpe.learn_bpe(list(sentences), 300, tmp_path / "b", lowercase=False)
    for name in ("vocab.json", "merges.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    vocab = json.loads((a / "vocab.json").read_text(encoding="utf-8"))
    assert any(c.isupper() for token in vocab for c in token)  # cased keeps capitals


@pytest.mark.oracle
def test_learned_vocabulary_covers_its_corpus(sentences, tmp_path):
    """transformers loads the files; the sentences learned from need no <unk>."""
    import transformers

    out = learn_bpe.learn_bpe(sentences[:1000], 500, tmp_path, lowercase=True)
    tok = transformers.FlaubertTokenizer(
        str(out / "vocab.json"), str(out / "merges.txt"), do_lowercase=True
    )
    for sentence in sentences[:50]:
        tokens = tok.tokenize(sentence)
        assert "<unk>" not in tokens and len(tokens) < 3 * len(sentence.split()) + 5


def test_cli(tmp_path, capsys):
    text = tmp_path / "phrases.txt"
    text.write_text("Le chat dort.\nIl pleut sur Paris.\n", encoding="utf-8")
    code = learn_bpe.main(
        [
            "--merges",
            "20",
            "--out",
            str(tmp_path / "out"),
            "--lowercase",
            str(STSB / "dev.csv"),
            str(text),
        ]
    )
    assert code == 0
    assert "3002 sentences -> 20 merges" in capsys.readouterr().out
    assert learn_bpe.read_sentences([text]) == ["Le chat dort.", "Il pleut sur Paris."]
    assert len((tmp_path / "out" / "merges.txt").read_text(encoding="utf-8").splitlines()) == 20


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="n_merges must be >= 1"):
        learn_bpe.learn_bpe(["Bonjour"], 0, tmp_path, lowercase=True)
    with pytest.raises(TypeError, match="sentence 1 is a NoneType"):
        learn_bpe.learn_bpe(["Bonjour", None], 10, tmp_path, lowercase=True)
    with pytest.raises(ValueError, match="no words to learn from"):
        learn_bpe.learn_bpe(["", "  "], 10, tmp_path, lowercase=True)
