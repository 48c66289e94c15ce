"""VIMCO (Mnih and Rezende 2016): the score-function gradient of the IWAE bound with a baseline
per sample, for discrete latents (it serves any distribution).

g = sum_k (L - c_k) grad log q(z_k) + sum_k w~_k grad log w_k, with c_k = log (1/K) (sum_{l != k}
w_l + w^_{-k}): the bound with w_k replaced by an estimate from the other samples, the geometric
mean exp(mean_{l != k} log w_l) (``mean=geometric``, the paper's) or the arithmetic mean
(``mean=arithmetic``). c_k does not depend on z_k, so the estimate stays unbiased; it needs K >= 2.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution

from estimators.base import ObjectiveOnly, register
from estimators.errors import ConfigError
from estimators.objectives import LogJoint, Objective

MEANS = ("geometric", "arithmetic")


def leave_one_out_bounds(log_w: torch.Tensor, mean: str) -> torch.Tensor:
    """c_k per sample, ``[S, K, *batch]`` from log weights ``[S, K, *batch]``: the log-mean-exp
    of the weights with w_k replaced by the chosen mean of the others. O(K) memory: the
    log-sum-exp of the others is the total less w_k, taken relative to the largest weight (no
    cancellation: that one stays in), and for the largest itself, summed again without it."""
    k = log_w.shape[1]
    top, where_top = log_w.max(1, keepdim=True)
    relative = (log_w - top).exp()
    others = top + (relative.sum(1, keepdim=True) - relative).log()
    without_top = torch.logsumexp(log_w.scatter(1, where_top, -math.inf), 1, keepdim=True)
    others = others.scatter(1, where_top, without_top)  # log sum_{l != k} w_l
    if mean == "geometric":
        stand_in = (log_w.sum(1, keepdim=True) - log_w) / (k - 1)
    else:
        stand_in = others - math.log(k - 1)
    return torch.logaddexp(others, stand_in) - math.log(k)


@register
class Vimco(ObjectiveOnly):
    """The IWAE bound's score-function gradient with VIMCO's per-sample baselines."""

    name = "vimco"
    title = "VIMCO"
    objectives = ("iwae",)
    min_importance_samples = 2
    variants = ({"mean": "geometric"}, {"mean": "arithmetic"})

    def __init__(self, mean: str = "geometric") -> None:
        if mean not in MEANS:
            raise ConfigError(f"mean={mean!r}: must be one of {', '.join(MEANS)}")
        self.mean = mean

    def options(self) -> dict:
        return {"mean": self.mean}

    @classmethod
    def label(cls, options: dict) -> str:
        return f"VIMCO ({options.get('mean', 'geometric')} mean)"

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        z = dist.sample((num_samples, objective.num_samples))
        log_q = dist.log_prob(z)
        log_w = log_joint(z) - log_q
        estimate = objective.reduce(log_w)  # its gradient at the drawn z: sum_k w~_k grad log w_k
        signal = (estimate.unsqueeze(1) - leave_one_out_bounds(log_w, self.mean)).detach()
        return estimate + (signal * (log_q - log_q.detach())).sum(1)
