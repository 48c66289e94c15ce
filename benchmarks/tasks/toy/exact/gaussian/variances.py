"""The exact variance of one estimate of the Gaussian toy's gradient, per estimator that has one:
pathwise, score function (plain or leave-one-out), either with the delta-method control variate,
the oracle optimal baseline and the measure-valued gradient, each checking its quadrature against
the closed forms it reproduces."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.tasks.toy.exact.gaussian.catalogue import cost_of, exact_gradient
from benchmarks.tasks.toy.exact.gaussian.point import NoExactAnswer, Point, require_finite
from benchmarks.tasks.toy.exact.gaussian.quadrature import (
    gaussian_expectation,
    maxwell_expectation,
    path_of,
    rayleigh_expectation,
    score_of,
    uniform_average,
)
from benchmarks.tasks.toy.exact.score_variance import DrawMoments, score_function_variance


def pathwise_variance(options: dict, p: Point) -> float:
    """reparam: c'(x) dx/dtheta, one draw's variance over num_samples (the other coordinates do
    not enter a pathwise gradient of the first)."""
    c = cost_of(p.cost)
    path = path_of(p.param)
    g = lambda e: c.np_derivative(p.mu + p.sigma * e, p.k) * path(e)  # noqa: E731
    g1, g2 = gaussian_expectation(g), gaussian_expectation(lambda e: g(e) ** 2)
    if c.gradient is not None:  # an imported cost's gradient is checked against g1 where made
        require_resolved(g1, exact_gradient(p), math.sqrt(g2), p)
    return max(g2 - g1**2, 0.0) / p.num_samples


def score_variance(options: dict, p: Point) -> float | None:
    """reinforce, and reinforce_baseline with the leave-one-out baseline, from the moments of one
    draw by quadrature; None for another baseline (its variance depends on the run's history)."""
    baseline = options.get("baseline", "none")
    if baseline not in ("none", "loo"):
        return None
    c = cost_of(p.cost)
    cx = lambda e: c.np_fn(p.mu + p.sigma * e, p.k)  # noqa: E731
    moments = DrawMoments.of(gaussian_expectation, cx, score_of(p.param, p.sigma))
    if c.expectation is not None:  # closed forms to check the quadrature against
        gradient = exact_gradient(p)
        require_resolved(moments.c, c.expectation(p.k, p.mu, p.sigma), math.sqrt(moments.c2), p)
        require_resolved(moments.c2, c.second_moment(p.k, p.mu, p.sigma), moments.c2, p)
        require_resolved(moments.cs, gradient, math.sqrt(moments.c2 * moments.s2), p)
    return score_function_variance(moments, p.dim, p.num_samples, loo=baseline == "loo")


def taylor_at(cost: str, k: float, m: float) -> tuple[float, float, float]:
    """c(m), c'(m) and c''(m) by autograd in float64: the delta method's expansion point."""
    x = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    value = cost_of(cost).torch_fn(x, torch.tensor(k, dtype=torch.float64))
    (first,) = torch.autograd.grad(value, x, create_graph=True)
    second = torch.autograd.grad(first, x)[0] if first.requires_grad else torch.zeros(())
    return value.item(), first.item(), second.item()


def delta_coefficient(options: dict) -> float | None:
    """The fixed coefficient of the delta-method control variate, or None where there is none
    or it is estimated (its variance then depends on the separate draws: not one integral)."""
    if options.get("control_variate", "none") != "delta":
        return None
    beta = options.get("cv_coefficient", 1.0)
    return None if beta == "estimated" else float(beta)


def delta_pathwise_variance(options: dict, p: Point) -> float | None:
    """reparam with the delta method and a fixed beta. As f is a sum over coordinates, its Hessian
    is diagonal and h = sum_j [c(mu) + c'(mu)(x_j - mu) + c''(mu)(x_j - mu)^2 / 2]; the corrected
    draw for the first coordinate is c'(x) - beta c''(mu) sigma eps (for mu) and
    [c'(x) - beta (c'(mu) + c''(mu) sigma eps)] eps plus a constant (for sigma), functions of eps
    alone whatever dim."""
    beta = delta_coefficient(options)
    if beta is None:
        return None
    c = cost_of(p.cost)
    mu, sigma, k = p.mu, p.sigma, p.k
    _, c1, c2 = taylor_at(p.cost, k, mu)
    if p.param == "mu":
        g = lambda e: c.np_derivative(mu + sigma * e, k) - beta * c2 * sigma * e  # noqa: E731
    else:
        g = lambda e: (c.np_derivative(mu + sigma * e, k) - beta * (c1 + c2 * sigma * e)) * e  # noqa: E731
    g1, g2 = gaussian_expectation(g), gaussian_expectation(lambda e: g(e) ** 2)
    require_finite(g1, g2, cost=p.cost, k=k)
    return max(g2 - g1**2, 0.0) / p.num_samples


def delta_score_variance(options: dict, p: Point) -> float | None:
    """reinforce with the delta method and a fixed beta: per draw (f - beta h) s + beta
    dE[h]/dtheta, where f - beta h = sum_j d(x_j) with d = c - beta h_1 per coordinate:
    REINFORCE's variance with the cost d in place of c (the added gradient of E[h] is a
    constant)."""
    beta = delta_coefficient(options)
    if beta is None:
        return None
    c = cost_of(p.cost)
    mu, sigma, k = p.mu, p.sigma, p.k
    c0, c1, c2 = taylor_at(p.cost, k, mu)

    def d(e: np.ndarray) -> np.ndarray:
        return c.np_fn(mu + sigma * e, k) - beta * (
            c0 + c1 * sigma * e + 0.5 * c2 * (sigma * e) ** 2
        )

    moments = DrawMoments.of(gaussian_expectation, d, score_of(p.param, sigma))
    require_finite(moments.c2s2, cost=p.cost, k=k)
    return score_function_variance(moments, p.dim, p.num_samples, loo=False)


def optimal_baseline_variance(p: Point) -> float:
    """The score-function estimator with the oracle optimal constant baseline b* = E[f s^2] /
    E[s^2] (Figures 2-3's curve): Var[(f - b*) s] = E[f^2 s^2] - E[f s^2]^2 / E[s^2] - E[f s]^2,
    per draw, over num_samples. ``baseline=optimal`` estimates b* leave-one-out from the call's
    other draws, which adds O(1/num_samples) to this: its own variance is not registered."""
    c = cost_of(p.cost)
    m = DrawMoments.of(
        gaussian_expectation,
        lambda e: c.np_fn(p.mu + p.sigma * e, p.k),
        score_of(p.param, p.sigma),
    )
    r1 = (p.dim - 1) * m.c
    r2 = (p.dim - 1) * (m.c2 - m.c**2) + r1**2
    fs2 = m.cs2 + r1 * m.s2
    f2s2 = m.c2s2 + 2 * r1 * m.cs2 + r2 * m.s2
    return max(f2s2 - fs2**2 / m.s2 - m.cs**2, 0.0) / p.num_samples


def with_control_variate(plain: Callable[..., float | None], delta: Callable[..., float | None]):
    """``plain`` without a control variate, ``delta`` with the delta method."""

    def variance(options: dict, p: Point) -> float | None:
        if options.get("control_variate", "none") == "none":
            return plain(options, p)
        return delta(options, p)

    variance.__doc__ = f"{plain.__name__}, or {delta.__name__} with control_variate=delta."
    return variance


def measure_valued_variance(options: dict, p: Point) -> float:
    """measure_valued, coupled (the default) or not, by one-dimensional quadrature.

    Write c(e) for c(mu + sigma e; k). The estimate of the first coordinate perturbs only that
    coordinate and holds the others at the base draw, so in f(x with x_1 = a) - f(x with x_1 = b)
    = c(a) - c(b) the other coordinates cancel: the variance does not depend on ``dim``.
    One draw's estimate and its second moment:

    - mu: g = (c(w) - c(-w')) / (sigma sqrt(2 pi)), w, w' ~ Rayleigh(1). Coupled (w' = w):
      E[g^2] = E_R[(c(w) - c(-w))^2] / (2 pi sigma^2). Uncoupled: E[g^2] = (E_R[c(w)^2]
      - 2 E_R[c(w)] E_R[c(-w)] + E_R[c(-w)^2]) / (2 pi sigma^2).
    - sigma: g = (c(m) - c(e)) / sigma, m ~ double-sided Maxwell, e ~ N(0, 1). Coupled (e = U m,
      U ~ U(0, 1)): E[g^2] = E_M[int_0^1 (c(m) - c(u m))^2 du] / sigma^2. Uncoupled:
      E[g^2] = (E_M[c^2] - 2 E_M[c] E_N[c] + E_N[c^2]) / sigma^2.

    E[g], by the same quadrature, must reproduce the exact gradient (``require_resolved``: the
    estimator is unbiased); the variance of one estimate is (E[g^2] - E[g]^2) / num_samples, set
    to 0 below 1e-12 of the second moments of the two terms (the coupled mean gradient of a cost
    symmetric about mu, (x - k)^2 at mu = k, is exactly 0).
    """
    coupled = options.get("coupling", True)
    c = cost_of(p.cost)
    cx = lambda e: c.np_fn(p.mu + p.sigma * e, p.k)  # noqa: E731
    if p.param == "mu":
        scale = 1.0 / (p.sigma * math.sqrt(2 * math.pi))
        plus, minus = cx, lambda w: cx(-w)
        mean = scale * (rayleigh_expectation(plus) - rayleigh_expectation(minus))
        size = rayleigh_expectation(lambda w: plus(w) ** 2 + minus(w) ** 2)
        if coupled:
            second = rayleigh_expectation(lambda w: (plus(w) - minus(w)) ** 2)
        else:
            second = (
                rayleigh_expectation(lambda w: plus(w) ** 2)
                - 2 * rayleigh_expectation(plus) * rayleigh_expectation(minus)
                + rayleigh_expectation(lambda w: minus(w) ** 2)
            )
    else:
        scale = 1.0 / p.sigma
        mean = scale * (maxwell_expectation(cx) - gaussian_expectation(cx))
        size = maxwell_expectation(lambda m: cx(m) ** 2) + gaussian_expectation(
            lambda e: cx(e) ** 2
        )
        if coupled:
            second = maxwell_expectation(
                lambda m: uniform_average(lambda m, u: (cx(m) - cx(u * m)) ** 2, m)
            )
        else:
            second = (
                maxwell_expectation(lambda m: cx(m) ** 2)
                - 2 * maxwell_expectation(cx) * gaussian_expectation(cx)
                + gaussian_expectation(lambda e: cx(e) ** 2)
            )
    second *= scale**2
    require_finite(mean, second, size, cost=p.cost, k=p.k)
    require_resolved(mean, exact_gradient(p), math.sqrt(second), p)
    variance = second - mean**2
    # Zero below rounding of the terms it is a difference of (coupled, the mean gradient of a cost
    # symmetric about mu: c(mu + sigma w) - c(mu - sigma w) = 0 at every w).
    return variance / p.num_samples if variance > 1e-12 * scale**2 * size else 0.0


EXACT_VARIANCE: dict[str, Callable[[dict, Point], float | None]] = {
    "reparam": with_control_variate(pathwise_variance, delta_pathwise_variance),
    "reinforce": with_control_variate(score_variance, delta_score_variance),
    "reinforce_baseline": score_variance,
    "measure_valued": measure_valued_variance,
}
"""The estimators whose exact variance the Gaussian toy knows (all unbiased), keyed by name."""


def exact_variance(estimator: str, options: dict, p: Point) -> float | None:
    """Variance of one estimate (num_samples draws) of d/dtheta_1 E[f]; None where none applies."""
    variance = EXACT_VARIANCE.get(estimator)
    if variance is None:
        return None
    return variance(options, p)


def require_resolved(quadrature: float, closed_form: float, scale: float, p: Point) -> None:
    """NoExactAnswer unless quadrature reproduces a moment known in closed form (E[c], E[c^2], or
    the gradient as E[c s] or E[c' dx/dtheta]) to 1e-8 of its scale: past some k, cos oscillates
    and exp narrows faster than adaptive quadrature can follow, and its variances would be wrong.
    This check decides, not scipy's warnings, which also flag harmless roundoff on integrals
    near zero."""
    require_finite(quadrature, closed_form, scale, cost=p.cost, k=p.k)
    if not abs(quadrature - closed_form) <= 1e-8 * scale:
        raise NoExactAnswer(
            f"quadrature cannot resolve cost {p.cost!r} at this k (mu={p.mu:g}, "
            f"sigma={p.sigma:g}) as its exact variance needs; choose a smaller |k|"
        )
