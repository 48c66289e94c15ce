"""The toy Gaussian task: each estimator's bias, variance and time against exact answers.

Mode ``estimate`` measures ``n_estimates`` independent gradient estimates per (cost, k) in chunks:
each chunk is one batched distribution of ``chunk`` independent copies of the parameters and one
backward pass, so row b of the parameter gradients is estimate b. Mode ``optimize`` minimizes
E[f] over (mu, sigma) by SGD with the estimator and records the exact objective along the way.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.distributions import Independent, Normal

from benchmarks.measure import Moments, gradient_statistics, measure_estimates, synchronize
from benchmarks.results import RunWriter
from benchmarks.tasks.gaussian_exact import (
    COSTS,
    PARAMS,
    check_cost,
    exact_gradient,
    exact_variance,
)
from estimators.base import ConfigError, Estimator, require_int

MODES = ("estimate", "optimize")


def gaussian(mu: torch.Tensor, sigma: torch.Tensor) -> Independent:
    """N(mu, diag(sigma^2)) over the last axis; arguments are checked once by ``validate``."""
    return Independent(Normal(mu, sigma, validate_args=False), 1, validate_args=False)


def seed_for(seed: int, cost: str, k: float) -> int:
    """A seed per (cost, k), so a row's numbers do not depend on which other rows were asked for."""
    return zlib.crc32(f"{seed}/{cost}/{k!r}".encode())


def total_cost(cost: str, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) = sum_j c(x_j; k) over the last axis."""
    c = COSTS[cost].torch_fn
    return lambda x: c(x, k).sum(-1)


def gradient_estimates(
    estimator: Estimator,
    f: Callable[[torch.Tensor], torch.Tensor],
    mu: float,
    sigma: float,
    dim: int,
    num_samples: int,
    batch: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` independent estimates of (d/dmu_1, d/dsigma_1) E[f], from one backward pass.

    The parameters are ``batch`` broadcast copies of one scalar each; differentiating with respect
    to the copies gives every estimate its own gradient row without materializing the copies.
    """
    mu_b = torch.tensor(mu, device=device, requires_grad=True).expand(batch, dim)
    sigma_b = torch.tensor(sigma, device=device, requires_grad=True).expand(batch, dim)
    out = estimator(gaussian(mu_b, sigma_b), f, num_samples)
    if out.shape != (num_samples, batch):
        raise RuntimeError(
            f"estimator '{estimator.name}' returned shape {tuple(out.shape)}; the contract asks "
            f"for [num_samples, *batch_shape] = {[num_samples, batch]}"
        )
    # The loss is the sum over the batch of each estimate's mean over its draws.
    loss = out.sum() / num_samples
    g_mu, g_sigma = torch.autograd.grad(loss, (mu_b, sigma_b), materialize_grads=True)
    return g_mu[:, 0], g_sigma[:, 0]


def measure(
    estimator: Estimator,
    cost: str,
    k: float,
    cfg: DictConfig,
    num_samples: int,
    device: torch.device,
) -> tuple[dict[str, Moments], float]:
    """Streaming moments of the estimates of each parameter, and seconds per estimate."""
    f = total_cost(cost, k)
    args = (estimator, f, float(cfg.mu), float(cfg.sigma), cfg.dim, num_samples)
    return measure_estimates(
        lambda batch: gradient_estimates(*args, batch, device),
        PARAMS,
        cfg.n_estimates,
        cfg.chunk_size,
        device,
    )


def toy_cases(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int
) -> Iterator[tuple[str, float, Estimator, int]]:
    """(cost, k, estimator, num_samples) for every cost x k of a toy, each with a fresh estimator
    (fresh state: a moving average, a learned control variate) and the random stream seeded for
    that pair, so a row's numbers do not depend on which other rows were asked for."""
    for cost in cfg.costs:
        for k in map(float, cfg.k):
            estimator = make_estimator()
            num_samples = cfg.num_samples or estimator.min_samples
            torch.manual_seed(seed_for(seed, cost, k))
            yield cost, k, estimator, num_samples


@contextmanager
def overflow_names_k(cost: str, k: float) -> Iterator[None]:
    """A float overflow while working on (cost, k), in the exact moments or the measured ones,
    becomes one line naming k instead of a traceback or a table of infinities."""
    try:
        yield
    except OverflowError:
        raise ConfigError(
            f"task.k={k:g}: cost {cost!r} overflows floating point at this k; choose a smaller |k|"
        ) from None


