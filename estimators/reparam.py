"""The reparameterization (pathwise) estimator: gradients flow through z = g(eps; params)."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, Estimator, register


@register
class Reparam(Estimator):
    """f at ``dist.rsample()``; for a Normal, z = mu + sigma * eps with eps ~ N(0, 1)."""

    name = "reparam"
    title = "Reparameterization"
    differentiates_f = True

    def supports(self, dist: Distribution) -> bool:
        """Distributions with a reparameterized sampler (``rsample``)."""
        return dist.has_rsample

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        return f(dist.rsample((num_samples,)))
