"""The CLI's --version, `python -m flaubert_np`, `similarity -i FILE`, --prompt, --prompt-name and
--max-seq-length, run in a subprocess as a user runs them; embeddings against
sentence-transformers 6 on the same model and options."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

import flaubert_np

pytestmark = pytest.mark.oracle

SCRIPT = Path(sys.executable).parent / "flaubert-np"
TEXTS = [
    "Un homme joue de la guitare devant une foule nombreuse.",
    "Une femme coupe des oignons.",
    "Il pleut sur Paris depuis ce matin, et les rues sont désertes.",
]
PROMPTS = {"query": "question : ", "document": "passage : "}
TOL = 1e-5


def run(*args, stdin: str | None = None, module: bool = False):
    command = [sys.executable, "-m", "flaubert_np"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *map(str, args)], input=stdin, capture_output=True, text=True,
        env=dict(os.environ), timeout=300,
    )  # fmt: skip


def assert_one_line_error(result, *fragments: str, code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flaubert-np: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def model(sentence_model):
    path = sentence_model("mean", prompts=PROMPTS)
    return path, SentenceTransformer(str(path), device="cpu")


def test_version():
    for module in (False, True):
        result = run("--version", module=module)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"flaubert-np {flaubert_np.__version__}\n"


def test_python_m_flaubert_np_is_the_command(model, tmp_path):
    path, _ = model
    run("encode", *TEXTS, "-m", path, "-o", tmp_path / "script.npy")
    result = run("encode", *TEXTS, "-m", path, "-o", tmp_path / "module.npy", module=True)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "module.npy"), np.load(tmp_path / "script.npy"))
    assert_one_line_error(run("encode", "x", "-m", "Demo", module=True), "did you mean 'demo'")


def test_similarity_reads_a_file(model, tmp_path):
    path, _ = model
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    from_file = run("similarity", "-i", texts_file, "-m", path, "--format", "json")
    from_args = run("similarity", *TEXTS, "-m", path, "--format", "json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout) == json.loads(from_args.stdout)
    assert json.loads(from_file.stdout)["texts"] == TEXTS
    from_stdin = run("similarity", "-i", "-", "-m", path, stdin="\n".join(TEXTS))
    assert from_stdin.stdout == run("similarity", *TEXTS, "-m", path).stdout
    (tmp_path / "one.txt").write_text("Une seule phrase.\n", encoding="utf-8")
    assert_one_line_error(run("similarity", "-i", tmp_path / "one.txt", "-m", path), "two texts")
    assert_one_line_error(run("similarity", "-i", tmp_path / "no.txt"), "does not exist")
    assert_one_line_error(run("similarity", "a", "b", "-i", texts_file), "not both", code=2)


@pytest.mark.parametrize(
    ("flags", "encode_kwargs", "max_seq_length"),
    [
        (["--prompt-name", "query"], {"prompt_name": "query"}, None),
        (["--prompt", "requête : "], {"prompt": "requête : "}, None),
        (["--max-seq-length", "6"], {}, 6),
        (["--prompt-name", "document", "--max-seq-length", "9"], {"prompt_name": "document"}, 9),
    ],
)
@pytest.mark.parametrize("mode", ["npy", "jsonl", "streamed"])
def test_prompt_and_max_seq_length_match_sentence_transformers(
    model, tmp_path, flags, encode_kwargs, max_seq_length, mode
):
    path, reference = model
    reference.max_seq_length = max_seq_length or 32
    expected = reference.encode(TEXTS, **encode_kwargs)
    out = tmp_path / "out.npy"
    if mode == "streamed":  # -i FILE -o OUT.npy: flaubert_np/stream.py
        (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
        result = run("encode", "-i", tmp_path / "in.txt", "-o", out, "-m", path, *flags)
    else:
        result = run("encode", *TEXTS, "-m", path, *flags, *(["-o", out] if mode == "npy" else []))
    assert result.returncode == 0, result.stderr
    if mode == "jsonl":
        got = np.array([json.loads(line)["embedding"] for line in result.stdout.splitlines()])
    else:
        got = np.load(out)
    assert np.max(np.abs(got - expected)) <= TOL
    plain = reference.encode(TEXTS) if max_seq_length is None else None
    if plain is not None:  # the option made a difference
        assert np.max(np.abs(got - plain)) > 0.01


@pytest.mark.parametrize("mode", [[], ["-i", "IN", "-o", "OUT"]])
def test_bad_prompt_and_max_seq_length(model, tmp_path, mode):
    path, _ = model
    (tmp_path / "in.txt").write_text("a\nb\n", encoding="utf-8")
    mode = [str(tmp_path / "in.txt") if a == "IN" else str(tmp_path / "o.npy") if a == "OUT"
            else a for a in mode] or ["a", "b"]  # fmt: skip
    assert_one_line_error(
        run("encode", *mode, "-m", path, "--prompt-name", "passage"),
        "--prompt-name passage: not one of the model's prompts (document, query)",
    )
    for length in ("0", "65"):
        assert_one_line_error(
            run("encode", *mode, "-m", path, "--max-seq-length", length),
            f"--max-seq-length must be from 1 to the model's max_position_embeddings (64), "
            f"got {length}",
        )
    assert not (tmp_path / "o.npy").exists()
    assert_one_line_error(
        run("similarity", "a", "b", "--prompt", "q: ", "--prompt-name", "query"),
        "--prompt-name: not allowed with argument --prompt",
        code=2,
    )
