"""Embed a large corpus as a stream: bounded memory, chunked .npy output, resumable, N workers.

The input is read line by line (text: one sentence per line; JSON lines: one object per line, the
sentence in `field`, an optional id in `id_field`). Every `chunk_lines` input lines make one chunk;
a chunk is embedded in batches (the same batches whatever happened before), saved, and only then
recorded in the checkpoint. A run writing `out.npy` keeps its state in a work dir:

    out.npy.partial/
        manifest.json           what this run is: input fingerprint, model, options
        checkpoint.json         chunks, rows and input lines done; the input byte offset reached
        chunk-000000.npy        [rows, dim] float32 of the first chunk
        chunk-000000.json       its rows, ids and skipped lines

Every file is written atomically (flaubert_np/atomic.py), so a kill at any instant leaves the last
checkpoint valid. Re-running the same command checks the manifest, says where it resumes, seeks to
the recorded byte offset and goes on; the chunks are then concatenated (chunk by chunk, bounded
memory) into a temporary file renamed to `out.npy`, and the work dir is deleted. The result is
byte-identical to an uninterrupted run because chunk boundaries are fixed input lines and batches
are made inside a chunk only.

Outputs (which files exist depends on the options, never on the data):
    out.npy             [rows, dim] float32
    out.ids.jsonl       one JSON value per row: its `id_field` value, or else its input line
                        number; written with `id_field` or when a rule is "skip"
    out.skipped.jsonl   {"line": n, "reason": "..."} per skipped line; written when a rule is "skip"

Problem lines (not UTF-8, bad JSON, blank texts) follow the rules of flaubert_np/lines.py:
nothing is ever dropped without a record.

Workers (workers > 1, flaubert_np/workers.py): spawned processes, each holding one chunk at a time;
results are written in input order, so the file is the one a single process writes. A worker that
dies stops the run (resumable) instead of hanging.

Progress (flaubert_np/progress.py): a tqdm bar on a terminal, a plain line every 10 s in a log.

The final .npy is written with ordinary writes, one chunk after the other, not through a writable
memmap: mapped pages count in the RSS and would grow with the output, and a full disk under a
mapping is a SIGBUS rather than an OSError. Read it back with np.load(path, mmap_mode="r").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

from flaubert_np.atomic import atomic_write
from flaubert_np.embedding_function import EmbeddingFunction
from flaubert_np.lines import (
    MAX_LISTED,
    ON_BLANK,
    ON_INVALID,
    Chunk,
    InputSpec,
    Rules,
    StreamError,
    add_line,
    check_lines,
    iter_lines,
)
from flaubert_np.progress import Progress
from flaubert_np.workers import embed_in_order

STATE_VERSION = 1
_FINGERPRINT_BYTES = 1 << 20  # hash the first and last MiB of the input


@dataclass
class Checkpoint:
    """Progress recorded after each saved chunk."""

    chunks: int = 0
    rows: int = 0
    lines: int = 0
    offset: int = 0
    skipped: int = 0
    blank: int = 0


@dataclass
class Summary:
    """What a finished run wrote."""

    rows: int
    dim: int
    skipped: int
    blank: int  # blank texts kept (on_blank="keep")
    blank_lines: list[int]  # the first few of them
    resumed_rows: int
    seconds: float
    outputs: list[Path]


def iter_chunks(
    path: Path, spec: InputSpec, rules: Rules, chunk_lines: int, start: Checkpoint, write_ids: bool
) -> Iterator[Chunk]:
    """Chunks of `chunk_lines` input lines from the checkpoint on."""
    # Chunk i holds lines i * chunk_lines + 1 ... (i + 1) * chunk_lines, whenever it is read.
    chunk = Chunk(start.chunks, start.lines, start.offset, [], [], [], [])
    for number, raw, offset in iter_lines(path, start.offset, start.lines + 1):
        add_line(chunk, number, raw, spec, rules, write_ids, path)
        chunk.end_line, chunk.end_offset = number, offset
        if number % chunk_lines == 0:
            yield chunk
            chunk = Chunk(chunk.index + 1, number, offset, [], [], [], [])
    if chunk.end_line % chunk_lines and chunk.end_line > start.lines:  # a last, shorter chunk
        yield chunk


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and a hash of the first and last MiB: a resumed run must read the same file."""
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_FINGERPRINT_BYTES))
        if st.st_size > _FINGERPRINT_BYTES:
            f.seek(max(_FINGERPRINT_BYTES, st.st_size - _FINGERPRINT_BYTES))
            digest.update(f.read())
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def model_fingerprint(fn: EmbeddingFunction) -> dict[str, Any]:
    """What decides the numbers: the model, the options that change them and, for a local model
    directory, each file's size and mtime (where the model is cached, or --offline, do not)."""
    from flaubert_np import __version__

    options = fn.options()
    for where in ("cache_dir", "local_files_only"):
        options.pop(where)
    found: dict[str, Any] = {"flaubert_np": __version__, **options}
    local = Path(fn.model)
    if local.is_dir():
        found["files"] = {
            str(p.relative_to(local)): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(local.rglob("*"))
            if p.is_file()
        }
    return found


