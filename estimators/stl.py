"""Sticking the landing (STL; Roeder, Wu and Duvenaud 2017): the pathwise gradient with q's
parameters stopped inside log q(z|x), so that only the path through z remains.

For the ELBO it is unbiased, and its variance is zero where q equals the true posterior (log w is
then constant in z); for the IWAE bound it is biased (Tucker et al. 2019), which ``dreg`` mends.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal

from estimators.base import ObjectiveOnly, base_distribution, register
from estimators.objectives import LogJoint, Objective, stopped


@register
class StickingTheLanding(ObjectiveOnly):
    """Pathwise through z, with log q's own parameter path dropped; Gaussian latents."""

    name = "stl"
    title = "STL"
    objectives = ("elbo", "iwae")

    def supports(self, dist: Distribution) -> bool:
        """Normal latents (Independent-wrapped or not): reparameterized, with a stopped copy."""
        return isinstance(base_distribution(dist), Normal)

    def log_weights(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized draws z [S, K, *batch, *event] and their log weights with q's
        parameters stopped inside log q."""
        z = dist.rsample((num_samples, objective.num_samples))
        return z, log_joint(z) - stopped(dist).log_prob(z)

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        return objective.reduce(self.log_weights(dist, log_joint, objective, num_samples)[1])
