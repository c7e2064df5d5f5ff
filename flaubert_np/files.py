"""Reading a model folder's small files safely: one reader, one error type.

A model folder is data from a stranger. Every JSON or text file of it (config.json, vocab.json,
merges.txt, tokenizer_config.json, modules.json, a shard index, ...) is read here, and whatever is
wrong with it (too big, not UTF-8, not JSON, nested too deep, a value of the wrong type) raises
`ModelFileError`, a `ValueError` whose message starts with the file's path and says what is wrong,
in one line. The weight readers' own errors (WeightsError, TorchBinError, ConfigError) are
subclasses of it, so `except ModelFileError` catches every bad model folder.

Paths inside a model folder (module folders, shards) are resolved without leaving it: a symlink
may point inside the folder, or, in the Hugging Face cache layout (<repo>/snapshots/<rev>/ whose
files link to <repo>/blobs/), into that repo's blobs folder; anywhere else is refused.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Far above what any FlauBERT file needs (vocab.json of flaubert-large: 1.5 MB; config files:
# a few KB nested 3 deep), far below what would hurt.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 32


class ModelFileError(ValueError):
    """A file of a model folder that flaubert-np cannot use; the message starts with the file."""


Error = type[ModelFileError]  # the subclass a caller wants raised (ConfigError, WeightsError)


def read_bytes(
    path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: Error = ModelFileError
) -> bytes:
    """A file's bytes, refused before reading if it holds more than `max_bytes`."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise error(f"{path}: {size} bytes, more than the {max_bytes} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{path}: more than the {max_bytes} bytes allowed")
    return data


def read_text(
    path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: Error = ModelFileError
) -> str:
    """A UTF-8 text file, newlines translated as open(path, encoding="utf-8") translates them."""
    data = read_bytes(path, max_bytes, error)
    try:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_json(
    path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: Error = ModelFileError
) -> Any:
    """A JSON file's value (any JSON type), checked: UTF-8, size, nesting depth."""
    return parse_json(read_text(path, max_bytes, error), str(path), error=error)


def read_json_object(
    path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: Error = ModelFileError
) -> dict[str, Any]:
    """A JSON file that must hold an object."""
    value = read_json(path, max_bytes, error)
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, found {_json_type(value)}")
    return value


def parse_json(
    text: str, where: str, unique_keys: bool = False, error: Error = ModelFileError
) -> Any:
    """Parse JSON text; `where` (a path) starts every error message. `unique_keys` refuses an
    object that names a key twice (json.loads would keep the last)."""
    hook = _unique_pairs(where, error) if unique_keys else None
    try:
        value = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e})") from None
    except RecursionError:  # the C parser stops at Python's recursion limit, cleanly
        raise error(
            f"{where}: JSON nested deeper than the {MAX_JSON_DEPTH} levels allowed"
        ) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(f"{where}: JSON nested deeper than the {MAX_JSON_DEPTH} levels allowed")
    return value


def field(
    obj: dict[str, Any],
    key: str,
    types: type | tuple[type, ...],
    where: str | Path,
    default: Any = None,
) -> Any:
    """obj[key] (or `default` when absent or null), refused unless of `types` (bool is not int)."""
    value = obj.get(key)
    if value is None:
        return default
    wanted = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in wanted)
        raise ModelFileError(f"{where}: {key} must be {names}, found {_json_type(value)}")
    return value


def inside(root: str | Path, relative: str | Path, what: str) -> Path:
    """root/relative, refused if it leaves `root`: an absolute path, "..", or a symlink whose
    target lies outside root (and outside the Hub cache's blobs folder of root's repo)."""
    root = Path(root)
    path = root / relative
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ModelFileError(f"{path}: {what} is not inside the model folder {root}")
    if not path.exists() and not path.is_symlink():  # missing: the caller says so
        return path
    real_root = root.resolve()
    allowed = [real_root]
    parts = real_root.parts
    # The Hub cache: <cache>/models--org--name/snapshots/<rev>/..., files linked to the repo's
    # blobs/ (the last "snapshots" of the path: the cache itself may sit under such a name).
    at = max((i for i, part in enumerate(parts) if part == "snapshots"), default=0)
    if at and parts[at - 1].startswith(("models--", "datasets--", "spaces--")):
        allowed.append(Path(*parts[:at]) / "blobs")
    target = path.resolve()
    if not any(target == a or a in target.parents for a in allowed):
        raise ModelFileError(
            f"{path}: {what} is a link to {target}, outside the model folder {root}"
        )
    return path


_TYPE_NAMES = {
    dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
    bool: "true or false",
}  # fmt: skip


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a parsed JSON value (iterative: no recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                todo.extend((child, level + 1) for child in item)
    return deepest


def _unique_pairs(where: str, error: Error) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise error(f"{where}: key {key!r} appears twice")
            obj[key] = value
        return obj

    return hook
