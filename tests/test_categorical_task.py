"""The categorical toy: exact answers by enumeration against Monte Carlo, against the factorized
formula for a summed cost, and against the Bernoulli toy at C = 2; the optimize mode's exact
objective and its course; bad input in one line."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import torch
from cli import run
from omegaconf import OmegaConf
from scipy import stats
from toy_tables import assert_agrees, metrics, z_scores

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base
from benchmarks.tasks.toy import categorical
from benchmarks.tasks.toy.exact import bernoulli as bernoulli_exact
from benchmarks.tasks.toy.exact import categorical as exact
from benchmarks.tasks.toy.exact.score_variance import DrawMoments, score_function_variance
from benchmarks.tasks.toy.shared_one_hot import SharedOneHotCategorical
from estimators.errors import ConfigError

CPU = torch.device("cpu")
# About 70 interval checks here at two-sided 1e-5 each: family-wise false alarms below 1e-3.
Z_CRIT = stats.norm.isf(0.5e-5)
SCORE_ESTIMATORS = [
    ("reinforce", {}, 1),
    ("reinforce", {}, 3),
    ("reinforce_baseline", {"baseline": "loo"}, 4),
]


def test_copies_are_normalized_once_and_keep_their_own_gradients():
    """Logits copied along the first axis (stride 0, the harness's leaf copies) are normalized
    once; each copy's gradient through the log-probabilities, the probabilities and log_prob,
    and log_prob's (zero) gradient in its value, are those of torch's own distribution at
    materialized copies."""
    torch.manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.float64)
    weights = torch.randn(3, 2, 5, 3, 4, dtype=torch.float64)
    draws = torch.nn.functional.one_hot(torch.randint(4, (2, 5, 3)), 4).double()

    def gradients(copies: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dist = categorical.one_hot_categorical(copies)
        value = (draws + 0.0).requires_grad_()
        terms = weights[0] * dist.base_dist.logits + weights[1] * dist.base_dist.probs
        loss = terms.sum() + (weights[2, ..., 0, 0] * dist.log_prob(value)).sum()
        return torch.autograd.grad(loss, [copies, value], allow_unused=True, materialize_grads=True)

    shared = logits.clone().requires_grad_().expand(5, 3, 4)
    own = logits.expand(5, 3, 4).clone().requires_grad_()
    dist = categorical.one_hot_categorical(shared)
    assert dist.base_dist.logits.stride(0) == dist.base_dist.probs.stride(0) == 0
    assert not isinstance(categorical.one_hot_categorical(own).base_dist, SharedOneHotCategorical)
    torch.testing.assert_close(dist.base_dist.probs, torch.softmax(own, -1), rtol=0, atol=1e-15)
    torch.testing.assert_close(
        dist.log_prob(draws), categorical.one_hot_categorical(own).log_prob(draws)
    )
    for mine, torchs in zip(gradients(shared), gradients(own), strict=True):
        torch.testing.assert_close(mine, torchs, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "categories, dim, logits",
    [(3, 4, None), (4, 2, [1.0, -0.5, 0.3, 2.0]), (2, 3, [0.4, -1.1])],
)
@pytest.mark.parametrize("name, opts, num_samples", SCORE_ESTIMATORS)
def test_measured_mean_and_variance_agree_with_the_enumerated_ones(
    name, opts, num_samples, categories, dim, logits
):
    table = metrics(
        "categorical",
        name,
        opts,
        categories=categories,
        dim=dim,
        logits=logits,
        num_samples=num_samples,
        costs=["abs_diff", "sum_sq", "linear"],
        k=[1.0],
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    assert_agrees(table, Z_CRIT)
    np.testing.assert_allclose(table.exact_mean, table.exact_grad, rtol=1e-12, atol=1e-15)


def test_the_same_check_rejects_reinforces_variance_without_its_g_squared_term():
    """The z-test above has the power to catch a wrong formula: E[f^2 s^2] / K, the variance
    with -g^2 dropped, lies far outside the measured interval where g^2 is large."""
    table = metrics(
        "categorical", "reinforce", {}, categories=3, dim=1, logits=[2.0, 0.0, -1.0], k=[3.0]
    )
    g = table.exact_grad.iloc[0]
    wrong = table.exact_var + g**2  # E[f^2 s^2] - g^2 + g^2, num_samples = 1
    _, z_right = z_scores(table)
    _, z_wrong = z_scores(table, wrong)
    assert abs(z_right.iloc[0]) < Z_CRIT < abs(z_wrong.iloc[0])


@pytest.mark.parametrize("categories, dim", [(2, 1), (3, 4), (5, 3), (10, 2)])
@pytest.mark.parametrize("num_samples", [1, 2, 5])
@pytest.mark.parametrize("cost", ["abs_diff", "sum_sq", "linear"])
def test_enumeration_agrees_with_the_factorized_formula_for_a_summed_cost(
    categories, dim, num_samples, cost
):
    """The joint enumeration against ``score_function_variance``, which uses that f is a sum
    over independent variables: two derivations, one answer."""
    logits = list(np.linspace(-1.0, 1.5, categories))
    pi, c = exact.softmax(logits), exact.class_costs(cost, 0.7, categories)
    s = (np.arange(categories) == 0) - pi[0]
    m = DrawMoments.of(
        lambda h: float(pi @ h(np.arange(categories))), lambda j: c[j], lambda j: s[j]
    )
    for baseline, loo in (("none", False), ("loo", True)):
        if loo and num_samples < 2:
            continue
        mean, var = exact.score_moments({"baseline": baseline}, cost, 0.7, logits, dim, num_samples)
        assert mean == pytest.approx(exact.exact_gradient(cost, 0.7, logits), rel=1e-12)
        factorized = score_function_variance(m, dim, num_samples, loo)
        assert var == pytest.approx(factorized, rel=1e-10)


@pytest.mark.parametrize("l0, l1", [(0.0, 0.0), (0.3, -1.2), (-2.0, 1.5)])
@pytest.mark.parametrize(
    "categorical_cost, bernoulli_cost", [("sum_sq", "square"), ("linear",) * 2]
)
@pytest.mark.parametrize("dim", [1, 3])
def test_two_classes_are_the_bernoulli_toy(l0, l1, categorical_cost, bernoulli_cost, dim):
    """At C = 2 the class index is the Bernoulli bit b = 1[x = 1], with logit theta_B = l1 - l0.
    The measured class-0 logit l0 moves theta_B by -1, and its score 1[x = 0] - pi_0 is
    -(b - p): the gradient and every expectation change sign, the variances are equal."""
    theta_b = l1 - l0
    for k in (0.45, 0.499, 2.0):
        grad = exact.exact_gradient(categorical_cost, k, [l0, l1])
        assert grad == pytest.approx(-bernoulli_exact.exact_gradient(bernoulli_cost, k, theta_b))
        for name, opts, n in [("reinforce", {}, 1), ("reinforce_baseline", {"baseline": "loo"}, 4)]:
            mean, var = exact.exact_moments(name, opts, categorical_cost, k, [l0, l1], dim, n)
            b_mean, b_var = bernoulli_exact.exact_moments(
                name, opts, bernoulli_cost, k, theta_b, dim, n
            )
            assert mean == pytest.approx(-b_mean, rel=1e-10)
            assert var == pytest.approx(b_var, rel=1e-10)


def test_beyond_a_million_outcomes_the_moments_are_nan_and_the_gradient_stays():
    table = metrics("categorical", "reinforce", {}, categories=10, dim=7, n_estimates=1000, k=[1.0])
    row = table.iloc[0]
    assert math.isnan(row.exact_mean) and math.isnan(row.exact_var)
    # Ten uniform classes, |x - 1|: pi_0 (c(0) - mean c) = 0.1 (1 - 37 / 10).
    assert row.exact_grad == pytest.approx(0.1 * (1.0 - 3.7))
    assert exact.exact_moments("reinforce", {}, "abs_diff", 1.0, [0.0] * 10, 6)[0] is not None


def test_a_users_own_cost_of_the_class_index_drops_in():
    """``task.costs=[module:function]`` as on the other toys, here c(x; k) = max(x, k) of the
    class index: exact answers by the same enumeration, and the measured ones agree."""
    table = metrics("categorical", "reinforce", {}, dim=2, costs=["torch:maximum"], k=[1.0])
    row = table.iloc[0]
    # Three uniform classes: c = (1, 1, 2), pi_0 (c(0) - mean c) = (1 - 4 / 3) / 3.
    assert row.exact_grad == pytest.approx(-1 / 9)
    z_mean, z_var = z_scores(table)
    assert abs(z_mean.iloc[0]) < Z_CRIT and abs(z_var.iloc[0]) < Z_CRIT


RELAXATIONS = [
    ("gumbel_softmax", {"temperature": 0.5}),
    ("straight_through", {"temperature": 1.0}),
    ("rao_blackwell_st", {"temperature": 0.5, "rb_samples": 10}),
]


@pytest.mark.parametrize(
    "name, opts",
    [
        *RELAXATIONS,
        ("rao_blackwell_st", {"temperature": 1.0, "rb_samples": 1}),
        ("rao_blackwell_st", {"temperature": 0.1, "rb_samples": 10**6}),
    ],
)
@pytest.mark.parametrize("l0, l1", [(0.0, 0.0), (0.3, -1.2)])
def test_the_relaxations_quadrature_at_two_classes_is_the_bernoulli_toys(name, opts, l0, l1):
    """Two rules, one answer: a Gauss-Legendre rule over the perturbed logits' difference here,
    scipy's adaptive quadrature over the uniform there; for Gumbel-Rao its variance given the
    draw (K = 1) and that of its mean over the draw (K -> infinity) by each."""
    for ours, theirs in (("sum_sq", "square"), ("linear", "linear")):
        mean, var = exact.exact_moments(name, opts, ours, 0.45, [l0, l1], 3, 2)
        b_mean, b_var = bernoulli_exact.exact_moments(name, opts, theirs, 0.45, l1 - l0, 3, 2)
        assert mean == pytest.approx(-b_mean, rel=1e-9, abs=1e-14)
        assert var == pytest.approx(b_var, rel=1e-9)


@pytest.mark.parametrize(
    "name, opts, cost",
    [
        (*RELAXATIONS[0], "sum_sq"),
        (*RELAXATIONS[0], "linear"),
        (*RELAXATIONS[1], "abs_diff"),
        (*RELAXATIONS[2], "abs_diff"),
        (*RELAXATIONS[2], "sum_sq"),
    ],
)
def test_the_relaxations_measured_bias_and_variance_agree_with_the_quadrature(name, opts, cost):
    """The estimator run through the toy against the quadrature, mean and variance. Gumbel-Rao's
    measured variance at K = 10 lies about 130 (abs_diff) and 90 (sum_sq) standard errors below
    straight-through's at its temperature, so a dropped or inverted 1/K fails here."""
    table = metrics(
        "categorical", name, opts, logits=[0.5, -1.0, 1.5], dim=2, costs=[cost], k=[1.2]
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    assert (table.exact_mean - table.exact_grad).abs().gt(1e-3).all()  # biased, measurably
    assert_agrees(table, Z_CRIT)


def test_the_relaxations_quadrature_stays_empty_where_it_cannot_be_trusted():
    """abs_diff's derivative jumps inside an argmax region under Gumbel-softmax (the rule does
    not converge), and four classes would take a three-dimensional rule."""
    gumbel = RELAXATIONS[0]
    assert exact.exact_moments(*gumbel, "abs_diff", 0.5, [0.0] * 3) == (None, None)
    for relaxation in RELAXATIONS:
        assert exact.exact_moments(*relaxation, "sum_sq", 0.5, [0.0] * 4) == (None, None)
    table = metrics("categorical", *RELAXATIONS[2], categories=4, n_estimates=2000)
    assert table.grad_mean.notna().all() and table.exact_grad.notna().all()
    assert table.exact_mean.isna().all() and table.exact_var.isna().all()


def optimize_table(name, opts, **overrides):
    """The optimize table of one run of the toy with ``overrides``."""
    settings = {"mode": "optimize", "optimize.var_estimates": 0, **overrides}
    task = base.build(OmegaConf.load(CONF_DIR / "task/categorical.yaml"))
    for key, value in settings.items():
        OmegaConf.update(task.cfg, key, value)
    make = functools.partial(estimators.build, name, **opts)
    return base.run_task(task, make, base.Context(seed=0, device=CPU)).tables["optimize"]


@pytest.mark.parametrize("cost, k", [("abs_diff", 0.5), ("sum_sq", 1.3), ("linear", -0.7)])
def test_the_objective_is_e_f_summed_over_every_joint_outcome(cost, k):
    torch.manual_seed(4)
    logits = torch.randn(3, 4, dtype=torch.float64)  # each variable its own logits
    task = base.build(OmegaConf.load(CONF_DIR / "task/categorical.yaml"))
    c = exact.class_costs(cost, k, 4)
    pi = torch.softmax(logits, -1).numpy()
    total = sum(
        math.prod(pi[d, j] for d, j in enumerate(x)) * sum(c[j] for j in x)
        for x in np.ndindex(4, 4, 4)
    )
    assert task.objective(cost, k, [logits]) == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("l0, l1", [(0.0, 0.0), (0.3, -1.2)])
def test_at_two_classes_the_objective_is_the_bernoulli_toys(l0, l1):
    categorical = base.build(OmegaConf.load(CONF_DIR / "task/categorical.yaml"))
    bernoulli = base.build(OmegaConf.load(CONF_DIR / "task/bernoulli.yaml"))
    logits = torch.tensor([[l0, l1]] * 3, dtype=torch.float64)
    bits = torch.full((3,), l1 - l0, dtype=torch.float64)
    for ours, theirs in (("sum_sq", "square"), ("linear", "linear")):
        want = bernoulli.objective(theirs, 0.45, [bits])
        assert categorical.objective(ours, 0.45, [logits]) == pytest.approx(want, rel=1e-12)


def test_the_optimization_lowers_the_objective_towards_its_minimum_or_raises_it():
    # abs_diff at k = 1: c = (1, 0, 1), so E[f] starts at D 2/3 = 8/3 (uniform classes) and is
    # 0 with every variable at class 1, whose logit is then the largest.
    opt = {"k": [1.0], "optimize.steps": 300, "optimize.log_every": 100}
    down = optimize_table("reinforce_baseline", {"baseline": "loo"}, **opt)
    assert down.objective.iloc[0] == pytest.approx(8 / 3, rel=1e-12)
    assert down.objective.iloc[-1] < 1.0 and down.step.tolist() == [0, 100, 200, 300]
    assert (down.theta.iloc[-1] < 0) and not down.diverged.any()
    up = optimize_table(
        "reinforce_baseline", {"baseline": "loo"}, **opt, **{"optimize.maximize": True}
    )
    assert up.objective.iloc[-1] > 3.5  # towards 4, classes 0 and 2 (the class-0 logit rises)
    assert up.theta.iloc[-1] > 0


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("reinforce", {"categories": 1}, "task.categories=1: must be an integer >= 2"),
        ("reinforce", {"dim": 0}, "task.dim=0: must be a positive integer"),
        ("reinforce", {"costs": ["cube"]}, "cost 'cube' is unknown; known costs: sum_sq, abs_diff"),
        ("reinforce", {"logits": [0.0, 1.0]}, "task.logits=[0.0, 1.0]: must be null or a list of"),
        (
            "reinforce",
            {"mode": "optimize", "optimize.optimizer": "sgd"},
            "task.optimize.optimizer='sgd': must be one of adam, rmsprop",
        ),
        (
            "reinforce",
            {"mode": "optimize", "optimize.maximize": "yes"},
            "task.optimize.maximize='yes': must be true or false",
        ),
        ("arm", {}, "estimator 'arm' does not apply to Independent(OneHotCategorical)"),
        ("measure_valued", {}, "estimator 'measure_valued' does not apply to Independent(OneHot"),
    ],
)
def test_bad_input_is_named(name, overrides, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        metrics("categorical", name, {}, **overrides)


def test_bad_input_on_the_command_line_is_one_line_exit_2_and_nothing_on_disk(tmp_path):
    run_dir = tmp_path / "2026-01-01" / "run"
    out = run("task=categorical", "task.categories=1", f"hydra.run.dir={run_dir}")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line == "error: task.categories=1: must be an integer >= 2"
    assert not run_dir.parent.exists()
