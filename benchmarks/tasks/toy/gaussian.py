"""The toy Gaussian of Mohamed et al. (JMLR 2020), Section 3: x ~ N(mu, sigma^2) in ``dim``
dimensions, f(x) = sum_j c(x_j; k), gradients with respect to mu and sigma, measured against
closed-form gradients and exact variances by quadrature (``exact.gaussian``)."""

from __future__ import annotations

import sys

import torch
from torch.distributions import Independent, Normal

from benchmarks.tasks.base import register
from benchmarks.tasks.toy.costs import require_derivative
from benchmarks.tasks.toy.exact.gaussian.catalogue import (
    COSTS,
    check_cost,
    cost_of,
    exact_gradient,
    expectation,
)
from benchmarks.tasks.toy.exact.gaussian.point import PARAMS, NoExactAnswer, Point, Unresolved
from benchmarks.tasks.toy.exact.gaussian.variances import exact_variance
from benchmarks.tasks.toy.loops import (
    CostFn,
    Toy,
    overflow_names_k,
    require_finite,
    require_finite_moments,
)
from estimators.base import Estimator
from estimators.errors import ConfigError


def gaussian(mu: torch.Tensor, sigma: torch.Tensor) -> Independent:
    """N(mu, diag(sigma^2)) over the last axis; arguments are checked once by ``validate``."""
    return Independent(Normal(mu, sigma, validate_args=False), 1, validate_args=False)


def total_cost(cost: str, k: float) -> CostFn:
    """f(x) = sum_j c(x_j; k) over the last axis (with one coordinate, that coordinate: a sum
    over an axis of size 1 is a reduction kernel costing several elementwise operations)."""
    c = cost_of(cost).torch_fn
    return lambda x: c(x, k).squeeze(-1) if x.shape[-1] == 1 else c(x, k).sum(-1)


@register
class GaussianToy(Toy):
    """Gradients of E[f] with respect to (mu, sigma); SGD when optimizing, sigma kept at or above
    ``optimize.sigma_min``."""

    name = "gaussian"
    params = PARAMS
    costs = tuple(COSTS)

    def start(self) -> dict[str, float]:
        return {"mu": float(self.cfg.mu), "sigma": float(self.cfg.sigma)}

    def distribution(self, mu: torch.Tensor, sigma: torch.Tensor) -> Independent:
        return gaussian(mu, sigma)

    def cost(self, cost: str, k: float) -> CostFn:
        return total_cost(cost, k)

    def objective(self, cost: str, k: float, params: list[torch.Tensor]) -> float:
        mu, sigma = (p.detach().tolist() for p in params)
        return sum(expectation(cost, k, m, s) for m, s in zip(mu, sigma, strict=True))

    def point(self, cost: str, k: float, param: str, num_samples: int) -> Point:
        """Where the exact answers are asked: the toy's mu, sigma and dim."""
        cfg = self.cfg
        return Point(cost, k, cfg.mu, cfg.sigma, param, cfg.dim, num_samples)

    def exact_variances(
        self, estimator: Estimator, cost: str, k: float, num_samples: int
    ) -> dict[str, float | None]:
        """The exact variance of one estimate per parameter at the toy's mu, sigma and dim; where
        there is none at this k, a ConfigError naming it."""
        try:
            return {
                param: exact_variance(
                    estimator.name, estimator.options(), self.point(cost, k, param, num_samples)
                )
                for param in PARAMS
            }
        except NoExactAnswer as why:
            raise ConfigError(f"task.k={k:g}: {why}") from None

    def exact(self, estimator: Estimator, cost: str, k: float, num_samples: int) -> dict:
        """The estimators with an exact variance here are all unbiased: their exact mean is the
        gradient. An imported cost whose gradient fails its self-check (``Unresolved``) has no
        exact answers: one line on stderr says why."""
        try:
            grads = {p: exact_gradient(self.point(cost, k, p, num_samples)) for p in PARAMS}
            variances = self.exact_variances(estimator, cost, k, num_samples)
        except Unresolved as why:
            print(f"warning: {why}; its exact columns are left empty", file=sys.stderr)
            return dict.fromkeys(PARAMS, (None, None, None))
        return {p: (grads[p], None if v is None else grads[p], v) for p, v in variances.items()}

    def optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.cfg.optimize.lr)

    def after_step(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            params[1].clamp_(min=self.cfg.optimize.sigma_min)

    def check_options(self, estimator: Estimator, num_samples: int) -> None:
        cfg = self.cfg
        if cfg.sigma <= 0:
            raise ConfigError(f"task.sigma={cfg.sigma!r}: must be > 0")
        for cost in cfg.costs:
            require_derivative(cost, cost_of(cost), estimator)
        for cost in cfg.costs:
            for k in map(float, cfg.k):
                try:
                    check_cost(cost, k, cfg.sigma)
                except NoExactAnswer as why:
                    raise ConfigError(f"task.k={k}: {why}") from None
                if cfg.mode != "estimate":
                    continue
                with overflow_names_k(cost, k):  # the exact variances: quadrature checks itself
                    variances = self.exact_variances(estimator, cost, k, num_samples)
                    require_finite_moments(*variances.values())
        if cfg.mode == "optimize":
            require_finite(cfg.optimize, "sigma_min", "task.optimize.")
            if cfg.optimize.sigma_min <= 0:
                raise ConfigError(
                    f"task.optimize.sigma_min={cfg.optimize.sigma_min!r}: must be > 0"
                )
