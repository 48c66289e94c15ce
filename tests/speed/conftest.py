"""``--estimators NAME,...``: the registered estimators the suite times (default: the timing
gate's ``ESTIMATORS``), so that an installed package's estimator can be gated too."""

from __future__ import annotations

import pytest

import estimators
from benchmarks.scripts.regression.timing import ESTIMATORS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--estimators",
        default=",".join(ESTIMATORS),
        help=f"comma-separated registered estimators to time (default {','.join(ESTIMATORS)})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """One line for an unknown name, before anything runs."""
    for name in config.getoption("estimators").split(","):
        if name not in estimators.REGISTRY:
            known = ", ".join(estimators.names())
            raise pytest.UsageError(f"--estimators: {name!r} is unknown; known: {known}")
