"""The delta-method control variate and the optimal constant baseline: the pieces exact where
they must be, the estimators unbiased (a wrong piece caught), the fixed-coefficient variances
inside the measured intervals, and bad input in one line."""

from __future__ import annotations

import functools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats
from torch.distributions import Bernoulli, Independent, Normal

import estimators
from benchmarks import plot
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base
from benchmarks.tasks.toy.exact.gaussian import variances as gx
from benchmarks.tasks.toy.exact.gaussian.point import Point
from benchmarks.tasks.toy.figures import toys as toy_figures
from benchmarks.testing import check_unbiased
from estimators.control_variates import DeltaMethod
from estimators.errors import ConfigError

CPU = torch.device("cpu")
Z_CRIT = stats.norm.isf(0.5e-5)  # two-sided 1e-5 per check, as in the toys' own tests
DELTA = {"control_variate": "delta"}


def run_toy(name: str, opts: dict, **overrides):
    cfg = OmegaConf.load(CONF_DIR / "task/gaussian.yaml")
    cfg.n_estimates = 40_000
    cfg.chunk_size = 16_384
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    make = functools.partial(estimators.build, name, **opts)
    return base.run_task(base.build(cfg), make, base.Context(seed=0, device=CPU)).tables["metrics"]


def assert_inside_intervals(table, exact_var: bool = True) -> None:
    """Means within Z_CRIT standard errors of the exact gradients; where ``exact_var``, the
    variances within Z_CRIT standard errors of the exact ones (or equal to float rounding)."""
    assert (table.z_score.abs() < Z_CRIT).all(), table[["cost", "k", "param", "z_score"]]
    if not exact_var:
        assert table.exact_var.isna().all()
        return
    assert table.exact_var.notna().all()
    se = (table.grad_var_hi - table.grad_var_lo) / (2 * stats.norm.isf(0.025))
    z_var = (table.grad_var - table.exact_var) / se.where(se > 0, 1.0)
    rounding = (table.grad_var - table.exact_var).abs() < 1e-9
    assert ((z_var.abs() < Z_CRIT) | rounding).all(), table[
        ["cost", "k", "param", "grad_var", "exact_var"]
    ]


def test_the_expansion_of_a_quadratic_is_the_quadratic_and_its_expectation_exact():
    # A non-separable quadratic over a batch of Normals: h = f, E[h] = E[f] with its gradient.
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64)
    q = a @ a.T - 1.0  # symmetric, indefinite
    b = torch.randn(3, dtype=torch.float64)
    f = lambda x: torch.einsum("...i,ij,...j->...", x, q, x) + (b * x).sum(-1)  # noqa: E731
    loc = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(4, 3, dtype=torch.float64).add(0.5).requires_grad_()
    dist = Independent(Normal(loc, scale), 1)
    cv = DeltaMethod()
    e = cv.expand(dist, f)
    x = dist.sample((7,))
    assert torch.allclose(cv.h(e, x), f(x))
    exact = torch.einsum("bi,ij,bj->b", loc, q, loc) + (b * loc).sum(-1)
    exact = exact + (torch.diagonal(q) * scale**2).sum(-1)
    expected = cv.expectation(e, dist)
    assert torch.allclose(expected, exact)
    grads = torch.autograd.grad(expected.sum(), (loc, scale))
    exact_grads = torch.autograd.grad(exact.sum(), (loc, scale))
    assert all(torch.allclose(g, h) for g, h in zip(grads, exact_grads, strict=True))


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_a_quadratic_cost_leaves_the_exact_gradient_with_beta_one(name):
    # h = f for the square cost: the corrected estimate is grad E[h] = the gradient, every time.
    table = run_toy(name, DELTA, costs=["square"], k=[0.5, 2.0], dim=3, n_estimates=2000)
    assert np.allclose(table.grad_mean, table.exact_grad, atol=1e-9)
    assert (table.grad_var < 1e-9).all(), table[["k", "param", "grad_var"]]  # float rounding


@pytest.mark.parametrize(
    "name, opts, dim",
    [
        ("reparam", DELTA, 1),
        ("reinforce", {**DELTA, "cv_coefficient": 0.5}, 1),
        pytest.param("reparam", {**DELTA, "cv_coefficient": 0.5}, 3, marks=pytest.mark.slow),
        pytest.param("reinforce", DELTA, 3, marks=pytest.mark.slow),
    ],
)
def test_fixed_coefficients_are_unbiased_with_their_exact_variances(name, opts, dim):
    table = run_toy(name, opts, costs=["cos", "exp"], k=[0.5, 2.0], dim=dim)
    assert_inside_intervals(table)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_the_estimated_coefficient_is_unbiased(name):
    table = run_toy(name, {**DELTA, "cv_coefficient": "estimated"}, costs=["cos", "exp"], k=[2.0])
    assert_inside_intervals(table, exact_var=False)


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_a_wrong_expectation_of_the_control_variate_fails_the_unbiasedness_check(name):
    # The same piece without E[h]'s 1/2 sigma^2 H term: the sigma gradient is off by beta sigma H.
    check_unbiased(name, control_variate=DeltaMethod())
    with pytest.raises(AssertionError, match="quadratic cost, d/dlog_sigma"):
        check_unbiased(name, control_variate=DeltaMethod(exact_expectation=False))


