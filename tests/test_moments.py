"""Streaming moments against direct computation, and the variance interval's coverage."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from benchmarks.moments import Moments, gradient_statistics


def direct(x: torch.Tensor) -> tuple[float, float, float, float]:
    d = x - x.mean()
    return x.mean().item(), (d**2).sum().item(), (d**3).sum().item(), (d**4).sum().item()


@pytest.mark.parametrize("sizes", [[1000], [7, 993], [1, 1, 500, 3, 495], [400, 300, 300]])
def test_merging_chunks_equals_the_moments_of_the_whole(sizes):
    torch.manual_seed(0)
    x = torch.distributions.Gamma(2.0, 1.0).sample((sum(sizes),)).double() + 5.0
    merged = Moments()
    for chunk in torch.split(x, sizes):
        merged = merged.merge(Moments.of(chunk))
    assert merged.n == x.numel()
    for got, want in zip((merged.mean, merged.m2, merged.m3, merged.m4), direct(x), strict=True):
        assert got == pytest.approx(want, rel=1e-10)
    assert merged.var == pytest.approx(x.var().item(), rel=1e-10)


def test_variance_interval_covers_at_its_level_for_a_skewed_law():
    # 4000 samples of 2000 exponential draws (variance 1, excess kurtosis 6). The interval from
    # the fourth moment must cover close to 95%: accept [0.925, 0.965], about 4 binomial standard
    # errors (0.0034) either side of 0.945. The normal-theory chi-square interval covers far less.
    torch.manual_seed(1)
    reps, n = 4000, 2000
    x = torch.distributions.Exponential(1.0).sample((reps, n)).double()
    moments = [Moments.of(row) for row in x]
    covered = sum(lo <= 1.0 <= hi for lo, hi in (m.var_ci() for m in moments)) / reps
    assert 0.925 <= covered <= 0.965
    q_hi, q_lo = stats.chi2.ppf([0.975, 0.025], n - 1)
    chi2_covered = sum((n - 1) * m.var / q_hi <= 1.0 <= (n - 1) * m.var / q_lo for m in moments)
    assert chi2_covered / reps < 0.75


def test_gradient_statistics():
    torch.manual_seed(2)
    g = 2.0 + 3.0 * torch.randn(100_000, dtype=torch.float64)
    row = gradient_statistics(Moments.of(g), exact_grad=2.0, seconds_per_estimate=1e-6)
    assert row["grad_mean"] == pytest.approx(g.mean().item())
    assert row["grad_var"] == pytest.approx(g.var().item())
    assert row["bias"] == pytest.approx(g.mean().item() - 2.0)
    assert row["z_score"] == pytest.approx(row["bias"] / math.sqrt(row["grad_var"] / 1e5))
    assert row["mse"] == pytest.approx(((g - 2.0) ** 2).mean().item())
    assert row["snr"] == pytest.approx(abs(row["grad_mean"]) / math.sqrt(row["grad_var"]))
    assert row["work_normalized_var"] == pytest.approx(row["grad_var"] * 1e-6)
    # For Gaussian estimates, the interval is close to the exact chi-square one.
    lo, hi = stats.chi2.ppf([0.975, 0.025], 99_999)
    chi2 = 99_999 * row["grad_var"] / lo, 99_999 * row["grad_var"] / hi
    assert row["grad_var_lo"] == pytest.approx(chi2[0], rel=2e-3)
    assert row["grad_var_hi"] == pytest.approx(chi2[1], rel=2e-3)


def test_zero_variance_estimates_have_zero_z_score_when_exact():
    row = gradient_statistics(Moments.of(torch.full((10,), 1.5)), 1.5, 1e-6)
    assert row["grad_var"] == 0 and row["z_score"] == 0
    row = gradient_statistics(Moments.of(torch.full((10,), 1.5)), 1.0, 1e-6)
    assert row["z_score"] == math.inf


def test_float32_rounding_is_not_called_bias():
    # A zero-variance estimator computed in float32 differs from the exact value by rounding only.
    row = gradient_statistics(Moments.of(torch.full((1000,), 0.025)), 0.025, 1e-6)
    assert row["bias"] != 0 and row["z_score"] == 0
    # A real bias of one part in a thousand still is one.
    row = gradient_statistics(Moments.of(torch.full((1000,), 0.025025)), 0.025, 1e-6)
    assert row["z_score"] == math.inf


def test_float32_values_whose_fourth_powers_overflow_get_float64_sums():
    x = torch.tensor([1e12, -1e12, 3e12, 0.0], dtype=torch.float32)
    moments = Moments.of(x)
    exact = Moments.of(x.double())
    assert math.isfinite(moments.m4)
    assert (moments.m2, moments.m4) == pytest.approx((exact.m2, exact.m4), rel=1e-12)
