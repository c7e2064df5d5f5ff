"""flaubert_np/progress.py: tqdm's bar on a terminal, whole lines in a log; rates from a clock
the test sets (never wall time)."""

import io
import warnings

from flaubert_np import stream
from flaubert_np.progress import Progress, log_interval
from flaubert_np.stream import Checkpoint

original_showwarning = warnings.showwarning


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_in_a_log():
    """Not a terminal: tqdm's text as whole lines, every `interval` seconds and at the end."""
    out, now = io.StringIO(), [100.0]
    start = Checkpoint(chunks=1, rows=10, lines=10, offset=100)
    with Progress(
        1000,
        "Encoding",
        "B",
        initial=start.offset,
        unit_scale=True,
        file=out,
        clock=lambda: now[0],
        interval=10.0,
    ) as bar:
        now[0] += 2.0
        stream.show(bar, Checkpoint(chunks=2, rows=20, lines=20, offset=300), start)
        assert out.getvalue() == ""  # 2 s: not due yet
        now[0] += 8.0
        stream.show(bar, Checkpoint(chunks=3, rows=30, lines=30, offset=500, skipped=1), start)
        first = out.getvalue()
        now[0] += 1.0
        stream.show(bar, Checkpoint(chunks=4, rows=40, lines=40, offset=600, skipped=1), start)
    lines = out.getvalue().splitlines(keepends=True)
    assert "\r" not in out.getvalue() and all(line.endswith("\n") for line in lines)
    assert lines[0] == first and len(lines) == 2  # one when due, one at the end
    # 20 new rows and 400 new bytes in 10 s; 500 bytes to go at 40 B/s: 12.5 s.
    assert lines[0].startswith("Encoding:  50%|#####     | 500/1.00k [00:10<00:12, 40.0B/s, ")
    assert lines[0].endswith(", 30 rows, 2.0 rows/s, 1 skipped, 0 blank]\n")
    assert lines[1].startswith("Encoding:  60%|######    | 600/1.00k [00:11<00:08, 45.5B/s, ")
    assert lines[1].endswith(", 40 rows, 2.7 rows/s, 1 skipped, 0 blank]\n")  # 30 rows in 11 s


def test_a_log_gets_no_repeated_line():
    out, now = io.StringIO(), [0.0]
    with Progress(10, "Encoding", file=out, clock=lambda: now[0], interval=1.0) as bar:
        now[0] += 1.0
        bar.update_to(10)
    assert out.getvalue().count("\n") == 1 and "10/10" in out.getvalue()


def test_a_terminal_gets_tqdm_bar_and_a_final_newline():
    out = Terminal()
    with Progress(10, "Encoding", file=out) as bar:
        bar.update_to(4)
        bar.write("a message")
        bar.update_to(10)
    shown = out.getvalue()
    assert "\r" in shown and "Encoding: 100%" in shown and "10/10" in shown
    # tqdm.write clears the bar's line first: the message starts a line of its own
    assert "\r" + " " * 20 in shown and "\ra message\n" in shown
    assert shown.endswith("\n")


def test_a_warning_goes_above_the_bar():
    out = Terminal()
    with Progress(10, "Encoding", file=out) as bar:
        bar.update_to(3)
        warnings.warn("careful", UserWarning, stacklevel=1)
        bar.update_to(10)
    shown = out.getvalue()
    assert "\r" + " " * 20 in shown  # the bar's line is cleared first
    assert "UserWarning: careful\n" in shown and shown.endswith("\n")
    line = next(x for x in shown.split("\r") if "careful" in x)
    assert line.startswith(__file__) and "Encoding" not in line  # a line of its own
    assert warnings.showwarning is original_showwarning  # put back when the bar closed


def test_a_bar_closes_on_an_error():
    out = Terminal()
    try:
        with Progress(10, "Encoding", file=out) as bar:
            bar.update_to(3)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert out.getvalue().endswith("\n") and "3/10" in out.getvalue()


def test_disabled_is_silent_but_messages_still_show():
    out = Terminal()
    with Progress(10, "Encoding", enabled=False, file=out) as bar:
        bar.update_to(10)
        bar.write("note")
    assert out.getvalue() == "note\n"


def test_log_interval_follows_tqdm_mininterval(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    assert log_interval() == 10.0
    monkeypatch.setenv("TQDM_MININTERVAL", "2.5")
    assert log_interval() == 2.5
    monkeypatch.setenv("TQDM_MININTERVAL", "often")
    assert log_interval() == 10.0
