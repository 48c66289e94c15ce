"""One-dimensional quadrature for the Gaussian toy's exact answers: expectations over
eps ~ N(0, 1) (and Rayleigh and double-sided Maxwell draws, folded onto it), Gauss-Legendre over
[0, 1], and the score and path of x = mu + sigma eps as functions of eps."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import numpy as np


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
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # require_resolved decides
        peak = np.nanmax(np.abs(density(np.linspace(-12.0, 12.0, 4801))))
        value, _ = integrate.quad(
            density, -np.inf, np.inf, epsabs=1e-13 * min(peak, 1.0), epsrel=1e-11, limit=500
        )
    return value


def score_of(param: str, sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """d/dtheta log N(x; mu, sigma^2) as a function of eps = (x - mu) / sigma."""
    if param == "mu":
        return lambda e: e / sigma
    return lambda e: (e * e - 1.0) / sigma


def path_of(param: str) -> Callable[[np.ndarray], np.ndarray]:
    """dx/dtheta for x = mu + sigma eps."""
    if param == "mu":
        return lambda e: np.ones_like(e)
    return lambda e: e


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
