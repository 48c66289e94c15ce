"""The README's "Adding an estimator" example works as written: one file, one yaml, nothing else."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def readme_block(first_line: str) -> str:
    """The fenced code block of the README that starts with ``first_line``."""
    blocks = re.findall(r"```\w*\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def test_the_readme_example_estimator_runs_from_one_file_and_one_yaml(tmp_path):
    for folder in ("estimators", "benchmarks", "conf"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "estimators/antithetic.py").write_text(readme_block("# estimators/antithetic.py"))
    (tmp_path / "conf/estimator/antithetic.yaml").write_text(
        readme_block("# conf/estimator/antithetic.yaml")
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "estimator=antithetic",
            "task.num_samples=2",
            "task.n_estimates=20000",
            "task.costs=[linear,square]",
            "task.k=[1.0]",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "run/metrics.csv").set_index(["cost", "param"])
    assert set(table.estimator) == {"antithetic"}
    # Antithetic pairs cancel the linear cost's noise exactly, and stay unbiased on the square.
    assert table.loc[("linear", "mu"), "grad_var"] == 0
    assert table.loc[("linear", "sigma"), "grad_var"] < 1e-10
    assert (table.z_score.abs() < 5).all()
