"""Quality each estimator reaches on the digits VAE, after equal steps and after equal wall-clock.

``python -m benchmarks.vae_quality`` trains the default VAE (``task=vae``, ``dataset=digits``) with
each estimator for ``--epochs`` epochs, then again under a training-time budget equal to the time
``reparam`` took, over ``--seeds`` seeds, and reports the final test ELBO and IWAE log-likelihood
(k=1000). It also times one whole default run (10 epochs of reparam, probes and IWAE included).
Writes ``results/vae_digits/quality.csv`` and ``quality.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.bench_toy import machine
from benchmarks.results import atomic_write, markdown_table, write_table
from benchmarks.tasks import vae

ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = {
    "reparam": ["estimator=reparam"],
    "reinforce": ["estimator=reinforce"],
    "reinforce_baseline (loo, 2 draws)": ["estimator=reinforce_baseline"],
    "reinforce_baseline (ema)": ["estimator=reinforce_baseline", "estimator.baseline=ema"],
    "nvil (learned baseline)": ["estimator=nvil"],
}


def train(overrides: list[str]) -> tuple[pd.Series, float]:
    """Train once on the CPU; the final eval row and the whole run's wall-clock seconds."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=vae", *overrides])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        tables = vae.run(
            cfg, lambda: instantiate(cfg.estimator), torch.device("cpu"), Path(run_dir)
        )
    return tables["eval"].iloc[-1], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/vae_digits"))
    args = parser.parse_args()

    _, default_seconds = train([])
    rows = []
    no_probe = ["task.grad_var_every=0", "task.checkpoint=false"]
    for seed in range(args.seeds):
        budget = None
        for name, overrides in ESTIMATORS.items():
            common = [*overrides, *no_probe, f"seed={seed}"]
            final, _ = train([*common, f"task.epochs={args.epochs}"])
            budget = budget or final.time_s  # reparam comes first and sets the time budget
            rows.append(
                {
                    "comparison": f"equal steps ({final.step})",
                    "estimator": name,
                    "seed": seed,
                    **final[["step", "time_s", "test_elbo", "test_iwae"]],
                }
            )
            final, _ = train([*common, "task.epochs=100000", f"task.max_seconds={budget}"])
            rows.append(
                {
                    "comparison": f"equal time ({budget:.2f} s)",
                    "estimator": name,
                    "seed": seed,
                    **final[["step", "time_s", "test_elbo", "test_iwae"]],
                }
            )
    table = pd.DataFrame(rows)
    table["machine"] = machine()
    write_table(table, args.out / "quality.csv")

    table["comparison"] = table.comparison.str.replace(r" \(.*", "", regex=True)
    summary = (
        table.sort_values("comparison", kind="stable")
        .groupby(["comparison", "estimator"], sort=False)
        .agg(
            steps=("step", "median"),
            train_seconds=("time_s", "mean"),
            test_elbo=("test_elbo", "mean"),
            test_elbo_sd=("test_elbo", "std"),
            test_iwae=("test_iwae", "mean"),
            test_iwae_sd=("test_iwae", "std"),
        )
    )
    summary["steps"] = summary["steps"].round().astype(int)
    text = (
        f"Digits VAE (64-400-20, Adam 1e-3, batch 128), {args.seeds} seeds, mean and sd; "
        f"equal steps: {args.epochs} epochs; equal time: reparam's training time.\n"
        f"One default run (10 epochs of reparam, probes and IWAE included) took "
        f"{default_seconds:.1f} s of wall-clock. Machine: {machine()}.\n\n"
        + markdown_table(summary.reset_index())
        + "\n"
    )
    atomic_write(args.out / "quality.md", lambda handle: handle.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
