"""The Bernoulli toy of the REBAR, RELAX and DisARM papers: estimators that need no rsample.

b ~ Bernoulli(sigmoid(theta)) in ``dim`` dimensions, one logit per dimension, all at ``theta``;
f(b) = sum_j c(b_j; k). Mode ``estimate`` measures the gradient with respect to the first logit
against its exact value and each estimator's exact expectation and variance; mode ``optimize``
minimizes E[f] over the logits with Adam and records the exact objective.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import pandas as pd
import torch
from omegaconf import DictConfig
from torch.distributions import Bernoulli, Independent

from benchmarks.measure import gradient_statistics, measure_estimates, synchronize
from benchmarks.results import RunWriter
from benchmarks.tasks.bernoulli_exact import COSTS, check_cost, exact_gradient, exact_moments
from benchmarks.tasks.gaussian import (
    describe,
    overflow_names_k,
    require_finite,
    require_finite_moments,
    toy_cases,
    validate_toy,
    warn_diverged,
)
from estimators.base import ConfigError, Estimator, require_int


def bernoulli(logits: torch.Tensor) -> Independent:
    """Independent Bernoulli bits over the last axis."""
    return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)


def total_cost(cost: str, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
    c = COSTS[cost][0]
    return lambda b: c(b, k).sum(-1)


def gradient_estimates(
    estimator: Estimator,
    f: Callable,
    theta: torch.Tensor,
    num_samples: int,
    batch: int,
) -> tuple[torch.Tensor]:
    """``batch`` independent estimates of d/dtheta_1 E[f] at the logits ``theta`` [dim], from one
    backward pass."""
    logits = theta.detach().requires_grad_().expand(batch, len(theta))
    out = estimator(bernoulli(logits), f, num_samples)
    (grad,) = torch.autograd.grad(out.sum() / num_samples, (logits,), materialize_grads=True)
    return (grad[:, 0],)


def learned_columns(estimator: Estimator) -> dict[str, float]:
    """``learned_eta``, ``learned_temperature``: a learned control variate's values as measured."""
    return {f"learned_{key}": value for key, value in estimator.learned().items()}


def initial_logits(cfg: DictConfig, device: torch.device) -> torch.Tensor:
    # float64: at k = 0.499 the cost differences cancel to 1e-3 of the costs, which float32
    # would turn into a bias of 1e-5 relative, larger than the statistical error it is compared to.
    return torch.full((cfg.dim,), float(cfg.theta), dtype=torch.float64, device=device)


def train_control_variate(
    estimator: Estimator, f: Callable, theta: torch.Tensor, num_samples: int, cfg: DictConfig
) -> None:
    """``cfg.cv_steps`` steps of a learned control variate (rebar, relax) at the fixed logits, each
    on the variance of ``cfg.cv_batch`` estimates, as the RELAX paper trains it; then freeze it."""
    for _ in range(cfg.cv_steps):
        logits = theta.detach().requires_grad_().expand(cfg.cv_batch, len(theta))
        loss = estimator(bernoulli(logits), f, num_samples).sum() / num_samples
        estimator.backward(loss, logits)
    estimator.eval()


def estimate_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """One row per cost x k: measured statistics beside the exact ones."""
    rows = []
    for cost, k, estimator, num_samples in toy_cases(cfg, make_estimator, seed):
        with overflow_names_k(cost, k):
            f = total_cost(cost, k)
            theta = initial_logits(cfg, device)
            if estimator.trainable:
                train_control_variate(estimator, f, theta, num_samples, cfg)
            moments, seconds = measure_estimates(
                lambda batch, e=estimator, f=f, t=theta, n=num_samples: gradient_estimates(
                    e, f, t, n, batch
                ),
                ("theta",),
                cfg.n_estimates,
                cfg.chunk_size,
                device,
            )
            stats = gradient_statistics(
                moments["theta"], exact_gradient(cost, k, cfg.theta), seconds
            )
            mean, var = exact_moments(
                estimator.name, estimator.options(), cost, k, cfg.theta, cfg.dim, num_samples
            )
            require_finite_moments(stats["grad_mean"], stats["grad_var"], mean, var)
            rows.append(
                {
                    **describe(estimator, cfg, seed, device),
                    "cost": cost,
                    "k": k,
                    "param": "theta",
                    "dim": cfg.dim,
                    "mu": math.nan,
                    "sigma": math.nan,
                    "num_samples": num_samples,
                    "n_estimates": cfg.n_estimates,
                    **stats,
                    "theta": float(cfg.theta),
                    **learned_columns(estimator),
                    "exact_mean": math.nan if mean is None else mean,
                    "exact_var": math.nan if var is None else var,
                }
            )
    return pd.DataFrame(rows)


