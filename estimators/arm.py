"""ARM, the augment-REINFORCE-merge estimator for Bernoulli latents (Yin and Zhou 2019).

With u ~ U(0, 1) per dimension, the antithetic pair b1 = 1[u > sigmoid(-theta)] and
b2 = 1[u < sigmoid(theta)] gives the unbiased estimate (f(b1) - f(b2)) (u - 1/2) of the gradient
with respect to the logits theta. ``num_samples`` counts evaluations of f: num_samples / 2 pairs,
evaluated in one call of f on the stacked pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Bernoulli, Distribution

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import ConfigError

Weights = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def antithetic_estimate(
    dist: Distribution, f: CostFn, num_samples: int, weights: Weights
) -> torch.Tensor:
    """f on num_samples / 2 antithetic pairs, with gradient (f(b1) - f(b2)) * weights per logit.

    ``weights(u, b1, b2, logits)`` gives each dimension's factor; the result's values are f at
    the 2P samples [b1; b2] and the gradient of its mean is the mean over pairs of the estimate.
    """
    logits = base_distribution(dist).logits
    pairs = num_samples // 2
    shape = (pairs, *dist.batch_shape, *dist.event_shape)
    u = torch.rand(shape, dtype=logits.dtype, device=logits.device)
    theta = logits.detach()
    b1 = (u > torch.sigmoid(-theta)).to(logits.dtype)
    b2 = (u < torch.sigmoid(theta)).to(logits.dtype)
    fz = f(torch.cat([b1, b2]))
    difference = (fz[:pairs] - fz[pairs:]).detach()  # [pairs, *batch_shape]
    event_dims = tuple(range(-len(dist.event_shape), 0))
    weight = weights(u, b1, b2, theta)
    per_logit = difference.reshape(*difference.shape, *(1,) * len(event_dims)) * weight
    surrogate = (
        ((logits - theta) * per_logit).sum(event_dims)
        if event_dims
        else ((logits - theta) * per_logit)
    )
    return fz + torch.cat([surrogate, surrogate])


class Antithetic(Estimator):
    """Shared checks of the antithetic Bernoulli estimators."""

    @property
    def min_samples(self) -> int:
        return 2

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli)

    def check_num_samples(self, num_samples: int, key: str = "num_samples") -> None:
        super().check_num_samples(num_samples, key)
        if num_samples % 2:
            raise ConfigError(
                f"{key}={num_samples}: estimator '{self.name}' evaluates f on antithetic pairs "
                "and needs an even num_samples"
            )


@register
class ARM(Antithetic):
    """(f(b1) - f(b2)) (u - 1/2) per logit."""

    name = "arm"
    title = "ARM"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        return antithetic_estimate(dist, f, num_samples, lambda u, b1, b2, theta: u - 0.5)
