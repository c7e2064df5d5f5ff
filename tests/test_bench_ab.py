"""tools/bench_ab.py: two trees measured alternately, each in a fresh process (the demo model)."""

import subprocess
import sys
from pathlib import Path

import bench_ab

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "bench_ab.py"


def test_both_trees_every_shape_every_round():
    out = subprocess.run(
        [sys.executable, str(TOOL), str(ROOT), str(ROOT), "--model", "demo", "--rounds", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("tokens/s, 2 rounds, trees alternating")
    for batch, seq in bench_ab.SHAPES:
        for name in ("before", "after"):
            row = next(line for line in lines if line.split()[:2] == [f"{batch}x{seq}", f"{name}:"])
            figures = row.split(":", 1)[1].split(", ")
            assert len(figures) == 2 and all(int(f.replace(",", "")) > 0 for f in figures)


def test_a_tree_without_the_package_is_a_one_line_error(tmp_path):
    out = subprocess.run(
        [sys.executable, str(TOOL), str(tmp_path), str(ROOT), "--model", "demo"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert f"{tmp_path}: not a source tree (no flaubert_np/__init__.py)" in out.stderr


def test_other_shapes_and_a_bad_one():
    out = subprocess.run(
        [sys.executable, str(TOOL), str(ROOT), str(ROOT), "--model", "demo", "--rounds", "1",
         "--shapes", "2x8,3x5"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    shapes = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert shapes == ["2x8", "2x8", "3x5", "3x5"]
    for bad in ("2by8", "0x8"):
        out = subprocess.run(
            [sys.executable, str(TOOL), str(ROOT), str(ROOT), "--model", "demo", "--shapes", bad],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 2 and f"--shapes {bad!r}" in out.stderr
