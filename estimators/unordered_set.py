"""The unordered set estimator (Kool, van Hoof and Welling, ICLR 2020), with its built-in
baseline.

S = k distinct draws without replacement (Gumbel-top-k), whose order is forgotten:

    g = sum_{s in S} p(s) R(S, s) grad log p(s) [f(s) - b(S, s)],
    b(S, s) = sum_{s' in S} p(s') R^{D\\s}(S, s') f(s'),

with R(S, s) = p^{D\\s}(S \\ s) / p(S), R^{D\\s}(S, s') = p^{D\\{s,s'}}(S \\ {s, s'}) /
p^{D\\s}(S \\ s) for s' != s and R^{D\\s}(S, s) = 1: b(S, s) is the unordered set estimate of
E[f] given that s was drawn first, so it leaves the estimate unbiased for k >= 2; at k = 1 it
would not, and the estimate is REINFORCE, f(s) grad log p(s). p^{D\\A}(B) is the probability
of the unordered set B drawn without replacement from the distribution with A removed
(``estimators.without_replacement.subset_probabilities``: exact, 2^k subsets). When S is the
whole support every R is 1 and the estimate is the exact gradient. k evaluations of f.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, register
from estimators.errors import ConfigError
from estimators.without_replacement import WithoutReplacement, draw, subset_probabilities

MAX_DRAWS = 12
"""The most draws: the set probabilities take 2^k values per batch element."""


def unordered_set_coefficients(p: torch.Tensor, q: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    """p(s) R(S, s) (f(s) - b(S, s)) [k, *batch], the coefficient of grad log p(s), from the
    draws' probabilities p, the mass q outside them and their values fz."""
    k = p.shape[0]
    probs = subset_probabilities(p, q)
    full = 2**k - 1
    bit = 1 << torch.arange(k, device=p.device)
    without_s = probs[full ^ bit]  # P(S \ s), [k, *batch]
    ratio = without_s / probs[full]
    if k == 1:
        return p * ratio * fz
    without_ss = probs[full ^ bit[:, None] ^ bit]  # P(S \ {s, s'}), [k, k, *batch]
    second = without_ss / without_s[:, None]
    second[torch.arange(k), torch.arange(k)] = 1.0  # R^{D\s}(S, s) = 1
    baseline = (second * (p * fz)[None]).sum(1)
    return p * ratio * (fz - baseline)


@register
class UnorderedSet(WithoutReplacement):
    """sum_s p(s) R(S, s) grad log p(s) (f(s) - b(S, s)) over k distinct draws."""

    name = "unordered_set"
    title = "Unordered set"

    def check(self, dist: Distribution, num_samples: int) -> None:
        super().check(dist, num_samples)
        if num_samples > MAX_DRAWS:
            raise ConfigError(
                f"num_samples={num_samples}: estimator '{self.name}' sums over the 2^k subsets "
                f"of its k draws; at most {MAX_DRAWS}"
            )

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z, log_p, p, q = draw(dist, num_samples)
        fz = f(z)
        with torch.no_grad():
            coef = unordered_set_coefficients(p, q, fz.detach().double()).to(log_p.dtype)
        return fz + num_samples * coef * (log_p - log_p.detach())
