"""The point at which the Gaussian toy asks for an exact answer, and the errors by which the math
says it has none; the task words them for the user."""

from __future__ import annotations

import math
from dataclasses import dataclass

PARAMS = ("mu", "sigma")


@dataclass(frozen=True)
class Point:
    """Cost ``cost`` at ``k``, x ~ N(mu, sigma^2) in ``dim`` coordinates, the gradient with
    respect to the first coordinate's ``param`` (mu or sigma), one estimate of ``num_samples``
    draws: what every exact gradient and variance is asked at."""

    cost: str
    k: float
    mu: float
    sigma: float
    param: str
    dim: int = 1
    num_samples: int = 1


class NoExactAnswer(Exception):
    """No exact answer at this k (an infinite variance, or one quadrature cannot resolve): the
    message says why, and the task prefixes the key, ``task.k=VALUE: ...``."""


class Unresolved(Exception):
    """An imported cost whose gradient by quadrature differs in score-function and pathwise
    form: a wrong derivative, or a cost quadrature cannot follow. Its exact answers are unknown."""


def require_finite(*values: float, cost: str, k: float) -> None:
    """OverflowError unless every exact moment is finite, as Python's float arithmetic in the
    closed forms raises it too (the toy names k in one line)."""
    if not all(map(math.isfinite, values)):
        raise OverflowError(f"cost {cost!r} at k={k:g} overflows float64")
