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

Every file is written to a temporary name, fsynced and renamed, so a kill at any instant leaves the
last checkpoint valid. Re-running the same command checks the manifest, seeks to the recorded byte
offset and goes on; the chunks are then concatenated (chunk by chunk, bounded memory) into a
temporary file renamed to `out.npy`, and the work dir is deleted. The result is byte-identical to
an uninterrupted run because chunk boundaries are fixed input lines and batches are made inside a
chunk only.

Outputs (which files exist depends on the options, never on the data):
    out.npy             [rows, dim] float32
    out.ids.jsonl       one JSON value per row: its `id_field` value, or else its input line
                        number; written with `id_field` or when a rule is "skip"
    out.skipped.jsonl   {"line": n, "reason": "..."} per skipped line; written when a rule is "skip"

Two kinds of problem lines, each with its rule:
- invalid: no text can be read (not UTF-8; for JSON lines also a blank line, invalid JSON, not an
  object, `field` missing or not a string, `id_field` missing or neither a string nor an integer).
  on_invalid="error" (default) or "skip".
- blank: a text that is empty or only spaces (the line, or the JSON `field`). on_blank="keep"
  (default: embedded like any text, as `SentenceEncoder.encode` does, so row i stays line i; their
  line numbers are reported in the Summary), "skip" or "error".
"error" checks the whole input before anything is embedded and stops with the line numbers and
reasons. "skip" leaves the line out, lists it in out.skipped.jsonl, and writes out.ids.jsonl so
that every row still names its input line. Nothing is ever dropped without a record.

