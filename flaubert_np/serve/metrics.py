"""The server's counters and histograms, in Prometheus' text exposition format (version 0.0.4).

Written by hand: a counter is a number per label set, a histogram cumulative bucket counts, a
sum and a count. Updates come from the event loop and from the model thread, hence the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "flaubert_np_"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Labels = (), by: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def lines(self) -> list[str]:
        return [f"{PREFIX}{self.name}{_labels(k)} {v:g}" for k, v in sorted(self.values.items())]


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: dict[Labels, list[int]] = field(default_factory=dict)  # per bucket, not cumulative
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, labels: Labels = ()) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def lines(self) -> list[str]:
        out = []
        for labels, counts in sorted(self.counts.items()):
            total = 0
            for bound, count in zip((*self.buckets, "+Inf"), counts, strict=True):
                total += count
                le = 'le="' + (bound if isinstance(bound, str) else f"{bound:g}") + '"'
                out.append(f"{PREFIX}{self.name}_bucket{_labels(labels, le)} {total}")
            out.append(f"{PREFIX}{self.name}_sum{_labels(labels)} {self.sums[labels]:g}")
            out.append(f"{PREFIX}{self.name}_count{_labels(labels)} {total}")
        return out


class Metrics:
    """Everything /metrics shows. `queue_depth` is read when scraped (inputs waiting)."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0):
        self._lock = threading.Lock()
        self.queue_depth = queue_depth
        self.requests = Counter("requests_total", "Requests answered, by route and status.")
        self.duration = Histogram(
            "request_duration_seconds", "Time to answer a request.", DURATION_BUCKETS
        )
        self.batch_inputs = Histogram("batch_size", "Texts per forward pass.", SIZE_BUCKETS)
        self.batch_requests = Histogram(
            "batch_requests", "Requests sharing a forward pass.", SIZE_BUCKETS
        )
        self.batch_tokens = Histogram(
            "batch_tokens", "Real tokens per forward pass.", TOKEN_BUCKETS
        )
        self.pass_duration = Histogram(
            "forward_pass_seconds", "Time of a forward pass, pooling included.", DURATION_BUCKETS
        )
        self.inputs = Counter("inputs_total", "Texts embedded.")
        self.tokens = Counter("tokens_total", "Real tokens embedded.")
        self.inputs.inc(by=0)  # shown from the start, not from the first pass
        self.tokens.inc(by=0)

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc((("route", route), ("status", str(status))))
            self.duration.observe(seconds, (("route", route),))

    def forward_pass(self, inputs: int, requests: int, tokens: int, seconds: float) -> None:
        with self._lock:
            self.pass_duration.observe(seconds)
            self.batch_inputs.observe(inputs)
            self.batch_requests.observe(requests)
            self.batch_tokens.observe(tokens)
            self.inputs.inc(by=inputs)
            self.tokens.inc(by=tokens)

    def render(self) -> str:
        blocks = []
        with self._lock:
            for metric in (
                self.requests,
                self.duration,
                self.batch_inputs,
                self.batch_requests,
                self.batch_tokens,
                self.pass_duration,
                self.inputs,
                self.tokens,
            ):
                kind = "counter" if isinstance(metric, Counter) else "histogram"
                blocks += [
                    f"# HELP {PREFIX}{metric.name} {metric.help}",
                    f"# TYPE {PREFIX}{metric.name} {kind}",
                    *metric.lines(),
                ]
        blocks += [
            f"# HELP {PREFIX}queue_depth Texts waiting for the model.",
            f"# TYPE {PREFIX}queue_depth gauge",
            f"{PREFIX}queue_depth {self.queue_depth()}",
        ]
        return "\n".join(blocks) + "\n"
