"""Running the project's commands as a user does: ``python -m module args`` from the repository
root, output captured (one helper for every test module that does)."""

from __future__ import annotations

import re
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


def doc_block(first_line: str, page: str = "README.md") -> str:
    """The fenced code block of ``page`` (the README, or a page under docs/) that starts with
    ``first_line``."""
    blocks = re.findall(r"```\w*\n(.*?)```", (ROOT / page).read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block
