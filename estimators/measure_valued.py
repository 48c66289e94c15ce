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

The gradient reaches the distribution's mean and scale (or probs) through ``WithGradient``, a
function whose value is f at a draw and whose gradient is the estimate, so any other
parameterization (a log-scale, logits) gets it through autograd. f is never differentiated; it
is called once, on the 4 D (Normal) or 2 D (Bernoulli) perturbed copies of each draw, D the event
size. One copy is itself a draw from the distribution (coordinate 0 at mu + sigma e, or at the
drawn bit), so f there is the returned value, at no extra evaluation.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Distribution, Normal

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import ConfigError

LABELS = {True: "Measure-valued (coupled)", False: "Measure-valued (uncoupled)"}


def rayleigh(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Rayleigh(1) draws, sqrt(-2 log U), of ``shape`` on ``like``'s dtype and device (each step
    in place, on the buffer the last one wrote, still in cache)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return u.neg_().log1p_().mul_(-2.0).sqrt_()


def double_sided_maxwell(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Double-sided Maxwell draws: a random sign times the length of a 3-d standard normal (the
    root of a sum of squares: ``norm`` over the leading axis is 8x slower on the CPU)."""
    r = torch.randn((3, *shape), dtype=like.dtype, device=like.device)
    radius = (r * r).sum(0).sqrt_()
    sign = torch.randint(0, 2, shape, dtype=like.dtype, device=like.device).mul_(2).sub_(1)
    return radius.mul_(sign)


def perturbed_copies(held: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    """Copies of the draws ``held`` [n, *batch, D] with one coordinate replaced: entry [t, d] is
    ``held`` with coordinate d set to values[t, ..., d] (``values`` [T, n, *batch, D]); shape [T,
    D, n, *batch, D]. With D = 1 nothing is held (``held`` may be None) and nothing is copied."""
    t, d = values.shape[0], values.shape[-1]
    if d == 1:
        return values.unsqueeze(1)
    out = torch.empty((t, *held.shape[-1:], *held.shape), dtype=held.dtype, device=held.device)
    out.copy_(held)
    out.diagonal(dim1=1, dim2=-1).copy_(values)
    return out


class WithGradient(torch.autograd.Function):
    """``value`` [n, *batch] unchanged, whose gradient with respect to each parameter is the
    given per-draw ``grads`` [P, n, *batch, D] (times the incoming gradient, summed over draws):
    the estimate written down directly, without a surrogate's graph to build and walk back.
    ``forward`` takes ``ctx`` (no ``setup_context``), so torch does not bind each call's
    arguments to the signature (about 40 us a call)."""

    @staticmethod
    def forward(ctx, value, grads, *params):
        ctx.save_for_backward(grads)
        ctx.shapes = [p.shape for p in params]
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad_out):
        (grads,) = ctx.saved_tensors
        per_draw = grad_out.unsqueeze(-1) * grads  # [P, n, *batch, D]
        # Summed over the draws (with one draw, a view: a reduction kernel costs far more).
        total = per_draw[:, 0] if per_draw.shape[1] == 1 else per_draw.sum(1)
        return grad_out, None, *(g.reshape(s) for g, s in zip(total, ctx.shapes, strict=True))


@register
class MeasureValued(Estimator):
    """Measure-valued derivatives of a Normal's mean and scale, or a Bernoulli's probabilities;
    unbiased, f need not be differentiable; 4 D (Normal) or 2 D (Bernoulli) evaluations of f per
    draw."""

    name = "measure_valued"
    title = "Measure-valued"
    vmappable = False  # WithGradient skips setup_context for speed; its differences use out=
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
        n, batch, event = num_samples, dist.batch_shape, dist.event_shape
        shape = (n, *batch, event.numel())  # the event's coordinates on the last axis
        if isinstance(base, Normal):
            params = [base.loc.expand(base.batch_shape), base.scale.expand(base.batch_shape)]
            mu, sigma = (p.detach().reshape(shape[1:]) for p in params)
            held = None  # the base draws: they supply the coordinates held fixed, if any
            if shape[-1] > 1:
                held = mu + sigma * torch.randn(shape, dtype=mu.dtype, device=mu.device)
            w = rayleigh(shape, mu)
            w2 = w if self.coupling else rayleigh(shape, mu)
            m = double_sided_maxwell(shape, mu)
            e = torch.rand_like(m).mul_(m) if self.coupling else torch.randn_like(m)
            # mu + sigma w, mu - sigma w', mu + sigma m, mu + sigma e, written in place
            values = torch.empty((4, *shape), dtype=mu.dtype, device=mu.device)
            for v, step in zip(values, (w, w2, m, e), strict=True):
                torch.mul(sigma, step, out=v)
            values[1].neg_()
            values.add_(mu)
            # Each difference's constant as a factor on [D, 1, *batch] (dividing by a tensor
            # costs four times a product).
            inverse = 1 / sigma.movedim(-1, 0).unsqueeze(1)
            factors = [inverse / math.sqrt(2 * math.pi), inverse]
        else:
            params = [base.probs.expand(base.batch_shape)]
            held = base.sample((n,)).reshape(shape)
            values = torch.stack([torch.ones_like(held), torch.zeros_like(held)])
            factors = [None]
        copies = perturbed_copies(held, values)  # [T, D, n, *batch, D]
        t, d = copies.shape[:2]
        fz = f(copies.reshape(t * d * n, *batch, *event)).reshape(t, d, n, *batch)
        if isinstance(base, Normal):
            # Copy [3, 0] has coordinate 0 at mu + sigma e, e ~ N(0, 1) (with or without
            # coupling), and the others held: a draw from the distribution, so f there is a value.
            value = fz[3, 0]
        else:  # the copy with bit 0 set to the draw's bit 0 is the draw itself
            value = torch.where(held[..., 0] == 1, fz[0, 0], fz[1, 0])
        diff = fz.detach()
        # Per parameter, (f(+) - f(-)) times its constant, written in place into [P, n, *batch, D]
        # in the parameters' dtype.
        like = params[0]
        grads = torch.empty((len(factors), *shape), dtype=like.dtype, device=like.device)
        for plus, minus, factor, g in zip(diff[0::2], diff[1::2], factors, grads, strict=True):
            out = g.movedim(-1, 0)  # [D, n, *batch], as f's differences come
            torch.sub(plus, minus, out=out)
            if factor is not None:
                out.mul_(factor)
        return WithGradient.apply(value, grads, *params)
