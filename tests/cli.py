"""Running the project's commands as a user does: ``python -m module args`` from the repository
root, output captured (one helper for every test module that does)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, module: str = "benchmarks.run", timeout: int = 300, pythonpath: Path | None = None
):
    """``python -m module args`` from the repository root, its output captured; with
    ``pythonpath``, that folder importable (a user's own cost or estimator module)."""
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
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


def run_with_estimator(tmp_path: Path, name: str, code: str, *args: str, timeout: int = 300):
    """``python -m benchmarks.run estimator=NAME args`` from a copy of the project in ``tmp_path``
    with one more estimator: ``code`` as ``estimators/NAME.py`` and its yaml, as a user adds one."""
    for folder in ("estimators", "benchmarks", "conf"):
        shutil.copytree(ROOT / folder, tmp_path / folder, dirs_exist_ok=True)
    (tmp_path / f"estimators/{name}.py").write_text(code)
    (tmp_path / f"conf/estimator/{name}.yaml").write_text(
        f"_target_: estimators.build\nname: {name}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", f"estimator={name}", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def interrupt(*args: str, started: Path, settle: float = 3.0):
    """``python -m benchmarks.run args``, sent SIGINT (Ctrl-C) ``settle`` seconds after the
    file ``started`` appears (Hydra's record of the job to interrupt); its output captured."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(settle)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
