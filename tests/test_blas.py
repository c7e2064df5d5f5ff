"""flaubert_np.blas: NumPy's BLAS found (threadpoolctl), its thread count set and restored."""

import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
import pytest

from flaubert_np import blas


def test_numpys_openblas_is_found():
    # NumPy's wheels bundle OpenBLAS: without it fast.py would not use more than one thread.
    assert any(lib.internal_api == "openblas" for lib in blas._libraries())
    assert blas.threads() >= 1
    assert blas.core().isidentifier()  # the kernel family, e.g. "SkylakeX"


def test_threads_follow_openblas_num_threads():
    """OpenBLAS caps the count at the machine's CPUs."""
    script = "from flaubert_np import blas; print(blas.threads())"
    for n in (1, 2):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(n)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        assert int(out) == min(n, os.cpu_count() or 1)


def _count() -> tuple[Callable[[], int], Callable[[int], None]]:
    """NumPy's OpenBLAS thread count: (get, set), straight from threadpoolctl."""
    lib = next(lib for lib in blas._libraries() if lib.internal_api == "openblas")
    return (lambda: lib.num_threads), lib.set_num_threads


def test_single_threaded_sets_one_thread_then_restores_the_count():
    get, set_threads = _count()
    before = get()
    set_threads(3)
    try:
        with blas.single_threaded():
            assert get() == 1 and blas.threads() == 3  # threads(): the count outside
            with blas.single_threaded():  # nested
                assert get() == 1
            assert get() == 1  # the outer section is still open
        assert get() == 3
        with pytest.raises(KeyError), blas.single_threaded():
            raise KeyError
        assert get() == 3
    finally:
        set_threads(before)


def test_overlapping_sections_from_several_threads_restore_the_count_once_all_close():
    get, set_threads = _count()
    before = get()
    set_threads(2)
    inside, release = threading.Barrier(3), threading.Event()
    seen = []  # what each section saw as it closed (an assert in a thread would not fail)

    def section():
        with blas.single_threaded():
            inside.wait()
            release.wait()
            seen.append(get())

    try:
        workers = [threading.Thread(target=section) for _ in range(2)]
        for w in workers:
            w.start()
        inside.wait()  # both sections open
        assert get() == 1
        release.set()
        for w in workers:
            w.join()
        assert seen == [1, 1]
        assert get() == 2
    finally:
        set_threads(before)


def _forward_after_fork(model_dir, queue):
    from flaubert_np import FlaubertModel

    model = FlaubertModel.from_pretrained(model_dir)
    ids = np.arange(3, 3 + 4 * 6).reshape(4, 6) % model.config.n_words
    queue.put(model(ids).last_hidden_state)


@pytest.mark.oracle
def test_a_forked_child_gets_threads_of_its_own(flaubert_checkpoint, monkeypatch):
    """Worker threads do not survive a fork: a child that inherited the workers must not wait
    forever on them."""
    from flaubert_np import FlaubertModel, fast

    monkeypatch.setattr(blas, "threads", lambda: 2)
    folder = flaubert_checkpoint()
    model = FlaubertModel.from_pretrained(folder)
    ids = np.arange(3, 3 + 4 * 6).reshape(4, 6) % model.config.n_words
    monkeypatch.setattr(fast, "PARTS_TOKENS", 0)  # so few tokens, in runs all the same
    expected = model(ids).last_hidden_state  # the parent's workers exist now
    assert len(fast.split(np.full(4, 6))) == 2  # the batch runs on the workers
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_after_fork, args=(folder, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's forward never finished")
    assert child.exitcode == 0
    assert np.array_equal(queue.get(timeout=5), expected)


def test_workers_run_every_call_once_on_several_threads():
    workers = blas.Workers(2)
    ran: list[tuple[int, str]] = []
    gate = threading.Barrier(3, timeout=10)  # passes only with three threads in it at once

    def call(i: int) -> None:
        if i < 3:
            gate.wait()
        ran.append((i, threading.current_thread().name))

    workers.run([lambda i=i: call(i) for i in range(7)])
    assert sorted(i for i, _ in ran) == list(range(7))
    assert len({name for _, name in ran}) == 3  # the caller and both workers
    workers.run([])  # nothing to do: returns at once
    workers.run([lambda: ran.append((7, ""))])
    assert len(ran) == 8


def test_workers_raise_the_first_error_after_every_call_has_run():
    workers = blas.Workers(1)
    ran = []

    def fail(message: str) -> None:
        ran.append(message)
        raise ValueError(message)

    with pytest.raises(ValueError, match=r"^(first|second)$"):
        workers.run([lambda: fail("first"), lambda: fail("second"), lambda: ran.append("ok")])
    assert sorted(ran) == ["first", "ok", "second"]
    workers.run([lambda: ran.append("after"), lambda: ran.append("after")])  # still serving
    assert ran.count("after") == 2


def test_workers_serve_several_callers_at_once():
    workers = blas.Workers(1)
    results: dict[int, list[int]] = {}

    def caller(k: int) -> None:
        out = [0] * 20
        workers.run([lambda i=i: out.__setitem__(i, k * i) for i in range(20)])
        results[k] = out

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert results == {k: [k * i for i in range(20)] for k in range(4)}


def test_a_caller_waits_for_its_own_calls_only():
    """The only helper is held by another caller's call: a caller that can do its calls itself
    does not wait for the helper; a call that runs calls on the same helpers returns too."""
    workers = blas.Workers(1)
    release, busy = threading.Event(), threading.Barrier(3, timeout=10)

    def held() -> None:
        busy.wait()  # the other caller and the helper both inside a call
        release.wait(timeout=30)

    other = threading.Thread(target=workers.run, args=([held, held],), daemon=True)
    other.start()
    busy.wait()
    ran: list[int] = []
    mine = threading.Thread(target=workers.run, args=([lambda: ran.append(1)] * 3,), daemon=True)
    mine.start()
    mine.join(timeout=10)
    assert not mine.is_alive() and ran == [1, 1, 1]
    release.set()
    other.join(timeout=10)
    assert not other.is_alive()

    nested = threading.Thread(
        target=workers.run, args=([lambda: workers.run([lambda: ran.append(2)] * 2)] * 2,),
        daemon=True,
    )  # fmt: skip
    nested.start()
    nested.join(timeout=10)
    assert not nested.is_alive() and ran.count(2) == 4
