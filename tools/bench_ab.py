"""Before and after: the model alone from two source trees, alternating in fresh processes.

    python tools/bench_ab.py BEFORE_TREE AFTER_TREE --model /tmp/perf/bw/base/model --rounds 3
    python tools/bench_ab.py BEFORE_TREE AFTER_TREE --model ... --shapes 1x16,4x16   # other shapes

Each round runs BEFORE_TREE's flaubert_np, then AFTER_TREE's, each in a fresh interpreter (with
PYTHONPATH set to the tree), on the same inputs: `FlaubertModel(ids, attention_mask)` at the
shapes of tools/bench.py's "model alone" rows, or those --shapes gives. Alternating the two trees
puts a shared machine's drift on both sides, which two `tools/bench.py` runs minutes apart do
not. The model is the one
tools/bench.py builds (`python tools/bench.py --quick` makes it in --workdir).

Prints, per tree, the tokens/s of every round (median over the repeats of a round).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHAPES = ((1, 16), (32, 32), (8, 128))  # (sentences, tokens each): tools/bench.py's rows
SMALL_TOKENS = 64  # forward passes per round and shape: 30 up to this many tokens, else 5
SMALL_REPEATS, DEFAULT_REPEATS = 30, 5


def measure(model_dir: str, shapes: list[tuple[int, int]]) -> dict[str, int]:
    """In this process: tokens/s of the model alone at each shape (median of the repeats)."""
    import numpy as np

    from flaubert_np import FlaubertModel

    model = FlaubertModel.from_pretrained(model_dir)
    rng = np.random.default_rng(0)
    result = {}
    for batch, seq in shapes:
        ids = rng.integers(5, model.config.n_words, size=(batch, seq))
        mask = np.ones_like(ids)
        model(ids, attention_mask=mask)  # warm-up
        times = []
        for _ in range(SMALL_REPEATS if batch * seq <= SMALL_TOKENS else DEFAULT_REPEATS):
            start = time.perf_counter()
            model(ids, attention_mask=mask)
            times.append(time.perf_counter() - start)
        result[f"{batch}x{seq}"] = round(batch * seq / float(np.median(times)))
    return result


def run_tree(tree: Path, model_dir: str, shapes: list[tuple[int, int]]) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--child", model_dir, json.dumps(shapes)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"bench_ab: {tree}: the child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a source tree (holding flaubert_np/)")
    parser.add_argument("after", type=Path, help="another source tree")
    parser.add_argument("--model", required=True, help="the model directory")
    parser.add_argument("--rounds", type=int, default=3, help="default: 3")
    parser.add_argument(
        "--shapes",
        default=",".join(f"{b}x{s}" for b, s in SHAPES),
        help="sentences x tokens, comma-separated (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        shapes = [(int(b), int(s)) for b, s in (item.split("x") for item in args.shapes.split(","))]
    except ValueError:
        parser.error(f"--shapes {args.shapes!r}: write sentences x tokens, as 1x16,32x32")
    if any(b < 1 or s < 1 for b, s in shapes):
        parser.error(f"--shapes {args.shapes!r}: sizes must be positive")
    for tree in (args.before, args.after):
        if not (tree / "flaubert_np" / "__init__.py").is_file():
            parser.error(f"{tree}: not a source tree (no flaubert_np/__init__.py)")
    rounds: dict[str, list[dict[str, int]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        rounds["before"].append(run_tree(args.before.resolve(), args.model, shapes))
        rounds["after"].append(run_tree(args.after.resolve(), args.model, shapes))
    openblas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    print(f"tokens/s, {args.rounds} rounds, trees alternating; OpenBLAS variables: {openblas}")
    for batch, seq in shapes:
        shape = f"{batch}x{seq}"
        for name in ("before", "after"):
            figures = ", ".join(f"{r[shape]:,}" for r in rounds[name])
            print(f"  {shape:>7} {name:>6}: {figures}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], [tuple(shape) for shape in json.loads(sys.argv[3])])))
    else:
        sys.exit(main())
