"""Before and after: the model alone from two source trees, alternating in fresh processes.

    python tools/bench_ab.py BEFORE_TREE AFTER_TREE --model /tmp/perf/bw/base/model --rounds 3

Each round runs BEFORE_TREE's flaubert_np, then AFTER_TREE's, each in a fresh interpreter (with
PYTHONPATH set to the tree), on the same inputs: `FlaubertModel(ids, attention_mask)` at the
shapes of tools/bench.py's "model alone" rows. Alternating the two trees puts a shared machine's
drift on both sides, which two `tools/bench.py` runs minutes apart do not. The model is the one
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
REPEATS = {1: 30}  # forward passes per round and shape; default below
DEFAULT_REPEATS = 5


def measure(model_dir: str) -> dict[str, int]:
    """In this process: tokens/s of the model alone at each shape (median of the repeats)."""
    import numpy as np

    from flaubert_np import FlaubertModel

    model = FlaubertModel.from_pretrained(model_dir)
    rng = np.random.default_rng(0)
    result = {}
    for batch, seq in SHAPES:
        ids = rng.integers(5, model.config.n_words, size=(batch, seq))
        mask = np.ones_like(ids)
        model(ids, attention_mask=mask)  # warm-up
        times = []
        for _ in range(REPEATS.get(batch, DEFAULT_REPEATS)):
            start = time.perf_counter()
            model(ids, attention_mask=mask)
            times.append(time.perf_counter() - start)
        result[f"{batch}x{seq}"] = round(batch * seq / float(np.median(times)))
    return result


def run_tree(tree: Path, model_dir: str) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--child", model_dir]
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
    args = parser.parse_args(argv)
    for tree in (args.before, args.after):
        if not (tree / "flaubert_np" / "__init__.py").is_file():
            parser.error(f"{tree}: not a source tree (no flaubert_np/__init__.py)")
    rounds: dict[str, list[dict[str, int]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        rounds["before"].append(run_tree(args.before.resolve(), args.model))
        rounds["after"].append(run_tree(args.after.resolve(), args.model))
    openblas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    print(f"tokens/s, {args.rounds} rounds, trees alternating; OpenBLAS variables: {openblas}")
    for batch, seq in SHAPES:
        shape = f"{batch}x{seq}"
        for name in ("before", "after"):
            figures = ", ".join(f"{r[shape]:,}" for r in rounds[name])
            print(f"  {shape:>7} {name:>6}: {figures}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2])))
    else:
        sys.exit(main())
