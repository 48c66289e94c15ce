"""The Hydra entry point: ``python -m benchmarks.run estimator=NAME task=NAME [key=value ...]``.

It builds the estimator from ``conf/estimator/NAME.yaml``, runs the task, writes the task's tidy
tables into the run directory and prints a summary. Bad input stops with one line on stderr,
exit code 2, and nothing left on disk.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import shutil
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from benchmarks.results import output_times, remove_unchanged, write_json, write_table
from estimators.base import ConfigError, Estimator, require_int

log = logging.getLogger(__name__)
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA where there is a GPU and the CPU otherwise."""
    if name not in DEVICES:
        raise ConfigError(f"device={name!r}: accepted devices are {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda': no CUDA device is available here; use cpu or auto")
    return torch.device(name)


def estimator_factory(cfg: DictConfig):
    """A function that builds a fresh estimator from its config, unwrapping config errors."""

    def make() -> Estimator:
        try:
            return instantiate(cfg)
        except InstantiationException as error:
            cause = error.__cause__
            if isinstance(cause, ConfigError):
                message = str(cause)
                options = [key for key in cfg if key not in ("_target_", "name")]
                if any(message.startswith(f"{key}=") for key in options):
                    message = f"estimator.{message}"  # name the key as the user typed it
                raise ConfigError(message) from None
            raise

    make()  # fail on bad options now, before any work
    return make


def run(cfg: DictConfig, run_dir: Path) -> dict[str, pd.DataFrame]:
    """Run the configured task with the configured estimator; return its tables by file stem."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer")
    require_int(cfg.threads, "threads", nullable=True)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    make_estimator = estimator_factory(cfg.estimator)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    task = importlib.import_module(f"benchmarks.tasks.{cfg.task.name}")
    return task.run(cfg, make_estimator, device, run_dir)


SUMMARY_COLUMNS = {
    "metrics": [
        "estimator",
        "options",
        "cost",
        "k",
        "param",
        "num_samples",
        "theta",
        "exact_grad",
        "exact_mean",
        "grad_mean",
        "z_score",
        "exact_var",
        "grad_var",
        "grad_var_lo",
        "grad_var_hi",
        "time_per_estimate_s",
        "learned_eta",
        "learned_temperature",
    ],
    "optimize": [
        "estimator",
        "options",
        "cost",
        "k",
        "step",
        "time_s",
        "objective",
        "mu",
        "sigma",
        "theta",
        "grad_var",
        "learned_eta",
        "learned_temperature",
    ],
    "eval": [
        "estimator",
        "options",
        "dataset",
        "epoch",
        "step",
        "time_s",
        "test_elbo",
        "test_iwae",
    ],
    "grad_var": ["estimator", "options", "step", "M", "total_var", "mean_log_var", "snr"],
}


def summary(name: str, table: pd.DataFrame) -> str | None:
    """A readable text table of a run's headline numbers, or None for tables not summarized."""
    if name == "optimize":
        table = table.groupby(["cost", "k"], sort=False).tail(1)
    elif name == "grad_var" and not table.empty:
        table = table[table.param == "total"]
    elif name not in SUMMARY_COLUMNS or table.empty:
        return None
    shown = table[[c for c in SUMMARY_COLUMNS[name] if c in table.columns]]
    if not shown["options"].any():
        shown = shown.drop(columns="options")
    shown = shown.dropna(axis="columns", how="all")
    return shown.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-")


def discard_hydra_files(run_dir: Path) -> None:
    """Remove what Hydra wrote for a job that stopped on bad input, and the folder and its parent
    (the date folder Hydra made) where then empty."""
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()
        run_dir.parent.rmdir()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    earlier = output_times(run_dir)  # what an earlier run in this folder left, if anything
    try:
        tables = run(cfg, run_dir)
    except ConfigError as error:
        if in_sweep:  # the sweep goes on; the plot callback names this job and its error
            write_json({"status": "failed", "error": str(error)}, run_dir / "status.json")
            remove_unchanged(earlier)
            print(f"error: {error}", file=sys.stderr)
            return
        discard_hydra_files(run_dir)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if not in_sweep:
            raise
        write_json(
            {"status": "failed", "error": f"{type(error).__name__}: {error}"},
            run_dir / "status.json",
        )
        remove_unchanged(earlier)
        log.exception("job %s failed; the sweep goes on", hydra_cfg.job.num)
        return
    for name, table in tables.items():
        write_table(table, run_dir / f"{name}.csv")
        text = summary(name, table)
        if text:
            print(f"{name}.csv:\n{text}\n")
    status = run_dir / "status.json"
    task_wrote_status = output_times(run_dir).get(status) != earlier.get(status)  # the VAE does
    if not task_wrote_status:
        diverged = any(t.get("diverged", pd.Series(dtype=bool)).any() for t in tables.values())
        write_json({"status": "diverged" if diverged else "completed"}, status)
    remove_unchanged(earlier)
    print(f"wrote {', '.join(f'{name}.csv' for name in tables)} into {run_dir}")


if __name__ == "__main__":
    main()
