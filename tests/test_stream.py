"""flaubert_np/stream.py: streaming a corpus into a chunked, resumable .npy file.

The reference for every output is the encoder itself, called on the same chunks of the same lines:
an interrupted and resumed run, a run with 2 worker processes and a run killed with SIGKILL must
all give files byte-identical to an uninterrupted single-process run.
"""

import io
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from flaubert_np import stream
from flaubert_np.embedding_function import EmbeddingFunction
from flaubert_np.lines import StreamError
from flaubert_np.stream import encode_file
from flaubert_np.workers import WorkerError

CHUNK = 64


@pytest.fixture(scope="module")
def fn():
    """The embedded demo model: the reference of every output here is the encoder itself."""
    return EmbeddingFunction("demo", batch_size=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, stsb_sentences):
    """A text file of 300 STS sentences, one per line."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("".join(s + "\n" for s in stsb_sentences[:300]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, fn):
    """An uninterrupted single-process run of `corpus`: (bytes of the .npy, its array)."""
    out = tmp_path_factory.mktemp("reference") / "emb.npy"
    summary = encode_file(corpus, out, fn, chunk_lines=CHUNK)
    assert summary.rows == 300 and summary.skipped == 0 and summary.outputs == [out]
    assert not (out.parent / "emb.npy.partial").exists()  # the work dir is gone
    return out.read_bytes(), np.load(out)


def by_chunks(fn, texts, size=CHUNK):
    return np.concatenate([fn(texts[i : i + size]) for i in range(0, len(texts), size)])


def test_output_is_the_encoder_on_each_chunk(reference, corpus, fn):
    data, embeddings = reference
    texts = corpus.read_text(encoding="utf-8").splitlines()
    np.testing.assert_array_equal(embeddings, by_chunks(fn, texts))
    # A plain .npy: the same bytes np.save writes, and memory-mappable.
    buffer = io.BytesIO()
    np.save(buffer, embeddings)
    assert buffer.getvalue() == data
    # Chunking changes how sentences are batched (padding), not what they mean:
    np.testing.assert_allclose(embeddings, fn(texts), rtol=0, atol=1e-5)


def test_default_rules_keep_blank_texts_in_place(tmp_path, fn):
    lines = ["Une phrase.", "", "Deux.", "   ", "Trois."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = encode_file(src, tmp_path / "emb.npy", fn)
    assert (summary.rows, summary.blank, summary.blank_lines) == (5, 2, [2, 4])
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), fn.encoder.encode(lines))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "in.txt"]  # no sidecars


def test_error_rule_names_every_bad_line_before_embedding(tmp_path, fn):
    src = tmp_path / "in.txt"
    src.write_bytes(b"Une phrase.\n\nDeux.\ncaf\xe9\n   \nTrois.\n")
    out = tmp_path / "emb.npy"
    with pytest.raises(
        StreamError,
        match=r"1 invalid or blank line\(s\), nothing embedded: "
        r"line 4: not UTF-8 \(byte 3\)\. .*--on-invalid skip",
    ):
        encode_file(src, out, fn)
    with pytest.raises(
        StreamError,
        match=r"3 invalid or blank line\(s\).*: line 2: blank line; "
        r"line 4: not UTF-8 \(byte 3\); line 5: blank line\.",
    ):
        encode_file(src, out, fn, on_blank="error")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # nothing written


def test_skip_rule_keeps_ids_aligned(tmp_path, fn, stsb_sentences):
    lines, kept, bad = [], [], []  # kept: (line number, id, text) of the valid lines
    for number, sentence in enumerate(stsb_sentences[:150], start=1):
        if number % 37 == 5:
            lines.append(json.dumps({"text": "", "id": f"s{number}"}))
            bad.append({"line": number, "reason": "field 'text' is blank"})
        elif number % 41 == 7:
            lines.append("{not json")
            bad.append(
                {
                    "line": number,
                    "reason": "invalid JSON (Expecting property name "
                    "enclosed in double quotes at column 2)",
                }
            )
        else:
            lines.append(json.dumps({"id": f"s{number}", "text": sentence}, ensure_ascii=False))
            kept.append((number, f"s{number}", sentence))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    summary = encode_file(
        src,
        out,
        fn,
        field="text",
        id_field="id",
        on_invalid="skip",
        on_blank="skip",
        chunk_lines=50,
    )
    assert summary.rows == len(kept) and summary.skipped == len(bad) == 150 - len(kept)
    skipped = [json.loads(line) for line in (tmp_path / "emb.skipped.jsonl").open()]
    assert skipped == bad
    got_ids = [json.loads(line) for line in (tmp_path / "emb.ids.jsonl").open()]
    assert got_ids == [ident for _, ident, _ in kept]
    # Each chunk is 50 input lines; its valid sentences are embedded together.
    want = [fn([t for n, _, t in kept if start < n <= start + 50]) for start in (0, 50, 100)]
    np.testing.assert_array_equal(np.load(out), np.concatenate(want))


def test_skip_rule_on_text_input_writes_line_numbers(tmp_path, fn):
    src = tmp_path / "in.txt"
    src.write_text("Un.\n\n \n\nDeux.\nTrois.", encoding="utf-8")  # no final newline
    out = tmp_path / "emb.npy"
    encode_file(src, out, fn, on_blank="skip", chunk_lines=2)  # chunk 2: lines 3-4, no row
    assert (tmp_path / "emb.ids.jsonl").read_text() == "1\n5\n6\n"
    assert [json.loads(x) for x in (tmp_path / "emb.skipped.jsonl").open()] == [
        {"line": n, "reason": "blank line"} for n in (2, 3, 4)
    ]
    want = np.concatenate([fn(["Un."]), fn(["Deux.", "Trois."])])
    np.testing.assert_array_equal(np.load(out), want)


class Interrupting(EmbeddingFunction):
    """Raises KeyboardInterrupt (a Ctrl-C) on its n-th call; its options are fn's."""

    calls = 0

    def __call__(self, texts):
        Interrupting.calls += 1
        if Interrupting.calls == 3:
            raise KeyboardInterrupt
        return super().__call__(texts)


