"""Tokenizer throughput: flaubert_np's FlaubertTokenizer against transformers', same sentences.

Both tokenizers load the same folder and encode the ~14,500 STS sentences (train + dev) the way
sentence-transformers does: batches of 64, padding=True, truncation=True, NumPy arrays out. Each
starts cold (empty BPE cache) for the first pass, then a second pass runs warm. The outputs are
checked to be identical. Prints sentences/s of both and the ratio.

Then one long word without spaces (random letters, 200,000 by default), the worst case of BPE:
flaubert_np's time for tokenize() and for BPE alone, and transformers' (whose BPE is quadratic) on
a 20,000-letter prefix, checked to give the same tokens.

    python tools/bench_tokenizer.py                      # learns an uncased 5,000-merge vocabulary
    python tools/bench_tokenizer.py --tokenizer DIR      # or uses a tokenizer folder
    python tools/bench_tokenizer.py --cased
    python tools/bench_tokenizer.py --long-word-only     # only the long word

Needs transformers (the test extra). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from learn_bpe import learn_bpe

ROOT = Path(__file__).resolve().parent.parent
STSB = ROOT / "tests" / "data" / "stsb-fr"


def read_sentences() -> list[str]:
    sentences = []
    for split in ("train", "dev"):
        with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as f:
            sentences += [s for row in csv.reader(f) for s in row[:2]]
    return sentences


def build_tokenizer_dir(sentences: list[str], lowercase: bool, out: Path) -> Path:
    """Learn a 5,000-merge vocabulary (tools/learn_bpe.py); transformers writes the folder."""
    from transformers import FlaubertTokenizer

    vocab = learn_bpe(sentences, 5000, out / "bpe", lowercase)
    files = (str(vocab / "vocab.json"), str(vocab / "merges.txt"))
    tok = FlaubertTokenizer(*files, do_lowercase=lowercase, model_max_length=512)
    tok.save_pretrained(str(out / "tokenizer"))
    return out / "tokenizer"


def run(encode: Callable, sentences: list[str], batch_size: int) -> tuple[float, list]:
    """Encode every batch; return (seconds, outputs)."""
    start = time.perf_counter()
    outputs = [encode(sentences[i : i + batch_size]) for i in range(0, len(sentences), batch_size)]
    return time.perf_counter() - start, outputs


def timed(function: Callable, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def long_word(ours, ref, n_chars: int, n_ref_chars: int) -> None:
    """Time one word of n_chars random letters; transformers on its first n_ref_chars."""
    from flaubert_np.bpe import bpe

    letters = "abcdefghijklmnopqrstuvwxyzéèàç"
    word = "".join(random.Random(0).choices(letters, k=n_chars))
    ours.tokenize(letters)  # loads sacremoses' tables, once per process
    cpu = time.process_time()
    t_tokenize, tokens = timed(ours.tokenize, word)
    cpu = time.process_time() - cpu
    t_bpe, _ = timed(bpe, word.lower() if ours.do_lowercase else word, ours.bpe_ranks)
    print(
        f"long word, {n_chars:,} letters without spaces: flaubert_np tokenize {t_tokenize:.2f} s "
        f"({cpu:.2f} s CPU; BPE alone {t_bpe:.2f} s) -> {len(tokens):,} tokens"
    )
    prefix = word[:n_ref_chars]
    t_ref, ref_tokens = timed(ref.tokenize, prefix)
    t_ours, our_tokens = timed(ours.tokenize, prefix)
    if our_tokens != ref_tokens:
        raise SystemExit("long word: tokens differ from transformers'")
    print(
        f"long word, {n_ref_chars:,} letters: transformers {t_ref:.2f} s | flaubert_np "
        f"{t_ours:.2f} s | same tokens"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, help="a FlauBERT tokenizer folder")
    parser.add_argument("--cased", action="store_true", help="learn a cased vocabulary")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--long-word", type=int, default=200_000, metavar="CHARS")
    parser.add_argument(
        "--long-word-reference",
        type=int,
        default=20_000,
        metavar="CHARS",
        help="transformers' BPE is quadratic: time it on a shorter prefix",
    )
    parser.add_argument("--long-word-only", action="store_true", help="skip the STS sentences")
    args = parser.parse_args(argv)

    import transformers

    from flaubert_np.tokenizer import FlaubertTokenizer

    transformers.logging.set_verbosity_error()
    sentences = read_sentences()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.tokenizer or build_tokenizer_dir(sentences, not args.cased, Path(tmp))
        ref = transformers.FlaubertTokenizer.from_pretrained(str(folder))
        ours = FlaubertTokenizer.from_pretrained(folder)
    kwargs = {"padding": True, "truncation": True}

    def encode_ref(batch):
        return ref(batch, return_tensors="np", **kwargs)

    def encode_ours(batch):
        return ours(batch, **kwargs)

    if args.long_word_only:
        long_word(ours, ref, args.long_word, args.long_word_reference)
        return 0
    print(
        f"{len(sentences)} sentences, batches of {args.batch_size}, do_lowercase="
        f"{ours.do_lowercase}, transformers {transformers.__version__}"
    )
    for label in ("cold", "warm"):
        t_ref, out_ref = run(encode_ref, sentences, args.batch_size)
        t_ours, out_ours = run(encode_ours, sentences, args.batch_size)
        for a, b in zip(out_ref, out_ours, strict=True):
            for key in ("input_ids", "attention_mask"):
                if not np.array_equal(a[key], b[key]):
                    raise SystemExit(f"outputs differ ({key}): not a fair comparison")
        speed_ref, speed_ours = len(sentences) / t_ref, len(sentences) / t_ours
        print(
            f"{label}: transformers {speed_ref:7,.0f} sentences/s | flaubert_np "
            f"{speed_ours:7,.0f} sentences/s | flaubert_np / transformers = {t_ref / t_ours:.2f}"
        )
    long_word(ours, ref, args.long_word, args.long_word_reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
