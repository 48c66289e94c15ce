"""Regression gates: timing (``timing``) and statistics (``stat_gate``)."""

from __future__ import annotations

import sys


def report(gate: str, failures: list[str], passed: str) -> int:
    """Print each failure on stderr, or the line saying what passed; the exit code."""
    for line in failures:
        print(f"{gate}: {line}", file=sys.stderr)
    if not failures:
        print(f"{gate}: {passed}")
    return 1 if failures else 0
