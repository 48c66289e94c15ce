"""Doubly reparameterized gradients (DReG; Tucker, Lawson, Gu and Maddison 2019) for the IWAE
bound: the inference network's gradient sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi), unbiased
and, unlike the pathwise IWAE gradient, with a signal-to-noise ratio that does not fall with K.

STL's surrogate (q's parameters stopped inside log q) gives sum_k w~_k (d log w_k / d z_k) at z_k;
a hook on the draws scales what reaches each z_k by one more w~_k. The decoder and the prior,
whose gradient does not pass through z, keep the ordinary sum_k w~_k grad log p(x, z_k). One
forward and one backward pass, as for ``reparam``.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal

from estimators.base import Estimator, base_distribution, register
from estimators.objectives import LogJoint, Objective, event_view, stopped


@register
class DoublyReparameterized(Estimator):
    """DReG for the IWAE bound; Gaussian latents."""

    name = "dreg"
    title = "DReG"
    plain = False
    objectives = ("iwae",)

    def supports(self, dist: Distribution) -> bool:
        """Normal latents (Independent-wrapped or not): reparameterized, with a stopped copy."""
        return isinstance(base_distribution(dist), Normal)

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        z = dist.rsample((num_samples, objective.num_samples))
        log_w = log_joint(z) - stopped(dist).log_prob(z)
        if z.requires_grad:
            scale = event_view(objective.weights(log_w).detach(), dist)
            z.register_hook(lambda grad: grad * scale)
        return objective.reduce(log_w)
