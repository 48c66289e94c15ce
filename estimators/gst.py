"""Gapped straight-through, GST (Fan, Li, Zhao et al., ICML 2022, "Training Discrete Deep
Generative Models via Gapped Straight-Through Estimator"; reference code chijames/GST,
model/basic.py, ``gst_mover``).

From the detached logits theta and a one-hot draw D ~ Cat(softmax(theta)), with m = max_j theta_j,
the moved logits are theta~_D = m and theta~_j = min(theta_j, m - gap) for j != D: the drawn
class on top, every other at least ``gap`` below it (GST-1.0: gap 1). They keep the gradient
path of theta: theta~ = theta + sg(theta~ - theta). With s = softmax(theta~ / tau) the output is
D + s - sg(s): D exactly in value, gradient J(s)^T g / tau for g = df/dD. One evaluation of f per
draw, biased. A Bernoulli is the two-class categorical with logits (0, eta), as for ReinMax.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from estimators.base import CostFn, register
from estimators.errors import positive_number
from estimators.reinmax import OneHotStraightThrough, one_hot_draws, to_support


def gapped_logits(logits: torch.Tensor, d: torch.Tensor, gap: float) -> torch.Tensor:
    """theta~: the drawn class raised to the maximum, the others at most ``gap`` below it; the
    shift is detached, so the gradient with respect to ``logits`` is the identity."""
    theta = logits.detach()
    top = theta.max(-1, keepdim=True).values
    moved = torch.where(d.bool(), top, torch.minimum(theta, top - gap))
    return logits + (moved - theta)


@register
class GappedStraightThrough(OneHotStraightThrough):
    """f at the one-hot draw; gradient through softmax(theta~ / tau) of gapped logits (biased)."""

    name = "gst"
    title = "GST"

    def __init__(self, temperature: float = 1.0, gap: float = 1.0) -> None:
        self.temperature = positive_number(temperature, "temperature")
        self.gap = positive_number(gap, "gap")

    def options(self) -> dict:
        return {"temperature": self.temperature, "gap": self.gap}

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        logits, _, d = one_hot_draws(dist, num_samples)
        s = torch.softmax(gapped_logits(logits, d, self.gap) / self.temperature, -1)
        return f(to_support(d + (s - s.detach()), dist))
