"""Where the fast forward's time goes: one run of a batch on one core, stage by stage.

    python tools/profile_fast.py                          # the model tools/bench.py builds
    python tools/profile_fast.py --model demo --batch 32 --seq 32
    python tools/profile_fast.py --json                   # the figures as JSON

fast.forward cuts a batch into runs of sentences, computed side by side, each on one core with
single-threaded BLAS. This tool times one such run: batch sentences of seq tokens (random
hidden states after the embeddings) through fast.encode_packed, OpenBLAS on one thread.
Timers wrap fast.py's own functions without changing them: the matrix products (every
np.matmul fast.py's matmul_ calls), attention_ (the per-head products and the softmax), bias_gelu_,
layer_norm_; the rest (bias and residual sums, the q scale, Python) is "other". The products'
GFLOP/s come from the model's dimensions, and "peak" is the best rate of one large product on
this core: together they show how close to its ceiling the forward is. NumPy only: no torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import DEFAULT_WORKDIR
from flaubert_np import FlaubertModel, blas, fast
from flaubert_np.hub import resolve_model_dir

BENCH_MODEL = DEFAULT_WORKDIR / "base" / "model"  # what `python tools/bench.py` builds
STAGES = ("matrix products", "attention", "GELU", "layer norms", "other")


class _TimedNumpy:
    """numpy, as fast.py sees it, with np.matmul timed into `seconds`."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds

    def __getattr__(self, name: str):
        return getattr(np, name)

    def matmul(self, *args, **kwargs):
        start = time.perf_counter()
        result = np.matmul(*args, **kwargs)
        self.seconds["matrix products"] += time.perf_counter() - start
        return result


def _timed(function, seconds: dict[str, float], stage: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[stage] += time.perf_counter() - start
        return result

    return wrapper


def profile(model: FlaubertModel, batch: int, seq: int, repeats: int) -> dict:
    """Seconds per stage of one run (median over repeats), and the products' GFLOP/s."""
    c = model.config
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch * seq, c.emb_dim)).astype(np.float32)
    lengths = np.full(batch, seq)
    seconds = dict.fromkeys(STAGES, 0.0)
    patches = {"np": _TimedNumpy(seconds),
               "attention_": _timed(fast.attention_, seconds, "attention"),
               "bias_gelu_": _timed(fast.bias_gelu_, seconds, "GELU"),
               "layer_norm_": _timed(fast.layer_norm_, seconds, "layer norms")}  # fmt: skip
    originals = {name: getattr(fast, name) for name in patches}
    runs = []
    with blas.single_threaded():
        for name, patch in patches.items():
            setattr(fast, name, patch)
        try:
            for _ in range(repeats + 1):  # the first: warm-up
                seconds.update(dict.fromkeys(STAGES, 0.0))
                start = time.perf_counter()
                fast.encode_packed(model.params, c, x0.copy(), lengths)
                total = time.perf_counter() - start
                timed = sum(seconds[s] for s in STAGES if s != "other")
                runs.append({**seconds, "other": total - timed, "total": total})
        finally:
            for name, original in originals.items():
                setattr(fast, name, original)
        peak = _peak_gflops(c.emb_dim, c.ffn_dim)
    median = {key: statistics.median(run[key] for run in runs[1:]) for key in runs[0]}
    n = batch * seq
    flops = 2 * n * c.n_layers * (4 * c.emb_dim**2 + 2 * c.emb_dim * c.ffn_dim)
    return {"batch": batch, "seq": seq, "tokens": n, "seconds": median,
            "products_gflops": flops / median["matrix products"] / 1e9,
            "peak_gflops": peak, "tokens_per_s": n / median["total"]}  # fmt: skip


def _peak_gflops(dim: int, ffn_dim: int) -> float:
    """The best rate of one large product ([1024, dim] x [dim, ffn_dim]) on this thread."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, dim)).astype(np.float32)
    b = rng.standard_normal((dim, ffn_dim)).astype(np.float32)
    out = np.empty((1024, ffn_dim), np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * 1024 * dim * ffn_dim / best / 1e9


def report(result: dict) -> str:
    s = result["seconds"]
    lines = [
        f"one run of {result['batch']} x {result['seq']} tokens on one core: "
        f"{1e3 * s['total']:.1f} ms ({result['tokens_per_s']:,.0f} tokens/s)"
    ]
    for stage in STAGES:
        lines.append(f"  {stage:16s}{1e3 * s[stage]:9.1f} ms {100 * s[stage] / s['total']:5.1f} %")
    lines.append(
        f"matrix products at {result['products_gflops']:.0f} GFLOP/s; one large "
        f"product on this core: {result['peak_gflops']:.0f} GFLOP/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(BENCH_MODEL),
                        help="a model folder or short name (default: tools/bench.py's model, "
                             "%(default)s)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=16, help="sentences in the run (16)")
    parser.add_argument("--seq", type=int, default=32, help="tokens per sentence (32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if min(args.batch, args.seq, args.repeats) < 1:
        parser.error("--batch, --seq and --repeats must be >= 1")
    if args.model == str(BENCH_MODEL) and not BENCH_MODEL.is_dir():
        parser.error(
            f"no model in {BENCH_MODEL}: run tools/bench.py once to build it, or pass --model"
        )
    folder = resolve_model_dir(args.model)
    if not (Path(folder) / "config.json").is_file():
        parser.error(
            f"--model {args.model}: no config.json in {folder} (run tools/bench.py "
            "once to build its model, or pass a model folder)"
        )
    model = FlaubertModel.from_pretrained(folder)
    if args.seq > model.config.max_position_embeddings:
        parser.error(
            f"--seq {args.seq}: this model has max_position_embeddings="
            f"{model.config.max_position_embeddings}"
        )
    if not blas._libraries():
        parser.error(
            "threadpoolctl finds no BLAS under NumPy: cannot run the products on one thread"
        )
    result = profile(model, args.batch, args.seq, args.repeats)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