def test_interrupt_then_resume_gives_the_same_file(tmp_path, corpus, fn, reference):
    out = tmp_path / "emb.npy"
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        encode_file(corpus, out, Interrupting(**fn.options()), chunk_lines=CHUNK)
    work = tmp_path / "emb.npy.partial"
    assert json.loads((work / "checkpoint.json").read_text()) == {
        "chunks": 2,
        "rows": 2 * CHUNK,
        "lines": 2 * CHUNK,
        "skipped": 0,
        "blank": 0,
        "offset": len(b"".join(corpus.read_bytes().splitlines(keepends=True)[: 2 * CHUNK])),
    }
    assert not out.exists()
    summary = encode_file(corpus, out, fn, chunk_lines=CHUNK)
    assert summary.resumed_rows == 2 * CHUNK and summary.rows == 300
    assert out.read_bytes() == reference[0]
    assert not work.exists()


def test_the_same_command_with_overwrite_resumes_too(tmp_path, corpus, fn, reference):
    """A command with --overwrite, run again after Ctrl-C, resumes its own work as any other."""
    out = tmp_path / "emb.npy"
    out.write_bytes(b"old")
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        encode_file(corpus, out, Interrupting(**fn.options()), chunk_lines=CHUNK, overwrite=True)
    summary = encode_file(corpus, out, fn, chunk_lines=CHUNK, overwrite=True)
    assert summary.resumed_rows == 2 * CHUNK and out.read_bytes() == reference[0]


def test_resume_refuses_other_options_or_input(tmp_path, corpus, fn):
    src, out = tmp_path / "corpus.txt", tmp_path / "emb.npy"
    src.write_bytes(corpus.read_bytes())
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        encode_file(src, out, Interrupting(**fn.options()), chunk_lines=CHUNK)
    other = EmbeddingFunction(fn.model, batch_size=16)
    with pytest.raises(StreamError, match=r"model\.batch_size was 8, now 16.*--overwrite"):
        encode_file(src, out, other, chunk_lines=CHUNK)
    with pytest.raises(StreamError, match=r"options\.chunk_lines was 64, now 32"):
        encode_file(src, out, fn, chunk_lines=32)
    with src.open("a", encoding="utf-8") as f:
        f.write("Une phrase de plus.\n")
    with pytest.raises(StreamError, match=r"input\.size was \d+, now \d+"):
        encode_file(src, out, fn, chunk_lines=CHUNK)
    summary = encode_file(src, out, other, chunk_lines=CHUNK, overwrite=True)
    assert summary.resumed_rows == 0 and summary.rows == 301


def test_existing_output_needs_overwrite(tmp_path, fn):
    src = tmp_path / "in.txt"
    src.write_text("Un.\nDeux.\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    out.write_bytes(b"precious")
    with pytest.raises(StreamError, match=r"emb\.npy exists; pass --overwrite"):
        encode_file(src, out, fn)
    assert out.read_bytes() == b"precious"
    encode_file(src, out, fn, overwrite=True)
    np.testing.assert_array_equal(np.load(out), fn(["Un.", "Deux."]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"src": "missing.txt"}, "missing.txt: no such file"),
        ({"out": "no/such/dir/emb.npy"}, "no such directory"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"chunk_lines": 0}, "chunk_lines must be an integer >= 1"),
        ({"on_invalid": "keep"}, "on_invalid must be one of"),
        ({"on_blank": "ignore"}, "on_blank must be one of"),
        ({"id_field": "id"}, "id_field needs JSON lines input"),
    ],
)
def test_bad_arguments_are_named(tmp_path, fn, kwargs, message):
    (tmp_path / "in.txt").write_text("Un.\n", encoding="utf-8")
    src = tmp_path / kwargs.pop("src", "in.txt")
    out = tmp_path / kwargs.pop("out", "emb.npy")
    with pytest.raises(StreamError, match=message):
        encode_file(src, out, fn, **kwargs)


