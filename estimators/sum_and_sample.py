"""The sum-and-sample estimator (Kool, van Hoof and Welling, ICLR 2020; Liu et al. 2019).

s_1, ..., s_k: k distinct draws without replacement in Gumbel-top-k order. The first k - 1 are
summed over exactly, the last stands for the rest of the support:

    g = sum_{j<k} grad p(s_j) f(s_j) + (1 - sum_{j<k} p(s_j)) grad log p(s_k) f(s_k),

unbiased because s_k is a draw from the distribution with s_1..s_{k-1} removed. k = 1 is
REINFORCE; when the k draws are the whole support it is the exact gradient. k evaluations of f.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, register
from estimators.without_replacement import WithoutReplacement, draw


@register
class SumAndSample(WithoutReplacement):
    """sum_{j<k} grad p(s_j) f(s_j) + (1 - sum_{j<k} p(s_j)) grad log p(s_k) f(s_k)."""

    name = "sum_and_sample"
    title = "Sum-and-sample"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z, log_p, p, q = draw(dist, num_samples)
        fz = f(z)
        with torch.no_grad():
            weight = p.to(fz.dtype, copy=True)  # p(s_j) for the summed ones
            weight[-1] = q + p[-1]  # the rest of the support's mass, all but the summed ones
            coef = weight * fz
        return fz + num_samples * coef * (log_p - log_p.detach())
