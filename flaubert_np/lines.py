"""Input lines: one text per line, or JSON lines (a text field, an id field), and the rules
for the lines that give no usable text.

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

The same rules hold for every mode of `flaubert-np encode` that reads lines: a file read whole or
stdin (`read_all`), and a streamed file (flaubert_np/stream.py, a chunk of lines at a time).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ON_INVALID = ("error", "skip")
ON_BLANK = ("keep", "skip", "error")
MAX_LISTED = 10  # problem lines named in a message


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
        raise InvalidLine(
            f"field {spec.id_field!r} is not a string or an integer ({_json_type(ident)})"
        )
    return text, ident


def _json_type(value: Any) -> str:
    names = {
        dict: "object",
        list: "array",
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def iter_lines(
    path: Path, offset: int = 0, first_line: int = 1
) -> Iterator[tuple[int, bytes, int]]:
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
        return (
            text,
            ident,
            "blank",
            "blank line" if spec.field is None else f"field {spec.field!r} is blank",
        )
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


def find_errors(
    lines: Iterable[tuple[int, bytes]], spec: InputSpec, rules: Rules
) -> tuple[int, list[tuple[int, str, str]]]:
    """(number of lines whose rule is "error", the first few as (line, kind, reason))."""
    count = 0
    listed: list[tuple[int, str, str]] = []
    for number, raw in lines:
        _, _, kind, reason = classify(raw, spec)
        if kind is not None and rules[kind] == "error":
            count += 1
            if len(listed) < MAX_LISTED:
                listed.append((number, kind, reason))
    return count, listed


def check_lines(
    lines: Iterable[tuple[int, bytes]], spec: InputSpec, rules: Rules, source: object
) -> None:
    """Raise StreamError naming the lines whose rule is "error", if any, and the flags to change."""
    count, listed = find_errors(lines, spec, rules)
    if not count:
        return
    where = "; ".join(f"line {n}: {reason}" for n, _, reason in listed)
    more = f"; and {count - len(listed)} more" if count > len(listed) else ""
    kinds = {kind for _, kind, _ in listed}
    flags = [
        flag
        for kind, flag in (("invalid", "--on-invalid skip"), ("blank", "--on-blank keep or skip"))
        if kind in kinds
    ]
    raise StreamError(
        f"{source}: {count} invalid or blank line(s), nothing embedded: {where}"
        f"{more}. Fix them, or choose another rule ({', '.join(flags)})"
    )


def add_line(
    chunk: Chunk,
    number: int,
    raw: bytes,
    spec: InputSpec,
    rules: Rules,
    write_ids: bool,
    source: object,
) -> None:
    """Add one input line to `chunk` as its rule says: a text (and its id), or a skipped line."""
    text, ident, kind, reason = classify(raw, spec)
    rule = "keep" if kind is None else rules[kind]
    if rule == "error":  # the input changed since it was checked
        raise StreamError(f"{source}:{number}: {reason}")
    if rule == "skip":
        chunk.skipped.append((number, reason))
    else:
        chunk.texts.append(text)
        if write_ids:
            chunk.ids.append(number if ident is None else ident)
        if kind == "blank":
            chunk.blank.append(number)


def read_all(data: bytes, spec: InputSpec, rules: Rules, source: object) -> Chunk:
    """Input read whole (stdin, or a file embedded in memory): every line in one Chunk, by the
    rules encode_file follows."""
    lines = list(enumerate(io.BytesIO(data), start=1))  # lines end at b"\n", as in a file
    if "error" in (rules.on_invalid, rules.on_blank):
        check_lines(lines, spec, rules, source)
    chunk = Chunk(0, len(lines), len(data), [], [], [], [])
    for number, raw in lines:
        add_line(chunk, number, raw, spec, rules, spec.id_field is not None or rules.skips, source)
    return chunk
