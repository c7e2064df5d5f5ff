"""flaubert-np's outputs, exit codes, progress and line rules, in every mode (issue 14).

Run in a subprocess as a user runs it, with the embedded demo model: no oracle needed. The modes:
texts as arguments, stdin or -i FILE into JSON lines or an in-memory .npy, and -i FILE -o OUT.npy
streamed (flaubert_np/stream.py).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import read_sts_sentences

SCRIPT = Path(sys.executable).parent / "flaubert-np"
TEXTS = ["Un homme joue de la guitare.", "Une femme coupe des oignons.", "Il pleut sur Paris."]


def run(*args, stdin: bytes | None = None, env: dict | None = None):
    return subprocess.run([str(SCRIPT), *map(str, args)], input=stdin, capture_output=True,
                          env={**os.environ, **(env or {})})  # fmt: skip


def error_line(result) -> str:
    """The one line a failure prints (no traceback, nothing on stdout)."""
    stderr = result.stderr.decode()
    assert result.stdout == b"" and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("flaubert-np: error: ") and stderr.endswith("\n")
    return stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """2,000 STS sentences, one per line."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join(s + "\n" for s in read_sts_sentences("dev")[:2000]), "utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# No output replaced without --overwrite, in every mode


MODES = {
    "arguments to npy": (["encode", *TEXTS, "-o", "{out}"], "out.npy", None),
    "arguments to a jsonl file": (
        ["encode", *TEXTS, "--format", "jsonl", "-o", "{out}"],
        "out.jsonl",
        None,
    ),
    "stdin to npy": (["encode", "-o", "{out}"], "out.npy", "\n".join(TEXTS).encode()),
    "file to a jsonl file": (
        ["encode", "-i", "{src}", "--format", "jsonl", "-o", "{out}"],
        "out.jsonl",
        None,
    ),
    "file to npy, streamed": (["encode", "-i", "{src}", "-o", "{out}"], "out.npy", None),
    "attention": (["attention", TEXTS[0], "-o", "{out}"], "out.svg", None),
}


@pytest.mark.parametrize("mode", MODES)
def test_an_existing_output_needs_overwrite(tmp_path, mode):
    args, name, stdin = MODES[mode]
    src, out = tmp_path / "in.txt", tmp_path / name
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out.write_bytes(b"precious")
    args = [a.format(src=src, out=out) for a in args]
    refused = run(*args, stdin=stdin)
    assert refused.returncode == 1
    assert f"{out} exists; pass --overwrite to replace it" in error_line(refused)
    assert out.read_bytes() == b"precious"
    done = run(*args, "--overwrite", stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() != b"precious" and out.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.txt", name])  # no .tmp


def test_a_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "out.npy"
    out.mkdir()  # a directory where the file should go: the rename fails
    result = run("encode", *TEXTS, "-o", out, "--overwrite")
    assert result.returncode == 1 and "cannot write" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"] and out.is_dir()


# ---------------------------------------------------------------------------------------------
# Exit codes: a wrong command line exits 2, naming the flag


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["encode", "--batch-size", "0", "a"], "argument --batch-size: must be at least 1, got 0"),
        (
            ["encode", "-i", "x.txt", "-o", "x.npy", "--workers", "0"],
            "argument --workers: must be at least 1, got 0",
        ),
        (
            ["encode", "-i", "x.txt", "-o", "x.npy", "--chunk-lines", "-3"],
            "argument --chunk-lines: must be at least 1, got -3",
        ),
        (["encode", "--workers", "2", "a"], "--workers needs -i FILE and -o OUT.npy"),
        (["encode", "--chunk-lines", "9", "a"], "--chunk-lines needs -i FILE and -o OUT.npy"),
        (["encode", "-i", "x.txt", "--id-field", "id"], "--id-field needs --field"),
        (["encode", "--on-invalid", "skip", "a"], "--on-invalid applies to the lines of -i FILE"),
        (["encode", "a", "-i", "x.txt"], "give texts as arguments or with --input, not both"),
        (["similarity", "seul"], "similarity needs at least two texts"),
        (["attention", "a", "-o", "-", "--columns", "0"], "argument --columns: must be at least 1"),
        (["attention", "a", "-o", "-", "--layer", "9"], "--layer 9 out of range"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, fragment):
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert fragment in error_line(result)
    assert "workers must" not in result.stderr.decode()  # flags, not Python parameter names


