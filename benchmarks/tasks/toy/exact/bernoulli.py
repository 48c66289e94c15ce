"""Exact answers for the Bernoulli toy of the REBAR, RELAX and DisARM papers.

b ~ Bernoulli(sigmoid(theta)) in ``dim`` dimensions (every logit at theta), f(b) = sum_j c(b_j; k).
Statistics are of the gradient with respect to the first logit. The exact gradient is
p (1 - p) (c(1) - c(0)); each estimator's exact expectation and variance come from enumeration
over b (score-function estimators) or one-dimensional quadrature over the uniform noise u (ARM,
DisARM, the relaxations and Gumbel-Rao, with L = log u - log(1 - u)). The other dimensions enter
only through the moments of their summed cost, because the cost is a sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from benchmarks.tasks.toy.costs import Cost, find
from benchmarks.tasks.toy.exact.score_variance import DrawMoments, score_function_variance

COSTS: dict[str, Cost] = {
    "square": Cost(
        torch_fn=lambda b, k: (b - k) ** 2,
        np_fn=lambda b, k: (b - k) ** 2,
        np_derivative=lambda b, k: 2.0 * (b - k),
    ),
    "linear": Cost(
        torch_fn=lambda b, k: k * b, np_fn=lambda b, k: k * b, np_derivative=lambda b, k: k
    ),
    # ReinMax's polynomial programming toy (Liu et al. 2023): |b - 0.45|^k for the power k.
    "power": Cost(
        torch_fn=lambda b, k: (b - 0.45).abs() ** k,
        np_fn=lambda b, k: np.abs(b - 0.45) ** k,
        np_derivative=lambda b, k: k * np.abs(b - 0.45) ** (k - 1) * np.sign(b - 0.45),
    ),
}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def cost_of(name: str) -> Cost:
    """The built-in cost ``name``, or the function it imports: its exact answers need only
    c(0), c(1) and, for the relaxations, c' on (0, 1)."""
    return find(name, COSTS)


def exact_gradient(cost: str, k: float, theta: float) -> float:
    """d/dtheta_1 E[f] = p (1 - p) (c(1) - c(0))."""
    c = cost_of(cost).np_fn
    p = sigmoid(theta)
    return p * (1 - p) * (c(1.0, k) - c(0.0, k))


def zero_below_resolution(variance: float, mean: float) -> float:
    """A variance that quadrature leaves at 1e-18 where it is exactly 0 (DisARM at theta = 0 in
    one dimension), set to 0; negative rounding likewise."""
    return variance if variance > 1e-12 * max(mean**2, 1e-12) else 0.0


def over_u(
    h: Callable[[float], float], breaks: list[float], lo: float = 0.0, hi: float = 1.0
) -> float:
    """The integral of h over u in (lo, hi), by default (0, 1), split where h jumps."""
    from scipy import integrate  # here, not at the top: a bad input answers without scipy

    value, _ = integrate.quad(
        h,
        lo,
        hi,
        points=sorted(b for b in breaks if lo < b < hi) or None,
        limit=200,
        epsabs=1e-13,
        epsrel=1e-11,
    )
    return value


Moments = tuple[float, float] | None
"""(expectation, variance) of one estimate of d/dtheta_1 E[f], or None where unknown."""


def score_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """reinforce, and the leave-one-out baseline, by enumeration over b: unbiased."""
    baseline = options.get("baseline", "none")
    if baseline not in ("none", "loo"):
        return None
    c = cost_of(cost).np_fn
    p = sigmoid(theta)
    probs = {0.0: 1 - p, 1.0: p}
    moment = lambda g: sum(q * g(b) for b, q in probs.items())  # noqa: E731
    m = DrawMoments.of(moment, lambda b: c(b, k), lambda b: b - p)
    var = score_function_variance(m, dim, num_samples, loo=baseline == "loo")
    return exact_gradient(cost, k, theta), var


