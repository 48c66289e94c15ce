"""The law of CARMS's n coupled draws of one categorical variable, for the toy's exact moments:
Dirichlet-copula uniforms over the classes' intervals in a random order (``estimators.carms``)."""

from __future__ import annotations

import itertools

import numpy as np

from estimators.carms import pair_orders

MAX_COPULA_TERMS = 10**7
"""The most terms (2C)^n * orders of the inclusion-exclusion that gives CARMS's n-tuple law."""


def copula_tuple_probabilities(pi: np.ndarray, n: int) -> np.ndarray | None:
    """P(z_1..z_n = a_1..a_n), an array of n axes of size C, for CARMS's n coupled draws of a
    variable with class probabilities ``pi``: per order, the mass of the Dirichlet copula on the
    box of the n classes' intervals, by inclusion-exclusion over its 2^n corners of the copula's
    CDF P(u_i < v_i for all i) = (sum_i v_i^(1/(n-1)) - (n-1))_+^(n-1), averaged over the
    orders. None beyond ``MAX_COPULA_TERMS``."""
    classes = len(pi)
    orders = pair_orders(classes)
    if (2 * classes) ** n * len(orders) > MAX_COPULA_TERMS:
        return None
    total = np.zeros([classes] * n)
    for order in orders:
        right = np.empty(classes)
        right[list(order)] = np.cumsum(pi[list(order)])
        ends = (np.clip(right - pi, 0, 1), np.clip(right, 0, 1))  # (left, right) per class
        for corner in itertools.product((0, 1), repeat=n):
            root = sum(
                (ends[side] ** (1 / (n - 1))).reshape([-1 if a == i else 1 for a in range(n)])
                for i, side in enumerate(corner)
            )
            sign = (-1) ** (n - sum(corner))
            total += sign * np.clip(root - (n - 1), 0, None) ** (n - 1)
    return np.clip(total / len(orders), 0, None)  # -1e-17 where the signed sum cancels to 0