# ---------------------------------------------------------------------------------------------
# Invalid lines: line numbers and the same rules in every mode


BAD = b"Un.\n\nDeux.\ncaf\xe9\nTrois.\n"  # line 2 blank, line 4 not UTF-8


@pytest.mark.parametrize("where", ["stdin", "file"])
def test_json_lines_output_names_invalid_lines(tmp_path, where):
    src = tmp_path / "in.txt"
    src.write_bytes(BAD)
    args, stdin = (["-i", src], None) if where == "file" else ([], BAD)
    result = run("encode", *args, stdin=stdin)
    assert result.returncode == 1
    line = error_line(result)
    name = "stdin" if where == "stdin" else str(src)
    assert (
        f"{name}: 1 invalid or blank line(s), nothing embedded: line 4: not UTF-8 (byte 3). "
        "Fix them, or choose another rule (--on-invalid skip)\n"
    ) in line
    assert "--on-blank" not in line  # keep is the default already

    skipped = run("encode", *args, "--on-invalid", "skip", stdin=stdin)
    assert skipped.returncode == 0, skipped.stderr
    rows = [json.loads(r) for r in skipped.stdout.decode().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [(1, "Un."), (2, ""), (3, "Deux."),
                                                    (5, "Trois.")]  # fmt: skip
    notes = skipped.stderr.decode()
    assert "1 blank text(s) embedded in place (line 2)" in notes
    assert "1 line(s) skipped: line 4: not UTF-8 (byte 3)" in notes

    blank = run("encode", *args, "--on-blank", "error", stdin=stdin)
    assert (
        "line 2: blank line; line 4: not UTF-8 (byte 3). Fix them, or choose another rule "
        "(--on-invalid skip, --on-blank keep or skip)" in error_line(blank)
    )


def test_same_rules_and_files_for_npy_from_stdin_and_from_a_file(tmp_path):
    """In memory (stdin) and streamed (-i FILE): the same rows, ids and skipped lines."""
    src = tmp_path / "in.txt"
    src.write_bytes(BAD)
    rules = ["--on-invalid", "skip", "--on-blank", "skip"]
    memory = run("encode", "-o", tmp_path / "memory.npy", *rules, stdin=BAD)
    streamed = run("encode", "-i", src, "-o", tmp_path / "streamed.npy", *rules, "--no-progress")
    assert memory.returncode == streamed.returncode == 0, (memory.stderr, streamed.stderr)
    for suffix in (".npy", ".ids.jsonl", ".skipped.jsonl"):
        got = (tmp_path / f"memory{suffix}").read_bytes()
        assert got == (tmp_path / f"streamed{suffix}").read_bytes(), suffix
    assert (tmp_path / "memory.ids.jsonl").read_text() == "1\n3\n5\n"
    assert np.load(tmp_path / "memory.npy").shape[0] == 3


def test_json_lines_input_with_ids_from_stdin(tmp_path):
    data = b'{"id": "a", "t": "Oui."}\n{"id": "b"}\n{"id": "c", "t": "Non."}\n'
    result = run("encode", "--field", "t", "--id-field", "id", "--on-invalid", "skip",
                 stdin=data)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(r) for r in result.stdout.decode().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [("a", "Oui."), ("c", "Non.")]
    assert "line 2: no field 't'" in result.stderr.decode()


# ---------------------------------------------------------------------------------------------
# Progress in a log, interruption, resume


def test_progress_in_a_pipe_is_whole_lines(tmp_path, corpus):
    env = {"TQDM_MININTERVAL": "0"}  # a line at every update
    out = tmp_path / "e.npy"
    streamed = run("encode", "-i", corpus, "-o", out, "--chunk-lines", "500", env=env)
    assert streamed.returncode == 0, streamed.stderr
    lines = streamed.stderr.decode().splitlines(keepends=True)
    assert len(lines) == 4 and "\r" not in streamed.stderr.decode()
    assert all(line.startswith("Encoding: ") and line.endswith(" 0 skipped, 0 blank]\n")
               for line in lines)  # fmt: skip
    assert lines[-1].startswith("Encoding: 100%") and "2,000 rows" in lines[-1]

    stdin = "".join(f"Phrase numéro {i}.\n" for i in range(300)).encode()
    jsonl = run("encode", "--progress", stdin=stdin, env=env)
    assert jsonl.returncode == 0 and len(jsonl.stdout.splitlines()) == 300
    progress = jsonl.stderr.decode()
    assert "\r" not in progress and progress.endswith("\n")
    assert all(line.startswith("Encoding: ") for line in progress.splitlines())
    assert "| 300/300 [" in progress.splitlines()[-1]


def wait_for_chunks(process: subprocess.Popen, checkpoint: Path, chunks: int) -> None:
    """Until a streamed run has saved `chunks` chunks; it must still be running then."""
    deadline = time.monotonic() + 120
    while not (checkpoint.exists() and json.loads(checkpoint.read_text())["chunks"] >= chunks):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)


