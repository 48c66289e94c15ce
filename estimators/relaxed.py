"""Continuous relaxations of discrete samples: Gumbel-softmax / Concrete and its straight-through
variant (Jang, Gu and Poole 2017; Maddison, Mnih and Teh 2017).

For a Bernoulli with logit theta the relaxed sample is sigmoid((theta + L) / temperature) with
L ~ Logistic(0, 1); for a one-hot categorical it is softmax((logits + G) / temperature) with
G ~ Gumbel(0, 1). Both are biased for any temperature > 0: their bias is a result to measure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import (
    Bernoulli,
    Distribution,
    OneHotCategorical,
    RelaxedBernoulli,
)

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import positive_number

RELAXABLE = (Bernoulli, OneHotCategorical)


def gumbel(shape: torch.Size | tuple, like: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise of ``shape``, in ``like``'s dtype and device."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(like.dtype).tiny)))


def conditional_perturbed(
    logits: torch.Tensor, one_hot: torch.Tensor, samples: tuple[int, ...] = ()
) -> torch.Tensor:
    """logits + G for standard Gumbels G drawn given that argmax(logits + G) is ``one_hot``'s
    class, [*samples, *one_hot.shape], differentiable in ``logits`` (broadcasting against
    ``one_hot``). Top-down: the maximum is Gumbel(logsumexp logits), each other entry a
    Gumbel(logits_j) truncated below it."""
    logits = logits.expand_as(one_hot)
    shape = (*samples, *one_hot.shape)
    top = torch.logsumexp(logits, -1, keepdim=True) + gumbel(shape[:-1] + (1,), logits)
    others = logits + gumbel(shape, logits)
    below = -torch.logaddexp(-top, -others)
    return torch.where(one_hot.bool(), top, below)


def relaxed_sample(dist: Distribution, temperature: float, num_samples: int) -> torch.Tensor:
    """A reparameterized relaxed sample of a (possibly Independent-wrapped) Bernoulli or one-hot
    categorical: differentiable in the logits."""
    inner = base_distribution(dist)
    logits = inner.logits
    if isinstance(inner, Bernoulli):
        t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
        return RelaxedBernoulli(t, logits=logits, validate_args=False).rsample((num_samples,))
    # RelaxedOneHotCategorical's draw, written out (it would normalize the logits once more),
    # with its clamp to [eps, 1 - eps] rather than gumbel()'s, so that the draws stay its own.
    u = torch.rand((num_samples, *logits.shape), dtype=logits.dtype, device=logits.device)
    eps = torch.finfo(logits.dtype).eps
    return torch.softmax((logits - u.clamp(eps, 1 - eps).log_().neg_().log_()) / temperature, -1)


def hard(z: torch.Tensor, dist: Distribution) -> torch.Tensor:
    """The discrete sample a relaxed one rounds to: z > 1/2, or the one-hot argmax."""
    if isinstance(base_distribution(dist), Bernoulli):
        return (z > 0.5).to(z.dtype)
    return F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)


class _Relaxation(Estimator):
    unbiased = False
    differentiates_f = True

    def __init__(self, temperature: float = 0.5) -> None:
        self.temperature = positive_number(temperature, "temperature")

    def options(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def label(cls, options: dict) -> str:
        if "temperature" not in options:
            return cls.title
        return f"{cls.title} (τ={float(options['temperature']):g})"

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli and one-hot categorical distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), RELAXABLE)


@register
class GumbelSoftmax(_Relaxation):
    """f at the relaxed sample, with the pathwise gradient through it (biased)."""

    name = "gumbel_softmax"
    title = "Gumbel-softmax"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        return f(relaxed_sample(dist, self.temperature, num_samples))


@register
class StraightThrough(_Relaxation):
    """f at the hard sample; the gradient flows as if through the relaxed one (biased)."""

    name = "straight_through"
    title = "Straight-through Gumbel-softmax"

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        z = relaxed_sample(dist, self.temperature, num_samples)
        return f(hard(z, dist) + (z - z.detach()))  # exactly the hard sample in value
