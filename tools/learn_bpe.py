"""Learn an XLM/FlauBERT-format BPE vocabulary (vocab.json + merges.txt) from French text.

It makes realistic test and demo vocabularies: the text goes through the very pre-processing and
Moses pipeline that `flaubert_np.tokenizer` applies (NFC, optional lower-casing, Moses punctuation
normalisation and tokenisation), then BPE merges are learned on the Moses words, with "</w>" marking
the end of a word as in FlauBERT's own vocabulary (the XLM/fastBPE convention).

Output, like a FlauBERT repository on the Hub:
- vocab.json: ids 0-3 "<s>", "</s>", "<pad>", "<unk>", 4-13 "<special0>".."<special9>", then the
  single characters ("a", "a</w>", ...) and the merged pieces, in learning order;
- merges.txt: one merge a line, "left right", best rank first (e.g. "e s</w>").

Pure Python and deterministic (same input, same files). flaubert_np never imports this file.

    python tools/learn_bpe.py --merges 5000 --out /tmp/vocab [--lowercase] \
        tests/data/stsb-fr/train.csv tests/data/stsb-fr/dev.csv

A .csv file is read as STS rows (the first two columns are sentences); any other file as one
sentence per line.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from flaubert_np.moses import moses_words

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
END_OF_WORD = "</w>"


def count_words(sentences: Iterable[str], lowercase: bool) -> Counter[str]:
    """Sentences -> how often each Moses word occurs."""
    counts: Counter[str] = Counter()
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise TypeError(f"sentence {i} is a {type(sentence).__name__}, not a str")
        counts.update(moses_words(sentence, lowercase))
    return counts


def train_merges(counts: Counter[str], n_merges: int) -> list[tuple[str, str]]:
    """Word counts -> the first n_merges BPE merges (fewer if every word is whole by then).

    Classic BPE (Sennrich et al.): merge the most frequent adjacent pair of symbols, everywhere,
    and repeat. Ties go to the smallest pair in string order, so the result is reproducible.
    """
    words = [[*w[:-1], w[-1] + END_OF_WORD] for w in counts]
    freqs = list(counts.values())
    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> words holding it
    for i, symbols in enumerate(words):
        for pair in pairwise(symbols):
            pair_counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < n_merges:
        negative_count, pair = heapq.heappop(heap)
        count = pair_counts[pair]
        if count != -negative_count:  # a stale entry: the count fell since it was pushed
            if 0 < count < -negative_count:
                heapq.heappush(heap, (-count, pair))
            continue
        merges.append(pair)
        first, second = pair
        new_symbol = first + second
        grown: set[tuple[str, str]] = set()  # only pairs with the new symbol can gain counts
        for i in where.pop(pair):
            symbols, n = words[i], freqs[i]
            if pair not in pairwise(symbols):
                continue  # an earlier merge already took the pair apart in this word
            merged, j = [], 0
            while j < len(symbols):  # left to right, as the tokenizer applies merges
                if symbols[j] == first and j + 1 < len(symbols) and symbols[j + 1] == second:
                    merged.append(new_symbol)
                    j += 2
                else:
                    merged.append(symbols[j])
                    j += 1
            for old in pairwise(symbols):
                pair_counts[old] -= n
            for new in pairwise(merged):
                pair_counts[new] += n
                where[new].add(i)
                if new_symbol in new:
                    grown.add(new)
            words[i] = merged
        for grown_pair in sorted(grown):
            heapq.heappush(heap, (-pair_counts[grown_pair], grown_pair))
    return merges


def build_vocab(counts: Counter[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    """Special tokens, every character (inside and at the end of a word), then each merge."""
    pieces: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    for word in sorted(counts):
        pieces.update(dict.fromkeys(word[:-1]))
        pieces[word[-1] + END_OF_WORD] = None
    pieces.update(dict.fromkeys(left + right for left, right in merges))
    return {piece: index for index, piece in enumerate(pieces)}


def learn_bpe(
    sentences: Iterable[str], n_merges: int, out_dir: str | Path, lowercase: bool
) -> Path:
    """Learn n_merges merges from sentences; write out_dir/vocab.json and merges.txt."""
    if n_merges < 1:
        raise ValueError(f"n_merges must be >= 1, got {n_merges}")
    counts = count_words(sentences, lowercase)
    if not counts:
        raise ValueError("no words to learn from: the sentences are empty")
    merges = train_merges(counts, n_merges)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(build_vocab(counts, merges), f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(out_dir / "merges.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{left} {right}\n" for left, right in merges)
    return out_dir


def read_sentences(paths: Iterable[str | Path]) -> list[str]:
    """.csv files: the first two columns of each row (STS pairs); other files: each line."""
    sentences: list[str] = []
    for path in map(Path, paths):
        with open(path, encoding="utf-8", newline="") as f:
            if path.suffix == ".csv":
                sentences += [s for row in csv.reader(f) for s in row[:2]]
            else:
                sentences += [line.rstrip("\r\n") for line in f]
    return sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="text (.txt: a sentence a line) or STS .csv files")
    parser.add_argument("--merges", type=int, required=True, help="number of BPE merges to learn")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--lowercase", action="store_true", help="lower-case the text first")
    args = parser.parse_args(argv)
    sentences = read_sentences(args.files)
    out = learn_bpe(sentences, args.merges, args.out, args.lowercase)
    n = sum(1 for _ in open(out / "merges.txt", encoding="utf-8"))
    print(f"{len(sentences)} sentences -> {n} merges in {out}/vocab.json, merges.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
