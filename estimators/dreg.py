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
from torch.distributions import Distribution

from estimators.base import register
from estimators.objectives import LogJoint, Objective, event_view
from estimators.stl import StickingTheLanding


@register
class DoublyReparameterized(StickingTheLanding):
    """DReG for the IWAE bound: STL's surrogate with each draw's gradient scaled by its
    normalized weight; Gaussian latents."""

    name = "dreg"
    title = "DReG"
    objectives = ("iwae",)
    vmappable = False  # its tensor hook sees the backward pass outside vmap, unbatched

    def estimate_objective(
        self, dist: Distribution, log_joint: LogJoint, objective: Objective, num_samples: int
    ) -> torch.Tensor:
        z, log_w = self.log_weights(dist, log_joint, objective, num_samples)
        if z.requires_grad:
            scale = event_view(objective.weights(log_w).detach(), dist)
            z.register_hook(lambda grad: grad * scale)
        return objective.reduce(log_w)