def test_ctrl_c_then_the_same_command_resumes(tmp_path, corpus):
    full = tmp_path / "full.npy"
    assert run("encode", "-i", corpus, "-o", full, "--chunk-lines", 50).returncode == 0
    out, checkpoint = tmp_path / "e.npy", tmp_path / "e.npy.partial" / "checkpoint.json"
    command = [str(SCRIPT), "encode", "-i", str(corpus), "-o", str(out), "--chunk-lines", "50"]
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    wait_for_chunks(process, checkpoint, 2)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 130, stderr
    lines = stderr.splitlines(keepends=True)
    assert "\r" not in stderr and all(line.startswith("Encoding: ") for line in lines[:-1])
    assert lines[-1] == (
        "flaubert-np: error: interrupted (the work done is kept in "
        f"{out}.partial: run the same command again to resume)\n"
    )
    rows = json.loads(checkpoint.read_text())["rows"]
    assert 100 <= rows < 2000 and not out.exists()

    again = run(*command[1:])
    assert again.returncode == 0, again.stderr
    first = again.stderr.decode().splitlines()[0]
    assert first.startswith(f"resuming at row {rows + 1:,} of e.npy (input line {rows + 1:,} "
                            "of corpus.txt, ")  # fmt: skip
    assert first.endswith("% done before)")
    assert out.read_bytes() == full.read_bytes()


def test_on_a_terminal_the_bar_line_ends_before_the_interrupted_error(tmp_path, corpus):
    """stderr on a pseudo-terminal: tqdm's bar (carriage returns), then Ctrl-C: the error line
    starts at the beginning of a line, not at the end of the bar."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    out, checkpoint = tmp_path / "e.npy", tmp_path / "e.npy.partial" / "checkpoint.json"
    command = [str(SCRIPT), "encode", "-i", str(corpus), "-o", str(out), "--chunk-lines", "50"]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 160 columns
    process = subprocess.Popen(command, stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    shown = bytearray()

    def drain():  # the terminal must be read, or the run blocks on a full buffer
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the process is gone
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    wait_for_chunks(process, checkpoint, 2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    reader.join(timeout=10)
    os.close(leader)
    text = shown.decode()
    assert "\rEncoding: " in text and " rows/s, 0 skipped, 0 blank]" in text
    before, error = text.split("flaubert-np: error: interrupted", 1)
    assert before.endswith("\n"), repr(before[-200:])
    assert "e.npy.partial: run the same command again to resume" in error