Workers (workers > 1): spawned processes, each loading the model (safetensors weights are
memory-mapped, so the page cache holds the file once for all of them), with OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS = max(1, cores // workers) in their environment before they
import NumPy. Each holds one chunk at a time; results are written in input order, so the file is
the one a single process writes. A worker that dies stops the run (resumable) instead of hanging.

The final .npy is written with ordinary writes, one chunk after the other, not through a writable
memmap: mapped pages count in the RSS and would grow with the output, and a full disk under a
mapping is a SIGBUS rather than an OSError. Read it back with np.load(path, mmap_mode="r").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

from flaubert_np.distributed import EmbeddingFunction

ON_INVALID = ("error", "skip")
ON_BLANK = ("keep", "skip", "error")
STATE_VERSION = 1
_FINGERPRINT_BYTES = 1 << 20  # hash the first and last MiB of the input
_MAX_LISTED = 10  # problem lines named in a message


class StreamError(ValueError):
    """A problem with the input, the output or the work dir, with a one-line explanation."""


class InvalidLine(ValueError):
    """Why no text can be read from one input line."""


@dataclass(frozen=True)
class InputSpec:
    """How to read texts (and ids): one text per line, or JSON lines with `field` (+ `id_field`)."""

    field: str | None = None  # None: plain text lines
    id_field: str | None = None


@dataclass
class Chunk:
    """`chunk_lines` consecutive input lines: their texts, ids, skipped and blank lines."""

    index: int
    end_line: int  # input lines consumed once this chunk is done
    end_offset: int  # input byte offset once this chunk is done
    texts: list[str]
    ids: list[Any]
    skipped: list[tuple[int, str]]  # (line, reason)
    blank: list[int]  # lines kept as blank texts


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


def parse_line(raw: bytes, spec: InputSpec) -> tuple[str, Any]:
    """One raw input line -> (text, id or None); raises InvalidLine with the reason."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidLine(f"not UTF-8 (byte {e.start})") from None
    line = line.removesuffix("\n").removesuffix("\r")
    if spec.field is None:
        return line, None
    if not line.strip():
        raise InvalidLine("blank line, no JSON")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InvalidLine(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise InvalidLine(f"not a JSON object ({_json_type(obj)})")
    if spec.field not in obj:
        raise InvalidLine(f"no field {spec.field!r}")
    text = obj[spec.field]
    if not isinstance(text, str):
        raise InvalidLine(f"field {spec.field!r} is not a string ({_json_type(text)})")
    if spec.id_field is None:
        return text, None
    if spec.id_field not in obj:
        raise InvalidLine(f"no field {spec.id_field!r}")
    ident = obj[spec.id_field]
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        raise InvalidLine(f"field {spec.id_field!r} is not a string or an integer "
                          f"({_json_type(ident)})")
    return text, ident


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number",
             bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def iter_lines(path: Path, offset: int = 0,
               first_line: int = 1) -> Iterator[tuple[int, bytes, int]]:
    """(line number, raw bytes, offset after the line) from byte `offset`; lines end at b"\\n"."""
    with open(path, "rb") as f:
        f.seek(offset)
        number = first_line
        for raw in f:
            offset += len(raw)
            yield number, raw, offset
            number += 1


def classify(raw: bytes, spec: InputSpec) -> tuple[str, Any, str | None, str]:
    """(text, id, problem kind: None / "invalid" / "blank", reason) of one raw input line."""
    try:
        text, ident = parse_line(raw, spec)
    except InvalidLine as e:
        return "", None, "invalid", str(e)
    if not text.strip():
        return text, ident, "blank", "blank line" if spec.field is None else \
            f"field {spec.field!r} is blank"
    return text, ident, None, ""


@dataclass(frozen=True)
class Rules:
    """What to do with each kind of problem line."""

    on_invalid: str = "error"
    on_blank: str = "keep"

    def __getitem__(self, kind: str) -> str:
        return self.on_invalid if kind == "invalid" else self.on_blank

    @property
    def skips(self) -> bool:
        return "skip" in (self.on_invalid, self.on_blank)


def find_errors(path: Path, spec: InputSpec, rules: Rules) -> tuple[int, list[tuple[int, str]]]:
    """(number of lines whose rule is "error", the first few as (line, reason))."""
    count, listed = 0, []
    for number, raw, _ in iter_lines(path):
        _, _, kind, reason = classify(raw, spec)
        if kind is not None and rules[kind] == "error":
            count += 1
            if len(listed) < _MAX_LISTED:
                listed.append((number, reason))
    return count, listed


def iter_chunks(path: Path, spec: InputSpec, rules: Rules, chunk_lines: int, start: Checkpoint,
                write_ids: bool) -> Iterator[Chunk]:
    """Chunks of `chunk_lines` input lines from the checkpoint on."""
    # Chunk i holds lines i * chunk_lines + 1 ... (i + 1) * chunk_lines, whenever it is read.
    chunk = Chunk(start.chunks, start.lines, start.offset, [], [], [], [])
    for number, raw, offset in iter_lines(path, start.offset, start.lines + 1):
        text, ident, kind, reason = classify(raw, spec)
        rule = "keep" if kind is None else rules[kind]
        if rule == "error":  # the input changed since it was checked
            raise StreamError(f"{path}:{number}: {reason}")
        if rule == "skip":
            chunk.skipped.append((number, reason))
        else:
            chunk.texts.append(text)
            if write_ids:
                chunk.ids.append(number if ident is None else ident)
            if kind == "blank":
                chunk.blank.append(number)
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
            for p in sorted(local.rglob("*")) if p.is_file()
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
    same files as an uninterrupted run. `overwrite` discards any checkpoint and existing outputs.
    """
    started = time.monotonic()
    path = Path(input_path)
    if not path.is_file():
        raise StreamError(f"{path}: no such file")
    if id_field is not None and field is None:
        raise StreamError("id_field needs JSON lines input: give the text's field too")
    spec, rules = InputSpec(field, id_field), Rules(on_invalid, on_blank)
    for name, value, allowed in (("on_invalid", on_invalid, ON_INVALID),
                                 ("on_blank", on_blank, ON_BLANK)):
        if value not in allowed:
            raise StreamError(f"{name} must be one of {allowed}, got {value!r}")
    for name, value in (("chunk_lines", chunk_lines), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StreamError(f"{name} must be an integer >= 1, got {value!r}")
    out = Path(output_path)
    if not out.parent.is_dir():
        raise StreamError(f"{out.parent}: no such directory for the output")
    paths = output_paths(out)
    write_ids = spec.id_field is not None or rules.skips
    manifest = {
        "state_version": STATE_VERSION,
        "input": input_fingerprint(path),
        "model": model_fingerprint(fn),
        "options": {**asdict(spec), **asdict(rules), "chunk_lines": chunk_lines},
    }

    work = paths["work"]
    shutil.rmtree(paths["trash"], ignore_errors=True)
    if overwrite:
        shutil.rmtree(work, ignore_errors=True)
    if not (work / "manifest.json").exists():  # a fresh start: check before creating anything
        existing = [p for k, p in paths.items() if k not in ("work", "trash") and p.exists()]
        if existing and not overwrite:
            raise StreamError(f"{existing[0]} exists; pass --overwrite to replace it")
        if "error" in (on_invalid, on_blank):
            _check_all_lines(path, spec, rules)
    with _locked(work):
        start = _resume(work, manifest)
        if start is None:
            _atomic_write(work / "manifest.json", _json_bytes(manifest))
            _fsync_dir(work)
            start = Checkpoint()
        bar = Progress(manifest["input"]["size"], start, enabled=progress)
        done = start
        chunks = iter_chunks(path, spec, rules, chunk_lines, start, write_ids)
        for chunk, embeddings in _embed_chunks(chunks, fn, workers):
            _save_chunk(work, chunk, embeddings, write_ids)
            done = Checkpoint(chunk.index + 1, done.rows + len(chunk.texts), chunk.end_line,
                              chunk.end_offset, done.skipped + len(chunk.skipped),
                              done.blank + len(chunk.blank))
            _atomic_write(work / "checkpoint.json", _json_bytes(asdict(done)))
            _fsync_dir(work)
            bar.update(done)
        bar.close(done)
        if done.rows == 0:
            shutil.rmtree(work)
            raise StreamError(f"{path}: no text to embed ({done.skipped} lines skipped)")
        written, dim, blank_lines = _assemble(work, done, paths, write_ids, rules.skips)
    os.replace(work, paths["trash"])
    shutil.rmtree(paths["trash"])
    return Summary(done.rows, dim, done.skipped, done.blank, blank_lines, start.rows,
                   time.monotonic() - started, written)


def _check_all_lines(path: Path, spec: InputSpec, rules: Rules) -> None:
    count, listed = find_errors(path, spec, rules)
    if count:
        where = "; ".join(f"line {n}: {reason}" for n, reason in listed)
        more = f"; and {count - len(listed)} more" if count > len(listed) else ""
        raise StreamError(f"{path}: {count} invalid or blank line(s), nothing embedded: {where}"
                          f"{more}. Fix them, or choose another rule (--on-invalid skip, "
                          "--on-blank keep or skip)")


def _resume(work: Path, manifest: dict) -> Checkpoint | None:
    """The checkpoint to continue from, or None for a fresh start; refuses a foreign work dir."""
    manifest_path = work / "manifest.json"
    if not manifest_path.exists():
        return None  # a run killed before its first write: nothing to keep
    saved = json.loads(manifest_path.read_text(encoding="utf-8"))
    if saved != manifest:
        diffs = _differences(saved, manifest)
        raise StreamError(f"{work} holds a run with other inputs or options ({'; '.join(diffs)}); "
                          "re-run the same command to resume it, or pass --overwrite to start "
                          "again")
    checkpoint_path = work / "checkpoint.json"
    if not checkpoint_path.exists():
        return Checkpoint()
    done = Checkpoint(**json.loads(checkpoint_path.read_text(encoding="utf-8")))
    for i in range(done.chunks):
        for suffix in (".npy", ".json"):
            if not (work / f"chunk-{i:06d}{suffix}").exists():
                raise StreamError(f"{work}: chunk-{i:06d}{suffix} is missing; "
                                  "pass --overwrite to start again")
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


def _embed_chunks(chunks: Iterator[Chunk], fn: EmbeddingFunction,
                  workers: int) -> Iterator[tuple[Chunk, np.ndarray]]:
    """(chunk, [rows, dim] float32) in input order, in this process or in `workers` processes."""
    if workers == 1:
        for chunk in chunks:
            yield chunk, _embed(fn, chunk.texts)
        return
    import multiprocessing
    from multiprocessing.connection import wait

    # spawn: fresh interpreters, which read the BLAS thread variables when they import NumPy.
    context = multiprocessing.get_context("spawn")
    links, processes = [], []
    with _blas_threads(max(1, _cores() // workers)):
        for _ in range(workers):
            link, child_link = context.Pipe()
            process = context.Process(target=_worker, args=(fn, child_link), daemon=True)
            process.start()
            child_link.close()
            links.append(link)
            processes.append(process)
    # Each worker holds at most one chunk, so at most `workers` chunks are in memory besides the
    # one being read; results wait in `finished` until every earlier chunk has been handed out.
    busy: dict[int, Chunk] = {}  # worker -> the chunk it embeds
    finished: dict[int, tuple[Chunk, np.ndarray]] = {}  # chunk index -> result
    order: deque[int] = deque()  # chunk indices in input order, not yet handed out

    def collect() -> Iterator[tuple[Chunk, np.ndarray]]:
        ready = wait([links[w] for w in busy] + [processes[w].sentinel for w in busy])
        for w in list(busy):
            if links[w] in ready or processes[w].sentinel in ready:
                chunk = busy.pop(w)
                finished[chunk.index] = (chunk, _receive(links[w], processes[w]))
        while order and order[0] in finished:
            yield finished.pop(order.popleft())

    try:
        for chunk in chunks:
            while len(busy) == workers:
                yield from collect()
            w = next(w for w in range(workers) if w not in busy)
            try:
                links[w].send(chunk.texts)
            except OSError:
                _receive(links[w], processes[w])  # raises the worker's error or its death
            busy[w] = chunk
            order.append(chunk.index)
        while busy:
            yield from collect()
    finally:
        for link, process in zip(links, processes, strict=True):
            link.close()
            process.terminate()
            process.join()


def _worker(fn: EmbeddingFunction, link: Any) -> None:
    """A worker process: embed each list of texts received, send back the array or the error."""
    # Ctrl-C reaches the whole process group: the parent alone handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            texts = link.recv()
        except EOFError:  # the parent is gone or done
            return
        try:
            link.send(("ok", _embed(fn, texts)))
        except Exception as e:  # reported to the parent, which stops the run
            message = str(e) if isinstance(e, (OSError, ValueError)) else f"{type(e).__name__}: {e}"
            link.send(("error", message))


def _receive(link: Any, process: Any) -> np.ndarray:
    """A worker's result; its error or its death (killed, out of memory) as a StreamError."""
    try:
        status, value = link.recv()
    except (EOFError, OSError):
        process.join(1)
        raise StreamError(f"worker process {process.pid} died (exit code {process.exitcode}); "
                          "run the same command again to resume") from None
    if status == "error":
        raise StreamError(f"worker process {process.pid}: {value}")
    return value


def _embed(fn: EmbeddingFunction, texts: list[str]) -> np.ndarray:
    """[n] texts -> [n, dim] float32; no text -> [0, 0] (the size is learnt from other chunks)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return fn(texts)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """Set the BLAS thread count inherited by processes started inside the block."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(n) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _save_chunk(work: Path, chunk: Chunk, embeddings: np.ndarray, write_ids: bool) -> None:
    if embeddings.shape[0] != len(chunk.texts):
        raise StreamError(f"the encoder returned {embeddings.shape[0]} rows for "
                          f"{len(chunk.texts)} sentences")
    name = f"chunk-{chunk.index:06d}"
    _atomic_write(work / f"{name}.npy",
                  lambda f: np.save(f, np.ascontiguousarray(embeddings, dtype="<f4")))
    meta = {"rows": len(chunk.texts), "skipped": chunk.skipped, "blank": chunk.blank}
    if write_ids:
        meta["ids"] = chunk.ids
    _atomic_write(work / f"{name}.json", _json_bytes(meta))
    _fsync_dir(work)


def _assemble(work: Path, done: Checkpoint, paths: dict[str, Path], write_ids: bool,
              write_skipped: bool) -> tuple[list[Path], int, list[int]]:
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
        _atomic_write(paths["ids"], lambda f: f.writelines(
            _json_bytes(i) for meta in _reread(work, names) for i in meta["ids"]))
        written.append(paths["ids"])
    if write_skipped:
        _atomic_write(paths["skipped"], lambda f: f.writelines(
            _json_bytes({"line": n, "reason": r})
            for meta in _reread(work, names) for n, r in meta["skipped"]))
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

    _atomic_write(paths["embeddings"], write_embeddings)
    _fsync_dir(paths["embeddings"].parent)
    blank = list(islice((n for meta in _reread(work, names) for n in meta["blank"]), _MAX_LISTED))
    return [paths["embeddings"], *written], dim, blank


def _reread(work: Path, names: list[str]) -> Iterator[dict]:
    for n in names:
        yield json.loads((work / f"{n}.json").read_text(encoding="utf-8"))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


def _atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write to `path.tmp`, fsync, rename over `path`: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            data(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    """Make the renames inside `directory` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class Progress:
    """One status line on stderr: rows, rows/s, share of the input read, ETA."""

    def __init__(self, total_bytes: int, start: Checkpoint, enabled: bool,
                 stream: IO[str] | None = None) -> None:
        self.total, self.start, self.enabled = total_bytes, start, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = self.last = time.monotonic()
        self.shown: Checkpoint | None = None

    def update(self, done: Checkpoint, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < (0.2 if self.tty else 10.0)):
            return
        if done == self.shown:
            return
        self.last, self.shown = now, done
        elapsed = max(now - self.t0, 1e-9)
        rate = (done.rows - self.start.rows) / elapsed
        byte_rate = (done.offset - self.start.offset) / elapsed
        share = done.offset / self.total if self.total else 1.0
        eta = (self.total - done.offset) / byte_rate if byte_rate > 0 else float("nan")
        line = (f"{done.rows:,} rows | {rate:,.1f} rows/s | {100 * share:5.1f}% | "
                f"ETA {_clock(eta)} | {done.skipped:,} skipped | {done.blank:,} blank")
        self.stream.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self, done: Checkpoint) -> None:
        if self.tty or self.shown is not None:  # a short run stays quiet in a log
            self.update(done, final=True)
        if self.enabled and self.tty:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no rate yet
        return "--:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
