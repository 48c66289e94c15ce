"""Reweighted wake-sleep (RWS; Bornschein and Bengio 2015) for the inference network: q follows
sum_k w~_k grad log q(z_k|x), the wake-phase update, which fits q to the posterior (an estimate
of the gradient of -KL(p(z|x) || q)) rather than ascending the bound. The decoder and the prior
get the IWAE bound's ordinary gradient, sum_k w~_k grad log p(x, z_k). No path through z: it
serves discrete latents too.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import ObjectiveOnly, register
from estimators.objectives import LogJoint, Objective


@register
class ReweightedWakeSleep(ObjectiveOnly):
    """Wake-phase q update with the normalized importance weights; any latent family."""

    name = "rws"
    title = "RWS"
    objectives = ("iwae",)
    unbiased = False  # for q it follows the wake-phase direction, not the bound's gradient

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        z = dist.sample((num_samples, objective.num_samples))
        log_q = dist.log_prob(z)
        log_w = log_joint(z) - log_q.detach()  # q's parameters get nothing from the bound
        w = objective.weights(log_w).detach()
        return objective.reduce(log_w) + (w * (log_q - log_q.detach())).sum(1)
