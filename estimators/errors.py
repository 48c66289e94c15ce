"""The project's one error type for bad input, and the small option checkers that raise it.

Its own module, importing nothing of the project, so that any module may raise it without an
import cycle; estimator and task authors import them from here.
"""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """Bad input from a user: the runner prints its message as one line and exits with code 2."""


def positive_number(value, key: str) -> float:
    """``value`` as a float if it is a finite number > 0; else a ConfigError naming ``key``."""
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
        raise ConfigError(f"{key}={value!r}: must be a number > 0")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a finite number > 0")
    return float(value)


def finite_number(value, key: str) -> float:
    """``value`` as a float if it is a finite number; else a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a finite number")
    return float(value)


def require_int(value, key: str, minimum: int = 1, nullable: bool = False) -> None:
    """A ConfigError naming ``key`` unless ``value`` is an integer >= ``minimum`` (or None, where
    ``nullable``); booleans are not integers here."""
    if nullable and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ConfigError(f"{key}={value!r}: must be {wanted}{' or null' if nullable else ''}")
