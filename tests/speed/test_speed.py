"""The pytest-benchmark suite: ``python -m pytest tests/speed --benchmark-json=FILE``.

Kept out of the default ``pytest`` run (``norecursedirs`` in pyproject.toml) and of the wheel.

Every estimator's toy estimate, VAE training step and gradient probe, each timed by
pytest-benchmark (absolute times, with its machine information) and, in the same process, as a
ratio to a plain torch reference kernel of the same size (``extra_info``), which is what the
timing gate compares.
"""

from __future__ import annotations

import pytest

from benchmarks.regression.timing import CASES, ESTIMATORS, interleaved_ratio


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", CASES)
def test_speed(benchmark, case, estimator):
    target, reference = CASES[case](estimator)
    ratio, target_s, reference_s = interleaved_ratio(target, reference)
    benchmark.extra_info.update(
        {"ratio": ratio, "target_median_s": target_s, "reference_median_s": reference_s}
    )
    benchmark.pedantic(target, rounds=10, iterations=1, warmup_rounds=1)