def test_all_lines_skipped_is_an_error(tmp_path, fn):
    src = tmp_path / "in.txt"
    src.write_text("\n\n", encoding="utf-8")
    with pytest.raises(StreamError, match="no text to embed \\(2 lines skipped\\)"):
        encode_file(src, tmp_path / "emb.npy", fn, on_blank="skip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_a_second_run_on_the_same_work_dir_is_refused(tmp_path, corpus, fn):
    out = tmp_path / "emb.npy"
    with stream._locked(tmp_path / "emb.npy.partial"), pytest.raises(StreamError, match="in use"):
        encode_file(corpus, out, fn)


def test_two_workers_give_the_same_file(tmp_path, corpus, fn, reference):
    out = tmp_path / "emb.npy"
    encode_file(corpus, out, fn, chunk_lines=CHUNK, workers=2)
    assert out.read_bytes() == reference[0]


class Dying(EmbeddingFunction):
    """Its process is killed (SIGKILL, as by the OOM killer) when a chunk holds "KILL"."""

    def __call__(self, texts):
        if "KILL" in texts:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(texts)


def test_a_killed_worker_stops_the_run_which_then_resumes(tmp_path, fn, stsb_sentences):
    lines = [*stsb_sentences[:150], "KILL", *stsb_sentences[150:200]]  # "KILL": chunk 2
    src, out = tmp_path / "corpus.txt", tmp_path / "emb.npy"
    src.write_text("".join(s + "\n" for s in lines), "utf-8")
    with pytest.raises(WorkerError, match=r"worker process \d+ died \(exit code -9\)"):
        encode_file(src, out, Dying(**fn.options()), chunk_lines=CHUNK, workers=2)
    checkpoint = tmp_path / "emb.npy.partial" / "checkpoint.json"  # absent if none finished
    saved = json.loads(checkpoint.read_text())["chunks"] if checkpoint.exists() else 0
    assert saved <= 2 and not out.exists()
    summary = encode_file(src, out, fn, chunk_lines=CHUNK, workers=2)
    assert summary.resumed_rows == saved * CHUNK  # the saved chunks were kept, not redone
    np.testing.assert_array_equal(np.load(out), by_chunks(fn, lines))


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_ends_its_line_when_interrupted(
    tmp_path, corpus, fn, monkeypatch
):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        encode_file(
            corpus,
            tmp_path / "emb.npy",
            Interrupting(**fn.options()),
            chunk_lines=CHUNK,
            progress=True,
        )
    shown = terminal.getvalue()
    assert "\r" in shown and "Encoding:" in shown and "128 rows" in shown
    assert shown.endswith("\n")  # whatever is printed next starts on a line of its own


def test_resume_is_announced(tmp_path, corpus, fn, capsys):
    out = tmp_path / "emb.npy"
    Interrupting.calls = 0
    with pytest.raises(KeyboardInterrupt):
        encode_file(corpus, out, Interrupting(**fn.options()), chunk_lines=CHUNK)
    assert capsys.readouterr().err == ""
    done = len(b"".join(corpus.read_bytes().splitlines(keepends=True)[: 2 * CHUNK]))
    share = done / corpus.stat().st_size
    encode_file(corpus, out, fn, chunk_lines=CHUNK)
    assert capsys.readouterr().err == (
        f"resuming at row 129 of emb.npy (input line 129 of corpus.txt, {share:.0%} done before)\n"
    )


# ---------------------------------------------------------------------------------------------
# The command line: `flaubert-np encode -i FILE -o OUT.npy` streams through encode_file.


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "flaubert_np.cli", "encode", *map(str, args)],
        capture_output=True,
        text=True,
    )


# Runs the CLI in-process, writing the name of every file renamed into place (each file of the work
# dir is written under a temporary name, then renamed) to the pipe FD; after the n-th rename onto
# NAME it writes "stopped" and waits to be killed: the kill lands at that point, however fast or
# slow the machine.
RECORD_RENAMES = """
import os, sys, time
fd, name, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
replace, seen = os.replace, []
def replace_and_record(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    os.write(fd, os.path.basename(dst).encode() + b"\\n")
    if os.path.basename(dst) == name:
        seen.append(dst)
        if len(seen) == n:
            os.write(fd, b"stopped\\n")
            time.sleep(600)
os.replace = replace_and_record
from flaubert_np.cli import main
sys.exit(main(sys.argv[4:]))
"""


