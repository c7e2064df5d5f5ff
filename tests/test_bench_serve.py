"""tools/bench_serve.py runs end to end and reports every figure (a smoke test: no timing
asserted). The hand-made server runs sentence-transformers, hence the oracle mark; the two
servers' embeddings are compared too, so a benchmark of a wrong computation would fail here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.oracle

ROOT = Path(__file__).parent.parent
BUDGET_S = 300  # the run takes ~1 minute on a busy 2-core machine; this only stops a hang


def test_bench_serve_quick_json(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "bench_serve.py"), "--size", "tiny", "--quick",
           "--json", "--workdir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUDGET_S, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    assert report["model"]["size"] == "tiny" and report["model"]["n_layers"] == 2
    assert report["encode_one_sentence_p50_ms"] > 0
    assert report["encode_16_per_call_sentences_per_s"] > 0
    assert report["max_abs_diff"] <= 1e-5
    for server in ("flaubert-np", "hand-made"):
        scenarios = report["servers"][server]
        assert set(scenarios) == {"1 client", "16 clients", "4 clients x 32"}
        for name, figures in scenarios.items():
            assert figures["requests"] >= 1, (server, name)
            per_request = 32 if name == "4 clients x 32" else 1
            assert figures["sentences_per_s"] == pytest.approx(
                per_request * figures["requests_per_s"]
            )
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
            if server == "flaubert-np":  # from its /metrics: every request in some pass
                assert figures["passes"] >= 1 and figures["requests_per_pass"] >= 1
                # the passes counted hold the timed requests: /metrics is read with none in
                # flight, before they start and after the last is answered
                assert figures["passes"] * figures["requests_per_pass"] >= figures["requests"]
                assert 0 < figures["model_busy"] <= 1
    assert set(report["ratios"]) == {
        "16 clients requests/s vs hand-made", "16 clients p99 vs hand-made",
        "1 client p50 vs in-process encode", "32-sentence requests sentences/s vs hand-made",
    }  # fmt: skip
    assert all(v > 0 for v in report["ratios"].values())