def require_finite_moments(*values: float | None) -> None:
    """OverflowError where a measured or exact moment is not finite (None: no exact one)."""
    if not all(math.isfinite(v) for v in values if v is not None):
        raise OverflowError


def estimate_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """One row per cost x k x parameter: measured statistics beside the exact ones."""
    rows = []
    for cost, k, estimator, num_samples in toy_cases(cfg, make_estimator, seed):
        with overflow_names_k(cost, k):
            moments, seconds = measure(estimator, cost, k, cfg, num_samples, device)
            exact_vars = exact_variances(cfg, estimator, cost, k, num_samples)
            for param in PARAMS:
                exact_grad = exact_gradient(cost, k, cfg.mu, cfg.sigma, param)
                stats = gradient_statistics(moments[param], exact_grad, seconds)
                exact_var = exact_vars[param]
                require_finite_moments(stats["grad_mean"], stats["grad_var"], exact_grad, exact_var)
                rows.append(
                    {
                        **describe(estimator, cfg, seed, device),
                        "cost": cost,
                        "k": k,
                        "param": param,
                        "dim": cfg.dim,
                        "mu": cfg.mu,
                        "sigma": cfg.sigma,
                        "num_samples": num_samples,
                        "n_estimates": cfg.n_estimates,
                        **stats,
                        "theta": math.nan,
                        # The estimators with an exact variance here are all unbiased.
                        "exact_mean": math.nan if exact_var is None else exact_grad,
                        "exact_var": math.nan if exact_var is None else exact_var,
                    }
                )
    return pd.DataFrame(rows)


def exact_variances(
    cfg: DictConfig, estimator: Estimator, cost: str, k: float, num_samples: int
) -> dict[str, float | None]:
    """The exact variance of one estimate per parameter at the toy's mu, sigma and dim."""
    return {
        param: exact_variance(
            estimator.name,
            estimator.options(),
            cost,
            k,
            cfg.mu,
            cfg.sigma,
            param,
            cfg.dim,
            num_samples,
        )
        for param in PARAMS
    }


def describe(estimator: Estimator, cfg: DictConfig, seed: int, device: torch.device) -> dict:
    """The columns that say which run a row comes from."""
    return {
        "estimator": estimator.name,
        "options": ",".join(f"{k}={v}" for k, v in estimator.options().items()),
        "task": cfg.name,
        "seed": seed,
        "device": device.type,
    }


def objective(cost: str, k: float, mu: torch.Tensor, sigma: torch.Tensor) -> float:
    """The exact E[f] at the current parameters."""
    expectation = COSTS[cost].expectation
    return sum(expectation(k, m, s) for m, s in zip(mu.tolist(), sigma.tolist(), strict=True))


def optimize_table(
    cfg: DictConfig, make_estimator: Callable[[], Estimator], seed: int, device: torch.device
) -> pd.DataFrame:
    """SGD on E[f] with each (cost, k): exact objective and parameters against step and time.

    A non-finite gradient (plain REINFORCE can blow up once sigma is small) stops that
    trajectory with a last row marked ``diverged``; that is a result, not a crash."""
    opt_cfg = cfg.optimize
    rows = []
    for cost, k, estimator, num_samples in toy_cases(cfg, make_estimator, seed):
        with overflow_names_k(cost, k):
            f = total_cost(cost, k)
            mu = torch.full((cfg.dim,), float(cfg.mu), device=device, requires_grad=True)
            sigma = torch.full((cfg.dim,), float(cfg.sigma), device=device, requires_grad=True)
            sgd = torch.optim.SGD([mu, sigma], lr=opt_cfg.lr)
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
                            "objective": objective(cost, k, mu.detach(), sigma.detach()),
                            "mu": mu.detach().mean().item(),
                            "sigma": sigma.detach().mean().item(),
                            "diverged": diverged,
                        }
                    )
                if step == opt_cfg.steps or diverged:
                    break
                start = time.perf_counter()
                sgd.zero_grad()
                estimator(gaussian(mu, sigma), f, num_samples).mean().backward()
                diverged = not all(torch.isfinite(p.grad).all() for p in (mu, sigma))
                if not diverged:
                    sgd.step()
                    with torch.no_grad():
                        sigma.clamp_(min=opt_cfg.sigma_min)
                synchronize(device)
                seconds += time.perf_counter() - start
            if diverged:
                warn_diverged(estimator, cost, k, step)
    return pd.DataFrame(rows)


