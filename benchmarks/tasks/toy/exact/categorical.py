"""Exact answers for the categorical toy, by enumeration over the joint outcomes.

x_1..x_D independent, each a class in {0, ..., C-1} with probabilities pi = softmax(logits) (the
same logits for every variable); f(x) = sum_d c(x_d; k) of the class index. Statistics are of the
gradient with respect to the first variable's class-0 logit, whose score is
s(x) = 1[x_1 = 0] - pi_0. The exact gradient is E[f s] = pi_0 (c(0) - sum_j pi_j c(j)) at any
size (the other variables cancel); the exact moments of the score-function estimators sum over
all C^D joint outcomes, up to ``MAX_OUTCOMES`` of them (None, an empty cell, beyond). ReinMax's and
GST's estimates are functions of x_1's class alone (f is a sum, so df/dx_1 depends on x_1 only):
their moments sum over its C classes, at any size. Gumbel-softmax's, straight-through's and
Gumbel-Rao's come from quadrature over x_1's perturbed logits, one region per argmax, at C <= 3.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from benchmarks.tasks.toy.costs import Cost, find
from benchmarks.tasks.toy.exact.bernoulli import zero_below_resolution
from benchmarks.tasks.toy.exact.copula import copula_tuple_probabilities
from benchmarks.tasks.toy.exact.gumbel import (
    MAX_RELAXED_CLASSES,
    converged_quadrature,
    region_integrals,
)
from benchmarks.tasks.toy.exact.score_variance import variance_from_joint_moments

COSTS: dict[str, Cost] = {
    # Kool et al.'s (2019, 2020) square (b - t)^2, summed, with the class index in place of the bit.
    "sum_sq": Cost(
        torch_fn=lambda x, k: (x - k) ** 2,
        np_fn=lambda x, k: (x - k) ** 2,
        np_derivative=lambda x, k: 2.0 * (x - k),
    ),
    # The IndeCateR paper's E|X - b|.
    "abs_diff": Cost(
        torch_fn=lambda x, k: (x - k).abs(),
        np_fn=lambda x, k: np.abs(x - k),
        np_derivative=lambda x, k: np.sign(x - k),
    ),
    "linear": Cost(
        torch_fn=lambda x, k: k * x, np_fn=lambda x, k: k * x, np_derivative=lambda x, k: k
    ),
}

MAX_OUTCOMES = 10**6
"""The most joint outcomes C^D the exact moments enumerate (IndeCateR's toys are at most 10^6)."""


def cost_of(name: str) -> Cost:
    """The built-in cost ``name``, or the function it imports (a cost of the class index)."""
    return find(name, COSTS)


def softmax(logits: list[float]) -> np.ndarray:
    """Class probabilities of one variable, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def class_costs(cost: str, k: float, categories: int) -> np.ndarray:
    """c(j; k) for every class j, in float64."""
    c = cost_of(cost).np_fn
    return np.array([float(c(float(j), k)) for j in range(categories)], dtype=np.float64)


def exact_gradient(cost: str, k: float, logits: list[float]) -> float:
    """d/dlogit_{1,0} E[f] = pi_0 (c(0) - sum_j pi_j c(j))."""
    pi, c = softmax(logits), class_costs(cost, k, len(logits))
    return float(pi[0] * (c[0] - pi @ c))


def joint(pi: np.ndarray, c: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over all C^D outcomes (an array of D axes of size C): their probabilities, f, and the
    score s = 1[x_1 = 0] - pi_0 of the measured logit."""
    categories = len(pi)
    p, f = np.ones([1] * dim), np.zeros([1] * dim)
    for d in range(dim):
        shape = [1] * dim
        shape[d] = categories
        p = p * pi.reshape(shape)
        f = f + c.reshape(shape)
    first = [categories] + [1] * (dim - 1)
    s = ((np.arange(categories) == 0) - pi[0]).reshape(first)
    return p, f, np.broadcast_to(s, p.shape)


def score_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """reinforce and the leave-one-out baseline, unbiased: (E[f s], variance) by enumeration of
    the joint moments of one draw (``variance_from_joint_moments``); None for another baseline
    or more than ``MAX_OUTCOMES`` outcomes."""
    baseline = options.get("baseline", "none")
    if baseline not in ("none", "loo") or len(logits) ** dim > MAX_OUTCOMES:
        return None
    pi = softmax(logits)
    p, f, s = joint(pi, class_costs(cost, k, len(pi)), dim)

    def e(x: np.ndarray) -> float:
        return float((p * x).sum())

    mean = e(f * s)
    var = variance_from_joint_moments(
        e(f), e(f**2), mean, e(f * s**2), e(f**2 * s**2), e(s**2), num_samples, baseline == "loo"
    )
    return mean, var


def softmax_vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """J(p)^T g = p * g - p <p, g> of the softmax Jacobian at probabilities ``p``."""
    return p * g - p * (p @ g)


def per_draw_moments(
    estimate: Callable[[np.ndarray, int, np.ndarray], np.ndarray],
    cost: str,
    k: float,
    logits: list[float],
    num_samples: int,
) -> tuple[float, float]:
    """(mean, variance) of an estimate that is a function of the first variable's draw alone:
    ``estimate(logits, i, g)`` is its vector over the C logits at class i, with g = df/dx_1 =
    c'(i; k) * (0, 1, ..., C-1) (f depends on x_1 through its index x_1 @ arange(C)). For the
    additive f of this toy g depends on x_1 only, so the other variables do not enter and the
    sum is over the C outcomes of x_1, whatever ``dim``; the measured coordinate is class 0."""
    pi, z = softmax(logits), np.asarray(logits, dtype=np.float64)
    dc = cost_of(cost).np_derivative
    classes = np.arange(len(pi), dtype=np.float64)
    h = np.array([estimate(z, i, float(dc(float(i), k)) * classes)[0] for i in range(len(pi))])
    mean = float(pi @ h)
    return mean, max(float(pi @ h**2) - mean**2, 0.0) / num_samples


def reinmax_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float]:
    """ReinMax, 2 J(pi_D)^T g - 1/2 J(pi)^T g with pi_D = (softmax(logits / tau) + D) / 2."""
    tau = float(options["temperature"])

    def estimate(z: np.ndarray, i: int, g: np.ndarray) -> np.ndarray:
        pi = softmax(list(z))
        pi_d = (softmax(list(z / tau)) + (np.arange(len(z)) == i)) / 2
        return 2 * softmax_vjp(pi_d, g) - 0.5 * softmax_vjp(pi, g)

    return per_draw_moments(estimate, cost, k, logits, num_samples)


