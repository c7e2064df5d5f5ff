"""Embed lists of texts in worker processes, the results in input order.

Workers are spawned processes, each loading the model once (safetensors weights are
memory-mapped, so the page cache holds the file once for all of them), with
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS = max(1, BLAS threads // workers) in
their environment before they import NumPy. Each holds one job at a time; results come back in
the order the jobs were given. A worker that dies (killed, out of memory) or fails stops the run
with a WorkerError instead of hanging.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from flaubert_np import blas
from flaubert_np.embedding_function import EmbeddingFunction

Key = TypeVar("Key")


class WorkerError(ChildProcessError):
    """A worker process died or failed; the message says which and why."""


def embed_in_order(
    jobs: Iterable[tuple[Key, list[str]]], fn: EmbeddingFunction, workers: int
) -> Iterator[tuple[Key, np.ndarray]]:
    """(key, [n, dim] float32) for each (key, n texts), in order, in this process (workers=1)
    or in `workers` processes, each holding at most one job."""
    if workers == 1:
        for key, texts in jobs:
            yield key, _embed(fn, texts)
        return
    import multiprocessing
    from multiprocessing.connection import wait

    # spawn: fresh interpreters, which read the BLAS thread variables when they import NumPy.
    context = multiprocessing.get_context("spawn")
    links, processes = [], []
    with _blas_threads(max(1, blas.threads() // workers)):
        for _ in range(workers):
            link, child_link = context.Pipe()
            process = context.Process(target=_worker, args=(fn, child_link), daemon=True)
            process.start()
            child_link.close()
            links.append(link)
            processes.append(process)
    # Results wait in `finished` until every earlier job is done: at most `workers` jobs are
    # in memory besides the one being read.
    busy: dict[int, int] = {}  # worker -> the number of the job it holds
    keys: dict[int, Key] = {}  # job number -> its key, until its result is given
    finished: dict[int, np.ndarray] = {}  # job number -> result
    order: deque[int] = deque()  # job numbers in input order, not yet given

    def collect() -> Iterator[tuple[Key, np.ndarray]]:
        ready = wait([links[w] for w in busy] + [processes[w].sentinel for w in busy])
        for w in list(busy):
            if links[w] in ready or processes[w].sentinel in ready:
                finished[busy.pop(w)] = _receive(links[w], processes[w])
        while order and order[0] in finished:
            number = order.popleft()
            yield keys.pop(number), finished.pop(number)

    try:
        for number, (key, texts) in enumerate(jobs):
            while len(busy) == workers:
                yield from collect()
            w = next(w for w in range(workers) if w not in busy)
            try:
                links[w].send(texts)
            except OSError:
                _receive(links[w], processes[w])  # raises the worker's error or its death
            busy[w], keys[number] = number, key
            order.append(number)
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
    """A worker's result; its error or its death as a WorkerError."""
    try:
        status, value = link.recv()
    except (EOFError, OSError):
        process.join(1)
        raise WorkerError(f"worker process {process.pid} died (exit code {process.exitcode}); "
                          "run the same command again to resume") from None  # fmt: skip
    if status == "error":
        raise WorkerError(f"worker process {process.pid}: {value}")
    return value


def _embed(fn: EmbeddingFunction, texts: list[str]) -> np.ndarray:
    """[n] texts -> [n, dim] float32; no text -> [0, 0] (the size is learnt from other jobs)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return fn(texts)


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