def test_the_control_variate_lowers_reinforces_variance():
    plain = run_toy("reinforce", {}, costs=["cos"], k=[0.5], n_estimates=4000)
    delta = run_toy("reinforce", DELTA, costs=["cos"], k=[0.5], n_estimates=4000)
    assert (delta.exact_var.to_numpy() < 0.2 * plain.exact_var.to_numpy()).all()


@pytest.mark.parametrize("dim", [1, 3])
def test_the_oracle_optimal_baseline_variance_matches_monte_carlo(dim):
    rng = np.random.default_rng(0)
    mu, sigma, k, n = 1.0, 1.0, 2.0, 400_000
    x = mu + sigma * rng.standard_normal((n, dim))
    f = np.cos(k * x).sum(1)
    eps = (x[:, 0] - mu) / sigma
    for param, s in (("mu", eps / sigma), ("sigma", (eps**2 - 1) / sigma)):
        b = np.mean(f * s**2) / np.mean(s**2)  # b* to Monte Carlo precision
        draws = (f - b) * s
        exact = gx.optimal_baseline_variance(Point("cos", k, mu, sigma, param, dim))
        se = draws.var() * math.sqrt(2 / n) * 3  # a generous error: b is estimated too
        assert abs(draws.var() - exact) < Z_CRIT * se
        assert exact <= gx.score_variance({}, Point("cos", k, mu, sigma, param, dim))


def test_the_estimated_optimal_baseline_is_unbiased_and_bounded_by_its_oracle():
    # b* estimated leave-one-out: unbiased; no variance of its own here (it depends on the other
    # draws), the oracle's is a lower bound it nears for mu at 50 draws. For sigma the ratio's
    # weights (eps^2 - 1)^2 are heavy-tailed and its estimate stays noisy (see the docs).
    table = run_toy(
        "reinforce_baseline", {"baseline": "optimal"}, costs=["cos"], k=[2.0], num_samples=50
    )
    assert (table.z_score.abs() < Z_CRIT).all() and table.exact_var.isna().all()
    oracle = np.array(
        [gx.optimal_baseline_variance(Point("cos", 2.0, 1.0, 1.0, p, 1, 50)) for p in table.param]
    )
    assert (table.grad_var.to_numpy() > 0.95 * oracle).all()
    assert table.grad_var[0] == pytest.approx(oracle[0], rel=0.15)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cv_coefficient": "foo"}, "cv_coefficient='foo': must be a finite number"),
        ({"cv_coefficient": float("nan")}, "cv_coefficient=nan: must be a finite number"),
        ({"control_variate": "taylor"}, "control_variate='taylor' is unknown; known control"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        estimators.build("reinforce", **options)


def test_the_delta_method_refuses_what_it_cannot_expand():
    est = estimators.build("reinforce", **DELTA)
    bits = Independent(Bernoulli(logits=torch.zeros(2, 3)), 1)
    with pytest.raises(ConfigError, match="needs a Normal distribution, not Independent"):
        est(bits, lambda z: z.sum(-1), 4)
    normal = Independent(Normal(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    with pytest.raises(ConfigError, match="the cost has no gradient at the mean"):
        est(normal, lambda z: (z > 0).double().sum(-1), 4)


def test_a_toy_refuses_a_cost_without_a_derivative_to_the_delta_method():
    with pytest.raises(ConfigError, match="'reinforce' needs a differentiable cost \\(its control"):
        run_toy("reinforce", DELTA, costs=["torch:heaviside"])


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_without_a_control_variate_options_and_labels_are_as_before(name):
    # Tables, labels and the regression gates' baselines key on these.
    cls = estimators.REGISTRY[name]
    assert estimators.build(name).options() == {}
    assert estimators.build(name, control_variate="none", cv_coefficient=1.0).options() == {}
    assert cls.known_labels() == [cls.title]
    opts = estimators.build(name, **DELTA, cv_coefficient="estimated").options()
    assert opts == {"control_variate": "delta", "cv_coefficient": "estimated"}
    assert cls.label(opts) == f"{cls.title} + delta-method CV (estimated coefficient)"


def test_the_per_draw_figure_draws_the_oracle_baseline_and_scales_by_draws():
    """Figures 2-3's quantity: the variance of one draw. The optimal baseline's line is the
    oracle b*'s exact variance of one draw; its points are the measured variance times draws."""
    runs = [("reinforce", {}, 1), ("reinforce_baseline", {"baseline": "optimal"}, 8)]
    summary = pd.concat(
        [
            run_toy(name, opts, costs=["cos"], k=[0.5, 2.0], num_samples=n, n_estimates=2000)
            for name, opts, n in runs
        ],
        ignore_index=True,
    ).assign(table="metrics")
    summary["label"] = plot.estimator_labels(summary)
    style = plot.style_for(summary["label"])
    figures = dict(toy_figures.figures(summary, style))
    mu_axis = figures["toy_variance_per_draw_vs_k"].axes[0]
    optimal = summary[(summary.estimator == "reinforce_baseline") & (summary.param == "mu")]
    color = style.colors[optimal.label.iloc[0]]
    lines = [line for line in mu_axis.get_lines() if line.get_color() == color]
    oracle = [gx.optimal_baseline_variance(Point("cos", k, 1.0, 1.0, "mu")) for k in (0.5, 2.0)]
    assert any(np.allclose(line.get_ydata(), oracle) for line in lines)
    assert any(np.allclose(line.get_ydata(), optimal.grad_var * 8) for line in lines)
    plt.close("all")
