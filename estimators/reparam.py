"""The reparameterization (pathwise) estimator: gradients flow through z = g(eps; params)."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import ConfigError, CostFn, Estimator, register


@register
class Reparam(Estimator):
    """f at ``dist.rsample()``; for a Normal, z = mu + sigma * eps with eps ~ N(0, 1)."""

    name = "reparam"

    def check(self, dist: Distribution, num_samples: int) -> None:
        super().check(dist, num_samples)
        if not dist.has_rsample:
            raise ConfigError(
                f"estimator 'reparam' needs a distribution with rsample; "
                f"{type(dist).__name__} has none"
            )

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        return f(dist.rsample((num_samples,)))
