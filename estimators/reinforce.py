"""REINFORCE, the score-function estimator: E[f(z) grad log p(z)], no gradient through z."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, Estimator, register, score_surrogate


@register
class Reinforce(Estimator):
    """The plain score-function estimator, without a baseline."""

    name = "reinforce"
    title = "REINFORCE"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z = dist.sample((num_samples,))
        return score_surrogate(f(z), dist.log_prob(z))
