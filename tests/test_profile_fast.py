"""tools/profile_fast.py: every stage timed, fast.py left as it was, a report per stage."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import profile_fast
from flaubert_np import FlaubertModel, fast

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.oracle  # flaubert_checkpoint: models built by transformers


@pytest.mark.oracle
def test_profile_times_every_stage_and_restores_fast(flaubert_checkpoint):
    model = FlaubertModel.from_pretrained(flaubert_checkpoint())
    originals = (fast.np, fast.attention_, fast.bias_gelu_, fast.layer_norm_)
    result = profile_fast.profile(model, batch=3, seq=7, repeats=2)
    assert (fast.np, fast.attention_, fast.bias_gelu_, fast.layer_norm_) == originals
    assert fast.np is np
    seconds = result["seconds"]
    for stage in ("matrix products", "attention", "GELU", "layer norms"):
        assert seconds[stage] > 0, stage
    assert seconds["other"] >= 0  # nothing counted twice
    assert seconds["total"] >= sum(seconds[s] for s in profile_fast.STAGES) * (1 - 1e-9)
    assert result["tokens"] == 21 and result["products_gflops"] > 0
    assert result["peak_gflops"] > 0


@pytest.mark.oracle
def test_command_line(flaubert_checkpoint, tmp_path):
    tool = str(ROOT / "tools" / "profile_fast.py")
    ok = subprocess.run(
        [sys.executable, tool, "--model", str(flaubert_checkpoint()), "--batch", "2", "--seq",
         "5", "--repeats", "1"], capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "one run of 2 x 5 tokens on one core" in ok.stdout and "GELU" in ok.stdout
    missing = subprocess.run([sys.executable, tool, "--model", str(tmp_path)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert missing.returncode == 2
    assert f"no config.json in {tmp_path}" in missing.stderr.strip().splitlines()[-1]