def gst_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float]:
    """GST: J(s)^T g / tau, s = softmax(z~ / tau), z~_i = max z, z~_j = min(z_j, max z - gap)."""
    tau, gap = float(options["temperature"]), float(options["gap"])

    def estimate(z: np.ndarray, i: int, g: np.ndarray) -> np.ndarray:
        moved = np.minimum(z, z.max() - gap)
        moved[i] = z.max()
        return softmax_vjp(softmax(list(moved / tau)), g) / tau

    return per_draw_moments(estimate, cost, k, logits, num_samples)


MAX_TUPLES = 10**6
"""The most ordered k-tuples of distinct outcomes the moments of the estimators that draw without
replacement enumerate."""


def plackett_luce(p: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The probability [M] of drawing the columns of ``p`` [M, m], in that order and without
    replacement, from a distribution of mass ``total`` [M]."""
    left = total[:, None] - np.cumsum(p, 1) + p  # the mass still there before each draw
    return np.prod(p / left, 1)


def set_probability(p: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The probability [M] of the unordered set of the columns of ``p``: a sum over orderings."""
    orders = itertools.permutations(range(p.shape[1]))
    return sum(plackett_luce(p[:, list(order)], total) for order in orders)


def estimate_moments(estimates: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """(mean, variance) of an estimate taking ``estimates`` with probabilities ``probs``."""
    mean = float(probs @ estimates)
    return mean, max(float(probs @ estimates**2) - mean**2, 0.0)


def sum_and_sample_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """sum_{j<n} p_j f_j s_j + (1 - sum_{j<n} p_j) f_n s_n over every ordered n-tuple of
    distinct joint outcomes (n = num_samples), weighted by its probability."""
    pi = softmax(logits)
    p, f, s = (a.ravel() for a in joint(pi, class_costs(cost, k, len(pi)), dim))
    if math.perm(len(p), num_samples) > MAX_TUPLES:
        return None
    tuples = np.array(list(itertools.permutations(range(len(p)), num_samples)))
    pt, ft, st = p[tuples], f[tuples], s[tuples]
    rest = 1.0 - pt[:, :-1].sum(1)
    estimates = (pt * ft * st)[:, :-1].sum(1) + rest * ft[:, -1] * st[:, -1]
    return estimate_moments(estimates, plackett_luce(pt, np.ones(len(pt))))


def unordered_set_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """sum_s p_s R(S, s) s_s (f_s - b(S, s)) over every set S of num_samples distinct joint
    outcomes, weighted by p(S); every set probability a sum over orderings (``set_probability``)
    and b = 0 for a single draw. None where the ordered tuples exceed ``MAX_TUPLES``."""
    pi = softmax(logits)
    p, f, s = (a.ravel() for a in joint(pi, class_costs(cost, k, len(pi)), dim))
    n = num_samples
    if math.perm(len(p), n) > MAX_TUPLES:
        return None
    sets = np.array(list(itertools.combinations(range(len(p)), n)))
    ps, fs, ss = p[sets], f[sets], s[sets]
    one = np.ones(len(sets))
    p_set = set_probability(ps, one)
    estimates = np.zeros(len(sets))
    for a in range(n):
        others = [j for j in range(n) if j != a]
        p_without = set_probability(ps[:, others], one - ps[:, a])
        baseline = ps[:, a] * fs[:, a] if n > 1 else 0.0
        for b in others:
            rest = [j for j in others if j != b]
            p_without_two = set_probability(ps[:, rest], one - ps[:, a] - ps[:, b])
            baseline = baseline + ps[:, b] * p_without_two / p_without * fs[:, b]
        estimates += ps[:, a] * p_without / p_set * ss[:, a] * (fs[:, a] - baseline)
    return estimate_moments(estimates, p_set)


def catlog_moments(pi: np.ndarray, f: np.ndarray, num_samples: int) -> tuple[float, float]:
    """IndeCateR's (mean, variance) of one estimate of the measured logit from the joint f over
    all C^D outcomes (an array of D axes): only variable 1's term depends on that logit, and
    per draw it is h(x) = sum_k pi_k (1[k = 0] - pi_0) f(x with x_1 = k), a function of
    x_2..x_D; the estimate is the mean of ``num_samples`` iid draws of h."""
    weights = pi * ((np.arange(len(pi)) == 0) - pi[0])
    h = np.tensordot(weights, f, axes=(0, 0))  # over x_2..x_D
    p = np.ones(h.shape)
    for d in range(h.ndim):
        shape = [1] * h.ndim
        shape[d] = len(pi)
        p = p * pi.reshape(shape)
    mean = float((p * h).sum())
    return mean, float((p * (h - mean) ** 2).sum()) / num_samples


def indecater_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """IndeCateR, unbiased: ``catlog_moments`` of the toy's f; None beyond ``MAX_OUTCOMES``.
    (The toy's f is a sum over the variables, which makes h constant: variance 0.)"""
    if len(logits) ** dim > MAX_OUTCOMES:
        return None
    pi = softmax(logits)
    _, f, _ = joint(pi, class_costs(cost, k, len(pi)), dim)
    return catlog_moments(pi, f, num_samples)


def carms_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """CARMS, by enumeration of the first variable's n coupled draws
    (``copula_tuple_probabilities``). Its estimate is sum_{i != j} A_ij (B_ij + sum_{d > 1}
    Delta^d_ij), with A_ij = r(z_i, z_j) s(z_i) / (n (n - 1)) (0 for a same-class pair) and
    B_ij = c(z_i) - c(z_j) of the first variable and Delta^d_ij = c(z_id) - c(z_jd) of the
    others: independent, identically distributed and of mean 0, so E[g^2] = E[(sum A B)^2] +
    (D - 1) sum E[A_ij A_kl] E[Delta_ij Delta_kl]. None where the tuple law is too large."""
    pi, n = softmax(logits), num_samples
    tuples = copula_tuple_probabilities(pi, n)
    if tuples is None:
        return None
    c = class_costs(cost, k, len(pi))
    s = (np.arange(len(pi)) == 0) - pi[0]
    pairs = np.sum(tuples, axis=tuple(range(2, n)))  # P(z_1 = a, z_2 = b)
    independent = np.outer(pi, pi)
    ratio = np.divide(independent, pairs, out=np.zeros_like(pairs), where=pairs > 0)
    np.fill_diagonal(ratio, 0.0)  # a same-class pair's two terms cancel: left out, as CARMS does
    draws = np.indices(tuples.shape).reshape(n, -1)  # [n, C^n]: each tuple's classes
    p = tuples.ravel()
    ordered = [(i, j) for i in range(n) for j in range(n) if i != j]
    a = np.stack([ratio[draws[i], draws[j]] * s[draws[i]] for i, j in ordered]) / (n * (n - 1))
    delta = np.stack([c[draws[i]] - c[draws[j]] for i, j in ordered])  # [pairs, C^n]
    own = (a * delta).sum(0)
    mean = float(p @ own)
    others = ((a * p) @ a.T * ((delta * p) @ delta.T)).sum()
    return mean, max(float(p @ own**2 + (dim - 1) * others - mean**2), 0.0)


def toy_quadrature(
    hard: bool,
    options: dict,
    cost: str,
    k: float,
    logits: list[float],
    combine: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray | None:
    """``gumbel.converged_quadrature`` of the toy's cost at these logits: None at C > 3."""
    z0 = np.asarray(logits, dtype=np.float64)
    if len(z0) > MAX_RELAXED_CLASSES:
        return None
    tau, dc = float(options["temperature"]), cost_of(cost).np_derivative

    def regions(nodes: int) -> np.ndarray:
        return region_integrals(lambda x: dc(x, k), hard, tau, z0, nodes)

    return converged_quadrature(regions, combine)


def relaxed_moments(hard: bool) -> Moments:
    """Gumbel-softmax (``hard`` False) or straight-through (True) on the toy, by quadrature over
    the C - 1 differences of variable 1's perturbed logits, summed over the argmax regions
    (``gumbel.region_integrals``), C <= 3; f is a sum, so the other variables do not enter.
    None where the quadrature does not converge."""

    def moments(
        options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
    ) -> tuple[float, float] | None:
        fine = toy_quadrature(hard, options, cost, k, logits, lambda r: r.sum(0))
        if fine is None:
            return None
        return float(fine[0]), max(float(fine[1] - fine[0] ** 2), 0.0) / num_samples

    return moments


def gumbel_rao_moments(
    options: dict, cost: str, k: float, logits: list[float], dim: int, num_samples: int
) -> tuple[float, float] | None:
    """Gumbel-Rao: per outer draw the mean of straight-through's estimate e over K draws of the
    perturbed logits given the argmax i. Straight-through's mean; per draw the variance
    sum_i P_i (m_i - mean)^2 + (1/K) sum_i P_i (s_i - m_i^2), with P_i = softmax(logits)_i and
    P_i m_i, P_i s_i the ``region_integrals`` of e and e^2 over region i: straight-through's
    variance / K plus (1 - 1/K) that of m_i over the argmax, exactly straight-through's at K = 1."""
    rb = int(options["rb_samples"])
    pi = softmax(logits)

    def combine(regions: np.ndarray) -> np.ndarray:
        mean, second = regions.sum(0)
        kept = pi > 0
        between = pi[kept] @ (regions[kept, 0] / pi[kept] - mean) ** 2
        return np.array([mean, second, between])

    fine = toy_quadrature(True, options, cost, k, logits, combine)
    if fine is None:
        return None
    mean, second, between = (float(v) for v in fine)
    straight = max(second - mean**2, 0.0)  # straight-through's, one draw
    return mean, (straight / rb + (1 - 1 / rb) * between) / num_samples


Moments = Callable[[dict, str, float, list[float], int, int], tuple[float, float] | None]

MOMENTS: dict[str, Moments] = {
    "reinforce": score_moments,
    "reinforce_baseline": score_moments,
    "reinmax": reinmax_moments,
    "gst": gst_moments,
    "sum_and_sample": sum_and_sample_moments,
    "unordered_set": unordered_set_moments,
    "indecater": indecater_moments,
    "carms": carms_moments,
    "gumbel_softmax": relaxed_moments(hard=False),
    "straight_through": relaxed_moments(hard=True),
    "rao_blackwell_st": gumbel_rao_moments,
}
"""Each estimator's exact (expectation, variance) of one estimate, from (options, cost, k, logits,
dim, num_samples): None where unknown for those options or sizes."""


def exact_moments(
    estimator: str,
    options: dict,
    cost: str,
    k: float,
    logits: list[float],
    dim: int = 1,
    num_samples: int = 1,
) -> tuple[float, float] | tuple[None, None]:
    """(expectation, variance) of one estimate of d/dlogit_{1,0} E[f]; (None, None) where
    unknown: an estimator without an entry in ``MOMENTS`` (REBAR, RELAX), a moving-average
    baseline, more than 10^6 outcomes."""
    moments = MOMENTS.get(estimator)
    found = moments(options, cost, k, logits, dim, num_samples) if moments else None
    if not found:
        return None, None
    mean, var = found
    return mean, zero_below_resolution(var, mean)  # IndeCateR's 0 comes out as 1e-34
