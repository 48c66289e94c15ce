"""ARMS, antithetic REINFORCE with n coupled draws, for Bernoulli latents (Dimitriev and Zhou 2021,
"ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for Binary Variables", ICML).

Per logit theta, p = sigmoid(theta) and q = min(p, 1 - p): e ~ Exp(1)^n, d = e / sum e (uniform on
the simplex), u_i = (1 - d_i)^(n-1) (each U(0, 1), pairwise negatively dependent: the Dirichlet
copula) and b_i = 1[u_i < q], flipped (b_i = 1[u_i >= q]) where p > 1/2, so that each b_i is
Bernoulli(p) and P(b_i = b_j = 1) is as small as this copula makes it. The estimate

    g = 1/(n-1) sum_i (f(b_i) - mean_j f(b_j)) (b_i - p) * p (1 - p) / (q - C(q, q)),

C(q, q) = (2 q^(1/(n-1)) - 1)_+^(n-1) = P(u_i < q, u_j < q), is unbiased: a pair's term has
expectation (p - P(b_i = b_j = 1)) (h(1) - h(0)) = (q - C(q, q)) (h(1) - h(0)), h the mean of f
given the bit, while d/dtheta E[f] = p (1 - p) (h(1) - h(0)). Independent draws (C = q^2) give
RLOO; n = 2 gives DisARM. ``num_samples`` is n, one estimate per call, n evaluations of f.
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Distribution

from estimators.base import CostFn, Estimator, base_distribution, register


def dirichlet_uniforms(n: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """[n, *shape] uniforms u_i = (1 - d_i)^(n-1), d ~ Dirichlet(1, ..., 1) along the first axis."""
    e = torch.empty((n, *shape), dtype=like.dtype, device=like.device).exponential_()
    return e.div_(e.sum(0)).neg_().add_(1).pow_(n - 1)


def copula_joint(q: torch.Tensor, n: int) -> torch.Tensor:
    """P(u_i < q, u_j < q) = (2 q^(1/(n-1)) - 1)_+^(n-1) for two of n Dirichlet-copula uniforms."""
    return (2 * q ** (1 / (n - 1)) - 1).clamp(min=0) ** (n - 1)


def arms_bits(u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """b_i = 1[u_i < q], flipped where theta > 0 (p > 1/2): Bernoulli(sigmoid(theta)) bits."""
    below = u < torch.sigmoid(-theta.abs())
    return (below ^ (theta > 0)).to(theta.dtype)


def arms_scale(theta: torch.Tensor, n: int) -> torch.Tensor:
    """n/(n-1) p (1 - p) / (q - C(q, q)) per logit: the estimate is g = mean_i (f(b_i) -
    mean_j f(b_j)) (b_i - p) times this."""
    q = torch.sigmoid(-theta.abs())
    joint = copula_joint(q, n)
    # where no two draws can both be q-rare (joint 0) it is 1 - q, also where q underflows
    return torch.where(joint > 0, q * (1 - q) / (q - joint), 1 - q) * (n / (n - 1))


def arms_from_uniforms(dist: Distribution, f: CostFn, u: torch.Tensor) -> torch.Tensor:
    """f at the n bits that the coupled uniforms u [n, *batch, *event] give, with gradient of the
    mean the ARMS estimate with respect to the logits."""
    logits = base_distribution(dist).logits
    theta = logits.detach()
    b = arms_bits(u, theta)
    fz = f(b)
    centred = (fz - fz.mean(0)).detach()  # [n, *batch_shape]
    event_dims = tuple(range(-len(dist.event_shape), 0))
    centred = centred.reshape(*centred.shape, *(1,) * len(event_dims))
    g = ((b - torch.sigmoid(theta)) * centred).mean(0) * arms_scale(theta, u.shape[0])
    surrogate = (logits - theta) * g  # value 0, gradient g: added to every draw's f
    return fz + (surrogate.sum(event_dims) if event_dims else surrogate)


@register
class ARMS(Estimator):
    """RLOO over n Dirichlet-copula antithetic Bernoulli draws, rescaled to stay unbiased."""

    name = "arms"
    title = "ARMS"

    @property
    def min_samples(self) -> int:
        return 2

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli)

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        shape = (*dist.batch_shape, *dist.event_shape)
        u = dirichlet_uniforms(num_samples, shape, base_distribution(dist).logits)
        return arms_from_uniforms(dist, f, u)
