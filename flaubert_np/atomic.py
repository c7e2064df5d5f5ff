"""Files written whole or not at all.

`atomic_write` writes into a temporary file beside the target, fsyncs it, renames it over the
target and fsyncs the directory: a reader, or a crash at any instant, sees the old file or the
new one, never a part of one. The temporary file is removed if writing fails or is interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(
    path: Path, data: bytes | Callable[[IO[bytes]], None], overwrite: bool = True
) -> None:
    """Write `data` (bytes, or a function writing to a binary file) to `path` atomically.

    With `overwrite=False` an existing `path` is never replaced: FileExistsError.
    """
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite and path.exists():  # appeared while writing
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the renames inside `directory` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
