"""The pytest-benchmark suite: ``python -m pytest tests/speed --benchmark-json=FILE``.

Kept out of the default ``pytest`` run (``norecursedirs`` in pyproject.toml) and of the wheel.

Every estimator's toy estimate, VAE training step and gradient probe, each timed by
pytest-benchmark (absolute times, with its machine information) and, in the same process, as a
ratio to a plain torch reference kernel of the same size (``extra_info``), which is what the
timing gate compares. ``--estimators NAME,...`` (conftest.py) times others, an installed
package's; the cases are all Gaussian, so one that serves no Normal is skipped.
"""

from __future__ import annotations

import pytest
import torch

import estimators
from benchmarks.scripts.regression.timing import CASES, interleaved_ratio
from benchmarks.tasks.toy.gaussian import gaussian


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    metafunc.parametrize("case", CASES)  # ids case-estimator, as the baseline names them
    metafunc.parametrize("estimator", metafunc.config.getoption("estimators").split(","))


def test_speed(benchmark, case, estimator):
    if not estimators.build(estimator).supports(gaussian(torch.zeros(1), torch.ones(1))):
        pytest.skip(f"estimator '{estimator}' serves no Normal; every case here is Gaussian")
    target, reference = CASES[case](estimator)
    ratio, target_s, reference_s = interleaved_ratio(target, reference)
    benchmark.extra_info.update(
        {"ratio": ratio, "target_median_s": target_s, "reference_median_s": reference_s}
    )
    benchmark.pedantic(target, rounds=10, iterations=1, warmup_rounds=1)
