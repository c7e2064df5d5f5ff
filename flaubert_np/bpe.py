"""Byte-pair encoding of one Moses word, as transformers' FlaubertTokenizer.bpe does it.

A word starts as its characters, the last one marked "</w>" (end of word). The adjacent pair with
the lowest merge rank (its line in merges.txt) is merged, at every place it occurs, left to right;
then again, until no adjacent pair has a rank:

    "aaab" with merges ["a a", "aa a", "a b</w>"]:
        a a a b</w>  --(a, a) rank 0, left to right-->  aa a b</w>
                     --(aa, a) rank 1-->                aaa b</w>    (no rank for (aaa, b</w>))

transformers rescans the whole word for the best pair after every merge: quadratic in the word's
length, which stalls a process on one long word without spaces (a 200 KB line; docs/tokenizer.md
has the times and their command). Here the symbols form a linked list and the candidate pairs wait
in a heap ordered by (rank, position), so each merge costs O(log n) and a word O(n log n), with the
same merges in the same order.
"""

from __future__ import annotations

import heapq
from itertools import pairwise
from pathlib import Path

from flaubert_np.files import read_text

END_OF_WORD = "</w>"


def read_merges(path: Path) -> dict[tuple[str, ...], int]:
    """merges.txt -> {(left, right): rank}, read exactly as transformers reads it.

    The text after the last newline is dropped (so is a last merge without a trailing newline),
    each line keeps its first two whitespace-separated fields (a "#version" header becomes a
    harmless "merge"), and a repeated merge keeps its last rank.
    """
    lines = read_text(path).split("\n")[:-1]
    return {tuple(line.split()[:2]): rank for rank, line in enumerate(lines)}


def bpe(word: str, ranks: dict[tuple[str, ...], int]) -> list[str]:
    """One Moses word (non-empty) -> its BPE pieces, the last one ending in "</w>".

    Symbol i is the piece starting at character i: `symbols[i]` ("" once merged into its left
    neighbour), `nexts[i]` / `prevs[i]` the neighbouring live symbols (-1 at the ends). The heap
    holds (rank, i, left, right) for each adjacent pair merges.txt knows; an entry whose symbols
    have changed since it was pushed is stale and skipped (symbols only grow, so a stale pair never
    comes back).
    """
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    n = len(symbols)
    nexts = [*range(1, n), -1]
    prevs = list(range(-1, n - 1))
    heap = [
        (rank, i, left, right)
        for i, (left, right) in enumerate(pairwise(symbols))
        if (rank := ranks.get((left, right))) is not None
    ]
    heapq.heapify(heap)

    def is_pair(i: int, left: str, right: str) -> bool:  # is (left, right) still at i?
        return symbols[i] == left and nexts[i] != -1 and symbols[nexts[i]] == right

    def push(i: int) -> None:  # the pair that starts at live symbol i, if merges.txt has it
        if i != -1 and nexts[i] != -1:
            left, right = symbols[i], symbols[nexts[i]]
            rank = ranks.get((left, right))
            if rank is not None:
                heapq.heappush(heap, (rank, i, left, right))

    while heap:
        rank, first, left, right = heapq.heappop(heap)
        if not is_pair(first, left, right):
            continue
        # transformers merges the best pair at every place it occurs before it looks for the next
        # best pair, so take all the pair's entries first, in position order: left to right.
        # Entries of another pair with the same rank (only a hand-made ranks dict has those) wait.
        places, later = [first], []
        while heap and heap[0][0] == rank:
            entry = heapq.heappop(heap)
            if entry[2] == left and entry[3] == right:
                places.append(entry[1])
            else:
                later.append(entry)
        for i in places:
            if not is_pair(i, left, right):  # in "a a a", merging (a, a) at 0 ends the one at 1
                continue
            j = nexts[i]
            symbols[i], symbols[j] = left + right, ""
            nexts[i] = nexts[j]
            if nexts[i] != -1:
                prevs[nexts[i]] = i
            push(prevs[i])
            push(i)
        for entry in later:
            heapq.heappush(heap, entry)
    return [symbol for symbol in symbols if symbol]
