"""A toy's metrics table as the tests read it: one run of the task in this process, and each
measured mean and variance against its exact one in standard errors (one helper for every test
module that does)."""

from __future__ import annotations

import functools

import pandas as pd
import torch
from omegaconf import OmegaConf
from scipy import stats

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base


def metrics(task: str, name: str, opts: dict | None = None, seed: int = 0, **overrides):
    """The metrics table of one CPU run of ``conf/task/TASK.yaml`` (40,000 estimates unless
    ``n_estimates`` is among ``overrides``, each a task key) with estimator ``name``."""
    cfg = OmegaConf.load(CONF_DIR / f"task/{task}.yaml")
    cfg.n_estimates = 40_000
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    make = functools.partial(estimators.build, name, **(opts or {}))
    context = base.Context(seed=seed, device=torch.device("cpu"))
    return base.run_task(base.build(cfg), make, context).tables["metrics"]


def z_scores(table: pd.DataFrame, exact_var=None) -> tuple[pd.Series, pd.Series]:
    """Measured mean against ``exact_mean`` and measured variance against ``exact_var`` (the
    table's own by default), each in units of its standard error (the variance's from its 95%
    interval)."""
    exact_var = table.exact_var if exact_var is None else exact_var
    z_mean = (table.grad_mean - table.exact_mean) / (table.grad_var / table.n_estimates) ** 0.5
    se_var = (table.grad_var_hi - table.grad_var_lo) / (2 * stats.norm.isf(0.025))
    return z_mean, (table.grad_var - exact_var) / se_var


def assert_agrees(table: pd.DataFrame, z_crit: float) -> None:
    """Every measured mean and variance within ``z_crit`` standard errors of its exact one."""
    z_mean, z_var = z_scores(table)
    assert (z_mean.abs() < z_crit).all(), table[["cost", "k", "grad_mean", "exact_mean"]]
    assert (z_var.abs() < z_crit).all(), table[["cost", "k", "grad_var", "exact_var"]]