def output_paths(output: Path) -> dict[str, Path]:
    """The final files and the work dir of a run writing `output` (out.npy: out.ids.jsonl...)."""
    stem = output.with_suffix("")
    return {
        "embeddings": output,
        "ids": stem.with_name(stem.name + ".ids.jsonl"),
        "skipped": stem.with_name(stem.name + ".skipped.jsonl"),
        "work": output.with_name(output.name + ".partial"),
        "trash": output.with_name(output.name + ".partial.delete"),
    }


def existing_outputs(output: Path) -> list[Path]:
    """The files a run writing `output` may write that exist already."""
    paths = output_paths(output)
    return [paths[key] for key in ("embeddings", "ids", "skipped") if paths[key].exists()]


def save_all(
    chunk: Chunk,
    embeddings: np.ndarray,
    output: Path,
    rules: Rules,
    write_ids: bool,
    overwrite: bool,
) -> list[Path]:
    """The files of input held in memory (stdin), as encode_file writes them for a file."""
    paths = output_paths(output)
    atomic_write(output, lambda f: np.save(f, embeddings), overwrite)
    written = [output]
    if write_ids:
        atomic_write(paths["ids"], b"".join(map(_json_bytes, chunk.ids)), overwrite)
        written.append(paths["ids"])
    if rules.skips:
        atomic_write(
            paths["skipped"],
            b"".join(_json_bytes({"line": n, "reason": r}) for n, r in chunk.skipped),
            overwrite,
        )
        written.append(paths["skipped"])
    return written