def warn_diverged(estimator: Estimator, cost: str, k: float, step: int) -> None:
    """The one stderr line for a toy optimization stopped by a non-finite gradient."""
    print(
        f"{estimator.name}: optimization of {cost} (k={k:g}) diverged at step {step} "
        "(a non-finite gradient); its trajectory stops there",
        file=sys.stderr,
    )


def require_finite(cfg: DictConfig, key: str, prefix: str = "task.") -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{prefix}{key}={value!r}: must be a finite number")


def validate_toy(cfg: DictConfig, estimator: Estimator, costs: list[str]) -> None:
    """The keys every toy task shares: mode, sizes, num_samples, the costs and k lists, and the
    optimization's steps and learning rate; a ConfigError names the key and what is accepted."""
    if cfg.mode not in MODES:
        raise ConfigError(f"task.mode={cfg.mode!r}: accepted modes are {', '.join(MODES)}")
    for key in ("dim", "n_estimates", "chunk_size"):
        require_int(cfg[key], f"task.{key}")
    if cfg.n_estimates < 2:
        raise ConfigError(f"task.n_estimates={cfg.n_estimates}: a variance needs at least 2")
    if cfg.num_samples is not None:
        estimator.check_num_samples(cfg.num_samples, "task.num_samples")
    if not OmegaConf.is_list(cfg.costs) or not cfg.costs:
        raise ConfigError(f"task.costs={cfg.costs!r}: must be a non-empty list of {costs}")
    if not OmegaConf.is_list(cfg.k) or not cfg.k:
        raise ConfigError(f"task.k={cfg.k!r}: must be a non-empty list of numbers, e.g. [1.0]")
    for k in cfg.k:
        if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k):
            raise ConfigError(f"task.k: {k!r} is not a finite number")
    if cfg.mode == "optimize":
        for key in ("steps", "log_every"):
            require_int(cfg.optimize[key], f"task.optimize.{key}")
        require_finite(cfg.optimize, "lr", "task.optimize.")
        if cfg.optimize.lr <= 0:
            raise ConfigError(f"task.optimize.lr={cfg.optimize.lr!r}: must be > 0")


def validate(cfg: DictConfig, estimator: Estimator) -> None:
    """The Gaussian toy's keys, checked before any work."""
    validate_toy(cfg, estimator, list(COSTS))
    require_finite(cfg, "mu")
    require_finite(cfg, "sigma")
    if cfg.sigma <= 0:
        raise ConfigError(f"task.sigma={cfg.sigma!r}: must be > 0")
    num_samples = cfg.num_samples or estimator.min_samples
    for cost in cfg.costs:
        for k in map(float, cfg.k):
            check_cost(cost, k, cfg.sigma)
            if cfg.mode != "estimate":
                continue
            with overflow_names_k(cost, k):  # the exact variances, whose quadrature checks itself
                exact_variances(cfg, estimator, cost, k, num_samples)
    if cfg.mode == "optimize":
        require_finite(cfg.optimize, "sigma_min", "task.optimize.")
        if cfg.optimize.sigma_min <= 0:
            raise ConfigError(f"task.optimize.sigma_min={cfg.optimize.sigma_min!r}: must be > 0")


def run(
    cfg: DictConfig,
    make_estimator: Callable[[], Estimator],
    device: torch.device,
    writer: RunWriter,
) -> dict[str, pd.DataFrame]:
    """The task's tables by file stem: ``metrics`` or ``optimize``; ``cfg`` is the whole config."""
    task, seed = cfg.task, cfg.seed
    estimator = make_estimator()
    validate(task, estimator)
    probe = torch.ones(1, task.dim, device=device)
    estimator.check(gaussian(probe, probe), task.num_samples or estimator.min_samples)
    if task.mode == "estimate":
        return {"metrics": estimate_table(task, make_estimator, seed, device)}
    return {"optimize": optimize_table(task, make_estimator, seed, device)}