def antithetic_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """ARM and DisARM, by quadrature over the shared uniform u of each antithetic pair."""
    c = cost_of(cost).np_fn
    p = sigmoid(theta)
    c0, c1 = c(0.0, k), c(1.0, k)
    pairs = num_samples // 2
    b1 = lambda u: 1.0 if u > 1 - p else 0.0  # noqa: E731
    b2 = lambda u: 1.0 if u < p else 0.0  # noqa: E731
    delta = lambda u: c(b1(u), k) - c(b2(u), k)  # noqa: E731
    if estimator == "arm":
        weight = lambda u: u - 0.5  # noqa: E731
    else:
        weight = lambda u: (  # noqa: E731
            0.5 * (1 - 2 * b2(u)) * (b1(u) != b2(u)) * sigmoid(abs(theta))
        )
    breaks = [p, 1 - p]
    mean = over_u(lambda u: delta(u) * weight(u), breaks)
    # Other dimensions add D_j = c(b1_j) - c(b2_j): mean 0, E[D^2] = (c1 - c0)^2 P(b1 != b2).
    other = (dim - 1) * (c1 - c0) ** 2 * 2 * min(p, 1 - p)
    second = over_u(lambda u: (delta(u) * weight(u)) ** 2, breaks) + other * over_u(
        lambda u: weight(u) ** 2, breaks
    )
    return mean, zero_below_resolution(second - mean**2, mean) / pairs


def relaxed_estimate(
    estimator: str, options: dict, cost: str, k: float, theta: float
) -> Callable[[float], float]:
    """Gumbel-softmax's or straight-through's estimate for the first logit as a function of the
    uniform u, with L = log u - log(1 - u): c'(x) z (1 - z) / tau at z = sigmoid((theta + L) / tau),
    x = z or, straight-through, the bit 1[theta + L > 0] (1 where u > sigmoid(-theta))."""
    dc = cost_of(cost).np_derivative
    tau = float(options["temperature"])

    def g(u: float) -> float:
        logistic = math.log(u) - math.log1p(-u)
        z = sigmoid((theta + logistic) / tau)
        at = z if estimator == "gumbel_softmax" else float(theta + logistic > 0)
        return dc(at, k) * z * (1 - z) / tau

    return g


def relaxed_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """Gumbel-softmax and its straight-through version, by quadrature over u: biased."""
    g = relaxed_estimate(estimator, options, cost, k, theta)
    breaks = [sigmoid(-theta)]
    mean = over_u(g, breaks)
    second = over_u(lambda u: g(u) ** 2, breaks)
    return mean, zero_below_resolution(second - mean**2, mean) / num_samples


def gumbel_rao_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """Gumbel-Rao: per draw of the bit b the mean of straight-through's estimate over K draws of
    u given b. Straight-through's mean; per draw straight-through's variance / K plus (1 - 1/K)
    the variance over b of its mean given b, from its integral over each region of u (b = 0
    below sigmoid(-theta), of mass sigmoid(-theta); b = 1 above it): exactly straight-through's
    at K = 1."""
    rb = int(options["rb_samples"])
    mean, straight = relaxed_moments("straight_through", options, cost, k, theta, dim, 1)
    g = relaxed_estimate("straight_through", options, cost, k, theta)
    cut = sigmoid(-theta)
    regions = [(0.0, cut, cut), (cut, 1.0, sigmoid(theta))]
    between = sum(
        mass * (over_u(g, [], lo, hi) / mass - mean) ** 2 for lo, hi, mass in regions if mass > 0
    )
    return mean, (straight / rb + (1 - 1 / rb) * between) / num_samples


def measure_valued_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """measure_valued, exactly: the estimate for the first logit is p (1 - p) [f(b with b_1 = 1)
    - f(b with b_1 = 0)], and since f is a sum over coordinates the other bits, shared by both
    evaluations, cancel: it is p (1 - p) (c(1) - c(0)) at every draw, the gradient itself, with
    variance 0 whatever ``dim`` and ``num_samples``."""
    return exact_gradient(cost, k, theta), 0.0


EXACT_ARMS_UP_TO = 128
"""The largest n whose ARMS moments the toy computes: its exact rational inclusion-exclusion
takes about a second there (10 s at 256)."""


