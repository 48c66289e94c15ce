"""A composed config (``conf/config.yaml`` with its groups) built and run: the one code path of
the command line (``benchmarks.run``), the scripts and the tests."""

from __future__ import annotations

import tempfile

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.config import CONF_DIR, store_estimator_configs
from benchmarks.loggers import build_logger
from benchmarks.results import RunWriter
from benchmarks.tasks.base import Context, EstimatorFactory, Result, Task, build, run_task
from estimators.base import Estimator
from estimators.errors import ConfigError, require_int

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


def estimator_factory(cfg: DictConfig) -> EstimatorFactory:
    """A function that builds a fresh estimator from its config (with any extra options a task
    passes in, such as NVIL's learned baseline), unwrapping config errors."""

    def make(**extra) -> Estimator:
        try:
            return instantiate(cfg, **extra)
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


def run_config(
    cfg: DictConfig,
    writer: RunWriter | None = None,
    make_estimator: EstimatorFactory | None = None,
    device: torch.device | None = None,
    progress: dict | None = None,
) -> tuple[Task, Result]:
    """Build the configured task and estimator (or use ``make_estimator``), validate and run the
    task on ``device`` (else ``cfg.device``), and write its tables and status through ``writer``
    where one is given (which hands the tables on to the configured logger); the task keeps
    ``progress`` current (where it is, for an interrupt)."""
    if writer is not None:  # every status, a failure's too, names the task's class
        writer.task_class = OmegaConf.select(cfg, "task._target_")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer")
    require_int(cfg.threads, "threads", nullable=True)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = device or resolve_device(cfg.device)
    make_estimator = make_estimator or estimator_factory(cfg.estimator)
    task = build(cfg.task)
    if writer is not None:
        writer.task = task.name
        writer.logger = build_logger(cfg, writer.run_dir, task.name, make_estimator().name)
    np.random.seed(cfg.seed % 2**32)
    context = Context(cfg.seed, device, writer, cfg, {} if progress is None else progress)
    result = run_task(task, make_estimator, context)
    if writer is not None:
        for name, rows in result.rows.items():
            writer.table(name, rows)
        writer.status(result.status, **result.details)
        writer.finish()
    return task, result


def compose_config(overrides: list[str]) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``, composed as the command line composes it."""
    store_estimator_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def run_overrides(overrides: list[str], device: torch.device | None = None) -> Result:
    """The run that ``python -m benchmarks.run OVERRIDES`` makes, in a scratch folder removed
    afterwards: its result in memory, for scripts that compare runs."""
    with tempfile.TemporaryDirectory() as scratch:
        return run_config(compose_config(overrides), RunWriter(scratch), device=device)[1]
