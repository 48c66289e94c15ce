"""The Bernoulli toy of the REBAR, RELAX and DisARM papers: estimators that need no rsample.

b ~ Bernoulli(sigmoid(theta)) in ``dim`` dimensions, one logit per dimension, all at ``theta``;
f(b) = sum_j c(b_j; k). The gradient with respect to the first logit is measured against its
exact value and each estimator's exact expectation and variance (``exact.bernoulli``); Adam on the
logits when optimizing.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Independent

from benchmarks.tasks.base import register
from benchmarks.tasks.toy.costs import require_derivative
from benchmarks.tasks.toy.exact.bernoulli import COSTS, cost_of, exact_gradient, exact_moments
from benchmarks.tasks.toy.loops import CostFn, Toy
from estimators.base import Estimator


def bernoulli(logits: torch.Tensor) -> Independent:
    """Independent Bernoulli bits over the last axis."""
    return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)


def total_cost(cost: str, k: float) -> CostFn:
    """f(b) = sum_j c(b_j; k) over the last axis."""
    c = cost_of(cost).torch_fn
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
        return total_cost(cost, k)

    def objective(self, cost: str, k: float, params: list[torch.Tensor]) -> float:
        """The exact E[f] = sum_j p_j c(1) + (1 - p_j) c(0)."""
        c = cost_of(cost).np_fn
        p = torch.sigmoid(params[0].detach().double())
        return float((p * c(1.0, k) + (1 - p) * c(0.0, k)).sum())

    def exact(self, estimator: Estimator, cost: str, k: float, num_samples: int) -> dict:
        cfg = self.cfg
        mean, var = exact_moments(
            estimator.name, estimator.options(), cost, k, cfg.theta, cfg.dim, num_samples
        )
        return {"theta": (exact_gradient(cost, k, cfg.theta), mean, var)}

    def optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.cfg.optimize.lr)

    def check_options(self, estimator: Estimator, num_samples: int) -> None:
        for cost in self.cfg.costs:
            require_derivative(cost, cost_of(cost), estimator)
