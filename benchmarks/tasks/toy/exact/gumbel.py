"""Quadrature over a categorical's Gumbel-perturbed logits, for the exact moments of the
relaxations (Gumbel-softmax, straight-through, Gumbel-Rao) on the categorical toy: one region per
argmax, the class-0 Gumbel integrated out in closed form."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

MAX_RELAXED_CLASSES = 3
"""The most classes whose Gumbel relaxations the toy integrates (a (C - 1)-dimensional integral)."""


def perturbed_logits_density(z: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The density of the differences z_j - z_0 (j >= 1) of z = logits + G, G iid standard
    Gumbel, at points z [..., C] (any shift): G_0 integrated out in closed form,
    (C - 1)! exp(-sum_j a_j) / (1 + sum_j exp(-a_j))^C, a_j = z_j - z_0 - (logits_j - logits_0),
    the logistic density at C = 2."""
    a = (z[..., 1:] - z[..., :1]) - (logits[1:] - logits[0])
    c = z.shape[-1]
    log_s = np.logaddexp(0.0, np.logaddexp.reduce(-a, axis=-1))
    return math.factorial(c - 1) * np.exp(-a.sum(-1) - c * log_s)


@functools.cache
def region_rule(classes: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Points w [M, C - 1] > 0 and weights [M] integrating over the positive orthant: a
    Gauss-Legendre rule in x on (0, 1) per axis, w = -C log(1 - x). The densities here decay as
    exp(-w) along an axis and along the diagonal (one large perturbation): the factor C keeps
    the product of the axes' Jacobians, C^(C-1) exp(sum w / C), below that."""
    from scipy.special import roots_legendre

    x, wx = roots_legendre(nodes)
    x, wx = (x + 1) / 2, wx / 2
    axis, jac = -classes * np.log1p(-x), classes * wx / (1 - x)
    grids = np.meshgrid(*[axis] * (classes - 1), indexing="ij")
    weights = np.prod(np.meshgrid(*[jac] * (classes - 1), indexing="ij"), axis=0)
    return np.stack([g.ravel() for g in grids], -1), weights.ravel()


def region_integrals(
    derivative: Callable[[np.ndarray], np.ndarray],
    hard: bool,
    tau: float,
    z0: np.ndarray,
    nodes: int,
) -> np.ndarray:
    """[C, 2]: per argmax region i of the perturbed logits z (there z_i = 0 and z_j = -w_j,
    w_j > 0), the integrals of density * e and density * e^2 of the relaxation's estimate e with
    respect to the class-0 logit, by ``region_rule`` at ``nodes`` per axis. With
    y = softmax(z / tau) and its index i(y) = y . (0, ..., C-1), e = -c'(x) y_0 i(y) / tau at
    x = i(y) (Gumbel-softmax) or x = i (straight-through, ``hard``); ``derivative`` is c'."""
    c = len(z0)
    w, weight = region_rule(c, nodes)
    regions = np.zeros((c, 2))
    for i in range(c):
        z = np.zeros((len(w), c))
        z[:, [j for j in range(c) if j != i]] = -w
        y = np.exp(z / tau - (z / tau).max(-1, keepdims=True))
        y /= y.sum(-1, keepdims=True)
        index = y @ np.arange(c, dtype=np.float64)
        x = np.full_like(index, float(i)) if hard else index
        estimate = -np.asarray(derivative(x), dtype=np.float64) * y[:, 0] * index / tau
        mass = weight * perturbed_logits_density(z, z0)
        regions[i] = [mass @ estimate, mass @ estimate**2]
    return regions


def converged_quadrature(
    regions: Callable[[int], np.ndarray], combine: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray | None:
    """``combine`` of ``regions(nodes)`` (the ``region_integrals``) at 400 nodes per axis, where
    it agrees with that at 200 to 1e-9 of its largest entry; None where it does not (a
    derivative of the cost that jumps inside a region, as abs_diff's under Gumbel-softmax)."""
    coarse, fine = (combine(regions(n)) for n in (200, 400))
    if np.abs(fine - coarse).max() > 1e-9 * max(np.abs(fine).max(), 1e-12):
        return None
    return fine
