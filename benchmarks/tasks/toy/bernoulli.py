"""The Bernoulli toy of the REBAR, RELAX and DisARM papers: estimators that need no rsample.

b ~ Bernoulli(sigmoid(theta)) in ``dim`` dimensions, one logit per dimension, all at ``theta``;
f(b) = sum_j c(b_j; k), or its mean over j with ``task.average`` (the Double CV and RODEO papers'
200-bit toy). The gradient with respect to the first logit is measured against its exact value
and each estimator's exact expectation and variance (``exact.bernoulli``); Adam or RMSprop on the
logits when optimizing, minimizing E[f] or, with ``task.optimize.maximize``, maximizing it.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Independent

from benchmarks.tasks.base import register
from benchmarks.tasks.toy.costs import require_derivative
from benchmarks.tasks.toy.exact.bernoulli import COSTS, cost_of, exact_gradient, exact_moments
from benchmarks.tasks.toy.exact.enumerated import ENUMERATED, enumerated_moments
from benchmarks.tasks.toy.loops import CostFn, Toy
from benchmarks.tasks.toy.optimize import check_logit_optimizer, logit_optimizer
from estimators.base import Estimator
from estimators.errors import ConfigError


def bernoulli(logits: torch.Tensor) -> Independent:
    """Independent Bernoulli bits over the last axis."""
    return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)


def total_cost(cost: str, k: float, average: bool = False) -> CostFn:
    """f(b) = sum_j c(b_j; k) over the last axis, or the mean with ``average``."""
    c = cost_of(cost).torch_fn
    if average:
        return lambda b: c(b, k).mean(-1)
    return lambda b: c(b, k).sum(-1)


@register
class BernoulliToy(Toy):
    """Gradients of E[f] with respect to the logits."""

    name = "bernoulli"
    params = ("theta",)
    costs = tuple(COSTS)
    # float64: at k = 0.499 the cost differences cancel to 1e-3 of the costs, which float32 would
    # turn into a bias of 1e-5 relative, larger than the statistical error it is compared to.
    dtype = torch.float64

    def start(self) -> dict[str, float]:
        return {"theta": float(self.cfg.theta)}

    def distribution(self, logits: torch.Tensor) -> Independent:
        return bernoulli(logits)

    def cost(self, cost: str, k: float) -> CostFn:
        return total_cost(cost, k, self.cfg.average)

    def scale(self) -> float:
        """f's factor on the sum over dimensions: 1/dim with ``task.average``, else 1."""
        return 1 / self.cfg.dim if self.cfg.average else 1.0

    def objective(self, cost: str, k: float, params: list[torch.Tensor]) -> float:
        """The exact E[f] = sum_j p_j c(1) + (1 - p_j) c(0) (divided by dim with average)."""
        c = cost_of(cost).np_fn
        p = torch.sigmoid(params[0].detach().double())
        return self.scale() * float((p * c(1.0, k) + (1 - p) * c(0.0, k)).sum())

    def exact(self, estimator: Estimator, cost: str, k: float, num_samples: int) -> dict:
        """The exact gradient, mean and variance of the summed f, scaled to an averaged one; or
        the moments of the estimator itself, enumerated over its draws, at the toy's f."""
        cfg, a = self.cfg, self.scale()
        gradient = a * exact_gradient(cost, k, cfg.theta)
        if estimator.name in ENUMERATED:
            theta = [float(cfg.theta)] * cfg.dim
            mean, var = enumerated_moments(estimator, self.cost(cost, k), theta, num_samples)
            return {"theta": (gradient, mean, var)}
        mean, var = exact_moments(
            estimator.name, estimator.options(), cost, k, cfg.theta, cfg.dim, num_samples
        )
        if mean is not None:
            mean, var = a * mean, a * a * var
        return {"theta": (gradient, mean, var)}

    def optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return logit_optimizer(self.cfg.optimize, params)

    def check_options(self, estimator: Estimator, num_samples: int) -> None:
        """The costs, the optimizer and the ``average`` switch."""
        cfg = self.cfg
        for cost in cfg.costs:
            require_derivative(cost, cost_of(cost), estimator)
        check_logit_optimizer(cfg.optimize)
        if not isinstance(cfg.average, bool):
            raise ConfigError(f"task.average={cfg.average!r}: must be true or false")
