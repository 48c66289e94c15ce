"""k distinct draws without replacement from a small discrete support, shared by the estimators
of Kool, van Hoof and Welling (ICLR 2020): ``unordered_set`` and ``sum_and_sample``.

The distributions served are Bernoulli, Categorical and OneHotCategorical, each maybe within
``Independent``, whose joint outcomes (2^D bit vectors, C^D class vectors) number at most
``MAX_SUPPORT``: they are enumerated, their log-probabilities computed at once, and the k largest
of log p(x) + G_x, G_x iid standard Gumbel (Gumbel-top-k), are k draws without replacement, in
the order they would be drawn one by one.

``subset_probabilities`` gives, for every subset A of the k draws S, the probability that
|A| draws without replacement from the distribution with S \\ A removed are the set A:
P(A) = sum_{a in A} p(a) P(A \\ a) / (q + p(A)), P({}) = 1, with q the mass outside S. So
P(S) = p(S), P(S \\ s) = p^{D\\s}(S \\ s) and P(S \\ {s, s'}) = p^{D\\{s,s'}}(S \\ {s, s'}), the
set probabilities of the unordered set estimator, from sums of positive terms only.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from estimators.base import Estimator, base_distribution, describe_distribution
from estimators.errors import ConfigError

MAX_SUPPORT = 2**16
"""The most joint outcomes enumerated."""

SERVED = (Bernoulli, Categorical, OneHotCategorical)


def support_shape(dist: Distribution) -> tuple[int, int] | None:
    """(values per unit, units): the support has values^units joint outcomes (2 and D for D
    bits, C and D for D categoricals of C classes); None for a distribution not served."""
    inner = base_distribution(dist)
    if not isinstance(inner, SERVED):
        return None
    units = math.prod(dist.event_shape[: len(dist.event_shape) - len(inner.event_shape)])
    return (2 if isinstance(inner, Bernoulli) else inner.logits.shape[-1]), units


def outcomes(dist: Distribution) -> torch.Tensor:
    """Every joint outcome, [N, *event_shape], as ``dist.sample`` gives them."""
    inner = base_distribution(dist)
    n, units = support_shape(dist)
    device, dtype = inner.logits.device, inner.logits.dtype
    if isinstance(inner, Bernoulli):
        values = torch.tensor([0.0, 1.0], dtype=dtype, device=device)
    elif isinstance(inner, OneHotCategorical):
        values = torch.eye(n, dtype=dtype, device=device)
    else:
        values = torch.arange(n, device=device)
    index = torch.arange(n**units, device=device)
    powers = n ** torch.arange(units - 1, -1, -1, device=device)
    digits = index[:, None] // powers % n  # [N, units]
    return values[digits].reshape(-1, *dist.event_shape)


@torch.no_grad()
def outcome_log_probs(dist: Distribution, x: torch.Tensor) -> torch.Tensor:
    """log p of every outcome x [N, *event] at every batch element, [N, *batch], detached. For
    one-hot outcomes it is linear in x, one matrix product with the normalized logits (a
    -inf logit clamped to the lowest float, so that 0 * logit is 0)."""
    inner = base_distribution(dist)
    batch, event = dist.batch_shape, dist.event_shape
    if not isinstance(inner, OneHotCategorical):
        log_p = dist.log_prob(x.reshape(x.shape[0], *[1] * len(batch), *event))
        return log_p.expand(x.shape[0], *batch)
    logits = inner.logits.clamp_min(torch.finfo(inner.logits.dtype).min)
    flat = logits.expand(*batch, *event).reshape(-1, event.numel())
    return (x.reshape(x.shape[0], -1) @ flat.T).reshape(x.shape[0], *batch)


def draw(dist: Distribution, k: int) -> tuple[torch.Tensor, ...]:
    """Gumbel-top-k: (z [k, *batch, *event], their log-probabilities [k, *batch] with gradient,
    their probabilities p [k, *batch] and the mass q [*batch] of the outcomes not drawn, p and q
    detached and in float64, q a sum of positive terms, no 1 - sum that cancels). The gradient
    reaches only the k draws' log-probabilities."""
    x = outcomes(dist)
    log_p_all = outcome_log_probs(dist, x)
    keys = torch.empty_like(log_p_all).exponential_().log_().neg_().add_(log_p_all)  # + Gumbel
    index = keys.topk(k, dim=0).indices
    z = x[index]
    p_all = log_p_all.double().exp()
    p = p_all.gather(0, index)
    q = p_all.scatter(0, index, 0.0).sum(0)  # scatter_ has no vmap rule (seeds side by side)
    return z, dist.log_prob(z), p, q


def subset_probabilities(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(A) [2^k, *batch] for every subset A of the k draws (bit j of the index: draw j in A),
    from the draws' probabilities p [k, *batch] and the mass q [*batch] outside them."""
    k = p.shape[0]
    masks = torch.arange(2**k, device=p.device)
    bit = 1 << torch.arange(k, device=p.device)
    member = (masks[:, None] & bit) != 0  # [2^k, k]
    mass = q + torch.tensordot(member.to(p.dtype), p, dims=1)  # q + p(A)
    probs = torch.zeros_like(mass)
    probs[0] = 1.0
    size = member.sum(1)
    extra = (1,) * (p.dim() - 1)
    for level in range(1, k + 1):  # subsets by size: each from those one smaller
        m = masks[size == level]
        parents = probs[m[:, None] ^ bit]  # [n, k, *batch]; bits outside m masked out below
        keep = member[m].to(p.dtype).reshape(*member[m].shape, *extra)
        probs[m] = (keep * p * parents).sum(1) / mass[m]
    return probs


class WithoutReplacement(Estimator):
    """An estimator from k distinct draws of a small enumerable support."""

    def supports(self, dist: Distribution) -> bool:
        shape = support_shape(dist)
        return shape is not None and shape[0] ** shape[1] <= MAX_SUPPORT

    def max_samples(self, dist: Distribution) -> int | None:
        """The support's size: there are no more distinct draws."""
        shape = support_shape(dist)
        return None if shape is None else shape[0] ** shape[1]

    def check(self, dist: Distribution, num_samples: int) -> None:
        shape = support_shape(dist)
        where = describe_distribution(dist)
        if shape is not None and shape[0] ** shape[1] > MAX_SUPPORT:
            raise ConfigError(
                f"estimator '{self.name}' enumerates the joint outcomes of {where}: "
                f"{shape[0]}^{shape[1]} of them, more than {MAX_SUPPORT}"
            )
        super().check(dist, num_samples)
        size = self.max_samples(dist)
        if num_samples > size:
            raise ConfigError(
                f"num_samples={num_samples}: estimator '{self.name}' draws distinct outcomes "
                f"without replacement, at most the support size {size} of {where}"
            )
