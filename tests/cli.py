"""Running the project's commands as a user does: ``python -m module args`` from the repository
root, output captured (one helper for every test module that does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, module: str = "benchmarks.run", timeout: int = 300):
    """``python -m module args`` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
