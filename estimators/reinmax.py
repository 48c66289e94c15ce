"""ReinMax (Liu, Liu, Gao, Zhao and Chen, NeurIPS 2023, "Bridging Discrete and Backpropagation:
Straight-Through and Beyond"; reference code microsoft/ReinMax, reinmax/reinmax.py).

With pi = softmax(theta), a one-hot draw D ~ Cat(pi), pi_D = (softmax(theta / tau) + D) / 2 and
g = df/dD at the draw, the estimate is

    grad_theta = 2 J(pi_D)^T g - 1/2 J(pi)^T g,   J(p)^T g = p * g - p <p, g>,

one evaluation of f per draw, biased (the paper: second-order accurate, Heun's method where
straight-through is Euler's; at tau = 1 its mean is the gradient for a quadratic f). As the
reference's custom backward (``ReinMaxGradient``): D exactly in value, that vector-Jacobian
product with respect to theta, pi and pi_D held constant.
A Bernoulli with logit eta is the two-class categorical with logits (0, eta), b the class-1 entry
of D: the estimate does not depend on that choice, since J(p)^T g is unchanged by adding a
constant to g.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import positive_number


def one_hot_draws(
    dist: Distribution, num_samples: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits [..., C], probabilities softmax(logits), draws D [num_samples, ..., C]) of a
    one-hot categorical, or of a Bernoulli as the two-class categorical with logits (0, eta);
    either Independent-wrapped."""
    inner = base_distribution(dist)
    if isinstance(inner, Bernoulli):
        b = dist.sample((num_samples,))
        logits = torch.stack([torch.zeros_like(inner.logits), inner.logits], -1)
        return logits, torch.softmax(logits, -1), torch.stack([1 - b, b], -1)
    return inner.logits, inner.probs, dist.sample((num_samples,))


def to_support(z: torch.Tensor, dist: Distribution) -> torch.Tensor:
    """The sample in ``dist``'s own support: the class-1 entry for a Bernoulli, else ``z``."""
    return z[..., 1] if isinstance(base_distribution(dist), Bernoulli) else z


def jacobian_vjp(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J(p)^T g = p * g - p <p, g> for the softmax Jacobian J(p) = diag(p) - p p^T."""
    pg = p * g
    return pg - p * pg.sum(-1, keepdim=True)


class ReinMaxGradient(torch.autograd.Function):
    """The draws D unchanged in value; their gradient with respect to ``logits`` is
    2 J(pi_D)^T g - J(pi)^T g / 2 (summed over what ``logits`` broadcasts over), for constant
    pi and pi_D: the estimate written down, without a surrogate's graph to build and walk back."""

    generate_vmap_rule = True

    @staticmethod
    def forward(d, logits, pi, pi_d):
        return d.view_as(d)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, logits, pi, pi_d = inputs
        ctx.save_for_backward(pi, pi_d)
        ctx.logits_shape = logits.shape

    @staticmethod
    def backward(ctx, g):
        pi, pi_d = ctx.saved_tensors
        grad = 2 * jacobian_vjp(pi_d, g) - 0.5 * jacobian_vjp(pi, g)
        return None, grad.sum_to_size(ctx.logits_shape), None, None


class OneHotStraightThrough(Estimator):
    """What ReinMax and GST share: one-hot categoricals and Bernoullis, biased, grad f."""

    unbiased = False
    differentiates_f = True

    def supports(self, dist: Distribution) -> bool:
        """One-hot categorical and Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), OneHotCategorical | Bernoulli)

    @classmethod
    def label(cls, options: dict) -> str:
        """'ReinMax (τ=1)', 'GST (τ=1, gap=1)': the temperature as the relaxations write it."""
        names = {"temperature": "τ"}
        opts = ", ".join(f"{names.get(k, k)}={float(v):g}" for k, v in options.items())
        return f"{cls.title} ({opts})" if opts else cls.title


@register
class ReinMax(OneHotStraightThrough):
    """f at the one-hot draw; gradient 2 J(pi_D)^T g - 1/2 J(pi)^T g (biased)."""

    name = "reinmax"
    title = "ReinMax"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = positive_number(temperature, "temperature")

    def options(self) -> dict:
        return {"temperature": self.temperature}

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        logits, pi, d = one_hot_draws(dist, num_samples)
        tempered = pi if self.temperature == 1 else torch.softmax(logits / self.temperature, -1)
        pi_d = (tempered.detach() + d) / 2
        return f(to_support(ReinMaxGradient.apply(d, logits, pi.detach(), pi_d), dist))
