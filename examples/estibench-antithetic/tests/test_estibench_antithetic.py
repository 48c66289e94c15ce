"""estibench's estimator checks, run on this package's estimator (installed, so registered)."""

import pytest

from benchmarks.testing import CHECKS


@pytest.mark.parametrize("check", CHECKS)
def test_estibench_checks(check):
    check("antithetic")
