"""Rao-Blackwellized straight-through Gumbel-softmax, "Gumbel-Rao" (Paulus, Maddison and Krause,
ICLR 2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient Estimator").

The forward pass is the one-hot draw D = onehot(argmax(theta + G)); the backward pass is

    (1/K) sum_k J_theta softmax((theta + G_k) / tau)^T df/dD,  G_k ~ Gumbel | argmax(theta + G) = D,

the straight-through Gumbel-softmax gradient with its noise averaged over the K conditional draws
(K = 1 is straight-through Gumbel-softmax itself, in distribution); biased, as it is. The
conditional draws are the top-down construction: the maximum theta_D + G_D is
Gumbel(logsumexp theta), each other theta_j + G_j a Gumbel(theta_j) truncated below it. The
Jacobian is taken at fixed G_k (its derivative through the conditional draw would change the
estimator's mean; Paulus et al. write the total derivative, nshepperd/gumbel-rao-pytorch argues
it must not be). A Bernoulli with logit eta is the two-class categorical of logits (0, eta).
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import positive_number, require_int
from estimators.relaxed import conditional_perturbed


def conditional_gumbel(logits: torch.Tensor, one_hot: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` draws of standard Gumbel noise G [k, *one_hot.shape] with argmax(logits + G) equal
    to ``one_hot``'s class (``logits`` broadcasting against ``one_hot``), without gradient."""
    logits = logits.detach()
    return conditional_perturbed(logits, one_hot, (k,)) - logits.expand_as(one_hot)


@register
class RaoBlackwellST(Estimator):
    """f at the one-hot draw; the ST Gumbel-softmax gradient averaged over K conditional
    Gumbels (biased)."""

    name = "rao_blackwell_st"
    title = "Gumbel-Rao"
    unbiased = False
    differentiates_f = True

    def __init__(self, temperature: float = 0.5, rb_samples: int = 10) -> None:
        self.temperature = positive_number(temperature, "temperature")
        require_int(rb_samples, "rb_samples")
        self.rb_samples = rb_samples

    def options(self) -> dict:
        return {"temperature": self.temperature, "rb_samples": self.rb_samples}

    @classmethod
    def label(cls, options: dict) -> str:
        if "temperature" not in options or "rb_samples" not in options:
            return cls.title
        return f"{cls.title} (τ={float(options['temperature']):g}, K={int(options['rb_samples'])})"

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli and one-hot categorical distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli | OneHotCategorical)

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        inner = base_distribution(dist)
        z = dist.sample((num_samples,))
        if isinstance(inner, Bernoulli):  # the two classes (0, 1) with logits (0, eta)
            logits = torch.stack([torch.zeros_like(inner.logits), inner.logits], -1)
            one_hot = torch.stack([1 - z, z], -1)
        else:
            logits, one_hot = inner.logits, z
        g = conditional_gumbel(logits, one_hot, self.rb_samples)
        if isinstance(inner, Bernoulli):  # softmax's class-1 entry of two: a sigmoid, faster
            difference = inner.logits + g[..., 1] - g[..., 0]
            soft = torch.sigmoid(difference / self.temperature).mean(0)
        else:
            soft = torch.softmax((logits + g) / self.temperature, -1).mean(0)
        return f(z + (soft - soft.detach()))  # exactly the draw in value
