"""Multi-sample objectives, the ELBO and the importance-weighted bound (IWAE), and what their
estimators share.

With K draws z_1..K ~ q(z|x) and log weights log w_k = log p(x, z_k) - log q(z_k|x), the ELBO's
estimate is the mean of the log weights and the IWAE bound's (Burda et al. 2016) their log-mean-exp,
log (1/K) sum_k w_k. An estimator of an objective's gradient is called as

    est.surrogate(dist, log_joint, objective, num_samples)

- ``dist`` is q(z|x) with batch shape ``[*batch]``; its parameters may require grad;
- ``log_joint(z)`` maps z of shape ``[num_samples, K, *batch, *event]`` to log p(x, z) of shape
  ``[num_samples, K, *batch]``; parameters it depends on (a decoder, a prior) get their ordinary
  gradient, sum_k (d objective / d log w_k) grad log p(x, z_k);
- the result has shape ``[num_samples, *batch]``: ``num_samples`` independent estimates of the
  objective, each from its own K draws, and the autograd gradient of their mean with respect to
  q's parameters is the estimator's estimate of the objective's gradient.

The estimator computes log q itself, so that it can stop q's parameters inside it (STL, DReG).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal

from estimators.errors import ConfigError

LogJoint = Callable[[torch.Tensor], torch.Tensor]
OBJECTIVES = ("elbo", "iwae")


@dataclass(frozen=True)
class Objective:
    """An objective by name (``elbo`` or ``iwae``) and its number of importance samples K."""

    name: str
    num_samples: int

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(
                f"task.objective={self.name!r} is unknown; objectives: {', '.join(OBJECTIVES)}"
            )
        k = self.num_samples
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"task.num_samples={k!r}: K must be an integer >= 1")

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        """The objective's estimates from log weights ``[S, K, *batch]``: ``[S, *batch]``."""
        if self.name == "elbo":
            return log_w.mean(1)
        return torch.logsumexp(log_w, 1) - math.log(self.num_samples)

    def weights(self, log_w: torch.Tensor) -> torch.Tensor:
        """d reduce / d log w_k, ``[S, K, *batch]``: 1/K for the ELBO; for IWAE the normalized
        weights w~_k = w_k / sum_l w_l."""
        if self.name == "elbo":
            return torch.full_like(log_w, 1.0 / self.num_samples)
        return torch.softmax(log_w, 1)


def stopped(dist: Distribution) -> Distribution:
    """The same Normal (Independent-wrapped or not) with its parameters detached: log q under it
    has no path to them, only to z (sticking the landing)."""
    if isinstance(dist, Independent):
        return Independent(stopped(dist.base_dist), dist.reinterpreted_batch_ndims)
    return Normal(dist.loc.detach(), dist.scale.detach(), validate_args=False)


def event_view(weights: torch.Tensor, dist: Distribution) -> torch.Tensor:
    """``weights`` ``[S, K, *batch]`` with one axis of size 1 per event axis, to scale draws."""
    return weights.reshape(*weights.shape, *(1,) * len(dist.event_shape))
