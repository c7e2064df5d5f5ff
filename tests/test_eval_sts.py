"""tools/eval_sts.py: NumPy Spearman/Pearson against hand-computed values and scipy, CSV reading."""

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import STSB

import eval_sts
from flaubert_np import hub

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# Hand-computed cases ------------------------------------------------------------------------------


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(eval_sts.rankdata([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(eval_sts.rankdata([3.0, 1.0, 2.0]), [3, 1, 2])
    np.testing.assert_array_equal(eval_sts.rankdata([5, 5, 5]), [2, 2, 2])
    # two tie groups, unsorted: 0.5 x2 -> ranks 1,2 -> 1.5; 4 x3 -> ranks 4,5,6 -> 5
    np.testing.assert_array_equal(eval_sts.rankdata([4, 0.5, 2, 4, 0.5, 4]), [5, 1.5, 3, 5, 1.5, 5])


def test_pearson_hand_computed():
    # dx = [-1, 0, 1], dy = [-1, 1, 0]: 1 / sqrt(2 * 2)
    assert eval_sts.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5, abs=1e-15)
    assert eval_sts.pearson([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0, abs=1e-15)


def test_spearman_hand_computed_with_ties():
    # ranks of y = [1, 2, 3.5, 5, 3.5]; centred: dx = [-2,-1,0,1,2], dy = [-2,-1,.5,2,.5]
    # dx.dy = 8, dx.dx = 10, dy.dy = 9.5  ->  8 / sqrt(95)
    rho = eval_sts.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(95), abs=1e-15)


def test_spearman_is_rank_based():
    x = np.arange(1.0, 8.0)
    assert eval_sts.spearman(x, np.exp(x)) == pytest.approx(1.0, abs=1e-15)
    assert eval_sts.pearson(x, np.exp(x)) < 0.9


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1, 1, 1], [1, 2, 3], "constant"),
        ([1, 2], [1, 2, 3], "one length"),
        ([1], [2], "at least 2"),
        ([1, float("nan"), 3], [1, 2, 3], "NaN"),
    ],
)
def test_correlation_rejects_bad_samples(x, y, message):
    with pytest.raises(ValueError, match=message):
        eval_sts.spearman(x, y)


# Against scipy --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.oracle  # scipy, the reference
def test_matches_scipy(seed):
    import scipy.stats

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    gold = rng.integers(0, 11, size=n) / 2  # STS-like scores, many ties
    predicted = 0.3 * gold + rng.normal(size=n)
    predicted[: n // 4] = np.round(predicted[: n // 4], 1)  # ties on this side too
    assert eval_sts.spearman(predicted, gold) == pytest.approx(
        scipy.stats.spearmanr(predicted, gold).statistic, abs=1e-12
    )
    assert eval_sts.pearson(predicted, gold) == pytest.approx(
        scipy.stats.pearsonr(predicted, gold).statistic, abs=1e-12
    )
    np.testing.assert_array_equal(eval_sts.rankdata(gold), scipy.stats.rankdata(gold))


# Reading STS CSVs -----------------------------------------------------------------------------


def test_read_sts_csv(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(
        'sentence1,sentence2,score\n"Un chat, noir.",Un chat.,4.5\nA,B,0\n', encoding="utf-8"
    )
    first, second, scores = eval_sts.read_sts_csv(path)
    assert first == ["Un chat, noir.", "A"]
    assert second == ["Un chat.", "B"]
    np.testing.assert_array_equal(scores, [4.5, 0.0])


def test_read_repo_dev_split():
    first, second, scores = eval_sts.read_sts_csv(STSB / "dev.csv")
    assert len(first) == len(second) == len(scores) == 1500
    assert scores.min() >= 0 and scores.max() <= 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,1\na,b\n", r"sts\.csv:2: expected 3 fields"),
        ("a,b,1\na,b,high\n", r"sts\.csv:2: score 'high' is not a number"),
        ("a,b,1\na,b,nan\n", r"sts\.csv:2: score 'nan' is not finite"),
        ("a,b,1\n", "at least 2 sentence pairs"),
    ],
)
def test_read_sts_csv_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "sts.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        eval_sts.read_sts_csv(path)


# Evaluation and command line ------------------------------------------------------------------


class AngleEncoder:
    """Maps the sentence "<degrees>" to the 2-d unit vector at that angle."""

    def encode(self, sentences, batch_size=32):
        angles = np.radians([float(s) for s in sentences])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_evaluate_uses_cosine_of_pairs():
    first = ["0", "0", "90", "10", "45"]
    second = ["0", "60", "210", "100", "50"]  # angle gaps 0, 60, 120, 90, 5
    cosine = np.cos(np.radians([0, 60, 120, 90, 5]))
    gold = np.array([5.0, 2.0, 0.5, 0.0, 4.0])
    result = eval_sts.evaluate(AngleEncoder(), first, second, gold)
    assert result["pairs"] == 5
    assert result["spearman"] == pytest.approx(90.0)  # one swapped pair: 1 - 6*2/(5*24)
    assert result["pearson"] == pytest.approx(100 * np.corrcoef(cosine, gold)[0, 1])


def test_offline_hub_gives_one_line_error(monkeypatch, capsys):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.setattr(hub, "network_problem", lambda: None)  # the Hub answers, then fails
    assert eval_sts.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "PhilipMay/stsb_multi_mt" in err and "--data" in err


@pytest.mark.parametrize(
    ("env", "why"),
    [({"HF_HUB_OFFLINE": "1"}, "offline mode is on"),
     ({"HF_ENDPOINT": "http://127.0.0.1:9"},
      "the Hugging Face Hub cannot be reached (127.0.0.1: Connection refused)")],
)  # fmt: skip
def test_without_data_offline_fails_fast_in_one_line(tmp_path, env, why):
    """No network: one line at once, not huggingface_hub's ~25 s of retries."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), **env}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", *({"HF_HUB_OFFLINE"} - set(env))):  # fmt: skip
        env.pop(name, None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(TOOLS / "eval_sts.py")], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert time.monotonic() - start < 10
    assert result.returncode == 2
    assert result.stderr == (
        "eval_sts.py: error: the STS test split of PhilipMay/stsb_multi_mt is not in the Hugging "
        f"Face cache and {why}: pass --data PATH to an STS CSV such as tests/data/stsb-fr/dev.csv\n"
    )


def test_missing_data_file_gives_one_line_error(tmp_path, capsys):
    assert eval_sts.main(["--data", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"eval_sts.py: error: {tmp_path / 'nope.csv'}: no such file"


def test_missing_model_gives_one_line_error(tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert eval_sts.main(["--model", str(missing), "--data", str(STSB / "dev.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err
