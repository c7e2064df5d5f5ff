"""tools/bench.py runs end to end and reports every figure (a smoke test: no timing asserted).

The tiny model and --quick keep it short; the outputs of the frameworks are compared as well,
so a benchmark that timed a wrong computation would fail here.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).parent.parent
BUDGET_S = 180  # the run takes ~30 s on a quiet 2-core machine; this only stops a hang


@pytest.mark.oracle  # the bench builds its model with transformers, compares with torch
def test_bench_quick_json(tmp_path):
    # "as-is": one OpenBLAS setting whatever the environment sets, to keep the test short.
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "bench.py"),
        "--size",
        "tiny",
        "--quick",
        "--settings",
        "as-is",
        "--json",
        "--workdir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUDGET_S, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    assert report["machine"]["threads"] >= 1
    assert report["model"]["emb_dim"] == 32 and report["model"]["n_layers"] == 2
    assert report["corpus"]["sentences"] == 256
    assert report["corpus"]["tokens_per_sentence"] > 2  # <s> and </s> at least
    [setting] = report["settings"]
    assert setting["openblas_core"]  # the kernel OpenBLAS reported, e.g. "SkylakeX"

    for framework in ("flaubert-np", "torch", "onnxruntime"):
        shapes = setting["model"][framework]["shapes"]
        assert set(shapes) == {"1x16", "32x32", "8x128"}
        for figures in shapes.values():
            assert figures["tokens_per_s"] > 0 and figures["runs"] >= 2
            # the ceiling (linear layers alone) is timed for flaubert-np only
            assert ("matmul_only" in figures) == (framework == "flaubert-np")
            if framework == "flaubert-np":
                assert figures["matmul_only"]["tokens_per_s"] > 0
    for shape, diffs in setting["model_max_abs_diff_vs_torch"].items():
        assert set(diffs) == {"flaubert-np", "onnxruntime"}
        assert max(diffs.values()) <= 1e-5, (shape, diffs)

    for framework in ("flaubert-np", "sentence-transformers"):
        assert setting["encode"][framework]["sentences"] == 256
        assert setting["encode"][framework]["sentences_per_s"] > 0
        cold = setting["cold_start"][framework]
        assert cold["wall_s"] > cold["import_s"] + cold["load_s"] + cold["encode_s"]
        assert cold["peak_rss_mib"] > 10
    assert setting["encode_max_abs_diff_vs_sentence_transformers"] <= 1e-5
    assert set(setting["ratios"]) == {
        *(f"model {b}x{s} vs {fw}" for b, s in bench.SHAPES for fw in ("torch", "onnxruntime")),
        "encode vs sentence-transformers",
        "cold start speed-up vs sentence-transformers",
        "peak RSS vs sentence-transformers",
    }

    text = bench.table(report)  # the human-readable table renders from the same figures
    assert "OpenBLAS kernel " + setting["openblas_core"] in text
    assert "32x32" in text and "cold start" in text and "peak RSS" in text
    assert "matrix products alone" in text
