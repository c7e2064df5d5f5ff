"""Score a sentence model on a Semantic Textual Similarity (STS) benchmark.

For each pair, the cosine similarity of the two sentence embeddings is compared with the gold
score: the tool prints Spearman's and Pearson's correlation x 100 (Spearman is the figure model
cards quote, as in sentence-transformers' EmbeddingSimilarityEvaluator).

    python tools/eval_sts.py --data tests/data/stsb-fr/dev.csv            # the demo model
    python tools/eval_sts.py --model hugorosen/flaubert_base_uncased-xnli-sts   # French STS test

Without --data, the French test split of stsb_multi_mt is fetched from the Hugging Face Hub
(dataset PhilipMay/stsb_multi_mt, a parquet file: needs pyarrow); offline, pass --data.
A CSV has rows `sentence1,sentence2,score` (excel dialect, UTF-8; an optional header row).
The statistics are plain NumPy: ties get average ranks, as in scipy.stats.spearmanr.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

HUB_DATASET = "PhilipMay/stsb_multi_mt"
HUB_FILE = "fr/test-00000-of-00001.parquet"
# The commit that converted the dataset to parquet ("Convert dataset to Parquet (#4)"): pinned so
# that the default figure cannot change under us.
HUB_REVISION = "e1b7f8617fa83b90b4e7530dac02f1583cc61415"
HEADER_NAMES = {"score", "similarity_score", "label"}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the average of their ranks (scipy's method="average")."""
    # [n] -> [n] float64
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts_group) - 1  # tie group of each sorted position
    first = np.flatnonzero(starts_group)  # 0-based position where each group starts
    last = np.r_[first[1:], len(x)]  # one past its end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((first + 1 + last) / 2)[group]  # mean of the ranks first+1 .. last
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation coefficient of two samples."""
    # [n], [n] -> scalar
    x, y = _check_samples(x, y)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        raise ValueError("correlation is undefined: one of the samples is constant")
    return float(np.clip((dx @ dy) / denominator, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (average-tie) ranks."""
    # [n], [n] -> scalar
    x, y = _check_samples(x, y)
    return pearson(rankdata(x), rankdata(y))


def _check_samples(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"samples must be two 1-d arrays of one length, got {x.shape} and {y.shape}"
        )
    if len(x) < 2:
        raise ValueError(f"correlation needs at least 2 pairs, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("samples contain NaN or infinity")
    return x, y


def read_sts_csv(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Rows `sentence1,sentence2,score` of an STS CSV -> the two sentence lists and the scores."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    first, second, scores = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if len(row) != 3:
                raise ValueError(
                    f"{path}:{line_no}: expected 3 fields "
                    f"(sentence1,sentence2,score), got {len(row)}"
                )
            if line_no == 1 and row[2].strip().lower() in HEADER_NAMES:
                continue
            try:
                score = float(row[2])
            except ValueError:
                raise ValueError(f"{path}:{line_no}: score {row[2]!r} is not a number") from None
            if not math.isfinite(score):
                raise ValueError(f"{path}:{line_no}: score {row[2]!r} is not finite")
            first.append(row[0])
            second.append(row[1])
            scores.append(score)
    if len(scores) < 2:
        raise ValueError(f"{path}: needs at least 2 sentence pairs, found {len(scores)}")
    return first, second, np.array(scores, dtype=np.float64)


def fetch_hub_test_split() -> tuple[list[str], list[str], np.ndarray]:
    """The French test split of stsb_multi_mt, downloaded from the Hugging Face Hub."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import logging as hub_logging

    from flaubert_np.hub import network_problem

    problem = network_problem()  # offline or unreachable: the cache only, without ~25 s of retries
    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # offline, its retry warnings would bury the one-line error
    try:
        path = hf_hub_download(HUB_DATASET, HUB_FILE, repo_type="dataset", revision=HUB_REVISION,
                               local_files_only=problem is not None)  # fmt: skip
    except Exception as e:  # offline, proxy, DNS, HTTP: all mean "no Hub here"
        why = (f"the STS test split of {HUB_DATASET} is not in the Hugging Face cache and "
               f"{problem}" if problem else f"cannot download the STS test split of "
               f"{HUB_DATASET} from the Hugging Face Hub ({type(e).__name__})")  # fmt: skip
        raise ValueError(
            f"{why}: pass --data PATH to an STS CSV such as tests/data/stsb-fr/dev.csv"
        ) from None
    finally:
        hub_logging.set_verbosity(verbosity)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            f"reading {path} (parquet) needs pyarrow: `pip install pyarrow`, "
            "or pass --data PATH to an STS CSV"
        ) from None
    table = pq.read_table(path).to_pydict()
    scores = np.array(table["similarity_score"], dtype=np.float64)
    return list(table["sentence1"]), list(table["sentence2"]), scores


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of a with the same row of b."""
    # [n, dim], [n, dim] -> [n]
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def evaluate(
    encoder, first: list[str], second: list[str], scores: np.ndarray, batch_size: int = 32
) -> dict[str, float]:
    """Spearman and Pearson x 100 between the embeddings' cosine similarity and gold scores."""
    cosine = paired_cosine(
        encoder.encode(first, batch_size=batch_size), encoder.encode(second, batch_size=batch_size)
    )
    return {
        "spearman": 100 * spearman(cosine, scores),
        "pearson": 100 * pearson(cosine, scores),
        "pairs": len(scores),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="demo", help="a name or path SentenceEncoder loads (default: demo)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="STS CSV sentence1,sentence2,score (default: the French test split "
        f"of {HUB_DATASET} from the Hugging Face Hub)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        if args.data is None:
            first, second, scores = fetch_hub_test_split()
            source = f"{HUB_DATASET} fr test"
        else:
            first, second, scores = read_sts_csv(args.data)
            source = str(args.data)
        from flaubert_np import SentenceEncoder

        encoder = SentenceEncoder.from_pretrained(args.model)
        result = evaluate(encoder, first, second, scores, batch_size=args.batch_size)
    except (ValueError, OSError) as e:  # flaubert_np reports a missing model as an OSError
        print(f"eval_sts.py: error: {e}", file=sys.stderr)
        return 2
    print(f"model: {args.model}\ndata: {source} ({result['pairs']} pairs)")
    print(f"spearman: {result['spearman']:.2f}\npearson: {result['pearson']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
