"""Rainforth et al.'s (2018) Gaussian latent variable model as a task: the signal-to-noise ratio
of multi-sample objectives' gradients against the number of importance samples K,
``python -m benchmarks.run task=gaussian_lvm estimator=NAME``.

The model: D = ``dim`` (20), p(z) = N(mu, I), p(x|z) = N(z, I), so p(x) = N(mu, 2 I); N =
``points`` (1024) data points x_n ~ N(mu*, 2 I) with mu* ~ N(0, I), both from ``data_seed``. The
encoder q(z|x) = N(A x + b, diag(exp(log_sigma))^2) holds the exact posterior N((x + mu) / 2,
I / 2) at A = I / 2, b = mu / 2, exp(log_sigma) = sqrt(1/2); the decoder's parameter is mu, whose
maximum-likelihood value is the data's mean. ``init=optimal`` starts at those values,
``perturbed`` adds N(0, ``perturbation``^2) noise to every parameter (from ``init_seed``).

For each objective in ``objectives`` the estimator serves and each K in ``k`` it accepts, M =
``m`` independent estimates of the objective's gradient at one data point (``point``; the SNR is
a per-data-point quantity in Rainforth et al.'s analysis) come from one vectorized pass, each from
a broadcast copy of the parameters. ``snr.csv`` has per parameter tensor, and in total per network,
the norm of the mean gradient, the summed variance, the SNR (the mean over coordinates of
|mean| / sd) and the largest z-score over coordinates of the mean against ``reparam``'s mean from
M estimates of its own (both unbiased estimators of the gradient agree; a biased one does not).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch.distributions import Independent, Normal

import estimators
from benchmarks import measure
from benchmarks.tasks.base import (
    Context,
    EstimatorFactory,
    Result,
    Task,
    register,
    run_columns,
)
from estimators.base import Estimator, serving
from estimators.errors import ConfigError, positive_number, require_int
from estimators.objectives import OBJECTIVES, Objective

if TYPE_CHECKING:  # annotations only: a task imports no pandas at module level
    import pandas as pd

NETWORKS = {"encoder": ("A", "b", "log_sigma"), "decoder": ("mu",)}
INITS = ("optimal", "perturbed")
LOG_2PI = math.log(2 * math.pi)


# The model, as pure functions of tensors.


def dataset(dim: int, points: int, seed: int) -> torch.Tensor:
    """x_n ~ N(mu*, 2 I), n < ``points``, with mu* ~ N(0, I): [points, dim], from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    mu_true = torch.randn(dim, generator=generator)
    return mu_true + math.sqrt(2.0) * torch.randn(points, dim, generator=generator)


def optimal_parameters(data: torch.Tensor) -> dict[str, torch.Tensor]:
    """The maximum-likelihood mu and the encoder at the exact posterior for it."""
    dim = data.shape[1]
    mu = data.mean(0)
    return {
        "A": torch.eye(dim) / 2,
        "b": mu / 2,
        "log_sigma": torch.full((dim,), 0.5 * math.log(0.5)),
        "mu": mu,
    }


def initial_parameters(
    data: torch.Tensor, init: str, perturbation: float, seed: int
) -> dict[str, torch.Tensor]:
    """The optimum, or the optimum with N(0, perturbation^2) noise on every parameter."""
    params = optimal_parameters(data)
    if init == "perturbed":
        generator = torch.Generator().manual_seed(seed)
        params = {
            name: p + perturbation * torch.randn(p.shape, generator=generator)
            for name, p in params.items()
        }
    return params


def posterior(params: dict[str, torch.Tensor], x: torch.Tensor) -> Independent:
    """q(z|x) = N(A x + b, diag(exp(log_sigma))^2), broadcasting over leading copies."""
    loc = torch.einsum("...ij,j->...i", params["A"], x) + params["b"]
    return Independent(Normal(loc, params["log_sigma"].exp(), validate_args=False), 1)


def log_joint(mu: torch.Tensor, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> log p(x, z) = log N(x; z, I) + log N(z; mu, I), summed over the D coordinates."""
    dim = x.shape[-1]
    return lambda z: -0.5 * ((x - z).square() + (z - mu).square()).sum(-1) - dim * LOG_2PI


def log_marginal(mu: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log N(x; mu, 2 I), exactly."""
    return Normal(mu, math.sqrt(2.0)).log_prob(x).sum(-1)


def gradient_estimates(
    estimator: Estimator,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    objective: Objective,
    m: int,
) -> dict[str, torch.Tensor]:
    """``m`` independent estimates [m, *shape] of the gradient of ``objective`` at the data point
    ``x`` with respect to each parameter, from one backward pass
    (``measure.gradient_estimates``)."""

    def model(copies: dict[str, torch.Tensor]):
        return posterior(copies, x), log_joint(copies["mu"], x)

    return measure.gradient_estimates(estimator, model, params, estimator.min_samples, m, objective)


def snr_rows(
    grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor] | None
) -> list[dict]:
    """Per parameter tensor and in total per network: the mean's norm, the summed variance, the
    SNR over coordinates with any variance, and the largest z-score against ``reference``."""
    rows = []
    for network, names in NETWORKS.items():
        parts = {name: grads[name].flatten(1) for name in names}
        parts["total"] = torch.cat(list(parts.values()), 1)
        for param, g in parts.items():
            mean, var = g.mean(0), g.var(0)
            live = var > 0
            z = math.nan
            if reference is not None:
                ref = torch.cat([reference[n].flatten(1) for n in names], 1)
                ref = ref if param == "total" else reference[param].flatten(1)
                se = ((var + ref.var(0)) / len(g)).sqrt()
                z = ((mean - ref.mean(0)).abs() / se).max().item()
            rows.append(
                {
                    "network": network,
                    "param": param,
                    "n_coords": g.shape[1],
                    "grad_mean_norm": mean.norm().item(),
                    "grad_var": var.sum().item(),
                    "snr": (mean[live].abs() / var[live].sqrt()).mean().item()
                    if live.any()
                    else math.nan,
                    "z_vs_reparam": z,
                }
            )
    return rows


