"""Exact answers for the Gaussian toy: closed-form gradients and estimator variances by quadrature.

The toy is x ~ N(mu, sigma^2) in ``dim`` dimensions (every coordinate at the same mu, sigma) and
a cost f(x) = sum_j c(x_j; k). Statistics are about the gradient with respect to the first
coordinate's parameter theta in {mu, sigma}; by symmetry every coordinate has the same law.
For one draw write f = c(x_1) + R, where R, the sum over the other coordinates, is independent of
x_1. Every variance below reduces to one-dimensional integrals over eps ~ N(0, 1), x_1 = mu + sigma
eps, done with scipy's adaptive quadrature, and to the first two moments of R.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.tasks import costs
from benchmarks.tasks.score_variance import DrawMoments, score_function_variance
from estimators.errors import ConfigError

PARAMS = ("mu", "sigma")


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


class Unresolved(Exception):
    """An imported cost whose gradient by quadrature differs in score-function and pathwise
    form: a wrong derivative, or a cost quadrature cannot follow. Its exact answers are unknown."""


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
    """Raise ConfigError for an unknown cost, or a k whose expectation or variance is infinite."""
    cost_of(name)
    if name == "exp" and 1.0 + 4.0 * k * sigma**2 <= 0:
        raise ConfigError(
            f"task.k={k}: cost 'exp' needs 1 + 4 k sigma^2 > 0 (k > {-1 / (4 * sigma**2):g}) "
            "for a finite variance"
        )


def expectation(cost: str, k: float, mu: float, sigma: float) -> float:
    """E[c(x; k)] per coordinate: in closed form, or by quadrature for an imported cost."""
    c = cost_of(cost)
    if c.expectation is not None:
        return c.expectation(k, mu, sigma)
    return gaussian_expectation(lambda e: c.np_fn(mu + sigma * e, k))


def exact_gradient(cost: str, k: float, mu: float, sigma: float, param: str) -> float:
    """d/dtheta E[c(x; k)], per coordinate: in closed form, or by quadrature for an imported
    cost (``quadrature_gradient``)."""
    c = cost_of(cost)
    if c.gradient is None:
        return quadrature_gradient(c, cost, k, mu, sigma, param)
    return c.gradient(k, mu, sigma)[PARAMS.index(param)]


def quadrature_gradient(c: Cost, cost: str, k: float, mu: float, sigma: float, param: str) -> float:
    """d/dtheta E[c] in score-function form, E[c s]; with a derivative, checked against the
    pathwise form E[c' dx/dtheta] to 1e-8 of the larger integrand's root mean square (as
    ``require_resolved`` checks closed forms): ``Unresolved`` where they differ."""
    score, path = _score(param, sigma), _path(param)
    cs = lambda e: c.np_fn(mu + sigma * e, k) * score(e)  # noqa: E731
    by_score = gaussian_expectation(cs)
    if c.np_derivative is None:  # nothing to check it against
        require_finite(by_score, cost=cost, k=k)
        return by_score
    g = lambda e: c.np_derivative(mu + sigma * e, k) * path(e)  # noqa: E731
    by_path = gaussian_expectation(g)
    mean_squares = (
        gaussian_expectation(lambda e: cs(e) ** 2),
        gaussian_expectation(lambda e: g(e) ** 2),
    )
    require_finite(by_score, by_path, *mean_squares, cost=cost, k=k)
    if not abs(by_score - by_path) <= 1e-8 * math.sqrt(max(mean_squares)):
        raise Unresolved(
            f"cost {cost!r} at k={k:g}: its gradient w.r.t. {param} by quadrature is "
            f"{by_score:.10g} as E[c s] and {by_path:.10g} as E[c' dx/d{param}]; the derivative "
            "autograd gives may be wrong, or quadrature cannot follow the cost"
        )
    return by_score


def gaussian_expectation(h: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[h(eps)] for eps ~ N(0, 1), by adaptive quadrature over the real line, to 1e-11 relative
    or 1e-13 of the integrand's largest value on a grid (so tiny integrands keep their digits)."""
    from scipy import integrate  # here, not at the top: a bad input answers without scipy

    def density(e: np.ndarray) -> np.ndarray:
        # Zero where the weight underflows (|eps| > 38), as the integral is: quadrature's far
        # nodes must not turn a cost that overflows there (exp(k x)) into inf * 0 = NaN.
        weight = np.exp(-0.5 * e * e)
        return np.where(weight > 0, h(e) * weight / math.sqrt(2 * math.pi), 0.0)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # see require_resolved
        peak = np.nanmax(np.abs(density(np.linspace(-12.0, 12.0, 4801))))
        value, _ = integrate.quad(
            density, -np.inf, np.inf, epsabs=1e-13 * min(peak, 1.0), epsrel=1e-11, limit=500
        )
    return value


def _score(param: str, sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """d/dtheta log N(x; mu, sigma^2) as a function of eps = (x - mu) / sigma."""
    if param == "mu":
        return lambda e: e / sigma
    return lambda e: (e * e - 1.0) / sigma


def _path(param: str) -> Callable[[np.ndarray], np.ndarray]:
    """dx/dtheta for x = mu + sigma eps."""
    if param == "mu":
        return lambda e: np.ones_like(e)
    return lambda e: e


def pathwise_variance(
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float:
    """reparam: c'(x) dx/dtheta, one draw's variance over num_samples (the other coordinates do
    not enter a pathwise gradient of the first)."""
    c = cost_of(cost)
    path = _path(param)
    g = lambda e: c.np_derivative(mu + sigma * e, k) * path(e)  # noqa: E731
    g1, g2 = gaussian_expectation(g), gaussian_expectation(lambda e: g(e) ** 2)
    if c.gradient is not None:  # an imported cost's gradient is checked against g1 where made
        gradient = exact_gradient(cost, k, mu, sigma, param)
        require_resolved(g1, gradient, math.sqrt(g2), cost, k, mu, sigma)
    return max(g2 - g1**2, 0.0) / num_samples


def score_variance(
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float | None:
    """reinforce, and reinforce_baseline with the leave-one-out baseline, from the moments of one
    draw by quadrature; None for another baseline (its variance depends on the run's history)."""
    baseline = options.get("baseline", "none")
    if baseline not in ("none", "loo"):
        return None
    c = cost_of(cost)
    cx = lambda e: c.np_fn(mu + sigma * e, k)  # noqa: E731
    moments = DrawMoments.of(gaussian_expectation, cx, _score(param, sigma))
    if c.expectation is not None:  # closed forms to check the quadrature against
        gradient = exact_gradient(cost, k, mu, sigma, param)
        require_resolved(
            moments.c, c.expectation(k, mu, sigma), math.sqrt(moments.c2), cost, k, mu, sigma
        )
        require_resolved(moments.c2, c.second_moment(k, mu, sigma), moments.c2, cost, k, mu, sigma)
        require_resolved(
            moments.cs, gradient, math.sqrt(moments.c2 * moments.s2), cost, k, mu, sigma
        )
    return score_function_variance(moments, dim, num_samples, loo=baseline == "loo")


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


def delta_pathwise_variance(
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float | None:
    """reparam with the delta method and a fixed beta. As f is a sum over coordinates, its Hessian
    is diagonal and h = sum_j [c(mu) + c'(mu)(x_j - mu) + c''(mu)(x_j - mu)^2 / 2]; the corrected
    draw for the first coordinate is c'(x) - beta c''(mu) sigma eps (for mu) and
    [c'(x) - beta (c'(mu) + c''(mu) sigma eps)] eps plus a constant (for sigma), functions of eps
    alone whatever dim."""
    beta = delta_coefficient(options)
    if beta is None:
        return None
    c = cost_of(cost)
    _, c1, c2 = taylor_at(cost, k, mu)
    if param == "mu":
        g = lambda e: c.np_derivative(mu + sigma * e, k) - beta * c2 * sigma * e  # noqa: E731
    else:
        g = lambda e: (c.np_derivative(mu + sigma * e, k) - beta * (c1 + c2 * sigma * e)) * e  # noqa: E731
    g1, g2 = gaussian_expectation(g), gaussian_expectation(lambda e: g(e) ** 2)
    require_finite(g1, g2, cost=cost, k=k)
    return max(g2 - g1**2, 0.0) / num_samples


def delta_score_variance(
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float | None:
    """reinforce with the delta method and a fixed beta: per draw (f - beta h) s + beta
    dE[h]/dtheta, where f - beta h = sum_j d(x_j) with d = c - beta h_1 per coordinate:
    REINFORCE's variance with the cost d in place of c (the added gradient of E[h] is a
    constant)."""
    beta = delta_coefficient(options)
    if beta is None:
        return None
    c = cost_of(cost)
    c0, c1, c2 = taylor_at(cost, k, mu)

    def d(e: np.ndarray) -> np.ndarray:
        return c.np_fn(mu + sigma * e, k) - beta * (
            c0 + c1 * sigma * e + 0.5 * c2 * (sigma * e) ** 2
        )

    moments = DrawMoments.of(gaussian_expectation, d, _score(param, sigma))
    require_finite(moments.c2s2, cost=cost, k=k)
    return score_function_variance(moments, dim, num_samples, loo=False)


def optimal_baseline_variance(
    cost: str, k: float, mu: float, sigma: float, param: str, dim: int = 1, num_samples: int = 1
) -> float:
    """The score-function estimator with the oracle optimal constant baseline b* = E[f s^2] /
    E[s^2] (Figures 2-3's curve): Var[(f - b*) s] = E[f^2 s^2] - E[f s^2]^2 / E[s^2] - E[f s]^2,
    per draw, over num_samples. ``baseline=optimal`` estimates b* leave-one-out from the call's
    other draws, which adds O(1/num_samples) to this: its own variance is not registered."""
    c = cost_of(cost)
    m = DrawMoments.of(
        gaussian_expectation, lambda e: c.np_fn(mu + sigma * e, k), _score(param, sigma)
    )
    r1 = (dim - 1) * m.c
    r2 = (dim - 1) * (m.c2 - m.c**2) + r1**2
    fs2 = m.cs2 + r1 * m.s2
    f2s2 = m.c2s2 + 2 * r1 * m.cs2 + r2 * m.s2
    return max(f2s2 - fs2**2 / m.s2 - m.cs**2, 0.0) / num_samples


def with_control_variate(plain: Callable[..., float | None], delta: Callable[..., float | None]):
    """``plain`` without a control variate, ``delta`` with the delta method."""

    def variance(options: dict, *args, **kwargs) -> float | None:
        if options.get("control_variate", "none") == "none":
            return plain(options, *args, **kwargs)
        return delta(options, *args, **kwargs)

    variance.__doc__ = f"{plain.__name__}, or {delta.__name__} with control_variate=delta."
    return variance


def rayleigh_expectation(h: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[h(w)] for w ~ Rayleigh(1) (density w exp(-w^2/2), w > 0), as sqrt(2 pi)/2 E[|eps|
    h(|eps|)] over eps ~ N(0, 1) (``gaussian_expectation``, whose folding of the real line keeps
    the kink at 0 an endpoint)."""
    return 0.5 * math.sqrt(2 * math.pi) * gaussian_expectation(lambda e: np.abs(e) * h(np.abs(e)))


def maxwell_expectation(h: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[h(m)] for m ~ double-sided Maxwell (density m^2 exp(-m^2/2) / sqrt(2 pi)) = E[eps^2
    h(eps)] over eps ~ N(0, 1)."""
    return gaussian_expectation(lambda e: e * e * h(e))


@functools.cache
def _legendre_on_unit_interval(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights for int_0^1."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def uniform_average(h: Callable[[np.ndarray, np.ndarray], np.ndarray], m: np.ndarray) -> np.ndarray:
    """int_0^1 h(m, u) du for each m, by 200-node Gauss-Legendre in u: exact to rounding for the
    smooth built-in costs at the m that carry weight; to about 1e-3 relative for a cost with a
    jump (an imported step function)."""
    u, weights = _legendre_on_unit_interval()
    m = np.asarray(m, dtype=float)
    return (h(m[..., None], u) * weights).sum(-1)


def measure_valued_variance(
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float:
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
    c = cost_of(cost)
    cx = lambda e: c.np_fn(mu + sigma * e, k)  # noqa: E731
    if param == "mu":
        scale = 1.0 / (sigma * math.sqrt(2 * math.pi))
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
        scale = 1.0 / sigma
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
    require_finite(mean, second, size, cost=cost, k=k)
    gradient = exact_gradient(cost, k, mu, sigma, param)
    require_resolved(mean, gradient, math.sqrt(second), cost, k, mu, sigma)
    variance = second - mean**2
    # Zero below rounding of the terms it is a difference of (coupled, the mean gradient of a cost
    # symmetric about mu: c(mu + sigma w) - c(mu - sigma w) = 0 at every w).
    return variance / num_samples if variance > 1e-12 * scale**2 * size else 0.0


EXACT_VARIANCE: dict[str, Callable[..., float | None]] = {
    "reparam": with_control_variate(pathwise_variance, delta_pathwise_variance),
    "reinforce": with_control_variate(score_variance, delta_score_variance),
    "reinforce_baseline": score_variance,
    "measure_valued": measure_valued_variance,
}
"""The estimators whose exact variance the Gaussian toy knows (all unbiased), keyed by name."""


def exact_variance(
    estimator: str,
    options: dict,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
    param: str,
    dim: int = 1,
    num_samples: int = 1,
) -> float | None:
    """Variance of one estimate (num_samples draws) of d/dtheta_1 E[f]; None where none applies."""
    variance = EXACT_VARIANCE.get(estimator)
    if variance is None:
        return None
    return variance(options, cost, k, mu, sigma, param, dim, num_samples)


def require_resolved(
    quadrature: float,
    closed_form: float,
    scale: float,
    cost: str,
    k: float,
    mu: float,
    sigma: float,
) -> None:
    """A ConfigError unless quadrature reproduces a moment known in closed form (E[c], E[c^2], or
    the gradient as E[c s] or E[c' dx/dtheta]) to 1e-8 of its scale: past some k, cos oscillates
    and exp narrows faster than adaptive quadrature can follow, and its variances would be wrong.
    This check decides, not scipy's warnings, which also flag harmless roundoff on integrals
    near zero."""
    require_finite(quadrature, closed_form, scale, cost=cost, k=k)
    if not abs(quadrature - closed_form) <= 1e-8 * scale:
        raise ConfigError(
            f"task.k={k:g}: quadrature cannot resolve cost {cost!r} at this k (mu={mu:g}, "
            f"sigma={sigma:g}) as its exact variance needs; choose a smaller |k|"
        )


def require_finite(*values: float, cost: str, k: float) -> None:
    """OverflowError unless every exact moment is finite (the toy names k in one line)."""
    if not all(map(math.isfinite, values)):
        raise OverflowError(f"cost {cost!r} at k={k:g} overflows float64")
