"""flaubert_np/cli.py: the `flaubert-np` console script, run in a subprocess as a user runs it.

Models: the tiny sentence-transformers model of conftest's `sentence_model` and the
transformers-4.x golden model (tests/goldens/sentence_tf4/model), passed with --model PATH.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import place_in_hub_cache

from flaubert_np.arguments import PROGRESS_MIN_TEXTS
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.similarity import cos_sim

SCRIPT = Path(sys.executable).parent / "flaubert-np"
GOLDENS = Path(__file__).parent / "goldens" / "sentence_tf4"
TEXTS = ["Un homme joue de la guitare.", "Une femme coupe des oignons.", "Il pleut sur Paris."]


def run(*args, stdin: str | None = None, env: dict | None = None, cwd=None):
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def assert_one_line_error(result, *fragments: str, code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flaubert-np: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def model(sentence_model):
    path = sentence_model("mean")
    return path, SentenceEncoder.from_pretrained(path)


def test_script_is_installed():
    assert SCRIPT.is_file()
    result = run("--help")
    assert result.returncode == 0 and "encode" in result.stdout and "similarity" in result.stdout


def test_importing_the_cli_is_cheap():
    heavy = "{'numpy', 'huggingface_hub', 'sacremoses', 'safetensors'}"
    code = f"import sys, flaubert_np.cli; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


# ---------------------------------------------------------------------------------------------
# encode


@pytest.mark.oracle
def test_encode_arguments_to_npy(model, tmp_path):
    path, encoder = model
    out = tmp_path / "e.npy"
    result = run("encode", "--model", path, "-o", out, *TEXTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (3, 32)
    np.testing.assert_array_equal(got, encoder.encode(TEXTS))


def test_the_output_format_follows_the_suffix():
    from flaubert_np.cli import UsageError, _output_format

    assert _output_format(None) == "jsonl"  # stdout
    assert _output_format("out/E.NPY") == "npy"
    assert _output_format("e.jsonl") == _output_format("e.ndjson") == "jsonl"
    for name in ("e.txt", "e.json", "embeddings"):
        with pytest.raises(UsageError, match=f"-o {name}: name it .npy"):
            _output_format(name)


@pytest.mark.oracle
def test_encode_to_a_jsonl_file_by_its_name(model, tmp_path):
    path, encoder = model
    out = tmp_path / "e.jsonl"
    result = run("encode", "--model", path, "-o", out, *TEXTS)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in rows] == list(TEXTS)
    np.testing.assert_array_equal(np.array([row["embedding"] for row in rows], np.float32),
                                  encoder.encode(TEXTS))  # fmt: skip


@pytest.mark.oracle
def test_encode_stdin_to_json_lines(model):
    path, encoder = model
    stdin = "\n".join(TEXTS) + "\n"
    result = run("encode", "--model", path, "--normalize", stdin=stdin)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    got = np.array([r["embedding"] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, encoder.encode(TEXTS, normalize_embeddings=True))


@pytest.mark.oracle
def test_encode_file_keeps_one_row_per_line(model, tmp_path):
    path, encoder = model
    lines = [TEXTS[0], "", "  ", TEXTS[1], "a\x0cb"]  # blank lines are texts too: row i is line i
    src = tmp_path / "in.txt"
    src.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    out = tmp_path / "e.npy"
    result = run("encode", "--model", path, "-i", src, "-o", out, "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), encoder.encode(lines, batch_size=3))


def test_token_type_ids_flag(tmp_path):
    """The golden model says transformers 4.x: auto means zeros, and matches the 4.x goldens."""
    sentences = json.loads((GOLDENS / "sentences.json").read_text(encoding="utf-8"))
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    got = {}
    for mode in ("auto", "zeros", "none"):
        out = tmp_path / f"{mode}.npy"
        result = run("encode", "-m", GOLDENS / "model", "-i", src, "-o", out,
                     "--token-type-ids", mode)  # fmt: skip
        assert result.returncode == 0, result.stderr
        got[mode] = np.load(out)
    golden = np.load(GOLDENS / "embeddings.npy")
    assert np.abs(got["auto"] - golden).max() <= 1e-5
    np.testing.assert_array_equal(got["auto"], got["zeros"])
    assert np.abs(got["none"] - golden).max() > 0.5


@pytest.mark.oracle
def test_progress_bar_for_long_input(model):
    path, _ = model
    n = PROGRESS_MIN_TEXTS
    stdin = "\n".join(f"Phrase numéro {i}." for i in range(n)) + "\n"
    long = run("encode", "--model", path, stdin=stdin)
    assert long.returncode == 0, long.stderr
    assert len(long.stdout.splitlines()) == n
    assert "Encoding: 100%" in long.stderr and f"{n}/{n}" in long.stderr
    assert "\r" not in long.stderr and long.stderr.endswith("\n")  # a pipe gets whole lines
    assert run("encode", "--model", path, "--no-progress", stdin=stdin).stderr == ""
    short = run("encode", "--model", path, *TEXTS)
    assert short.stderr == ""
    assert f"{len(TEXTS)}/{len(TEXTS)}" in run("encode", "-m", path, "--progress", *TEXTS).stderr


@pytest.mark.oracle
def test_model_by_hub_id_from_the_cache(model, tmp_path):
    path, encoder = model
    place_in_hub_cache(path, tmp_path / "hub", "org/tiny", "f" * 40)
    out = tmp_path / "e.npy"
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = run("encode", "--model", "org/tiny", "-o", out, *TEXTS, env=env)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), encoder.encode(TEXTS))
    out.unlink()
    flags = ("--cache-dir", tmp_path / "hub", "--offline")
    result = run("encode", "--model", "org/tiny", *flags, "-o", out, *TEXTS)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), encoder.encode(TEXTS))


# ---------------------------------------------------------------------------------------------
# similarity


@pytest.mark.oracle
def test_similarity_json(model):
    path, encoder = model
    result = run("similarity", "--model", path, "--format", "json", *TEXTS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["texts"] == TEXTS
    embeddings = encoder.encode(TEXTS)
    expected = cos_sim(embeddings, embeddings)
    assert np.abs(np.array(data["cosine"]) - expected).max() <= 1e-6


@pytest.mark.oracle
def test_similarity_table(model):
    path, encoder = model
    result = run("similarity", "--model", path, *TEXTS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[: len(TEXTS)] == [f"[{i}] {t}" for i, t in enumerate(TEXTS)]
    table = np.array([[float(x) for x in line.split()[1:]] for line in lines[len(TEXTS) + 1 :]])
    embeddings = encoder.encode(TEXTS)
    assert np.abs(table - cos_sim(embeddings, embeddings)).max() <= 5e-5
    assert np.allclose(np.diag(table), 1.0)


# ---------------------------------------------------------------------------------------------
# Failures: one line, non-zero exit, never a traceback


def test_model_not_found_offline(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = run("encode", "--model", "nobody/no-such-model", "Bonjour.", env=env)
    assert_one_line_error(
        result, f"model 'nobody/no-such-model' is not a local directory nor in the Hugging Face "
        f"cache ({tmp_path}), and offline mode is on: download it once with the network on, or "
        "give a local directory",
    )  # fmt: skip


def test_model_not_found_with_offline_flag(tmp_path):
    result = run("similarity", "-m", "nobody/x", "--cache-dir", tmp_path, "--offline", "a", "b")
    assert_one_line_error(result, "is not a local directory nor in the Hugging Face cache")
    assert "local_files_only" not in result.stderr  # no Python advice in a CLI


def test_missing_model_directory():
    result = run("encode", "-m", "./no/such/dir", "x")
    assert_one_line_error(result, "model directory './no/such/dir' does not exist")


@pytest.mark.oracle
def test_corrupt_safetensors(model, tmp_path):
    import shutil

    path, _ = model
    broken = shutil.copytree(path, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    assert_one_line_error(run("encode", "-m", broken, "x"), "model.safetensors")


def test_corrupt_pytorch_model_bin(tmp_path):
    import shutil

    broken = shutil.copytree(GOLDENS / "model", tmp_path / "broken")
    data = (broken / "pytorch_model.bin").read_bytes()
    (broken / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run("encode", "-m", broken, "x"), "pytorch_model.bin")


@pytest.mark.oracle
@pytest.mark.parametrize("stdin", ["", None])
def test_empty_input(model, tmp_path, stdin):
    path, _ = model
    if stdin is None:
        empty = tmp_path / "empty.txt"
        empty.write_text("")
        result = run("encode", "-m", path, "-i", empty)
        assert_one_line_error(result, f"no texts to encode: '{empty}' is empty")
    else:
        assert_one_line_error(run("encode", "-m", path, stdin=stdin), "no texts to encode: stdin")


@pytest.mark.oracle
def test_missing_input_file(model, tmp_path):
    path, _ = model
    result = run("encode", "-m", path, "-i", tmp_path / "nope.txt")
    assert_one_line_error(result, "input file '", "nope.txt' does not exist")


@pytest.mark.oracle
def test_input_file_not_utf8(model, tmp_path):
    path, _ = model
    src = tmp_path / "latin1.txt"
    src.write_bytes("Un été très chaud.\n".encode("latin-1"))
    assert_one_line_error(run("encode", "-m", path, "-i", src),
                          f"{src}: 1 invalid or blank line(s), nothing embedded: "
                          "line 1: not UTF-8 (byte 3)")  # fmt: skip
    stdin = subprocess.run([str(SCRIPT), "encode", "-m", str(path)], input=b"\xe9t\xe9\n",
                           capture_output=True)  # fmt: skip
    assert stdin.returncode == 1
    assert stdin.stderr.decode().startswith(
        "flaubert-np: error: stdin: 1 invalid or blank line(s), nothing embedded: "
        "line 1: not UTF-8 (byte 0)"
    )


@pytest.mark.oracle
@pytest.mark.parametrize(
    "args, fragment, code",
    [
        (["encode", "a", "-i", "f.txt"], "not both", 2),
        (["encode", "--format", "npy", "a"], "--format npy needs an output file", 2),
        (["encode", "-o", "y.txt", "a"], "-o y.txt: name it .npy (a NumPy array) or .jsonl", 2),
        (["encode", "--batch-size", "0", "a"], "argument --batch-size: must be at least 1", 2),
        (["similarity", "only one"], "at least two texts", 2),
        (["encode", "--token-type-ids", "maybe", "a"], "invalid choice: 'maybe'", 2),
        (["encode", "--batch-size", "many", "a"], "invalid int value: 'many'", 2),
        (["translate", "a"], "invalid choice: 'translate'", 2),
    ],
)
def test_bad_command_lines(model, args, fragment, code):
    path, _ = model
    result = run(*args[:1], "-m", path, *args[1:])
    assert_one_line_error(result, fragment, code=code)


@pytest.mark.oracle
def test_unwritable_output(model, tmp_path):
    path, _ = model
    result = run("encode", "-m", path, "-o", tmp_path / "no" / "dir" / "e.npy", "x")
    assert_one_line_error(result, "cannot write")