def copula_counts(n: int, p: float) -> np.ndarray:
    """P(m of ARMS's n coupled draws of one bit are 1), m = 0..n, by inclusion-exclusion: with
    q = min(p, 1 - p) and t = 1 - q^(1/(n-1)), the draws at the rare value (1 where p <= 1/2) are
    those with d_i > t, d ~ Dirichlet(1, ..., 1), and P(d_i > t for all i in a set of size s) =
    (1 - s t)_+^(n-1). The sums alternate in terms up to 2^n times their result, so they are
    taken in exact rationals (t as its float's exact value) and rounded once."""
    t = Fraction(1 - min(p, 1 - p) ** (1 / (n - 1)))
    at_least = [max(1 - s * t, Fraction(0)) ** (n - 1) for s in range(n + 1)]
    rare = np.array(
        [
            float(
                math.comb(n, r)
                * sum(math.comb(n - r, j) * (-1) ** j * at_least[r + j] for j in range(n - r + 1))
            )
            for r in range(n + 1)
        ]
    )
    return rare if p <= 0.5 else rare[::-1].copy()


def arms_moments(
    estimator: str, options: dict, cost: str, k: float, theta: float, dim: int, num_samples: int
) -> Moments:
    """ARMS, by a sum over the number m of ones among the first bit's n exchangeable coupled
    draws. With c(b) = c0 + (c1 - c0) b, sum_i (c(b_i) - mean c)(b_i - p) = (c1 - c0) m (1 - m/n);
    the other dimensions, independent of it and of each other, add (dim - 1) (c1 - c0)^2
    sum_ij E[y_i y_j] E[x_i x_j], y_i = b_i - m/n and x_i = b_i - p of an independent bit's draws.
    The scale p (1 - p) / (p - P(b_i = b_j = 1)) / (n - 1) takes the joint from the counts too.
    The variance is unknown (None) above ``EXACT_ARMS_UP_TO`` draws."""
    c = cost_of(cost).np_fn
    p, n = sigmoid(theta), num_samples
    dc = c(1.0, k) - c(0.0, k)
    if n > EXACT_ARMS_UP_TO:
        return exact_gradient(cost, k, theta), None
    w = copula_counts(n, p)
    m = np.arange(n + 1)
    joint = w @ (m * (m - 1)) / (n * (n - 1))
    scale = p * (1 - p) / (p - joint) / (n - 1)
    spread = m * (1 - m / n)  # sum_i y_i^2, and sum_i (b_i - mean b)(b_i - p)
    mean = scale * dc * (w @ spread)
    x_sq = w @ (m * (1 - p) ** 2 + (n - m) * p**2)  # E[sum_i x_i^2]
    x_cross = w @ (m - n * p) ** 2 - x_sq  # E[sum_{i != j} x_i x_j]
    y_sq = w @ spread  # sum_{i != j} y_i y_j = -sum_i y_i^2
    others = (dim - 1) * dc**2 * (y_sq * x_sq / n - y_sq * x_cross / (n * (n - 1)))
    second = scale**2 * (dc**2 * (w @ spread**2) + others)
    return float(mean), zero_below_resolution(float(second - mean**2), float(mean))


EXACT_MOMENTS: dict[str, Callable[..., Moments]] = {
    "reinforce": score_moments,
    "reinforce_baseline": score_moments,
    "arm": antithetic_moments,
    "disarm": antithetic_moments,
    "arms": arms_moments,
    "gumbel_softmax": relaxed_moments,
    "straight_through": relaxed_moments,
    "rao_blackwell_st": gumbel_rao_moments,
    "measure_valued": measure_valued_moments,
}
"""The estimators whose exact expectation and variance the Bernoulli toy knows, keyed by name."""


def exact_moments(
    estimator: str,
    options: dict,
    cost: str,
    k: float,
    theta: float,
    dim: int = 1,
    num_samples: int = 1,
) -> tuple[float, float] | tuple[None, None]:
    """(expectation, variance) of one estimate of d/dtheta_1 E[f]; (None, None) if unknown."""
    moments = EXACT_MOMENTS.get(estimator)
    found = moments and moments(estimator, options, cost, k, theta, dim, num_samples)
    return found or (None, None)
