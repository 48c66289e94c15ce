"""Sticking the landing (STL; Roeder, Wu and Duvenaud 2017): the pathwise gradient with q's
parameters stopped inside log q(z|x), so that only the path through z remains.

For the ELBO it is unbiased, and its variance is zero where q equals the true posterior (log w is
then constant in z); for the IWAE bound it is biased (Tucker et al. 2019), which ``dreg`` mends.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal

from estimators.base import Estimator, base_distribution, register
from estimators.objectives import LogJoint, Objective, stopped


@register
class StickingTheLanding(Estimator):
    """Pathwise through z, with log q's own parameter path dropped; Gaussian latents."""

    name = "stl"
    title = "STL"
    plain = False
    objectives = ("elbo", "iwae")

    def supports(self, dist: Distribution) -> bool:
        """Normal latents (Independent-wrapped or not): reparameterized, with a stopped copy."""
        return isinstance(base_distribution(dist), Normal)

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        z = dist.rsample((num_samples, objective.num_samples))
        return objective.reduce(log_joint(z) - stopped(dist).log_prob(z))
