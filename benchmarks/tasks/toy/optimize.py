"""The toys' optimize mode: E[f] minimized over the parameters with the estimator, one trajectory
per (cost, k) with the exact objective against step and time, and the variance measured along it.
``Toy`` mixes it in and supplies the distribution, cost, optimizer and estimates it calls."""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from benchmarks.measure import synchronize
from benchmarks.progress import Progress
from benchmarks.tasks.base import Context, learned_columns
from estimators.base import CostFn, Estimator
from estimators.errors import ConfigError

OPTIMIZE_COLUMNS = [
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
]
"""The columns of ``optimize.csv`` that the runner prints (``Toy.summary_columns``)."""


LOGIT_OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
"""The discrete toys' optimizers of their logits (``task.optimize.optimizer``)."""


def logit_optimizer(opt: DictConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """``opt.optimizer`` (torch's defaults but ``opt.lr``), maximizing with ``opt.maximize``."""
    return LOGIT_OPTIMIZERS[opt.optimizer](params, lr=opt.lr, maximize=opt.maximize)


def check_logit_optimizer(opt: DictConfig) -> None:
    """The optimizer's name and the ``maximize`` switch of a discrete toy's ``task.optimize``."""
    if opt.optimizer not in LOGIT_OPTIMIZERS:
        raise ConfigError(
            f"task.optimize.optimizer={opt.optimizer!r}: must be one of "
            f"{', '.join(LOGIT_OPTIMIZERS)}"
        )
    if not isinstance(opt.maximize, bool):
        raise ConfigError(f"task.optimize.maximize={opt.maximize!r}: must be true or false")


class OptimizeMode:
    """One optimization per (cost, k), for ``Toy``: its trajectory and the variance of the
    estimates at each logged step."""

    def parameter_columns(self, params: list[torch.Tensor]) -> dict[str, float]:
        """Each parameter's mean over its coordinates, by name, for a logged row."""
        return {n: p.detach().mean().item() for n, p in zip(self.start(), params, strict=True)}

    def step_variance(
        self,
        estimator: Estimator,
        f: CostFn,
        params: list[torch.Tensor],
        num_samples: int,
        step: int,
    ) -> float:
        """The variance of one estimate of the gradient with respect to the first parameter's
        first coordinate at the current parameters, from ``optimize.var_estimates`` estimates of
        a frozen copy of the estimator, on a random stream of their own: the optimization goes on
        exactly as it would without the measurement."""
        m = self.cfg.optimize.var_estimates
        if not m:
            return math.nan
        frozen = copy.deepcopy(estimator).eval()
        device = params[0].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(1_000_003 + step)
            grads = self.gradient_estimates(frozen, f, params, num_samples, m)
        return grads[0].var().item()

    def trajectory(
        self,
        cost: str,
        k: float,
        estimator: Estimator,
        num_samples: int,
        context: Context,
        progress: Progress,
    ) -> Iterator[list[dict]]:
        """The optimization of E[f] from the starting point: the exact objective and the mean
        parameters against step and time, one row every ``log_every`` steps. A non-finite
        gradient (plain REINFORCE can blow up once sigma is small) stops the trajectory with a
        last row marked ``diverged``; that is a result, not a crash."""
        opt_cfg = self.cfg.optimize
        f = self.cost(cost, k)
        params = [p.requires_grad_() for p in self.initial(context.device)]
        optimizer = self.optimizer(params)
        seconds, diverged = 0.0, False
        for step in range(opt_cfg.steps + 1):
            context.progress.update(cost=cost, k=k, step=step)
            if step % opt_cfg.log_every == 0 or step == opt_cfg.steps or diverged:
                row = {
                    **self.run_columns(estimator, context),
                    "cost": cost,
                    "k": k,
                    "dim": self.cfg.dim,
                    "num_samples": num_samples,
                    "lr": opt_cfg.lr,
                    "step": step,
                    "time_s": seconds,
                    "objective": self.objective(cost, k, params),
                    **self.parameter_columns(params),
                    **learned_columns(estimator),
                    "grad_var": self.step_variance(estimator, f, params, num_samples, step),
                    "diverged": diverged,
                }
                yield [row]
            if step == opt_cfg.steps or diverged:
                break
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = estimator(self.distribution(*params), f, num_samples).mean()
            estimator.backward(loss, *params)
            diverged = not all(torch.isfinite(p.grad).all() for p in params)
            if not diverged:
                optimizer.step()
                self.after_step(params)
            synchronize(context.device)
            seconds += time.perf_counter() - start
            progress.update()
        if diverged:
            progress.update(opt_cfg.steps - step)  # the steps it will not take
            warn_diverged(estimator, cost, k, step)


def warn_diverged(estimator: Estimator, cost: str, k: float, step: int) -> None:
    """The one stderr line for a toy optimization stopped by a non-finite gradient."""
    print(
        f"{estimator.name}: optimization of {cost} (k={k:g}) diverged at step {step} "
        "(a non-finite gradient); its trajectory stops there",
        file=sys.stderr,
    )
