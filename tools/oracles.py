"""The parity oracles (torch, transformers, sentence-transformers) for the tools that run them.

A tool that needs one calls `require` before importing it: a missing oracle is then one line
saying what to install (exit status 2), not an ImportError traceback.
"""

from __future__ import annotations

import importlib
import sys

# What `pip install` gives the oracles, pinned as the test suite uses them (pyproject.toml).
INSTALL = 'pip install "flaubert-np[test]"'


def missing_message(tool: str, module: str, install: str = INSTALL) -> str:
    return f"{tool}: error: needs {module} (a parity oracle), not installed here: {install}"


def require(tool: str, *modules: str, install: str = INSTALL) -> None:
    """Exit with one line on stderr, status 2, unless every module imports."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            print(missing_message(tool, module, install), file=sys.stderr)
            sys.exit(2)
