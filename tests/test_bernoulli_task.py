"""The Bernoulli toy: measured means and variances against exact ones, for every discrete
estimator, at several theta, k and dim."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats
from toy_tables import assert_agrees, metrics

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base
from benchmarks.tasks.toy.exact.bernoulli import exact_moments
from estimators.errors import ConfigError
from estimators.reinforce import Reinforce

CPU = torch.device("cpu")
# About 200 interval checks here at two-sided 1e-5 each: family-wise false alarms below 2e-3.
Z_CRIT = stats.norm.isf(0.5e-5)
ESTIMATORS = [
    ("reinforce", {}, None),
    ("reinforce_baseline", {"baseline": "loo"}, 4),
    ("arm", {}, None),
    ("disarm", {}, 4),
    ("arms", {}, 4),
    ("gumbel_softmax", {"temperature": 0.5}, None),
    ("straight_through", {"temperature": 1.0}, None),
    ("rao_blackwell_st", {"temperature": 0.5, "rb_samples": 10}, None),
]


def run_task(seed: int = 0, **overrides):
    task = OmegaConf.load(CONF_DIR / "task/bernoulli.yaml")
    task.n_estimates = 40_000
    for key, value in overrides.items():
        OmegaConf.update(task, key, value)
    return lambda make: (
        base.run_task(base.build(task), make, base.Context(seed=seed, device=CPU)).tables
    )


@pytest.mark.slow
@pytest.mark.parametrize("theta, dim", [(0.0, 1), (1.5, 1), (-0.7, 3)])
@pytest.mark.parametrize("name, opts, num_samples", ESTIMATORS)
def test_measured_mean_and_variance_agree_with_the_exact_ones(name, opts, num_samples, theta, dim):
    table = metrics(
        "bernoulli",
        name,
        opts,
        theta=theta,
        dim=dim,
        num_samples=num_samples,
        costs=["square", "linear"],
        k=[0.45, 0.499, 2.0],
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    # DisARM at theta = 0 in one dimension is exact: zero variance, the mean up to float32.
    exact = table.exact_var < 1e-12
    assert (table[exact].grad_mean - table[exact].exact_mean).abs().lt(1e-6).all()
    assert (table[exact].grad_var < 1e-10).all()
    table = table[~exact]
    assert_agrees(table, Z_CRIT)
    unbiased = name not in ("gumbel_softmax", "straight_through", "rao_blackwell_st")
    if unbiased:  # exact expectation equals the true gradient, and the measured z-score is small
        torch.testing.assert_close(
            torch.tensor(table.exact_mean.values), torch.tensor(table.exact_grad.values)
        )
        assert (table.z_score.abs() < Z_CRIT).all()


@pytest.mark.parametrize("name, opts, num_samples", [ESTIMATORS[0], ESTIMATORS[5]])
def test_reinmax_polynomial_cost_has_exact_answers_the_measurements_agree_with(
    name, opts, num_samples
):
    # |b - 0.45|^k at the powers of the ReinMax paper's toy: the exact gradient
    # p (1 - p) (0.55^k - 0.45^k), and each estimator's exact mean and variance
    table = metrics("bernoulli", name, opts, costs=["power"], k=[1.5, 3.0], theta=0.3, dim=2)
    p = 1 / (1 + math.exp(-0.3))
    exact = [p * (1 - p) * (0.55**k - 0.45**k) for k in (1.5, 3.0)]
    torch.testing.assert_close(torch.tensor(table.exact_grad.values), torch.tensor(exact).double())
    assert_agrees(table, Z_CRIT)


@pytest.mark.parametrize("rb_samples", [3, 30])
def test_gumbel_rao_measured_mean_and_variance_agree_with_the_exact_ones(rb_samples):
    """Gumbel-Rao's exact mean (straight-through's) and variance (straight-through's / K plus
    (1 - 1/K) that of its mean given the bit) against the estimator run through the toy. Here the
    measured variances lie 60 to 1100 standard errors below straight-through's (K = 1), so a
    dropped or inverted 1/K fails the z-test."""
    table = metrics(
        "bernoulli",
        "rao_blackwell_st",
        {"temperature": 0.5, "rb_samples": rb_samples},
        theta=0.3,
        dim=2,
        num_samples=2,
        costs=["square", "power"],
        k=[0.45, 3.0],
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    assert_agrees(table, Z_CRIT)


def test_relaxations_are_biased_and_the_harness_says_how_much():
    table = metrics(
        "bernoulli", "gumbel_softmax", {"temperature": 0.5}, k=[0.45], n_estimates=200_000
    )
    row = table.iloc[0]
    assert row.exact_mean == pytest.approx(0.02146, abs=1e-5)  # the true gradient is 0.025
    assert abs(row.z_score) > Z_CRIT  # the bias is a measured result, not an error


@pytest.mark.parametrize("theta", [-2.0, 0.0, 0.3, 1.5])
@pytest.mark.parametrize("dim", [1, 4])
def test_disarm_variance_is_at_most_arms_at_equal_evaluations(theta, dim):
    for k in (0.45, 0.499, 2.0):
        for n in (2, 6):
            _, arm = exact_moments("arm", {}, "square", k, theta, dim, n)
            _, disarm = exact_moments("disarm", {}, "square", k, theta, dim, n)
            assert disarm <= arm * (1 + 1e-9)
    measured = {
        name: metrics("bernoulli", name, {}, theta=theta, dim=dim, k=[0.499])
        for name in ("arm", "disarm")
    }
    assert measured["disarm"].grad_var_hi.iloc[0] < measured["arm"].grad_var_hi.iloc[0]


def test_the_toy_optimization_lowers_the_objective():
    make = functools.partial(estimators.build, "disarm")
    table = run_task(mode="optimize", k=[0.45])(make)["optimize"]
    first, last = table.objective.iloc[0], table.objective.iloc[-1]
    # E[(b - 0.45)^2] is smallest at p = 0, where it is 0.45^2; it starts at 0.2525.
    assert first == pytest.approx(0.2525) and last < first - 0.04 and table.theta.iloc[-1] < -1


@pytest.mark.parametrize("name, opts, num_samples", [ESTIMATORS[1], ESTIMATORS[3]])
def test_an_averaged_cost_scales_the_exact_answers_and_the_measured_ones_follow(
    name, opts, num_samples
):
    common = {"theta": 0.4, "num_samples": num_samples, "k": [0.45, 2.0]}
    summed = metrics("bernoulli", name, opts, dim=3, **common)
    averaged = metrics("bernoulli", name, opts, dim=3, average=True, **common)
    for column, power in (("exact_grad", 1), ("exact_mean", 1), ("exact_var", 2)):
        torch.testing.assert_close(
            torch.tensor(averaged[column].values), torch.tensor(summed[column].values) / 3**power
        )
    # the same draws (the same seed): every measured estimate is the summed one over 3
    torch.testing.assert_close(
        torch.tensor(averaged.grad_mean.values), torch.tensor(summed.grad_mean.values) / 3
    )
    z = (averaged.grad_mean - averaged.exact_mean) / (
        averaged.grad_var / averaged.n_estimates
    ) ** 0.5
    assert (z.abs() < Z_CRIT).all()


def test_rmsprop_maximizes_the_200_bit_quadratic():
    # The Double CV and RODEO papers' toy, shortened: E[mean_j (b_j - 0.499)^2] from p = 1/2
    # (0.250001) up towards 0.251001 at p = 1; RMSprop's steps move every logit off 0.
    make = functools.partial(estimators.build, "disarm")
    settings = {"dim": 200, "average": True, "k": [0.499], "theta": 0.0, "mode": "optimize"}
    opt = {"optimize.optimizer": "rmsprop", "optimize.steps": 200, "optimize.log_every": 100}
    runs = {
        maximize: run_task(**settings, **opt, **{"optimize.maximize": maximize})(make)["optimize"]
        for maximize in (True, False)
    }
    assert runs[True].objective.iloc[0] == pytest.approx(0.250001, abs=1e-12)
    assert runs[True].objective.iloc[-1] > 0.25005  # 0.250106 at this seed
    assert runs[False].objective.iloc[-1] < 0.24995  # the other way, down towards 0.249001


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("arm", {"num_samples": 3}, "task.num_samples=3: estimator 'arm'.*even num_samples"),
        ("disarm", {"theta": float("inf")}, "task.theta=inf: must be a finite number"),
        (
            "reinforce",
            {"costs": ["cube"]},
            "cost 'cube' is unknown; known costs: square, linear, power",
        ),
        ("reparam", {}, "estimator 'reparam' does not apply to Independent(Bernoulli)"),
        ("rebar", {"cv_steps": -1}, "task.cv_steps=-1: must be a non-negative integer"),
        ("reinforce", {"k": [1e200]}, "cost 'square' overflows floating point at this k"),
        (
            "reinforce",
            {"mode": "optimize", "optimize.var_estimates": 1},
            "task.optimize.var_estimates=1: must be 0 (skip) or an integer >= 2",
        ),
        (
            "disarm",
            {"mode": "optimize", "optimize.optimizer": "sgd"},
            "task.optimize.optimizer='sgd': must be one of adam, rmsprop",
        ),
        ("disarm", {"average": "yes"}, "task.average='yes': must be true or false"),
    ],
)
def test_bad_input_is_named(name, overrides, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        metrics("bernoulli", name, {}, **overrides)


def test_the_optimization_records_the_variance_without_changing_its_course():
    make = functools.partial(estimators.build, "reinforce")
    common = {"mode": "optimize", "k": [0.45], "optimize.steps": 40, "optimize.log_every": 20}
    measured = run_task(**common, **{"optimize.var_estimates": 20_000})(make)["optimize"]
    skipped = run_task(**common, **{"optimize.var_estimates": 0})(make)["optimize"]
    assert skipped.grad_var.isna().all()
    torch.testing.assert_close(
        torch.tensor(measured.theta.values), torch.tensor(skipped.theta.values)
    )
    _, exact = exact_moments("reinforce", {}, "square", 0.45, 0.0)
    # The sample variance of 20000 two-valued estimates: relative standard error below 1%.
    assert measured.grad_var.iloc[0] == pytest.approx(exact, rel=0.05)


class NanOnThirdCall(Reinforce):
    """REINFORCE whose third estimate is NaN, as a blown-up control variate would make it."""

    calls = 0

    def estimate(self, dist, f, num_samples):
        self.calls += 1
        value = super().estimate(dist, f, num_samples)
        return value * float("nan") if self.calls == 3 else value


def test_a_non_finite_gradient_stops_the_optimization_and_says_so(capsys):
    common = {"mode": "optimize", "k": [0.45], "optimize.var_estimates": 0}
    table = run_task(**common, **{"optimize.log_every": 100})(NanOnThirdCall)["optimize"]
    assert table.step.tolist() == [0, 3] and table.diverged.tolist() == [False, True]
    # The NaN step was not taken: the logits are finite and where two Adam steps left them.
    assert table.theta.notna().all()
    err = capsys.readouterr().err
    assert "reinforce: optimization of square (k=0.45) diverged at step 3" in err