def encode_file(
    input_path: str | Path,
    output_path: str | Path,
    fn: EmbeddingFunction,
    *,
    field: str | None = None,
    id_field: str | None = None,
    on_invalid: str = "error",
    on_blank: str = "keep",
    chunk_lines: int = 1024,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> Summary:
    """Embed every text of a file (one per line, or JSON lines with `field`) into a .npy file.

    Running it again after an interruption continues from the last checkpoint and produces the
    same files as an uninterrupted run. `overwrite` replaces existing outputs and discards the
    checkpoint of a run with other inputs or options (the same command's is resumed).
    """
    started = time.monotonic()
    path = Path(input_path)
    if not path.is_file():
        raise StreamError(f"{path}: no such file")
    if id_field is not None and field is None:
        raise StreamError("id_field needs JSON lines input: give the text's field too")
    spec, rules = InputSpec(field, id_field), Rules(on_invalid, on_blank)
    for name, value, allowed in (
        ("on_invalid", on_invalid, ON_INVALID),
        ("on_blank", on_blank, ON_BLANK),
    ):
        if value not in allowed:
            raise StreamError(f"{name} must be one of {allowed}, got {value!r}")
    for name, count in (("chunk_lines", chunk_lines), ("workers", workers)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise StreamError(f"{name} must be an integer >= 1, got {count!r}")
    out = Path(output_path)
    if not out.parent.is_dir():
        raise StreamError(f"{out.parent}: no such directory for the output")
    paths = output_paths(out)
    write_ids = spec.id_field is not None or rules.skips
    fingerprint = input_fingerprint(path)
    manifest = {
        "state_version": STATE_VERSION,
        "input": fingerprint,
        "model": model_fingerprint(fn),
        "options": {**asdict(spec), **asdict(rules), "chunk_lines": chunk_lines},
    }

    work = paths["work"]
    shutil.rmtree(paths["trash"], ignore_errors=True)
    if overwrite:  # the work of this same command is resumed; any other is discarded
        try:
            _resume(work, manifest)
        except (ValueError, OSError):
            shutil.rmtree(work, ignore_errors=True)
    if not (work / "manifest.json").exists():  # a fresh start: check before creating anything
        if not overwrite and (existing := existing_outputs(out)):
            raise StreamError(f"{existing[0]} exists; pass --overwrite to replace it")
        if "error" in (on_invalid, on_blank):
            check_lines(((n, raw) for n, raw, _ in iter_lines(path)), spec, rules, path)
    with _locked(work):
        start = _resume(work, manifest)
        if start is None:
            atomic_write(work / "manifest.json", _json_bytes(manifest))
            start = Checkpoint()
        if start.chunks:
            share = start.offset / fingerprint["size"] if fingerprint["size"] else 1.0
            sys.stderr.write(
                f"resuming at row {start.rows + 1:,} of {out.name} (input line "
                f"{start.lines + 1:,} of {path.name}, {share:.0%} done before)\n"
            )
        done = start
        with Progress(
            fingerprint["size"],
            "Encoding",
            "B",
            initial=start.offset,
            unit_scale=True,
            enabled=progress,
        ) as bar:
            chunks = iter_chunks(path, spec, rules, chunk_lines, start, write_ids)
            jobs = ((chunk, chunk.texts) for chunk in chunks)
            for chunk, embeddings in embed_in_order(jobs, fn, workers):
                _save_chunk(work, chunk, embeddings, write_ids)
                done = Checkpoint(
                    chunk.index + 1,
                    done.rows + len(chunk.texts),
                    chunk.end_line,
                    chunk.end_offset,
                    done.skipped + len(chunk.skipped),
                    done.blank + len(chunk.blank),
                )
                atomic_write(work / "checkpoint.json", _json_bytes(asdict(done)))
                show(bar, done, start)
        if done.rows == 0:
            shutil.rmtree(work)
            raise StreamError(f"{path}: no text to embed ({done.skipped} lines skipped)")
        written, dim, blank_lines = _assemble(work, done, paths, write_ids, rules.skips)
    os.replace(work, paths["trash"])
    shutil.rmtree(paths["trash"])
    return Summary(
        done.rows,
        dim,
        done.skipped,
        done.blank,
        blank_lines,
        start.rows,
        time.monotonic() - started,
        written,
    )


def show(bar: Progress, done: Checkpoint, start: Checkpoint) -> None:
    """The bar at `done`: input bytes read, then rows, rows/s since `start`, skipped and blank."""
    rate = (done.rows - start.rows) / max(bar.elapsed(), 1e-9)
    bar.update_to(
        done.offset,
        f"{done.rows:,} rows, {rate:,.1f} rows/s, {done.skipped:,} skipped, {done.blank:,} blank",
    )


def _resume(work: Path, manifest: dict) -> Checkpoint | None:
    """The checkpoint to continue from, or None for a fresh start; refuses a foreign work dir."""
    manifest_path = work / "manifest.json"
    if not manifest_path.exists():
        return None  # a run killed before its first write: nothing to keep
    saved = json.loads(manifest_path.read_text(encoding="utf-8"))
    if saved != manifest:
        diffs = _differences(saved, manifest)
        raise StreamError(
            f"{work} holds a run with other inputs or options ({'; '.join(diffs)}); "
            "re-run the same command to resume it, or pass --overwrite to start "
            "again"
        )
    checkpoint_path = work / "checkpoint.json"
    if not checkpoint_path.exists():
        return Checkpoint()
    done = Checkpoint(**json.loads(checkpoint_path.read_text(encoding="utf-8")))
    for i in range(done.chunks):
        for suffix in (".npy", ".json"):
            if not (work / f"chunk-{i:06d}{suffix}").exists():
                raise StreamError(
                    f"{work}: chunk-{i:06d}{suffix} is missing; pass --overwrite to start again"
                )
    return done


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} was {a!r}, now {b!r}")
    return found[:3]


def _save_chunk(work: Path, chunk: Chunk, embeddings: np.ndarray, write_ids: bool) -> None:
    if embeddings.shape[0] != len(chunk.texts):
        raise StreamError(
            f"the encoder returned {embeddings.shape[0]} rows for {len(chunk.texts)} sentences"
        )
    name = f"chunk-{chunk.index:06d}"
    atomic_write(
        work / f"{name}.npy", lambda f: np.save(f, np.ascontiguousarray(embeddings, dtype="<f4"))
    )
    meta = {"rows": len(chunk.texts), "skipped": chunk.skipped, "blank": chunk.blank}
    if write_ids:
        meta["ids"] = chunk.ids
    atomic_write(work / f"{name}.json", _json_bytes(meta))


def _assemble(
    work: Path, done: Checkpoint, paths: dict[str, Path], write_ids: bool, write_skipped: bool
) -> tuple[list[Path], int, list[int]]:
    """Concatenate the chunks into the final files, each written to a temporary name first.

    Returns the files written, the embedding size and the first few blank lines kept.
    """
    names = [f"chunk-{i:06d}" for i in range(done.chunks)]
    dims = {np.load(work / f"{n}.npy", mmap_mode="r").shape[1] for n in names} - {0}
    if len(dims) != 1:
        raise StreamError(f"{work}: chunks of different embedding sizes {sorted(dims)}")
    dim = dims.pop()
    written = []
    if write_ids:
        atomic_write(
            paths["ids"],
            lambda f: f.writelines(
                _json_bytes(i) for meta in _reread(work, names) for i in meta["ids"]
            ),
        )
        written.append(paths["ids"])
    if write_skipped:
        atomic_write(
            paths["skipped"],
            lambda f: f.writelines(
                _json_bytes({"line": n, "reason": r})
                for meta in _reread(work, names)
                for n, r in meta["skipped"]
            ),
        )
        written.append(paths["skipped"])
    for key in ("ids", "skipped"):
        if paths[key] not in written:
            paths[key].unlink(missing_ok=True)  # left by an earlier run with other options

    def write_embeddings(f: IO[bytes]) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (done.rows, dim)}
        np.lib.format.write_array_header_1_0(f, header)  # the header np.save writes
        for n in names:
            block = np.load(work / f"{n}.npy")
            if block.size:
                f.write(block.data)

    atomic_write(paths["embeddings"], write_embeddings)
    blank = list(islice((n for meta in _reread(work, names) for n in meta["blank"]), MAX_LISTED))
    return [paths["embeddings"], *written], dim, blank


def _reread(work: Path, names: list[str]) -> Iterator[dict]:
    for n in names:
        yield json.loads((work / f"{n}.json").read_text(encoding="utf-8"))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


@contextmanager
def _locked(work: Path) -> Iterator[None]:
    """Create the work dir and hold an exclusive lock on it: two runs must not share one."""
    work.mkdir(exist_ok=True)
    with open(work / "lock", "wb") as f:
        if os.name == "posix":
            import fcntl

            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StreamError(f"{work} is in use by another run") from None
        yield
