"""The measure-valued gradient (MVD; Mohamed et al. 2020, Section 6), for Normal and Bernoulli.

A weak derivative writes d/dtheta p(x) as c (p+(x) - p-(x)), a constant times the difference of
two distributions, so each coordinate's gradient is a difference of expectations of f, one
coordinate perturbed at a time, the others held at the base draw x ~ p:

- Normal N(mu, sigma^2), per coordinate d:
  d/dmu_d E f = 1/(sigma_d sqrt(2 pi)) E[f(x_d = mu_d + sigma_d w) - f(x_d = mu_d - sigma_d w')]
  with w, w' ~ Rayleigh(1) (density w exp(-w^2/2), w > 0);
  d/dsigma_d E f = 1/sigma_d E[f(x_d = mu_d + sigma_d m) - f(x_d = mu_d + sigma_d e)]
  with m ~ double-sided Maxwell (density m^2 exp(-m^2/2) / sqrt(2 pi)) and e ~ N(0, 1).
  With ``coupling`` (common random numbers, the default) w' = w, and e = U m with U ~ U(0, 1),
  which is exactly N(0, 1); without it w', e are drawn independently.
- Bernoulli(p), per coordinate d: d/dp_d E f = E[f(b_d = 1) - f(b_d = 0)]; the gradient with
  respect to the logits is that times p (1 - p), which autograd carries from probs.

The gradient is put on the distribution's mean and scale (or probs) through a surrogate whose
value is 0, so any other parameterization (a log-scale, logits) gets it through autograd. f is
never differentiated; it is called once, on the base draws and all 4 D (Normal) or 2 D
(Bernoulli) perturbed copies of each, D the event size.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Distribution, Normal

from estimators.base import ConfigError, CostFn, Estimator, base_distribution, register

LABELS = {True: "Measure-valued (coupled)", False: "Measure-valued (uncoupled)"}


def rayleigh(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Rayleigh(1) draws, sqrt(-2 log U), of ``shape`` on ``like``'s dtype and device."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return torch.sqrt(-2.0 * torch.log1p(-u))


def double_sided_maxwell(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Double-sided Maxwell draws: a random sign times the length of a 3-d standard normal."""
    radius = torch.randn((3, *shape), dtype=like.dtype, device=like.device).norm(dim=0)
    sign = torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1
    return sign * radius


def perturbed(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Copies of ``x`` [n, *batch, D] with one coordinate replaced: entry [t, d] is x with
    coordinate d set to values[t, ..., d] (``values`` [T, n, *batch, D]); shape [T, D, n, *batch,
    D]."""
    dim = x.shape[-1]
    eye = torch.eye(dim, dtype=torch.bool, device=x.device)
    mask = eye.reshape(dim, *(1,) * (x.dim() - 1), dim)  # [D, 1, ..., 1, D]
    return torch.where(mask, values.unsqueeze(1), x)


@register
class MeasureValued(Estimator):
    """Measure-valued derivatives of a Normal's mean and scale, or a Bernoulli's probabilities;
    unbiased, f need not be differentiable; 4 D (Normal) or 2 D (Bernoulli) evaluations of f per
    draw."""

    name = "measure_valued"
    title = "Measure-valued"
    variants = ({"coupling": True}, {"coupling": False})

    def __init__(self, coupling: bool = True) -> None:
        if not isinstance(coupling, bool):
            raise ConfigError(f"coupling={coupling!r}: must be true or false")
        self.coupling = coupling

    def options(self) -> dict:
        return {"coupling": self.coupling}

    @classmethod
    def label(cls, options: dict) -> str:
        coupling = options.get("coupling", True)
        if isinstance(coupling, str):  # as a table stores it
            coupling = coupling.strip().lower() == "true"
        return LABELS[bool(coupling)]

    def supports(self, dist: Distribution) -> bool:
        """Normal and Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Normal | Bernoulli)

    def evaluations(self, dist: Distribution, num_samples: int) -> int:
        """4 D num_samples for a Normal, 2 D num_samples for a Bernoulli (D the event size)."""
        per_coordinate = 4 if isinstance(base_distribution(dist), Normal) else 2
        return per_coordinate * dist.event_shape.numel() * num_samples

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        base = base_distribution(dist)
        n = num_samples
        batch, event = dist.batch_shape, dist.event_shape
        x = base.sample((n,))  # [n, *batch, *event]
        flat = x.reshape(n, *batch, event.numel())  # the event's coordinates on the last axis
        if isinstance(base, Normal):
            loc = base.loc.expand(base.batch_shape)
            scale = base.scale.expand(base.batch_shape)
            mu = loc.detach().reshape(*batch, -1)
            sigma = scale.detach().reshape(*batch, -1)
            w = rayleigh(flat.shape, flat)
            w2 = w if self.coupling else rayleigh(flat.shape, flat)
            m = double_sided_maxwell(flat.shape, flat)
            e = torch.rand_like(m) * m if self.coupling else torch.randn_like(m)
            values = torch.stack([mu + sigma * w, mu - sigma * w2, mu + sigma * m, mu + sigma * e])
        else:
            params = [base.probs.expand(base.batch_shape)]
            values = torch.stack([torch.ones_like(flat), torch.zeros_like(flat)])
        copies = perturbed(flat, values)  # [T, D, n, *batch, D]
        t, d = copies.shape[:2]
        fz = f(torch.cat([x, copies.reshape(t * d * n, *batch, *event)]))
        fx = fz[:n]
        rest = fz[n:].detach().reshape(t, d, n, *batch)
        diff = rest.movedim(1, -1)  # [T, n, *batch, D]: coordinate last
        if isinstance(base, Normal):
            params = [loc, scale]
            grads = [
                (diff[0] - diff[1]) / (sigma * math.sqrt(2 * math.pi)),
                (diff[2] - diff[3]) / sigma,
            ]
        else:
            grads = [diff[0] - diff[1]]
        surrogate = 0.0
        for p, g in zip(params, grads, strict=True):
            delta = (p - p.detach()).reshape(*batch, -1)
            surrogate = surrogate + (g * delta).sum(-1)
        return fx + surrogate
