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

from estimators.base import ConfigError, Estimator, register
from estimators.objectives import LogJoint, Objective

MEANS = ("geometric", "arithmetic")


def leave_one_out_bounds(log_w: torch.Tensor, mean: str) -> torch.Tensor:
    """c_k per sample, ``[S, K, *batch]`` from log weights ``[S, K, *batch]``: the log-mean-exp
    of the weights with w_k replaced by the chosen mean of the others."""
    k = log_w.shape[1]
    others = log_w.unsqueeze(1).expand(-1, k, *log_w.shape[1:])  # [S, k (left out), l, *batch]
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device).reshape(
        k, k, *(1,) * (log_w.dim() - 2)
    )
    if mean == "geometric":
        replaced = (log_w.sum(1, keepdim=True) - log_w) / (k - 1)
    else:
        left = torch.where(eye, -math.inf, others)
        replaced = torch.logsumexp(left, 2) - math.log(k - 1)
    return torch.logsumexp(torch.where(eye, replaced.unsqueeze(2), others), 2) - math.log(k)


@register
class Vimco(Estimator):
    """The IWAE bound's score-function gradient with VIMCO's per-sample baselines."""

    name = "vimco"
    title = "VIMCO"
    plain = False
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
