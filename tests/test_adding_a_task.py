"""The example task of docs/adding-a-task.md works as written, from outside the repository: a
single run, a sweep whose callback writes the summary and the figure, and the plot command."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from cli import doc_block

PAGE = "docs/adding-a-task.md"


def commands() -> list[list[str]]:
    """The page's three commands, as argument lists (its `export` line is the env below)."""
    text = doc_block("export PYTHONPATH", PAGE).replace("\\\n", " ")
    lines = [line.split() for line in text.splitlines()[1:]]
    return [[arg.strip("'") for arg in line] for line in lines]


@pytest.mark.slow
def test_the_example_task_runs_sweeps_and_plots_from_its_own_files(tmp_path):
    (tmp_path / "mytasks").mkdir()
    (tmp_path / "mytasks/exponential.py").write_text(doc_block("# mytasks/exponential.py", PAGE))
    (tmp_path / "myconf/task").mkdir(parents=True)
    (tmp_path / "myconf/task/exponential.yaml").write_text(
        doc_block("# myconf/task/exponential.yaml", PAGE)
    )
    single, sweep, plot = commands()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def call(args: list[str]) -> subprocess.CompletedProcess:
        assert args[:2] == ["python", "-m"]
        return subprocess.run(
            [sys.executable, *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    out = call([*single, "task.n_estimates=20000"])
    assert out.returncode == 0, out.stderr
    (metrics,) = tmp_path.glob("results/runs/*/*/metrics.csv")
    row = pd.read_csv(metrics).iloc[0]
    assert row.estimator == "reinforce" and row.exact_grad == -4.0
    assert abs(row.z_score) < 5  # unbiased against the exact -4 / rate^3
    assert "grad_var" in out.stdout  # the printed summary

    out = call([*sweep, "task.n_estimates=20000"])
    assert out.returncode == 0, out.stderr
    figure = tmp_path / "sweep/plots/exponential_variance_vs_rate.png"
    assert figure.stat().st_size > 0
    text = (tmp_path / "sweep/summary.md").read_text()
    assert "## Exponential toy: variance of one estimate" in text
    assert "REINFORCE + leave-one-out baseline" in text and "Reparameterization" in text
    summary = pd.read_csv(tmp_path / "sweep/summary.csv")
    assert len(summary) == 9 and set(summary.rate) == {0.5, 1.0, 2.0}

    figure.unlink()
    out = call(plot)
    assert out.returncode == 0, out.stderr
    assert str(figure.relative_to(tmp_path)) in out.stdout and figure.exists()
