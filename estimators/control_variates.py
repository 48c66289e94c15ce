"""Control variates for Normal distributions, as small pieces the estimators take.

A Normal's gradient splits by parameter (``loc``, ``scale``): ``by_parameter(dist)`` gives, per
parameter, a copy of ``dist`` in which only that parameter carries a gradient, so that a surrogate
can give each parameter its own baseline or coefficient (``score_terms``, ``path_terms``).

The delta method (Paisley, Blei and Jordan 2012; mc_gradients' ``control_delta_method``):
h(x) = f(m) + (x - m)' g + 1/2 (x - m)' H (x - m), the second-order Taylor expansion of f at the
stop-gradient mean m, with g and H the gradient and Hessian of f at m (``DeltaMethod.expand``).
h is a fixed function; its expectation under N(mu, diag(sigma^2)) is known in closed form,
E[h] = f(m) + (mu - m)' g + 1/2 (mu - m)' H (mu - m) + 1/2 sum_d sigma_d^2 H_dd, which equals
f(m) + 1/2 sum_d sigma_d^2 H_dd at mu = m and whose gradient is g in mu and sigma_d H_dd in
sigma_d (``DeltaMethod.expectation``). Then g_f - beta (g_h - grad E[h]) is unbiased for any beta
independent of the draws.

Cost: one evaluation of f at the mean, one backward pass for g and one double-backward pass per
event coordinate for H (D passes for D latent dimensions), per call. f must treat each batch row
(and each draw) on its own, as every task's cost does: the gradients of f at the stacked means
are taken in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal

from estimators.base import CostFn, base_distribution, describe_distribution
from estimators.errors import ConfigError

PARAMETERS = ("loc", "scale")
CONTROL_VARIATES = ("none", "delta")
ESTIMATED = "estimated"
COEFFICIENT_DRAWS = 20
"""Separate draws per call for ``cv_coefficient=estimated`` (mc_gradients' default)."""
EPS = 1e-3
"""Added to the coefficient's denominator, as mc_gradients does."""


def is_normal(dist: Distribution) -> bool:
    """A Normal, or a Normal inside ``Independent`` wrappers."""
    return isinstance(base_distribution(dist), Normal)


def event_dims(dist: Distribution) -> int:
    return len(dist.event_shape)


def by_parameter(dist: Distribution) -> dict[str, Distribution]:
    """For each of the Normal's parameters, ``dist`` with the other one detached."""
    normal = base_distribution(dist)
    loc, scale = normal.loc, normal.scale
    parts = {
        "loc": Normal(loc, scale.detach(), validate_args=False),
        "scale": Normal(loc.detach(), scale, validate_args=False),
    }
    n = event_dims(dist)
    return {p: Independent(d, n, validate_args=False) if n else d for p, d in parts.items()}


def scores(dist: Distribution, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-coordinate scores d log p / d loc and d log p / d scale at draws ``z`` (detached),
    of shape ``z.shape``."""
    normal = base_distribution(dist)
    loc, scale = normal.loc.detach(), normal.scale.detach()
    eps = (z.detach() - loc) / scale
    return {"loc": eps / scale, "scale": (eps**2 - 1) / scale}


def sum_event(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.sum(tuple(range(-n, 0))) if n else x


def expand_event(x: torch.Tensor | float, n: int) -> torch.Tensor | float:
    """A per-row value of shape [..., *batch] broadcastable against [..., *batch, *event]."""
    return x[(...,) + (None,) * n] if isinstance(x, torch.Tensor) else x


def score_terms(
    dist: Distribution, z: torch.Tensor, signal: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Zero-valued terms whose gradient is sum_d signal_p,d * d log p(z) / d p_d for each
    parameter p, with ``signal[p]`` broadcastable to ``z`` (f minus a per-coordinate baseline)."""
    normal_parts = {p: base_distribution(d) for p, d in by_parameter(dist).items()}
    n = event_dims(dist)
    total = 0.0
    for p, part in normal_parts.items():
        logp = part.log_prob(z.detach())
        total = total + sum_event(signal[p].detach() * (logp - logp.detach()), n)
    return total


@dataclass(frozen=True)
class Expansion:
    """f's Taylor expansion at m (all detached): m [*batch, *event], value [*batch], grad
    [*batch, D], hessian [*batch, D, D] with D the event size."""

    m: torch.Tensor
    value: torch.Tensor
    grad: torch.Tensor
    hessian: torch.Tensor

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., *batch, *event] with the event flattened: [..., *batch, D]."""
        n = self.m.dim() - self.value.dim()
        return x.flatten(-n) if n else x.unsqueeze(-1)

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """x - m with the event flattened: [..., *batch, D]."""
        return self.flat(x - self.m)


class DeltaMethod:
    """The delta-method control variate of a Normal: ``expand`` f at the stop-gradient mean, then
    ``h`` at draws and its ``expectation`` in closed form (see the module's docstring)."""

    name = "delta"

    def __init__(self, exact_expectation: bool = True) -> None:
        # exact_expectation=False drops the 1/2 sigma^2 H term of E[h]: a deliberately wrong
        # piece, for the tests to show that the unbiasedness check catches it.
        self.exact_expectation = exact_expectation

    def check(self, dist: Distribution, key: str) -> None:
        if not is_normal(dist):
            raise ConfigError(
                f"{key}=delta: the delta-method control variate needs a Normal distribution, "
                f"not {describe_distribution(dist)}; {key}=none serves it"
            )

    def expand(self, dist: Distribution, f: CostFn) -> Expansion:
        m = dist.mean.detach().clone().requires_grad_()
        n = event_dims(dist)
        with torch.enable_grad():
            value = f(m.unsqueeze(0))[0]
            grad = None
            if value.requires_grad:
                (grad,) = torch.autograd.grad(value.sum(), m, create_graph=True, allow_unused=True)
            if grad is None:
                raise ConfigError(
                    "control_variate=delta: the cost has no gradient at the mean (autograd finds "
                    "none); the delta method needs a twice-differentiable cost"
                )
            flat = grad.flatten(-n) if n else grad.unsqueeze(-1)
            size = flat.shape[-1]
            columns = []
            for d in range(size):
                if not flat.requires_grad:  # a linear cost: no second derivative
                    columns.append(torch.zeros_like(flat))
                    continue
                try:
                    (col,) = torch.autograd.grad(
                        flat[..., d].sum(), m, retain_graph=True, allow_unused=True
                    )
                except RuntimeError as error:
                    raise ConfigError(
                        "control_variate=delta: autograd cannot take the cost's second "
                        f"derivative ({str(error).splitlines()[0]})"
                    ) from None
                columns.append(
                    torch.zeros_like(flat)
                    if col is None
                    else (col.flatten(-n) if n else col.unsqueeze(-1))
                )
        hessian = torch.stack(columns, -1)
        if not (torch.isfinite(flat).all() and torch.isfinite(hessian).all()):
            raise ConfigError(
                "control_variate=delta: the cost's gradient or Hessian at the mean is not finite"
            )
        return Expansion(m.detach(), value.detach(), flat.detach(), hessian.detach())

    def h(self, e: Expansion, x: torch.Tensor) -> torch.Tensor:
        """h at draws ``x`` [N, *batch, *event]: [N, *batch], differentiable in x only."""
        d = e.centred(x)
        quadratic = torch.einsum("...i,...ij,...j->...", d, e.hessian, d)
        return e.value + (d * e.grad).sum(-1) + 0.5 * quadratic

    def grad_h(self, e: Expansion, x: torch.Tensor) -> torch.Tensor:
        """dh/dx at draws ``x``: [N, *batch, D]."""
        return e.grad + torch.einsum("...ij,...j->...i", e.hessian, e.centred(x))

    def expectation(self, e: Expansion, dist: Distribution) -> torch.Tensor:
        """E[h] under ``dist`` in closed form: [*batch], differentiable in dist's parameters."""
        d = e.centred(dist.mean)
        variance = e.flat(dist.variance)
        value = e.value + (d * e.grad).sum(-1)
        value = value + 0.5 * torch.einsum("...i,...ij,...j->...", d, e.hessian, d)
        if self.exact_expectation:
            value = value + 0.5 * (variance * torch.diagonal(e.hessian, 0, -2, -1)).sum(-1)
        return value


def coefficient(value: float | str, key: str = "cv_coefficient") -> float | str:
    """A fixed coefficient as a float, or ``estimated``; a ConfigError naming ``key`` otherwise."""
    if value == ESTIMATED:
        return ESTIMATED
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConfigError(
        f"{key}={value!r}: must be a finite number (1.0: the plain control variate) "
        f"or '{ESTIMATED}' (from {COEFFICIENT_DRAWS} separate draws per call)"
    )


def from_name(name: str | DeltaMethod, key: str = "control_variate") -> DeltaMethod | None:
    """The control variate a config names, ``none`` or ``delta``, or the piece itself."""
    if isinstance(name, DeltaMethod):
        return name
    if name not in CONTROL_VARIATES:
        raise ConfigError(
            f"{key}={name!r} is unknown; known control variates: {', '.join(CONTROL_VARIATES)}"
        )
    return DeltaMethod() if name == "delta" else None


def estimated_coefficient(jac_f: torch.Tensor, jac_h: torch.Tensor, n: int) -> torch.Tensor:
    """beta = sum_k Cov(g_f,k, g_h,k) / (sum_k Var(g_h,k) + EPS) over the event coordinates k,
    from per-draw gradients [K, *batch, *event]: one coefficient per batch row, [*batch]."""
    cf, ch = jac_f - jac_f.mean(0), jac_h - jac_h.mean(0)
    cov = sum_event((cf * ch).mean(0), n)
    var = sum_event((ch * ch).mean(0), n)
    return (cov / (var + EPS)).detach()


class TakesControlVariate:
    """Mixin for an estimator with the options ``control_variate`` (none | delta) and
    ``cv_coefficient`` (a number, 1.0 by default, or ``estimated``). Without a control variate
    the estimator, its options and its tables are as before."""

    title: str
    name: str

    def __init__(
        self, control_variate: str | DeltaMethod = "none", cv_coefficient: float | str = 1.0
    ) -> None:
        self.control_variate = from_name(control_variate)
        self.cv_coefficient = coefficient(cv_coefficient)
        if self.control_variate is not None:
            self.differentiates_f = True  # the expansion differentiates f twice

    def options(self) -> dict:
        if self.control_variate is None:
            return {}
        return {"control_variate": "delta", "cv_coefficient": self.cv_coefficient}

    @classmethod
    def label(cls, options: dict) -> str:
        if options.get("control_variate", "none") == "none":
            return cls.title
        which = " (estimated coefficient)" if options.get("cv_coefficient") == ESTIMATED else ""
        return f"{cls.title} + delta-method CV{which}"

    def supports(self, dist: Distribution) -> bool:
        return self.control_variate is None or is_normal(dist)

    def check(self, dist: Distribution, num_samples: int) -> None:
        if self.control_variate is not None:
            self.control_variate.check(dist, "control_variate")
        super().check(dist, num_samples)

    def check_objective(self, dist: Distribution, objective, num_samples: int) -> None:
        """Refuse the control variate on the objective path before any work: it serves E[f]."""
        if self.control_variate is not None:
            raise ConfigError(
                "estimator.control_variate=delta: the control variate serves E[f] for a given f, "
                "not multi-sample objectives; leave it unset"
            )
        super().check_objective(dist, objective, num_samples)

    def coefficients(self, estimate_jacobians) -> dict[str, torch.Tensor | float]:
        """Per parameter, beta: the fixed number, or ``estimated_coefficient`` of the per-draw
        gradients ``estimate_jacobians()`` returns from separate draws."""
        if self.cv_coefficient != ESTIMATED:
            return dict.fromkeys(PARAMETERS, self.cv_coefficient)
        return estimate_jacobians()