# The task.


@register
class GaussianLVMTask(Task):
    """The gradient SNR of multi-sample objectives against K on Rainforth et al.'s Gaussian model:
    ``snr.csv`` (``conf/task/gaussian_lvm.yaml`` lists the options)."""

    name = "gaussian_lvm"
    tables = ("snr",)
    figures_module = "benchmarks.tasks.gaussian_lvm.figures"
    summary_columns: ClassVar[dict[str, list[str]]] = {
        "snr": ["estimator", "objective", "K", "network", "grad_var", "snr", "z_vs_reparam"]
    }

    def objectives(self, estimator: Estimator) -> list[Objective]:
        """The (objective, K) pairs of the options that ``estimator`` serves."""
        cfg = self.cfg
        return [
            Objective(name, k)
            for name in cfg.objectives
            if name in estimator.objectives
            for k in cfg.k
            if k >= estimator.min_importance_samples
        ]

    def validate(self, estimator: Estimator, context: Context) -> None:
        """Every key, then the estimator against q and the objectives, before any work."""
        cfg = self.cfg
        for key in ("dim", "points"):
            require_int(cfg[key], f"task.{key}")
        require_int(cfg.m, "task.m", minimum=2)
        for key in ("data_seed", "init_seed"):
            require_int(cfg[key], f"task.{key}", minimum=0)
        if cfg.init not in INITS:
            raise ConfigError(f"task.init={cfg.init!r}: accepted are {', '.join(INITS)}")
        positive_number(cfg.perturbation, "task.perturbation")
        if (
            not isinstance(cfg.point, int)
            or isinstance(cfg.point, bool)
            or not 0 <= cfg.point < cfg.points
        ):
            raise ConfigError(
                f"task.point={cfg.point!r}: must be an integer in [0, task.points={cfg.points})"
            )
        if not cfg.objectives or any(name not in OBJECTIVES for name in cfg.objectives):
            raise ConfigError(
                f"task.objectives={list(cfg.objectives)}: a non-empty list of "
                f"{', '.join(OBJECTIVES)}"
            )
        if not cfg.k:
            raise ConfigError("task.k=[]: a non-empty list of integers K >= 1")
        for k in cfg.k:
            require_int(k, "task.k")
        q = posterior(optimal_parameters(torch.zeros(2, cfg.dim)), torch.zeros(cfg.dim))
        if not any(name in estimator.objectives for name in cfg.objectives):
            raise ConfigError(
                f"task.objectives={list(cfg.objectives)}: estimator '{estimator.name}' estimates "
                f"none of them; estimators that do: {', '.join(serving(list(cfg.objectives), q))}"
            )
        if max(cfg.k) < estimator.min_importance_samples:
            raise ConfigError(
                f"task.k={list(cfg.k)}: estimator '{estimator.name}' needs K >= "
                f"{estimator.min_importance_samples} importance samples"
            )
        for objective in self.objectives(estimator):
            estimator.check_objective(q, objective, estimator.min_samples)

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """The printed rows: each network's total."""
        return table[table["param"] == "total"]

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        cfg = self.cfg
        estimator = make_estimator()
        data = dataset(cfg.dim, cfg.points, cfg.data_seed)
        params = initial_parameters(data, cfg.init, cfg.perturbation, cfg.init_seed)
        x = data[cfg.point]
        reference = None if estimator.name == "reparam" else estimators.build("reparam")
        columns = run_columns(
            estimator,
            self.name,
            context.seed,
            None,  # it runs on the CPU
            init=cfg.init,
            point=cfg.point,
            m=cfg.m,
            num_samples=estimator.min_samples,
        )
        rows = []
        for objective in self.objectives(estimator):
            context.progress.update(objective=objective.name, K=objective.num_samples)
            start = time.perf_counter()
            grads = gradient_estimates(estimator, params, x, objective, cfg.m)
            seconds = time.perf_counter() - start
            against = None
            if reference is not None:
                against = gradient_estimates(reference, params, x, objective, cfg.m)
            for row in snr_rows(grads, against):
                rows.append(
                    {
                        **columns,
                        "objective": objective.name,
                        "K": objective.num_samples,
                        **row,
                        "time_s": seconds,
                    }
                )
        return Result({"snr": rows})
