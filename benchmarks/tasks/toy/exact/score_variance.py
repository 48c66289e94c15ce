"""The exact variance of score-function estimators from the moments of one draw.

For a cost f = c(x_1) + R summed over dimensions, with R (the other dimensions) independent of
x_1, and s the score of the first coordinate's parameter (E[s] = 0), the variance of REINFORCE and
of its leave-one-out version needs only E[c^a s^b] for a, b <= 2 and the first two moments of R.
The toys compute those by quadrature (Gaussian) or enumeration (Bernoulli).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DrawMoments:
    """Moments of one coordinate's cost c and score s: E[c], E[c^2], E[s^2], E[cs], E[cs^2],
    E[c^2 s^2]."""

    c: float
    c2: float
    s2: float
    cs: float
    cs2: float
    c2s2: float

    @classmethod
    def of(cls, expectation: Callable[[Callable], float], c: Callable, s: Callable) -> DrawMoments:
        """The moments of c and s, functions of one draw, under ``expectation`` (quadrature over
        the Gaussian's noise, or a sum over the Bernoulli's two values)."""
        return cls(
            c=expectation(c),
            c2=expectation(lambda z: c(z) ** 2),
            s2=expectation(lambda z: s(z) ** 2),
            cs=expectation(lambda z: c(z) * s(z)),
            cs2=expectation(lambda z: c(z) * s(z) ** 2),
            c2s2=expectation(lambda z: c(z) ** 2 * s(z) ** 2),
        )


def score_function_variance(m: DrawMoments, dim: int, num_samples: int, loo: bool) -> float:
    """Variance of the mean of ``num_samples`` score-function terms f s for the first coordinate,
    without a baseline or with the leave-one-out one."""
    r1 = (dim - 1) * m.c  # E[R]
    r2 = (dim - 1) * (m.c2 - m.c**2) + r1**2  # E[R^2]
    f1 = m.c + r1
    f2 = m.c2 + 2 * m.c * r1 + r2
    fs = m.cs
    fs2 = m.cs2 + r1 * m.s2
    f2s2 = m.c2s2 + 2 * r1 * m.cs2 + r2 * m.s2
    return variance_from_joint_moments(f1, f2, fs, fs2, f2s2, m.s2, num_samples, loo)


def variance_from_joint_moments(
    f1: float, f2: float, fs: float, fs2: float, f2s2: float, s2: float, num_samples: int, loo: bool
) -> float:
    """Variance of one score-function estimate from the joint moments E[f], E[f^2], E[fs],
    E[fs^2], E[f^2 s^2], E[s^2] of one draw (E[s] = 0): (E[f^2 s^2] - E[fs]^2) / K without a
    baseline; the leave-one-out U-statistic's variance with it. Any f, additive or not."""
    if not loo:
        return max(f2s2 - fs**2, 0.0) / num_samples
    # Leave-one-out: the estimate is the U-statistic of the kernel h = (f_i - f_j)(s_i - s_j) / 2,
    # whose variance is [2 (K - 2) zeta_1 + zeta_2] / C(K, 2) (Hoeffding 1948).
    k = num_samples
    zeta2 = (f2s2 + f2 * s2 - 2 * fs2 * f1 + 2 * fs**2) / 2 - fs**2
    zeta1 = (f2s2 - 2 * f1 * fs2 + f1**2 * s2 - fs**2) / 4
    return max(2 * (k - 2) * zeta1 + zeta2, 0.0) / (k * (k - 1) / 2)