def cli_recording_renames(*args, stop_at: tuple[str, int] = ("", 0)):
    """Start `flaubert-np encode *args` under RECORD_RENAMES: (the process, the pipe's read end
    as a binary file)."""
    read_end, write_end = os.pipe()
    name, n = stop_at
    command = [sys.executable, "-c", RECORD_RENAMES, str(write_end), name, str(n), "encode",
               *map(str, args)]  # fmt: skip
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, pass_fds=(write_end,))
    os.close(write_end)
    return run, os.fdopen(read_end, "rb")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fn, stsb_sentences):
    """(CLI options for a 300-line corpus in 6 chunks, the bytes of its uninterrupted run)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    src = folder / "corpus.txt"
    src.write_text("".join(s + "\n" for s in stsb_sentences[:300]), encoding="utf-8")
    options = ["-m", fn.model, "-i", src, "--batch-size", fn.batch_size, "--chunk-lines", 50,
               "--no-progress"]  # fmt: skip
    full = cli(*options, "-o", folder / "full.npy")
    assert full.returncode == 0, full.stderr
    return options, (folder / "full.npy").read_bytes()


@pytest.mark.parametrize(
    "stop_at",
    [("checkpoint.json", 3), ("chunk-000003.npy", 1), ("chunk-000003.json", 1)],
    ids=["after-checkpoint-3", "chunk-4-embeddings-saved", "chunk-4-saved-not-recorded"],
)
def test_sigkill_then_rerun_gives_the_same_file(tmp_path, uninterrupted, stop_at):
    options, full = uninterrupted
    out = tmp_path / "killed.npy"
    work = tmp_path / "killed.npy.partial"
    run, renames = cli_recording_renames(*options, "-o", out, stop_at=stop_at)
    timeout = threading.Timer(120, run.kill)  # a hung run ends the pipe, and the test with it
    timeout.start()
    try:
        with renames:
            for line in renames:
                if line == b"stopped\n":
                    break
            else:
                raise AssertionError(f"the run ended before the kill point: {run.stderr.read()}")
        os.kill(run.pid, signal.SIGKILL)
    finally:
        timeout.cancel()
        run.kill()  # a no-op once killed
    assert run.wait() == -signal.SIGKILL
    assert json.loads((work / "checkpoint.json").read_text())["chunks"] == 3  # killed midway
    assert (work / stop_at[0]).exists() and not out.exists()

    again, renames = cli_recording_renames(*options, "-o", out)
    with renames:
        redone = {line.strip().decode() for line in renames}
    assert again.wait() == 0, again.stderr.read()
    # Resumed: the three recorded chunks were kept, the others written now.
    assert {n for n in redone if n.startswith("chunk-")} == {
        f"chunk-{i:06d}.{ext}" for i in range(3, 6) for ext in ("npy", "json")
    }
    assert out.read_bytes() == full
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.npy"]  # the work dir is gone


def test_cli_json_lines_with_ids(tmp_path, fn):
    rows = [
        {"id": "a", "text": "Un chat dort."},
        {"id": 7, "text": ""},
        {"text": "Sans id."},
        {"id": "b", "text": "Il pleut."},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "emb.npy"
    args = [
        "-m",
        fn.model,
        "-i",
        src,
        "-o",
        out,
        "--field",
        "text",
        "--id-field",
        "id",
        "--batch-size",
        fn.batch_size,
        "--no-progress",
    ]
    refused = cli(*args)
    assert refused.returncode == 1 and not out.exists()
    assert refused.stderr.count("\n") == 1 and "line 3: no field 'id'" in refused.stderr

    done = cli(*args, "--on-invalid", "skip", "--workers", 2)
    assert done.returncode == 0, done.stderr
    assert "1 blank" in done.stderr and "line 2" in done.stderr  # reported, and kept in place
    assert [json.loads(x) for x in (tmp_path / "emb.ids.jsonl").open()] == ["a", 7, "b"]
    assert [json.loads(x) for x in (tmp_path / "emb.skipped.jsonl").open()] == [
        {"line": 3, "reason": "no field 'id'"}
    ]
    np.testing.assert_array_equal(np.load(out), fn(["Un chat dort.", "", "Il pleut."]))


def test_cli_stream_options_need_a_file_and_a_npy(tmp_path, fn):
    result = cli("-m", fn.model, "--workers", 2, "Une phrase.")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("flaubert-np: error: --workers needs -i FILE and -o OUT.npy")
