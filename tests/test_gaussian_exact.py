"""Closed forms and quadrature for the Gaussian toy, checked against independent derivations."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks.base import build
from benchmarks.tasks.toy.exact.gaussian.catalogue import COSTS, exact_gradient
from benchmarks.tasks.toy.exact.gaussian.point import PARAMS, NoExactAnswer, Point
from benchmarks.tasks.toy.exact.gaussian.quadrature import gaussian_expectation
from benchmarks.tasks.toy.exact.gaussian.variances import exact_variance
from estimators.errors import ConfigError

POINTS = [
    (cost, k, mu, sigma)
    for cost in COSTS
    for k in (0.3, 1.0, 2.5)
    for mu, sigma in ((1.0, 1.0), (-0.4, 0.6))
]


@pytest.mark.parametrize("cost, k, mu, sigma", POINTS)
def test_closed_form_expectation_matches_quadrature(cost, k, mu, sigma):
    c = COSTS[cost]
    by_quadrature = gaussian_expectation(lambda e: c.np_fn(mu + sigma * e, k))
    assert c.expectation(k, mu, sigma) == pytest.approx(by_quadrature, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("cost, k, mu, sigma", POINTS)
def test_closed_form_second_moment_matches_quadrature(cost, k, mu, sigma):
    c = COSTS[cost]
    by_quadrature = gaussian_expectation(lambda e: c.np_fn(mu + sigma * e, k) ** 2)
    assert c.second_moment(k, mu, sigma) == pytest.approx(by_quadrature, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("cost, k, mu, sigma", POINTS)
def test_closed_form_gradient_matches_finite_differences(cost, k, mu, sigma):
    expectation, h = COSTS[cost].expectation, 1e-5
    fd_mu = (expectation(k, mu + h, sigma) - expectation(k, mu - h, sigma)) / (2 * h)
    fd_sigma = (expectation(k, mu, sigma + h) - expectation(k, mu, sigma - h)) / (2 * h)
    assert exact_gradient(Point(cost, k, mu, sigma, "mu")) == pytest.approx(
        fd_mu, rel=1e-6, abs=1e-9
    )
    assert exact_gradient(Point(cost, k, mu, sigma, "sigma")) == pytest.approx(
        fd_sigma, rel=1e-6, abs=1e-9
    )


@pytest.mark.parametrize("mu, sigma, k", [(1.0, 1.0, 1.0), (0.5, 2.0, -1.5)])
def test_variances_in_closed_form(mu, sigma, k):
    # reparam on (x-k)^2: d/dmu = 2 sigma eps, d/dsigma = 2 (mu - k + sigma eps) eps.
    assert exact_variance("reparam", {}, Point("square", k, mu, sigma, "mu")) == pytest.approx(
        4 * sigma**2
    )
    assert exact_variance("reparam", {}, Point("square", k, mu, sigma, "sigma")) == (
        pytest.approx(4 * (mu - k) ** 2 + 8 * sigma**2)
    )
    # reinforce on k x, d/dmu: k x eps / sigma has variance k^2 (mu^2 / sigma^2 + 2).
    assert exact_variance("reinforce", {}, Point("linear", k, mu, sigma, "mu")) == (
        pytest.approx(k**2 * (mu**2 / sigma**2 + 2))
    )
    # With K draws the variance of the average falls as 1/K.
    one = exact_variance("reinforce", {}, Point("cos", k, mu, sigma, "sigma"))
    assert exact_variance("reinforce", {}, Point("cos", k, mu, sigma, "sigma", num_samples=4)) == (
        pytest.approx(one / 4)
    )


def test_leave_one_out_variance_for_many_draws_approaches_the_mean_baseline():
    # For large K the leave-one-out estimator behaves like the one with the constant baseline
    # E[f]: variance Var(s (f - E f)) / K.
    mu, sigma, k, K = 1.0, 1.0, 2.0, 10_000
    c = COSTS["square"]
    mean_f = c.expectation(k, mu, sigma)
    for param, score in (("mu", lambda e: e / sigma), ("sigma", lambda e: (e * e - 1) / sigma)):
        g = lambda e, score=score: score(e) * (c.np_fn(mu + sigma * e, k) - mean_f)  # noqa: E731
        limit = (
            gaussian_expectation(lambda e, g=g: g(e) ** 2)
            - exact_gradient(Point("square", k, mu, sigma, param)) ** 2
        ) / K
        loo = exact_variance(
            "reinforce_baseline",
            {"baseline": "loo"},
            Point("square", k, mu, sigma, param, num_samples=K),
        )
        assert loo == pytest.approx(limit, rel=1e-3)


def test_no_exact_variance_for_the_moving_average():
    at = Point("square", 1, 1, 1, "mu")
    assert exact_variance("reinforce_baseline", {"baseline": "ema"}, at) is None
    assert exact_variance("someone_elses", {}, at) is None
    assert set(PARAMS) == {"mu", "sigma"}


@pytest.mark.parametrize("estimator", ["reparam", "reinforce"])
@pytest.mark.parametrize("cost, k", [("cos", 1e4), ("exp", 1e4), ("exp", 1e6)])
def test_quadrature_that_cannot_resolve_the_cost_is_refused(estimator, cost, k):
    # cos oscillates ~4k times over the Gaussian's bulk and exp(-k x^2) is 1/sqrt(k) wide:
    # adaptive quadrature misses them, which the closed-form mean and gradient reveal.
    message = f"quadrature cannot resolve cost '{cost}'"
    with pytest.raises(NoExactAnswer, match=re.escape(message)):
        for param in PARAMS:
            exact_variance(estimator, {}, Point(cost, k, 1.0, 1.0, param))
    # The task (at mu = sigma = 1) words it for the user, naming the key and its value.
    toy = build(OmegaConf.load(CONF_DIR / "task/gaussian.yaml"))
    with pytest.raises(ConfigError, match=re.escape(f"task.k={k:g}: {message}")):
        toy.exact_variances(estimators.build(estimator), cost, k, 1)
