"""Long toy runs report progress (a bar on a terminal, log lines elsewhere) without changing a
number; a bad input answers without the heavy imports."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

import estimators
from benchmarks import progress
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base

TIMES = ["time_per_estimate_s", "work_normalized_var", "time_s"]


def toy_tables(mode: str) -> dict:
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    cfg.update(mode=mode, n_estimates=3000, chunk_size=1000, costs=["square", "cos"], k=[1.0])
    cfg.optimize.update(steps=20, log_every=5)
    context = base.Context(seed=0, device=torch.device("cpu"))
    make = lambda: estimators.build("reinforce_baseline")  # noqa: E731
    tables = base.run_task(base.build(cfg), make, context).tables
    return {name: table.drop(columns=TIMES, errors="ignore") for name, table in tables.items()}


@pytest.mark.parametrize("mode, unit", [("estimate", "estimates"), ("optimize", "steps")])
def test_progress_is_logged_off_a_terminal_and_changes_no_number(mode, unit, monkeypatch, caplog):
    quiet = toy_tables(mode)
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    with caplog.at_level(logging.INFO, logger="benchmarks.progress"):
        loud = toy_tables(mode)
    lines = [r.getMessage() for r in caplog.records if r.name == "benchmarks.progress"]
    total = 2 * (3000 if mode == "estimate" else 20)
    assert lines[0].startswith("square, k=1: ") and f" of {total} {unit} (" in lines[0]
    assert lines[-1] == f"cos, k=1: {total} of {total} {unit} (100%)"
    for name, table in quiet.items():
        assert table.equals(loud[name])


def test_progress_is_a_bar_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.Progress(6000, "estimates") as bar:
        bar.describe("square, k=1")
        bar.update(3000)
        assert bar.bar is not None and bar.bar.n == 3000  # tqdm redraws at most every 0.1 s
    assert "/6.00k [" in terminal.getvalue() and "estimates/s" in terminal.getvalue()


def test_a_bad_input_answers_without_the_heavy_imports():
    code = (
        "import sys, benchmarks.run, benchmarks.tasks.toy; "
        "print(sorted({'scipy', 'pandas', 'seaborn', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_no_task_imports_pandas_or_plotting_at_module_level():
    # Tasks hand rows to the writer, which builds the tables; figures live in modules of their own.
    targets = [OmegaConf.load(p)._target_ for p in sorted(CONF_DIR.glob("task/*.yaml"))]
    modules = sorted({target.rsplit(".", 1)[0] for target in targets})
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted({'pandas', 'seaborn', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", f"{modules}: {out.stdout} {out.stderr}"
