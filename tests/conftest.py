"""Shared fixtures.

The parity oracles (torch, transformers, sentence-transformers) are imported plainly by the tests
that need them: a missing oracle is an error, never a skip. A skipped test proves nothing, so the
session fails when any test was skipped (see pytest_sessionfinish below).
"""

import csv
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
STSB = DATA / "stsb-fr"


def read_sts_sentences(split: str) -> list[str]:
    """Every sentence of an STS split (both columns), in file order."""
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as f:
        return [s for row in csv.reader(f) for s in row[:2]]


@pytest.fixture(scope="session")
def stsb_sentences() -> list[str]:
    """The ~14,500 French sentences of the STS train and dev splits."""
    return read_sts_sentences("train") + read_sts_sentences("dev")


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) skipped; this suite allows no skips.", red=True
        )
