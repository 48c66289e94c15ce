"""The Bernoulli toy of the REBAR, RELAX and DisARM papers: estimators that need no rsample.

b ~ Bernoulli(sigmoid(theta)) in ``dim`` dimensions, one logit per dimension, all at ``theta``;
f(b) = sum_j c(b_j; k). Mode ``estimate`` measures the gradient with respect to the first logit
against its exact value and each estimator's exact expectation and variance; mode ``optimize``
minimizes E[f] over the logits with Adam and records the exact objective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig
from torch.distributions import Bernoulli, Independent

from benchmarks.measure import gradient_statistics, measure_estimates, synchronize
from benchmarks.tasks.bernoulli_exact import COSTS, check_cost, exact_gradient, exact_moments
from benchmarks.tasks.gaussian import describe, require_finite, seed_for, validate_toy
from estimators.base import Estimator


def bernoulli(logits: torch.Tensor) -> Independent:
    """Independent Bernoulli bits over the last axis."""
    return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)


def total_cost(cost: str, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
    c = COSTS[cost][0]
    return lambda b: c(b, k).sum(-1)


def gradient_estimates(
    estimator: Estimator,
    f: Callable,
    theta: float,
    dim: int,
    num_samples: int,
    batch: int,
    device: torch.device,
) -> tuple[torch.Tensor]:
    """``batch`` independent estimates of d/dtheta_1 E[f], from one backward pass."""
    # float64: at k = 0.499 the cost differences cancel to 1e-3 of the costs, which float32
    # would turn into a bias of 1e-5 relative, larger than the statistical error it is compared to.
    logits = torch.tensor(theta, dtype=torch.float64, device=device, requires_grad=True)
    logits = logits.expand(batch, dim)
    out = estimator(bernoulli(logits), f, num_samples)
    (grad,) = torch.autograd.grad(out.sum() / num_samples, (logits,), materialize_grads=True)
    return (grad[:, 0],)


def estimate_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """One row per cost x k: measured statistics beside the exact ones."""
    rows = []
    for cost in cfg.costs:
        for k in map(float, cfg.k):
            estimator = make_estimator()
            num_samples = cfg.num_samples or estimator.min_samples
            torch.manual_seed(seed_for(seed, cost, k))
            f = total_cost(cost, k)
            moments, seconds = measure_estimates(
                lambda batch, e=estimator, f=f, n=num_samples: gradient_estimates(
                    e, f, float(cfg.theta), cfg.dim, n, batch, device
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


def optimize_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """Adam on the logits for each (cost, k): exact objective and mean logit against step/time."""
    opt_cfg = cfg.optimize
    rows = []
    for cost in cfg.costs:
        for k in map(float, cfg.k):
            estimator = make_estimator()
            num_samples = cfg.num_samples or estimator.min_samples
            torch.manual_seed(seed_for(seed, cost, k))
            f = total_cost(cost, k)
            logits = torch.full(
                (cfg.dim,), float(cfg.theta), dtype=torch.float64, device=device, requires_grad=True
            )
            adam = torch.optim.Adam([logits], lr=opt_cfg.lr)
            seconds = 0.0
            for step in range(opt_cfg.steps + 1):
                if step % opt_cfg.log_every == 0 or step == opt_cfg.steps:
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
                            "diverged": False,
                        }
                    )
                if step == opt_cfg.steps:
                    break
                start = time.perf_counter()
                adam.zero_grad()
                loss = estimator(bernoulli(logits), f, num_samples).mean()
                estimator.backward(loss, logits)
                adam.step()
                synchronize(device)
                seconds += time.perf_counter() - start
    return pd.DataFrame(rows)


def validate(cfg: DictConfig, estimator: Estimator) -> None:
    """The Bernoulli toy's keys, checked before any work."""
    validate_toy(cfg, estimator, list(COSTS))
    require_finite(cfg, "theta")
    for cost in cfg.costs:
        check_cost(cost)


def run(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], device: torch.device, run_dir: Path
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
