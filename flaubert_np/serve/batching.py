"""Continuous batching: one model thread, one forward pass at a time, fed from a queue.

Requests put their tokenized texts in the queue and wait. Whenever the model thread is free it
takes everything queued, oldest first, up to `max_batch_tokens` real tokens, and runs it as one
forward pass: no waiting window, so a lone request starts at once, and under load the requests
that arrived during a pass share the next. A request larger than the budget is split across
passes; its rest waits at the back of the queue, so that the requests behind it are not held up
for all of its passes. The forward pass removes padding, so an
embedding does not depend on the batch it landed in (beyond float32 rounding).

NumPy's matrix products release the GIL: the event loop and the tokenizing threads keep running
while the model computes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from flaubert_np.sentence import SentenceEncoder
from flaubert_np.serve.metrics import Metrics

log = logging.getLogger("flaubert_np.serve")


@dataclass(eq=False)
class _Job:
    """One request's texts: taken by passes in order, embedded into `embeddings`."""

    features: list[dict[str, np.ndarray]]  # one per text, [1, n_tokens]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    embeddings: np.ndarray  # [n_texts, dim]
    taken: int = 0  # texts handed to a pass so far
    done: int = 0  # texts embedded so far

    def remaining(self) -> int:
        return len(self.features) - self.taken


def _settle(future: asyncio.Future, result: np.ndarray | None, error: BaseException | None):
    """On the event loop: give the waiting request its result (unless it left)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """The queue and the model thread. `embed` is awaited by the routes."""

    def __init__(
        self, encoder: SentenceEncoder, max_batch_tokens: int, prompt_length: int, metrics: Metrics
    ):
        self.encoder = encoder
        self.max_batch_tokens = max_batch_tokens
        self.prompt_length = prompt_length
        self.metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="flaubert-np-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then end the model thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def queue_depth(self) -> int:
        """Texts waiting for a pass."""
        with self._wake:
            return sum(job.remaining() for job in self._jobs)

    async def embed(self, features: list[dict[str, np.ndarray]]) -> np.ndarray:
        """The texts' embeddings [n, dim] (not normalised), whatever passes they land in."""
        loop = asyncio.get_running_loop()
        embeddings = np.empty((len(features), self.encoder.embedding_dimension), np.float32)
        job = _Job(features, loop.create_future(), loop, embeddings)
        with self._wake:
            if self._stopping:
                raise RuntimeError("the model thread has stopped")
            self._jobs.append(job)
            self._wake.notify()
        return await job.future

    def _take(self) -> list[tuple[_Job, int, int]]:
        """Under the lock: the next pass, as (job, first text, end) slices, in queue order, up
        to the token budget (at least one text, however long)."""
        pieces: list[tuple[_Job, int, int]] = []
        budget = self.max_batch_tokens
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # the client left, or an earlier pass failed
                self._jobs.popleft()
                continue
            start = end = job.taken
            while end < len(job.features):
                n = job.features[end]["input_ids"].shape[1]
                if n > budget and (pieces or end > start):
                    break
                budget -= n
                end += 1
            if end > start:
                pieces.append((job, start, end))
                job.taken = end
            if not job.remaining():
                self._jobs.popleft()
                continue
            if end > start:
                # Split: its rest goes to the back of the queue, so that a large request shares
                # the next passes with the requests behind it rather than holding them up.
                self._jobs.rotate(-1)
            break  # the budget is spent
        return pieces

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if not self._jobs:
                    return
                pieces = self._take()
            if pieces:
                self._forward(pieces)

    def _forward(self, pieces: list[tuple[_Job, int, int]]) -> None:
        features = [f for job, start, end in pieces for f in job.features[start:end]]
        tokens = sum(int(f["input_ids"].shape[1]) for f in features)
        began = time.perf_counter()
        try:
            embeddings = self.encoder.encode_tokenized(features, self.prompt_length)
        except Exception as e:  # the requests in this pass get a 500; the thread carries on
            log.exception("forward pass of %d texts failed", len(features))
            for job, _, _ in pieces:
                job.loop.call_soon_threadsafe(_settle, job.future, None, e)
            return
        requests = len({id(job) for job, _, _ in pieces})
        self.metrics.forward_pass(len(features), requests, tokens, time.perf_counter() - began)
        offset = 0
        for job, start, end in pieces:
            job.embeddings[start:end] = embeddings[offset : offset + end - start]
            offset += end - start
            job.done += end - start
            if job.done == len(job.features):
                job.loop.call_soon_threadsafe(_settle, job.future, job.embeddings, None)
