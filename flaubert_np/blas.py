"""BLAS threads, through threadpoolctl: how many, one-thread sections, and workers to use them.

fast.py computes every product on single-threaded BLAS (so that no result depends on the thread
count) and spreads the work over threads of its own, as many as BLAS would use: its thread count
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or the cores) says how many cores the process may keep
busy. threadpoolctl finds NumPy's BLAS (OpenBLAS in NumPy's wheels, MKL, BLIS) and sets its
thread count; with none found, `threads()` is 1 and `single_threaded()` does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy  # noqa: F401  (its BLAS must be loaded before threadpoolctl looks)


@functools.cache
def _libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded (NumPy's among them)."""
    from threadpoolctl import ThreadpoolController

    return list(ThreadpoolController().select(user_api="blas").lib_controllers)


def threads() -> int:
    """BLAS's thread count outside single_threaded() sections; 1 without a BLAS found."""
    with _lock:
        counts = _saved if _open else [lib.num_threads for lib in _libraries()]
    return max(counts, default=1)


def core() -> str | None:
    """The kernel family OpenBLAS picked for this CPU ("SkylakeX", "Haswell", ...), or None."""
    names = [lib.architecture for lib in _libraries() if lib.internal_api == "openblas"]
    return names[0] if names else None


class Workers:
    """Threads that help a caller through a list of calls: fast.py's runs of sentences, or the
    parts of one sentence's layers (a millisecond or so each, twice a layer). The caller takes
    calls too and waits only for the calls a helper took, so it never waits for a helper to wake
    up, nor for another caller's work; a hand-off is two C-implemented queues (a
    ThreadPoolExecutor's futures and locks cost several times more)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._helps: queue.SimpleQueue[tuple[Calls, Results]] = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._serve, name=f"flaubert-np-{i}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            todo, done = self._helps.get()
            _work_through(todo, done.put)  # (nothing left to take: a request that came late)

    def run(self, calls: Sequence[Callable[[], object]]) -> None:
        """Every call once, side by side on this thread and up to `count` helpers (whoever is
        free takes the next). Returns when all are done; raises one of the errors they raised."""
        todo: Calls = queue.SimpleQueue()
        for call in calls:
            todo.put(call)
        done: Results = queue.SimpleQueue()  # one entry per call a helper ran
        for _ in range(min(self.count, len(calls) - 1)):
            self._helps.put((todo, done))
        errors: list[BaseException | None] = []
        _work_through(todo, errors.append)
        errors += [done.get() for _ in range(len(calls) - len(errors))]  # then none runs still
        for error in errors:
            if error is not None:
                raise error


Calls = queue.SimpleQueue[Callable[[], object]]
Results = queue.SimpleQueue[BaseException | None]


def _work_through(todo: Calls, report: Callable[[BaseException | None], object]) -> None:
    """Run calls from `todo` until it is empty, reporting each one's error (or None)."""
    while True:
        try:
            call = todo.get_nowait()
        except queue.Empty:
            return
        try:
            call()
            report(None)
        except BaseException as error:  # raised in the caller's thread, by Workers.run
            report(error)


def workers(count: int) -> Workers:
    """`count` helper threads, made on first use and kept (a forked child makes its own)."""
    with _lock:
        if count not in _helpers:
            _helpers[count] = Workers(count)
        return _helpers[count]


_helpers: dict[int, Workers] = {}  # by count; emptied in a forked child (its threads are gone)
_lock = threading.Lock()
_open = 0  # single_threaded() sections open now, in all threads
_saved: list[int] = []  # each library's thread count when the first of them opened


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS on one thread while the block runs, then back to its count before.

    The count is process-wide (OpenBLAS's pthreads builds, NumPy's, have no per-thread
    setting), so sections that overlap, from several threads, share it: the first to open saves
    it, the last to close restores it.
    """
    global _open, _saved
    with _lock:
        if _open == 0:
            _saved = [lib.num_threads for lib in _libraries()]
            for lib in _libraries():
                _set_threads(lib, 1)
        _open += 1
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0:
                _restore()


def _after_fork() -> None:
    """In a forked child: a fresh lock, no helpers, and BLAS's count back if a section was
    open."""
    global _lock, _open
    _lock = threading.Lock()
    _helpers.clear()
    if _open:
        _open = 0
        _restore()


def _restore() -> None:
    for lib, count in zip(_libraries(), _saved, strict=True):
        _set_threads(lib, count)


def _set_threads(lib: Any, count: int) -> None:
    """Set a library's thread count from this thread. threadpoolctl lets only one thread (the
    first to set it) change OpenBLAS's process-wide count and ignores the others silently; our
    sections open and close on any thread (a server's callers), so this one takes over."""
    clear = getattr(type(lib), "clear_controlling_thread", None)  # OpenBLAS, threadpoolctl 3.6+
    if clear is not None:
        clear(force=True)
    lib.set_num_threads(count)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
