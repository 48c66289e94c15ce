"""DisARM (Dong, Mnih and Tucker 2020): ARM averaged over the antithetic pair, analytically.

With the pair of ARM, b1 = 1[1 - u < sigmoid(theta)] and b2 = 1[u < sigmoid(theta)], the estimate
per logit is 1/2 (f(b1) - f(b2)) (-1)^b2 1[b1 != b2] sigmoid(|theta|): unbiased, and its variance is
never larger than ARM's at the same number of evaluations of f.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.arm import Antithetic, antithetic_estimate
from estimators.base import CostFn, register


def disarm_weights(
    u: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, theta: torch.Tensor
) -> torch.Tensor:
    return 0.5 * (1 - 2 * b2) * (b1 != b2).to(theta.dtype) * torch.sigmoid(theta.abs())


@register
class DisARM(Antithetic):
    """1/2 (f(b1) - f(b2)) (-1)^b2 1[b1 != b2] sigmoid(|theta|) per logit."""

    name = "disarm"
    title = "DisARM"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        return antithetic_estimate(dist, f, num_samples, disarm_weights)
