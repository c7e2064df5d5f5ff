"""Progress on stderr, on tqdm's conventions, readable on a terminal and in a log.

On a terminal: tqdm's bar, redrawn in place. Anywhere else (a pipe, a log file): the same text as
whole lines, at most one every LOG_INTERVAL seconds (TQDM_MININTERVAL, the variable tqdm reads,
changes it) and one when the bar closes; never a carriage return. A bar is closed whatever ends
its block (an error, Ctrl-C), so that the next message starts on a line of its own; while it is
shown, Python warnings are printed above it (tqdm.write), not at the end of its line.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import IO

from tqdm import tqdm

LOG_INTERVAL = 10.0  # seconds between two lines in a log


def log_interval() -> float:
    """Seconds between two progress lines in a log: TQDM_MININTERVAL if set, else LOG_INTERVAL."""
    try:
        return float(os.environ.get("TQDM_MININTERVAL", LOG_INTERVAL))
    except ValueError:
        return LOG_INTERVAL


def is_terminal(file: IO[str]) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A count up to `total` (None: unknown), shown as tqdm shows it; a context manager.

    `clock` (seconds) is injectable so that rates can be tested without waiting.
    """

    def __init__(
        self,
        total: float | None,
        desc: str,
        unit: str = "it",
        *,
        initial: float = 0,
        unit_scale: bool = False,
        enabled: bool = True,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float | None = None,
    ) -> None:
        self.file = file or sys.stderr
        self.enabled, self.clock = enabled, clock
        self.interval = log_interval() if interval is None else interval
        self.meter = {"total": total, "prefix": desc, "unit": unit, "unit_scale": unit_scale,
                      "initial": initial}  # fmt: skip
        self.n, self.postfix = initial, ""
        self.shown: tuple[float, str] | None = None  # what the last line in a log showed
        self.t0 = self.last = clock()
        self.bar: tqdm | None = None
        if enabled and is_terminal(self.file):
            self.showwarning = warnings.showwarning
            warnings.showwarning = self._show_warning
            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                            initial=initial, file=self.file)  # fmt: skip

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def update_to(self, n: float, postfix: str = "") -> None:
        """The count is now `n`; `postfix` is shown after the rate."""
        self.n, self.postfix = n, postfix
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(n - self.bar.n)
        elif self.enabled and self.clock() - self.last >= self.interval:
            self._line()

    def line(self) -> str:
        """The progress as one line of text (tqdm's format, with an ASCII bar)."""
        return tqdm.format_meter(self.n, elapsed=self.elapsed(), postfix=self.postfix,
                                 ascii=True, **self.meter)  # fmt: skip

    def write(self, message: str) -> None:
        """A message on a line of its own, above the bar (shown even when the bar is not)."""
        if self.bar is not None:
            self.bar.write(message, file=self.file)
        else:
            self.file.write(message + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()  # redraws the bar and ends its line
            self.bar = None
            warnings.showwarning = self.showwarning
        elif self.enabled and self.shown != (self.n, self.postfix):
            self._line()
        self.enabled = False

    def _show_warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: IO[str] | None = None,
        line: str | None = None,
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        self.write(text.rstrip("\n"))

    def _line(self) -> None:
        self.last, self.shown = self.clock(), (self.n, self.postfix)
        self.file.write(self.line() + "\n")
        self.file.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
