"""Benchmark `flaubert-np encode` on large files: peak memory and throughput (not a test).

    /work/venv/bin/python tools/bench_stream.py                      # demo model, ~15 min
    /work/venv/bin/python tools/bench_stream.py --model DIR --rss-lines 10000 200000 \\
        --throughput-lines 20000 --workers 1 2

Each figure comes from a fresh `python -m flaubert_np.cli encode -i corpus.txt -o out.npy`
subprocess on a generated corpus (the STS sentences of tests/data, cycled to the wanted length):

1. Peak RSS against input size (--workers 1, --rss-lines): the child's ru_maxrss from os.wait4,
   i.e. its VmHWM, the largest resident set it ever had. Flat = memory does not grow with input.
2. Throughput against --workers (--throughput-lines): rows per second of wall time (model loading
   and worker start-up included), the peak RSS of the largest process, and the peak total PSS of
   the whole process tree (sampled from /proc/*/smaps_rollup every 0.2 s: memory shared through
   the page cache, such as memory-mapped weights, is split between the processes that map it).
   The outputs of every worker count are compared byte for byte with the first one's.

Linux only (/proc, wait4). Prints a markdown table; the machine's load changes throughput, so
quote the load average printed with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from learn_bpe import read_sentences

ROOT = Path(__file__).resolve().parent.parent
STSB = ROOT / "tests" / "data" / "stsb-fr"


def write_corpus(path: Path, n_lines: int, unique: bool = False) -> None:
    """`n_lines` STS sentences, one per line, cycling through train + dev; with `unique`, each
    line ends with a word of its own (a reference number), as real corpora keep bringing new
    words (names, numbers, typos)."""
    sentences = [" ".join(s.split()) for s in read_sentences([STSB / "train.csv",
                                                             STSB / "dev.csv"])]  # fmt: skip
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_lines):
            f.write(sentences[i % len(sentences)] + (f" (réf. {i:07d})\n" if unique else "\n"))


def tree_pss_kib(root: int) -> int:
    """Sum of Pss over `root` and its descendants, in KiB (0 for processes gone meanwhile)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier += children
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def run_encode(model: str, corpus: Path, out: Path, workers: int) -> dict:
    """One encode subprocess: wall seconds, peak RSS (MiB), peak tree PSS (MiB)."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "flaubert_np.cli",
        "encode",
        "--model",
        model,
        "-i",
        str(corpus),
        "-o",
        str(out),
        "--workers",
        str(workers),
        "--no-progress",
        "--overwrite",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    peak_pss = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_pss = max(peak_pss, tree_pss_kib(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024, "pss_mib": peak_pss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="model name or directory (default: demo)")
    parser.add_argument("--rss-lines", type=int, nargs="*", default=[10_000, 200_000])
    parser.add_argument("--throughput-lines", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--unique",
        action="store_true",
        help="end each line with a word of its own (new words all along)",
    )
    args = parser.parse_args(argv)

    print(
        f"model {args.model}; {os.cpu_count()} cores; unique words: {args.unique}; "
        f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        work = Path(tmp)
        print("\n| input lines | workers | seconds | rows/s | peak RSS MiB | peak tree PSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for n in args.rss_lines:
            corpus = work / f"corpus-{n}.txt"
            write_corpus(corpus, n, args.unique)
            r = run_encode(args.model, corpus, work / f"rss-{n}.npy", 1)
            print(
                f"| {n:,} | 1 | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
                f"{r['rss_mib']:.0f} | {r['pss_mib']:.0f} |",
                flush=True,
            )
            (work / f"rss-{n}.npy").unlink()
        n = args.throughput_lines
        corpus = work / f"corpus-{n}.txt"
        write_corpus(corpus, n, args.unique)
        outputs = {}
        for workers in args.workers:
            outputs[workers] = work / f"workers-{workers}.npy"
            r = run_encode(args.model, corpus, outputs[workers], workers)
            print(
                f"| {n:,} | {workers} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
                f"{r['rss_mib']:.0f} | {r['pss_mib']:.0f} |",
                flush=True,
            )
        first = outputs[args.workers[0]].read_bytes()
        for workers, path in list(outputs.items())[1:]:
            same = path.read_bytes() == first
            print(
                f"\n--workers {workers} output byte-identical to --workers {args.workers[0]}: "
                f"{same}"
            )
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
