"""tools/parity.py: the stage-by-stage report passes on correct models and names the first
stage that diverges on a model with one weight perturbed."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import parity

TOOL = Path(__file__).parent.parent / "tools" / "parity.py"

N_LAYERS = 2
SENTENCES = ["Le chat dort sur le canapé.", "Où est passée la clé ?", "L'élève a levé la main."]


def with_tokenizer(checkpoint: Path, tokenizer_dir: Path, out: Path) -> Path:
    """A transformers FlauBERT folder: a conftest checkpoint plus a conftest tokenizer."""
    shutil.copytree(checkpoint, out)
    shutil.copytree(tokenizer_dir, out, dirs_exist_ok=True)
    return out


@pytest.fixture(scope="session")
def n_words(tokenizer_dir) -> int:
    return len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, flaubert_checkpoint, tokenizer_dir, n_words) -> Path:
    """A post-norm FlauBERT (2 layers, 32 dims, random weights) with an STS-learned tokenizer."""
    checkpoint = flaubert_checkpoint(vocab_size=n_words, max_position_embeddings=64)
    return with_tokenizer(checkpoint, tokenizer_dir, tmp_path_factory.mktemp("parity") / "tiny")


@pytest.fixture(scope="session")
def perturbed_model(tmp_path_factory, tiny_model) -> Path:
    """A copy of tiny_model with 1e-2 added to one row of layer 1's attention output weight.

    One row (output feature 0), not the whole matrix: adding a constant to every weight shifts
    every feature of a token by the same amount, which the next layer norm removes entirely.
    """
    out = tmp_path_factory.mktemp("parity") / "perturbed"
    shutil.copytree(tiny_model, out)
    weights = safetensors.numpy.load_file(out / "model.safetensors")
    weights["attentions.1.out_lin.weight"][0] += np.float32(1e-2)
    safetensors.numpy.save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300
    )


def test_stage_names_follow_the_forward_pass():
    assert parity.stage_names(1) == [
        "embeddings", "layer.0.attention", "layer.0.layer_norm1", "layer.0.ffn",
        "layer.0.layer_norm2",
    ]  # fmt: skip
    assert len(parity.stage_names(12)) == 1 + 4 * 12


@pytest.mark.oracle
def test_correct_model_passes_every_stage(tiny_model):
    report = parity.parity_report(tiny_model, sentences=SENTENCES)
    stages = ["input_ids", *parity.stage_names(N_LAYERS), "last_hidden_state"]
    assert [r.stage for r in report.rows] == stages
    assert report.first_divergence is None
    for row in report.rows[1:]:
        assert row.max_abs <= 1e-5 and row.min_cos > 0.99999, row
        assert row.max_abs > 0 or row.stage == "embeddings"  # two implementations, not one
    text = report.render()
    assert f"all {len(stages)} stages within tolerance" in text
    assert "no pooled row" in text


@pytest.mark.oracle
def test_sentence_model_passes_with_the_pooled_row_from_the_command_line(sentence_model):
    model = sentence_model()
    result = run_tool(str(model), "--sentence", SENTENCES[0], "--sentence", "Ça va ?")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("pooled ") and line.endswith("ok") for line in lines)
    assert f"all {4 + 4 * N_LAYERS} stages within tolerance" in result.stdout  # + pooled
    assert "2 sentences" in result.stdout


@pytest.mark.oracle
def test_perturbed_weight_fails_and_names_the_first_diverging_stage(tiny_model, perturbed_model):
    result = run_tool(str(perturbed_model), "--reference", str(tiny_model))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first diverging stage: layer.1.attention" in result.stdout

    report = parity.parity_report(perturbed_model, reference=tiny_model, sentences=SENTENCES)
    status = {r.stage: r.ok for r in report.rows}
    assert report.first_divergence == "layer.1.attention"
    assert all(status[s] for s in ["input_ids", "embeddings", *parity.stage_names(1)[1:]])
    assert not status["layer.1.layer_norm1"] and not status["layer.1.layer_norm2"]
    assert not status["last_hidden_state"]


@pytest.mark.oracle
def test_fast_path_divergence_is_named_when_every_traced_stage_agrees(tiny_model, monkeypatch):
    from flaubert_np import fast

    forward = fast.forward

    def off_by_a_little(*args):  # the fast forward, wrong in one feature of every token
        out = forward(*args)
        out[..., 0] += np.float32(1e-3)
        return out

    monkeypatch.setattr(fast, "forward", off_by_a_little)
    report = parity.parity_report(tiny_model, sentences=SENTENCES)
    assert report.first_divergence == "last_hidden_state"
    assert [r.stage for r in report.rows if not r.ok] == ["last_hidden_state"]


@pytest.mark.oracle
def test_tokenizer_difference_is_the_first_stage(tmp_path, tiny_model):
    ours = tmp_path / "other-merges"
    shutil.copytree(tiny_model, ours)
    merges = (tiny_model / "merges.txt").read_text(encoding="utf-8").splitlines()
    (ours / "merges.txt").write_text("\n".join(merges[:20]) + "\n", encoding="utf-8")
    report = parity.parity_report(ours, reference=tiny_model, sentences=SENTENCES)
    assert report.first_divergence == "input_ids"
    assert "differ in 3 of 3 sentences" in report.render()
    # The model stages still run on the reference's ids, and still agree.
    assert all(r.ok for r in report.rows[1:])


@pytest.mark.oracle
def test_pre_norm_model_says_why_in_one_line(tmp_path, flaubert_checkpoint, tokenizer_dir, n_words):
    checkpoint = flaubert_checkpoint(vocab_size=n_words, max_position_embeddings=64, pre_norm=True)
    model = with_tokenizer(checkpoint, tokenizer_dir, tmp_path / "pre-norm")
    result = run_tool(str(model))
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message and "pre_norm" in message and "transformers" in message


def test_compare_metrics():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    ours = np.array([[1.0, 0.0], [0.0, -2.0]], dtype=np.float32)
    row = parity.compare("x", ours, ref, tolerance=1e-5)
    assert (row.max_abs, row.max_rel, row.min_cos, row.ok) == (4.0, 2.0, -1.0, False)
    assert parity.compare("x", ref, ref, tolerance=0.0).ok
    nan_row = parity.compare("x", np.full_like(ref, np.nan), ref, tolerance=1.0)
    assert not nan_row.ok
    shape_row = parity.compare("x", ref[:1], ref, tolerance=1.0)
    assert not shape_row.ok and "shapes differ" in shape_row.note


@pytest.mark.oracle  # the tool checks its oracles first
def test_bad_arguments_are_one_line_errors(tmp_path):
    result = run_tool(str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.oracle
def test_trace_records_every_stage_and_changes_nothing(tiny_model):
    from flaubert_np.model import FlaubertModel

    model = FlaubertModel.from_pretrained(tiny_model)
    ids = np.array([[0, 40, 41, 42, 1], [0, 43, 1, 2, 2]])
    mask = (ids != 2).astype(np.int64)
    plain = model(ids, attention_mask=mask)
    trace: dict[str, np.ndarray] = {}
    traced = model(ids, attention_mask=mask, output_hidden_states=True, trace=trace)
    assert list(trace) == parity.stage_names(N_LAYERS)
    assert all(v.shape == (2, 5, 32) and v.dtype == np.float32 for v in trace.values())
    np.testing.assert_allclose(traced.last_hidden_state, plain.last_hidden_state, atol=1e-5)
    for i in range(N_LAYERS):  # layer_norm2's output, masked, is the next hidden state
        np.testing.assert_array_equal(
            trace[f"layer.{i}.layer_norm2"] * mask[..., None], traced.hidden_states[i + 1]
        )
    assert model(ids, attention_mask=mask, trace=None).hidden_states is None


@pytest.mark.oracle  # the other two oracles are there
@pytest.mark.parametrize("blocked", ["torch", "transformers", "sentence_transformers"])
def test_a_missing_oracle_is_one_line_saying_what_to_install(blocked, model="demo"):
    """Run as without it installed: the import of `blocked` fails."""
    code = (
        f"import runpy, sys; sys.modules[{blocked!r}] = None; sys.argv = ['parity.py', {model!r}];"
        f" sys.path.insert(0, {str(TOOL.parent)!r});"  # as `python tools/parity.py` has it
        f" runpy.run_path({str(TOOL)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # (before it, transformers may have drawn its "Loading weights" bar)
    assert result.stderr.splitlines()[-1] == (
        f"parity: error: needs {blocked} (a parity oracle), not installed here: "
        'pip install "flaubert-np[test]"'
    )
