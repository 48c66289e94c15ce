"""The categorical toy: ``dim`` independent categoricals of ``categories`` classes, exact answers.

x_d ~ Categorical(softmax(logits)) for d = 1..D, drawn one-hot as
Independent(OneHotCategorical, 1) over [..., D, C]; f(x) = sum_d c(x_d; k) of the class index
x_d. The gradient with respect to the first variable's class-0 logit is measured against its
exact value and, for the score-function estimators, their exact expectation and variance by
enumeration (``exact.categorical``). At C = 2 it is the Bernoulli toy with logit
theta_B = logit_1 - logit_0. Optimizing, Adam or RMSprop on the [D, C] logits minimizes (or,
with ``task.optimize.maximize``, maximizes) the exact E[f] = sum_d softmax(logits_d) . c.
"""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf
from torch.distributions import Independent, OneHotCategorical

from benchmarks.tasks.base import register
from benchmarks.tasks.toy.costs import require_derivative
from benchmarks.tasks.toy.exact.categorical import (
    COSTS,
    class_costs,
    cost_of,
    exact_gradient,
    exact_moments,
)
from benchmarks.tasks.toy.loops import CostFn, Toy
from benchmarks.tasks.toy.optimize import check_logit_optimizer, logit_optimizer
from benchmarks.tasks.toy.shared_one_hot import SharedOneHotCategorical
from estimators.base import Estimator
from estimators.errors import ConfigError, require_int


def one_hot_categorical(logits: torch.Tensor) -> Independent:
    """Independent one-hot categoricals over [..., D, C]: D variables, C classes each; at copies
    of one logit table (stride 0 along the first axis), ``SharedOneHotCategorical``."""
    if logits.dim() < 3 or logits.stride(0) != 0:
        inner = OneHotCategorical(logits=logits, validate_args=False)
    else:
        inner = SharedOneHotCategorical.of(logits)
    return Independent(inner, 1, validate_args=False)


def total_cost(cost: str, k: float) -> CostFn:
    """f(x) = sum_d c(x_d; k), x_d the class index of the one-hot x[..., d, :] (for a relaxed
    sample, its expected index under the relaxed probabilities)."""
    c = cost_of(cost).torch_fn

    def f(x: torch.Tensor) -> torch.Tensor:
        index = x @ torch.arange(x.shape[-1], dtype=x.dtype, device=x.device)
        return c(index, k).sum(-1)

    return f


@register
class CategoricalToy(Toy):
    """Gradients of E[f] with respect to the logits."""

    name = "categorical"
    params = ("theta",)
    costs = tuple(COSTS)
    # float64, as the Bernoulli toy: cost differences that cancel must not pose as bias.
    dtype = torch.float64

    def logits(self) -> list[float]:
        """One variable's C logits: ``task.logits`` if given, else ``theta`` for every class."""
        if self.cfg.logits is not None:
            return [float(v) for v in self.cfg.logits]
        return [float(self.cfg.theta)] * self.cfg.categories

    def start(self) -> dict[str, float]:
        return {"theta": float(self.cfg.theta)}

    def initial(self, device: torch.device) -> list[torch.Tensor]:
        """The logits as one [dim, C] tensor, every variable's the same."""
        row = torch.tensor(self.logits(), dtype=self.dtype, device=device)
        return [row.expand(self.cfg.dim, -1).clone()]

    def point_columns(self) -> dict:
        """theta: the measured logit (the first class's)."""
        return {"mu": math.nan, "sigma": math.nan, "theta": self.logits()[0]}

    def distribution(self, logits: torch.Tensor) -> Independent:
        return one_hot_categorical(logits)

    def cost(self, cost: str, k: float) -> CostFn:
        return total_cost(cost, k)

    def exact(self, estimator: Estimator, cost: str, k: float, num_samples: int) -> dict:
        logits = self.logits()
        mean, var = exact_moments(
            estimator.name, estimator.options(), cost, k, logits, self.cfg.dim, num_samples
        )
        return {"theta": (exact_gradient(cost, k, logits), mean, var)}

    def objective(self, cost: str, k: float, params: list[torch.Tensor]) -> float:
        """The exact E[f] = sum_d sum_j softmax(logits_d)_j c(j; k)."""
        logits = params[0].detach().double()
        c = torch.from_numpy(class_costs(cost, k, logits.shape[-1])).to(logits.device)
        return float((torch.softmax(logits, -1) @ c).sum())

    def parameter_columns(self, params: list[torch.Tensor]) -> dict[str, float]:
        """theta: the class-0 logit averaged over the variables (the gradient is measured at the
        first variable's)."""
        return {"theta": params[0][:, 0].detach().mean().item()}

    def optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return logit_optimizer(self.cfg.optimize, params)

    def check_options(self, estimator: Estimator, num_samples: int) -> None:
        """categories >= 2, logits (if given) C finite numbers, the costs and the optimizer."""
        cfg = self.cfg
        require_int(cfg.categories, "task.categories", minimum=2)
        if cfg.logits is not None:
            values = cfg.logits
            if not OmegaConf.is_list(values) or len(values) != cfg.categories:
                raise ConfigError(
                    f"task.logits={values!r}: must be null or a list of task.categories="
                    f"{cfg.categories} numbers"
                )
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ConfigError(f"task.logits: {v!r} is not a finite number")
        for cost in cfg.costs:
            require_derivative(cost, cost_of(cost), estimator)
        check_logit_optimizer(cfg.optimize)
