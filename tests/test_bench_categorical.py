"""The categorical speed benchmark compares equal work: each hand-written estimator gives the
harness's estimates, the full [n, D, C] gradient of the logits, from the same random draws."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch

import estimators
from benchmarks.measure import gradient_estimates
from benchmarks.scripts import bench_categorical as bench
from benchmarks.tasks.toy import categorical

# The toy's uniform logits, and distinct ones per variable and class (which the uniform ones
# would not tell from a wrong pi or a wrong class order).
SHAPES = [
    pytest.param(4, 3, False, id="D4C3-uniform"),
    pytest.param(3, 4, True, id="D3C4-distinct"),
]


@pytest.mark.parametrize(("dim", "categories", "distinct"), SHAPES)
@pytest.mark.parametrize("case", bench.CASES, ids=lambda case: case[0])
def test_hand_written_estimates_are_the_harness_estimates_from_the_same_draws(
    case, dim, categories, distinct
):
    name, options, num_samples, hand = case
    task = bench.toy(dim, categories)
    logits = task.initial(bench.CPU)[0]
    if distinct:
        logits = torch.randn(dim, categories, generator=torch.Generator().manual_seed(3)).double()
    f = categorical.total_cost("abs_diff", bench.K)
    torch.manual_seed(7)
    est = estimators.build(name, **options)
    expected = gradient_estimates(est, task.model(f), {"theta": logits}, num_samples, 400)["theta"]
    torch.manual_seed(7)
    got = hand(logits, num_samples, 400, **options)
    assert got.shape == (400, dim, categories)
    assert expected.abs().sum() > 0  # not trivially equal
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_the_script_writes_a_row_per_estimator_setting_and_method(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SETTINGS", ((2, 3, 64, 32), (40, 3, 64, 32)))
    out = tmp_path / "speed.csv"
    argv = [
        "bench_categorical",
        "--repeats=1",
        f"--out={out}",
        "--estimators=reinmax,sum_and_sample",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    table = pd.read_csv(out)
    # sum_and_sample enumerates 3^40 outcomes at D = 40: it does not serve that size.
    assert list(zip(table.estimator, table.D, strict=True)) == [
        ("ReinMax (τ=1)", 2),
        ("ReinMax (τ=1)", 2),
        ("ReinMax (τ=1)", 2),
        ("Sum-and-sample", 2),
        ("Sum-and-sample", 2),
        ("Sum-and-sample", 2),
        ("ReinMax (τ=1)", 40),
        ("ReinMax (τ=1)", 40),
        ("ReinMax (τ=1)", 40),
    ]
    hand = table[table.method == "hand-written vectorized torch"]
    assert (hand.ratio_to_hand_written == 1.0).all()
    assert (table.seconds_per_1e5_estimates > 0).all()


def test_indecater_runs_only_where_a_chunk_of_its_points_fits_in_memory():
    """At D = 200, C = 10 IndeCateR's D C copies of each draw take 32 GB a chunk of 1,024."""
    cases = {name: (estimators.build(name, **opts), k) for name, opts, k, _ in bench.CASES}
    for dim, categories, _, chunk in bench.SETTINGS:
        dist = bench.toy(dim, categories).distribution(torch.zeros(dim, categories))
        fitting = {name for name, (est, k) in cases.items() if bench.fits(est, dist, k, chunk)}
        assert ("indecater" in fitting) == (dim == 4)
        assert {"reinforce", "carms", "rao_blackwell_st"} <= fitting
