"""NumPy's OpenBLAS, reached through ctypes: its thread count, and one-thread sections.

fast.py can run the sentences of a batch on several threads at once, each thread with its own
share of the sentences, so that the element-wise work (GELU, layer norms, softmax) runs on
every core too, not only the matrix products. Each thread's products must then use one core:
`single_threaded()` sets OpenBLAS to one thread while such a section runs.

Nothing here is needed for correctness. When NumPy's BLAS is not an OpenBLAS found here (MKL,
Accelerate, a renamed build), `threads()` is 1, `single_threaded()` does nothing, and fast.py
computes a batch's runs one after the other, with whatever threads that BLAS uses itself.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

# The names OpenBLAS exports: in NumPy's wheels (scipy-openblas, 64-bit ints), and plain.
_PREFIXES = (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "64_"),
             ("openblas_", ""))  # fmt: skip


@functools.cache
def _library() -> tuple | None:
    """NumPy's OpenBLAS: (the ctypes library, its symbols' prefix and suffix), or None."""
    import ctypes

    import numpy

    root = os.path.dirname(numpy.__file__)
    # NumPy's wheels ship it beside the package (numpy.libs/ on Linux, numpy/.dylibs/ on macOS);
    # a NumPy built against a system OpenBLAS has it loaded already (/proc/self/maps, Linux).
    paths = glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
    paths += glob.glob(os.path.join(root, ".dylibs", "*openblas*"))
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
        paths += sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _PREFIXES:
            if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                return lib, prefix, suffix
    return None


def _function(name: str, restype, argtypes: tuple = ()):
    """OpenBLAS's function `name` (e.g. "get_num_threads"), typed; None if not there."""
    found = _library()
    if found is None:
        return None
    lib, prefix, suffix = found
    function = getattr(lib, f"{prefix}{name}{suffix}", None)
    if function is not None:
        function.restype, function.argtypes = restype, list(argtypes)
    return function


@functools.cache
def _openblas() -> tuple | None:
    """(get_num_threads, set_num_threads) of the OpenBLAS NumPy uses, or None."""
    import ctypes

    get = _function("get_num_threads", ctypes.c_int)
    set_ = _function("set_num_threads", None, (ctypes.c_int,))
    return (get, set_) if get is not None and set_ is not None else None


def core() -> str | None:
    """The kernel family OpenBLAS picked for this CPU ("SkylakeX", "Haswell", ...), or None."""
    import ctypes

    corename = _function("get_corename", ctypes.c_char_p)
    return corename().decode() if corename is not None else None


def threads() -> int:
    """How many threads OpenBLAS uses (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or the cores);
    1 when NumPy's BLAS is not an OpenBLAS found here."""
    found = _openblas()
    return max(1, found[0]()) if found else 1


def pool(workers: int) -> ThreadPoolExecutor:
    """A pool of `workers` threads, made on first use and kept (one per process: a forked
    child has none of its parent's threads)."""
    return _pool(workers, os.getpid())


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # imports logging: not at import time

    return ThreadPoolExecutor(workers, thread_name_prefix="flaubert-np")


_lock = threading.Lock()
_open = 0  # single_threaded() sections open now, in all threads
_saved = 1  # OpenBLAS's thread count when the first of them opened


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """OpenBLAS on one thread while the block runs, then back to its count before.

    The count is process-wide (OpenBLAS's per-thread setting works only in OpenMP builds, and
    NumPy's use pthreads), so sections that overlap, from several threads, share it: the first
    to open saves it, the last to close restores it. Does nothing if OpenBLAS is not found.
    """
    global _open, _saved
    if _openblas() is None:  # not an OpenBLAS found here: its threads stay as they are
        yield
        return
    get, set_threads = _openblas()
    with _lock:
        if _open == 0:
            _saved = get()
            set_threads(1)
        _open += 1
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0:
                set_threads(_saved)


def _after_fork() -> None:
    """In a forked child: a fresh lock, and OpenBLAS's count back if a section was open."""
    global _lock, _open
    _lock = threading.Lock()
    if _open:
        _open = 0
        _openblas()[1](_saved)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
