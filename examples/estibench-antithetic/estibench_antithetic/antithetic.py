# estibench_antithetic/antithetic.py: the README's example, word for word
"""Antithetic pathwise estimator: draws come in mirrored pairs z, 2 E[z] - z."""

import torch

from estimators.base import Estimator, register
from estimators.errors import ConfigError


@register
class Antithetic(Estimator):
    name = "antithetic"
    title = "Antithetic pathwise"  # its name in summaries and figure legends
    min_samples = 2
    differentiates_f = True  # pathwise: a toy refuses it a cost without a derivative

    def supports(self, dist):
        return dist.has_rsample  # mirroring needs a reparameterized sampler: no Bernoulli

    def check(self, dist, num_samples):
        super().check(dist, num_samples)
        if num_samples % 2:
            raise ConfigError(f"num_samples={num_samples}: 'antithetic' needs an even number")

    def estimate(self, dist, f, num_samples):
        half = dist.rsample((num_samples // 2,))
        return f(torch.cat([half, 2 * dist.mean - half]))
