"""The Gaussian toy's costs: each built-in one with its closed forms (E[c], its gradient, E[c^2]),
an imported one with none; E[c] and its gradient, by quadrature where there is no closed form."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.tasks.toy import costs
from benchmarks.tasks.toy.exact.gaussian.point import (
    PARAMS,
    NoExactAnswer,
    Point,
    Unresolved,
    require_finite,
)
from benchmarks.tasks.toy.exact.gaussian.quadrature import gaussian_expectation, path_of, score_of


@dataclass(frozen=True)
class Cost(costs.Cost):
    """A per-coordinate cost with its closed forms; an imported cost has none, and quadrature
    gives its expectation and gradient (``quadrature_gradient``)."""

    expectation: Callable[[float, float, float], float] | None = None
    """E[c(x; k)] for x ~ N(mu, sigma^2), as a function of (k, mu, sigma)."""
    gradient: Callable[[float, float, float], tuple[float, float]] | None = None
    """(d/dmu, d/dsigma) of that expectation."""
    second_moment: Callable[[float, float, float], float] | None = None
    """E[c(x; k)^2], against which the quadrature checks itself."""


def _exp_expectation(k: float, mu: float, s: float) -> float:
    a = 1.0 + 2.0 * k * s**2
    return a**-0.5 * math.exp(-k * mu**2 / a)


def _exp_gradient(k: float, mu: float, s: float) -> tuple[float, float]:
    a = 1.0 + 2.0 * k * s**2
    value = _exp_expectation(k, mu, s)
    return value * (-2.0 * k * mu / a), value * (-2.0 * k * s / a + 4.0 * k**2 * s * mu**2 / a**2)


COSTS: dict[str, Cost] = {
    "square": Cost(
        torch_fn=lambda x, k: (x - k) ** 2,
        np_fn=lambda x, k: (x - k) ** 2,
        np_derivative=lambda x, k: 2.0 * (x - k),
        expectation=lambda k, mu, s: (mu - k) ** 2 + s**2,
        gradient=lambda k, mu, s: (2.0 * (mu - k), 2.0 * s),
        second_moment=lambda k, mu, s: (mu - k) ** 4 + 6.0 * (mu - k) ** 2 * s**2 + 3.0 * s**4,
    ),
    "cos": Cost(
        torch_fn=lambda x, k: torch.cos(k * x),
        np_fn=lambda x, k: np.cos(k * x),
        np_derivative=lambda x, k: -k * np.sin(k * x),
        expectation=lambda k, mu, s: math.cos(k * mu) * math.exp(-0.5 * k**2 * s**2),
        gradient=lambda k, mu, s: (
            -k * math.sin(k * mu) * math.exp(-0.5 * k**2 * s**2),
            -(k**2) * s * math.cos(k * mu) * math.exp(-0.5 * k**2 * s**2),
        ),
        second_moment=lambda k, mu, s: (
            0.5 + 0.5 * math.cos(2 * k * mu) * math.exp(-2 * k**2 * s**2)
        ),
    ),
    "exp": Cost(
        torch_fn=lambda x, k: torch.exp(-k * x**2),
        np_fn=lambda x, k: np.exp(-k * x**2),
        np_derivative=lambda x, k: -2.0 * k * x * np.exp(-k * x**2),
        expectation=_exp_expectation,
        gradient=_exp_gradient,
        second_moment=lambda k, mu, s: _exp_expectation(2.0 * k, mu, s),
    ),
    "linear": Cost(
        torch_fn=lambda x, k: k * x,
        np_fn=lambda x, k: k * x,
        np_derivative=lambda x, k: k * np.ones_like(x),
        expectation=lambda k, mu, s: k * mu,
        gradient=lambda k, mu, s: (k, 0.0),
        second_moment=lambda k, mu, s: k**2 * (mu**2 + s**2),
    ),
}


def cost_of(name: str) -> Cost:
    """The built-in cost ``name``, or the function it imports (without closed forms)."""
    c = costs.find(name, COSTS)
    return c if isinstance(c, Cost) else Cost(c.torch_fn, c.np_fn, c.np_derivative)


def check_cost(name: str, k: float, sigma: float) -> None:
    """The ConfigError of an unknown cost (``costs.find``); NoExactAnswer for a k whose
    expectation or variance is infinite."""
    cost_of(name)
    if name == "exp" and 1.0 + 4.0 * k * sigma**2 <= 0:
        raise NoExactAnswer(
            f"cost 'exp' needs 1 + 4 k sigma^2 > 0 (k > {-1 / (4 * sigma**2):g}) "
            "for a finite variance"
        )


def expectation(cost: str, k: float, mu: float, sigma: float) -> float:
    """E[c(x; k)] per coordinate: in closed form, or by quadrature for an imported cost."""
    c = cost_of(cost)
    if c.expectation is not None:
        return c.expectation(k, mu, sigma)
    return gaussian_expectation(lambda e: c.np_fn(mu + sigma * e, k))


def exact_gradient(p: Point) -> float:
    """d/dtheta E[c(x; k)], per coordinate: in closed form, or by quadrature for an imported
    cost (``quadrature_gradient``)."""
    c = cost_of(p.cost)
    if c.gradient is None:
        return quadrature_gradient(c, p)
    return c.gradient(p.k, p.mu, p.sigma)[PARAMS.index(p.param)]


def quadrature_gradient(c: Cost, p: Point) -> float:
    """d/dtheta E[c] in score-function form, E[c s]; with a derivative, checked against the
    pathwise form E[c' dx/dtheta] to 1e-8 of the larger integrand's root mean square (as
    ``require_resolved`` checks closed forms): ``Unresolved`` where they differ."""
    score, path = score_of(p.param, p.sigma), path_of(p.param)
    cs = lambda e: c.np_fn(p.mu + p.sigma * e, p.k) * score(e)  # noqa: E731
    by_score = gaussian_expectation(cs)
    if c.np_derivative is None:  # nothing to check it against
        require_finite(by_score, cost=p.cost, k=p.k)
        return by_score
    g = lambda e: c.np_derivative(p.mu + p.sigma * e, p.k) * path(e)  # noqa: E731
    by_path = gaussian_expectation(g)
    mean_squares = (
        gaussian_expectation(lambda e: cs(e) ** 2),
        gaussian_expectation(lambda e: g(e) ** 2),
    )
    require_finite(by_score, by_path, *mean_squares, cost=p.cost, k=p.k)
    if not abs(by_score - by_path) <= 1e-8 * math.sqrt(max(mean_squares)):
        raise Unresolved(
            f"cost {p.cost!r} at k={p.k:g}: its gradient w.r.t. {p.param} by quadrature is "
            f"{by_score:.10g} as E[c s] and {by_path:.10g} as E[c' dx/d{p.param}]; the "
            "derivative autograd gives may be wrong, or quadrature cannot follow the cost"
        )
    return by_score