def objective(cost: str, k: float, logits: torch.Tensor) -> float:
    """The exact E[f] = sum_j p_j c(1) + (1 - p_j) c(0)."""
    c = COSTS[cost][0]
    p = torch.sigmoid(logits.detach().double())
    return float((p * c(1.0, k) + (1 - p) * c(0.0, k)).sum())


def step_variance(
    estimator: Estimator, f: Callable, logits: torch.Tensor, num_samples: int, m: int, step: int
) -> float:
    """The variance of one estimate of d/dtheta_1 E[f] at the current logits, from ``m`` estimates
    of a frozen copy of the estimator, on a random stream of their own: the optimization goes on
    exactly as it would without the measurement."""
    if not m:
        return math.nan
    frozen = copy.deepcopy(estimator).eval()
    with torch.random.fork_rng(devices=[logits.device] if logits.device.type == "cuda" else []):
        torch.manual_seed(1_000_003 + step)
        (grads,) = gradient_estimates(frozen, f, logits, num_samples, m)
    return grads.var().item()


def optimize_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """Adam on the logits for each (cost, k): exact objective and mean logit against step/time.

    As in the Gaussian toy, a non-finite gradient stops that trajectory with a last row marked
    ``diverged``."""
    opt_cfg = cfg.optimize
    rows = []
    for cost, k, estimator, num_samples in toy_cases(cfg, make_estimator, seed):
        with overflow_names_k(cost, k):
            f = total_cost(cost, k)
            logits = initial_logits(cfg, device).requires_grad_()
            adam = torch.optim.Adam([logits], lr=opt_cfg.lr)
            seconds = 0.0
            diverged = False
            for step in range(opt_cfg.steps + 1):
                if step % opt_cfg.log_every == 0 or step == opt_cfg.steps or diverged:
                    rows.append(
                        {
                            **describe(estimator, cfg, seed, device),
                            "cost": cost,
                            "k": k,
                            "dim": cfg.dim,
                            "num_samples": num_samples,
                            "lr": opt_cfg.lr,
                            "step": step,
                            "time_s": seconds,
                            "objective": objective(cost, k, logits),
                            "theta": logits.detach().mean().item(),
                            **learned_columns(estimator),
                            "grad_var": step_variance(
                                estimator, f, logits, num_samples, opt_cfg.var_estimates, step
                            ),
                            "diverged": diverged,
                        }
                    )
                if step == opt_cfg.steps or diverged:
                    break
                start = time.perf_counter()
                adam.zero_grad()
                loss = estimator(bernoulli(logits), f, num_samples).mean()
                estimator.backward(loss, logits)
                diverged = not torch.isfinite(logits.grad).all()
                if not diverged:
                    adam.step()
                synchronize(device)
                seconds += time.perf_counter() - start
            if diverged:
                warn_diverged(estimator, cost, k, step)
    return pd.DataFrame(rows)


def validate(cfg: DictConfig, estimator: Estimator) -> None:
    """The Bernoulli toy's keys, checked before any work."""
    validate_toy(cfg, estimator, list(COSTS))
    require_finite(cfg, "theta")
    require_int(cfg.cv_batch, "task.cv_batch")
    require_int(cfg.cv_steps, "task.cv_steps", minimum=0)
    if cfg.mode == "optimize":
        m = cfg.optimize.var_estimates
        if isinstance(m, bool) or not isinstance(m, int) or m < 0 or m == 1:
            raise ConfigError(
                f"task.optimize.var_estimates={m!r}: must be 0 (skip) or an integer >= 2"
            )
    for cost in cfg.costs:
        check_cost(cost)


def run(
    cfg: DictConfig,
    make_estimator: Callable[[], Estimator],
    device: torch.device,
    writer: RunWriter,
) -> dict[str, pd.DataFrame]:
    """The task's tables by file stem: ``metrics`` or ``optimize``."""
    task, seed = cfg.task, cfg.seed
    estimator = make_estimator()
    validate(task, estimator)
    estimator.check(
        bernoulli(torch.zeros(1, task.dim, device=device)),
        task.num_samples or estimator.min_samples,
    )
    if task.mode == "estimate":
        return {"metrics": estimate_table(task, make_estimator, seed, device)}
    return {"optimize": optimize_table(task, make_estimator, seed, device)}
