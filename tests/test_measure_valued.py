"""The measure-valued estimator: unbiased on smooth and step costs (Normal, Bernoulli) with
tolerances from the measured standard error, coupling's lower variance, refusals, options."""

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
from torch.distributions import Bernoulli, Categorical, Gamma, Independent, Normal

import estimators
from benchmarks import api, plot
from benchmarks.config import CONF_DIR
from benchmarks.experiment import compose_config, run_config
from benchmarks.results import RunWriter
from benchmarks.tasks import base
from benchmarks.tasks.toy.exact.gaussian.point import Point
from benchmarks.tasks.toy.exact.gaussian.variances import exact_variance
from benchmarks.tasks.toy.figures import summary as toy_summary
from benchmarks.tasks.toy.figures import toys as toy_figures
from benchmarks.testing import enumerated_gradient
from estimators.errors import ConfigError

Z_MAX = 4.5  # |z| per comparison at a fixed seed
B = 100_000  # independent single-draw estimates per comparison
MU = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
SIGMA = torch.tensor([1.0, 0.6, 1.3], dtype=torch.float64)
THETA = torch.tensor([0.3, -0.8, 1.2], dtype=torch.float64)
A = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
C = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)


def phi(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


# Normal costs with the exact gradient of E[f] in (mu, sigma), per coordinate.
NORMAL_COSTS = {
    "constant": (lambda x: 0.0 * x.sum(-1) + 3.0, (0 * MU, 0 * MU)),
    "linear": (lambda x: (A * x).sum(-1), (A, 0 * MU)),
    "quadratic": (lambda x: (A * (x - C) ** 2).sum(-1), (2 * A * (MU - C), 2 * A * SIGMA)),
    # E[sum a 1[x > 0]] = sum a Phi(mu / sigma): no derivative in x, so reparam cannot serve it.
    "step": (
        lambda x: (A * (x > 0).to(x.dtype)).sum(-1),
        (A * phi(MU / SIGMA) / SIGMA, -A * phi(MU / SIGMA) * MU / SIGMA**2),
    ),
}
BERNOULLI_COSTS = {
    "constant": lambda b: 0.0 * b.sum(-1) + 3.0,
    "linear": lambda b: (A * b).sum(-1),
    "coupled": lambda b: ((A * b).sum(-1) - 0.5) ** 2,  # the bits interact
    "step": lambda b: ((A * b).sum(-1) > 0.6).to(b.dtype),
}


def normal_estimates(cost, coupling=True, num_samples=1, batch=B, seed=0):
    """``batch`` independent estimates of (d/dmu, d/dsigma), each [batch, 3]."""
    torch.manual_seed(seed)
    mu = MU.expand(batch, 3).clone().requires_grad_()
    sigma = SIGMA.expand(batch, 3).clone().requires_grad_()
    est = estimators.build("measure_valued", coupling=coupling)
    out = est(Independent(Normal(mu, sigma), 1), cost, num_samples)
    return torch.autograd.grad(out.mean(0).sum(), (mu, sigma), materialize_grads=True)


def assert_unbiased(grads: torch.Tensor, exact: torch.Tensor, where: str) -> None:
    mean, sd = grads.mean(0), grads.var(0).sqrt()
    se = sd / math.sqrt(grads.shape[0])
    # An estimate without variance (a summed Bernoulli cost) scatters by rounding only: held to
    # the exact value instead of a rounding-sized standard error.
    exact_zero = sd <= 1e-9 * (mean.abs() + exact.abs() + 1)
    assert torch.allclose(mean[exact_zero], exact[exact_zero], atol=1e-12), where
    z = (mean - exact)[~exact_zero] / se[~exact_zero]
    assert (z.abs() < Z_MAX).all(), f"{where}: z-scores {z.tolist()}"


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("cost", list(NORMAL_COSTS))
def test_unbiased_on_a_normal(cost, coupling):
    f, exact = NORMAL_COSTS[cost]
    for name, g, e in zip(("mu", "sigma"), normal_estimates(f, coupling), exact, strict=True):
        assert_unbiased(g, e, f"{cost}, coupling={coupling}, d/d{name}")


@pytest.mark.parametrize("parameterization", ["logits", "probs"])
@pytest.mark.parametrize("cost", list(BERNOULLI_COSTS))
def test_unbiased_on_bernoulli_logits_and_probs(cost, parameterization):
    f = BERNOULLI_COSTS[cost]
    exact = enumerated_gradient(f, THETA)  # w.r.t. the logits
    torch.manual_seed(0)
    theta = THETA.expand(B, 3).clone().requires_grad_()
    if parameterization == "logits":
        dist = Independent(Bernoulli(logits=theta), 1)
    else:
        dist = Independent(Bernoulli(probs=torch.sigmoid(theta)), 1)
    out = estimators.build("measure_valued")(dist, f, 1)
    (grads,) = torch.autograd.grad(out.mean(0).sum(), theta, materialize_grads=True)
    assert_unbiased(grads, exact, f"{cost} ({parameterization})")


def test_bernoulli_estimate_is_the_difference_times_p_one_minus_p():
    """On a summed cost each coordinate's difference is c(1) - c(0) exactly: no variance."""
    theta = THETA.expand(50, 3).clone().requires_grad_()
    out = estimators.build("measure_valued")(
        Independent(Bernoulli(logits=theta), 1), lambda b: ((b - 0.3) ** 2).sum(-1), 4
    )
    (grads,) = torch.autograd.grad(out.mean(0).sum(), theta)
    p = torch.sigmoid(THETA)
    assert torch.allclose(grads, (p * (1 - p) * (0.49 - 0.09)).expand(50, 3))


def test_a_log_scale_gets_the_gradient_through_autograd():
    torch.manual_seed(1)
    mu = MU.expand(B, 3).clone().requires_grad_()
    log_sigma = SIGMA.log().expand(B, 3).clone().requires_grad_()
    f, (_, d_sigma) = NORMAL_COSTS["quadratic"]
    out = estimators.build("measure_valued")(Independent(Normal(mu, log_sigma.exp()), 1), f, 1)
    (grads,) = torch.autograd.grad(out.mean(0).sum(), log_sigma)
    assert_unbiased(grads, d_sigma * SIGMA, "d/dlog sigma")


def test_values_are_f_at_draws_of_the_distribution_and_f_is_not_differentiated():
    torch.manual_seed(2)
    mu = torch.tensor(1.5, requires_grad=True)
    seen = []

    def f(z):
        seen.append(z)
        return z

    out = estimators.build("measure_valued")(Normal(mu, 0.5), f, 20_000)
    (z,) = seen
    assert not z.requires_grad
    assert z.shape == (20_000 * 4,)  # 4 perturbed copies of each draw, in one call
    values = out.detach()
    assert torch.isin(values, z).all()  # f (the identity) at points it was called on
    assert abs(values.mean().item() - 1.5) < 4.5 * 0.5 / math.sqrt(20_000)
    assert abs(values.std().item() - 0.5) < 4.5 * 0.5 / math.sqrt(2 * 20_000)


def test_bernoulli_values_are_f_at_draws_in_2_d_evaluations():
    torch.manual_seed(3)
    probs, n, code = torch.tensor([0.3, 0.6, 0.5]), 20_000, torch.tensor([1.0, 2.0, 4.0])
    seen = []

    def f(b):
        seen.append(b)
        return (b * code).sum(-1)  # tells the 8 points apart

    out = estimators.build("measure_valued")(Independent(Bernoulli(probs), 1), f, n).detach()
    assert seen[0].shape == (2 * 3 * n, 3)
    mean, var = (code * probs).sum(), (code**2 * probs * (1 - probs)).sum()
    assert abs(out.mean() - mean) < 4.5 * (var / n).sqrt()
    # The sample variance's standard error is below var sqrt(2 / n), a normal's: these bits
    # have lighter tails (kurtosis under 3).
    assert abs(out.var() - var) < 4.5 * var * math.sqrt(2 / n)


def test_each_coordinate_is_perturbed_alone():
    """Every perturbed copy holds the same base draw in all coordinates but its own."""
    torch.manual_seed(3)
    seen = []
    dist = Independent(Normal(MU.expand(2, 3), SIGMA.expand(2, 3)), 1)
    estimators.build("measure_valued")(dist, lambda z: seen.append(z) or z.sum(-1), 5)
    (z,) = seen
    copies = z.reshape(4, 3, 5, 2, 3)  # [perturbation, coordinate perturbed, draw, batch, D]
    for j in range(3):
        held = copies[:, [d for d in range(3) if d != j], ..., j]  # j where another is perturbed
        assert (held == held[0, 0]).all()
        assert (copies[:, j, ..., j] != held[0, 0]).all()


@pytest.mark.parametrize("cost", ["quadratic", "linear"])
def test_coupling_lowers_the_scale_gradients_variance_of_a_smooth_cost(cost):
    f, _ = NORMAL_COSTS[cost]
    coupled = normal_estimates(f, True)[1].var(0)
    uncoupled = normal_estimates(f, False)[1].var(0)
    assert (coupled < 0.8 * uncoupled).all(), (coupled.tolist(), uncoupled.tolist())


def test_coupling_makes_the_mean_gradient_of_a_linear_cost_exact():
    """With w' = w, a (x_d = mu + sigma w) - a (x_d = mu - sigma w) = 2 a sigma w, times
    1/(sigma sqrt(2 pi)): a w sqrt(2/pi), still random; but a constant cost gives exactly 0."""
    f, _ = NORMAL_COSTS["constant"]
    for g in normal_estimates(f, True, batch=100):
        assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize(
    "dist, name",
    [
        (Categorical(logits=torch.zeros(3)), "Categorical"),
        (Gamma(torch.tensor(2.0), torch.tensor(1.0)), "Gamma"),
        (Independent(Gamma(torch.ones(3), torch.ones(3)), 1), r"Independent\(Gamma\)"),
    ],
)
def test_other_distributions_are_refused_in_one_line_naming_what_applies(dist, name):
    est = estimators.build("measure_valued")
    with pytest.raises(ConfigError, match=f"'measure_valued' does not apply to {name}; ") as err:
        est(dist, lambda z: pytest.fail("f called"), 2)
    assert "\n" not in str(err.value)
    assert "reinforce" in str(err.value) and "measure_valued" not in str(err.value).split(";")[1]


@pytest.mark.parametrize("bad", ["maybe", 1, None])
def test_coupling_must_be_a_boolean(bad):
    with pytest.raises(ConfigError, match=f"coupling={bad!r}: must be true or false"):
        estimators.build("measure_valued", coupling=bad)


def test_labels_show_the_coupling():
    cls = estimators.REGISTRY["measure_valued"]
    assert cls.known_labels() == ["Measure-valued (coupled)", "Measure-valued (uncoupled)"]
    assert cls.label({"coupling": "False"}) == "Measure-valued (uncoupled)"
    assert cls.label({"coupling": "True"}) == "Measure-valued (coupled)"
    assert not cls.differentiates_f and cls.unbiased


def test_evaluations_per_estimate():
    normal = Independent(Normal(torch.zeros(5, 3), torch.ones(5, 3)), 1)
    bits = Independent(Bernoulli(logits=torch.zeros(5, 3)), 1)
    mvd = estimators.build("measure_valued")
    assert mvd.evaluations(normal, 7) == 4 * 3 * 7
    assert mvd.evaluations(bits, 7) == 2 * 3 * 7
    assert mvd.evaluations(Normal(torch.zeros(5), 1.0), 7) == 4 * 7
    assert estimators.build("reparam").evaluations(normal, 7) == 7
    assert estimators.build("arm").evaluations(bits, 8) == 8
    assert estimators.build("disarm").evaluations(bits, 8) == 8


# Exact answers on the toys.

Z_CRIT = stats.norm.isf(0.5e-5)  # as tests/test_gaussian_task.py's interval checks
PI = math.pi


def closed_form_variance(cost, coupling, k, mu, sigma, param):
    """One draw's variance for the polynomial costs, by hand: with delta = mu - k, Rayleigh
    moments E[w] = sqrt(pi/2), E[w^2] = 2, E[w^4] = 8, Maxwell's E[m^2] = 3, E[m^4] = 15.

    linear (k x): mu: coupled k^2 (4/pi - 1), uncoupled k^2 (2 - pi/2)/pi; sigma: k^2, 4 k^2.
    square ((x - k)^2): mu: coupled 4 delta^2 (4/pi - 1), uncoupled (4 delta^2 (4 - pi) + 8
    sigma^2) / (2 pi); sigma: coupled 4 delta^2 + 4 sigma^2, uncoupled 16 delta^2 + 8 sigma^2."""
    delta = mu - k
    table = {
        ("linear", "mu"): (k**2 * (4 / PI - 1), k**2 * (2 - PI / 2) / PI),
        ("linear", "sigma"): (k**2, 4 * k**2),
        ("square", "mu"): (
            4 * delta**2 * (4 / PI - 1),
            (4 * delta**2 * (4 - PI) + 8 * sigma**2) / (2 * PI),
        ),
        ("square", "sigma"): (4 * delta**2 + 4 * sigma**2, 16 * delta**2 + 8 * sigma**2),
    }
    return table[cost, param][0 if coupling else 1]


@pytest.mark.parametrize("cost", ["linear", "square"])
@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("mu, sigma, k", [(1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (-0.3, 0.6, 2.0)])
def test_quadrature_variance_matches_the_closed_forms(cost, coupling, mu, sigma, k):
    for param in ("mu", "sigma"):
        quadrature = exact_variance(
            "measure_valued", {"coupling": coupling}, Point(cost, k, mu, sigma, param, 3, 2)
        )
        expected = closed_form_variance(cost, coupling, k, mu, sigma, param) / 2
        assert quadrature == pytest.approx(expected, rel=1e-8, abs=1e-12), param


def toy(task="gaussian", **overrides):
    cfg = OmegaConf.load(CONF_DIR / f"task/{task}.yaml")
    cfg.n_estimates = 40_000
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def toy_metrics(cfg, **options):
    make = functools.partial(estimators.build, "measure_valued", **options)
    return base.run_task(base.build(cfg), make, base.Context(seed=0)).tables["metrics"]


def variance_z(table, exact_var):
    se = (table.grad_var_hi - table.grad_var_lo) / (2 * stats.norm.isf(0.025))
    return (table.grad_var - exact_var) / se.where(se > 0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("coupling, dim", [(True, 1), (False, 1), (True, 3), (False, 3)])
def test_measured_statistics_agree_with_the_exact_ones(coupling, dim):
    cfg = toy(k=[0.5, 2.0], dim=dim)
    table = toy_metrics(cfg, coupling=coupling)
    assert len(table) == len(cfg.costs) * len(cfg.k) * 2
    assert table.exact_var.notna().all() and table.exact_mean.equals(table.exact_grad)
    assert (table.z_score.abs() < Z_CRIT).all(), table[["cost", "k", "param", "z_score"]]
    z = variance_z(table, table.exact_var)
    assert (z.abs() < Z_CRIT).all(), table[["cost", "k", "param", "grad_var", "exact_var"]]


def test_the_interval_check_tells_the_couplings_apart():
    """In three dimensions, the measured coupled variances agree with their exact ones and reject
    the uncoupled exact ones (the check has power)."""
    cfg = toy(k=[0.5], costs=["square", "cos"], dim=3)
    table = toy_metrics(cfg, coupling=True)
    assert (variance_z(table, table.exact_var).abs() < Z_CRIT).all()
    wrong = [
        exact_variance("measure_valued", {"coupling": False}, Point(r.cost, r.k, 1.0, 1.0, r.param))
        for r in table.itertuples()
    ]
    assert (variance_z(table, wrong).abs() > Z_CRIT).all()


@pytest.mark.parametrize("cost, k", [("square", 0.5), ("cos", 1.0), ("exp", 1.0), ("linear", 2.0)])
def test_coupling_lowers_the_exact_variance_of_the_scale_gradient(cost, k):
    coupled, uncoupled = (
        exact_variance("measure_valued", {"coupling": c}, Point(cost, k, 1.0, 1.0, "sigma"))
        for c in (True, False)
    )
    assert coupled < 0.8 * uncoupled


def test_coupling_raises_the_mean_gradients_variance_of_a_linear_cost():
    """Not a free lunch: with w' = w the mean gradient of k x is k w sqrt(2/pi), variance
    k^2 (4/pi - 1), above the uncoupled k^2 (2 - pi/2)/pi; the measurement agrees."""
    cfg = toy(k=[2.0], costs=["linear"])
    coupled, uncoupled = (toy_metrics(cfg, coupling=c).set_index("param") for c in (True, False))
    assert coupled.exact_var["mu"] > 1.9 * uncoupled.exact_var["mu"]
    assert coupled.grad_var_lo["mu"] > uncoupled.grad_var_hi["mu"]


def test_the_bernoulli_toy_estimate_is_the_gradient_itself():
    table = toy_metrics(toy("bernoulli", dim=3, n_estimates=1000))
    assert (table.exact_var == 0).all() and table.exact_mean.equals(table.exact_grad)
    assert np.allclose(table.grad_mean, table.exact_grad, rtol=1e-12)
    assert (table.grad_var <= 1e-24).all()


@pytest.mark.parametrize(
    "task, name, options, per_estimate",
    [
        ("gaussian", "reparam", {}, lambda dim, n: n),
        ("gaussian", "reinforce", {}, lambda dim, n: n),
        ("gaussian", "measure_valued", {}, lambda dim, n: 4 * dim * n),
        ("bernoulli", "measure_valued", {"coupling": False}, lambda dim, n: 2 * dim * n),
        ("bernoulli", "arm", {}, lambda dim, n: n),
        ("bernoulli", "disarm", {}, lambda dim, n: n),
        ("bernoulli", "arms", {}, lambda dim, n: n),
        ("bernoulli", "rebar", {}, lambda dim, n: 3 * n),
    ],
)
def test_the_toys_metrics_count_evaluations_of_f(task, name, options, per_estimate):
    n = 4
    cfg = toy(task, dim=3, n_estimates=10, num_samples=n, costs=["square"], k=[0.45], cv_steps=1)
    make = functools.partial(estimators.build, name, **options)
    table = base.run_task(base.build(cfg), make, base.Context(seed=0)).tables["metrics"]
    assert (table.evaluations == per_estimate(3, n)).all()


def test_the_custom_task_counts_evaluations_and_measures_the_exact_variance():
    """A 2-d Normal objective through ``benchmarks.api.compare``: 4 D = 8 evaluations per draw,
    and the measured variance per coordinate is the toy's exact one (square cost at mu = k)."""
    params = {"mu": torch.ones(2), "sigma": torch.ones(2)}
    table = api.compare(
        ["measure_valued", "reparam"],
        params,
        lambda p: Independent(Normal(p["mu"], p["sigma"]), 1),
        lambda x: ((x - 1.0) ** 2).sum(-1),
        20_000,
        exact={"mu": torch.zeros(2), "sigma": torch.full((2,), 2.0)},
    ).set_index(["estimator", "param"])
    assert table.loc[("measure_valued", "mu"), "evaluations"] == 8
    assert table.loc[("reparam", "mu"), "evaluations"] == 1
    row = table.loc[("measure_valued", "sigma")]
    want = 2 * exact_variance("measure_valued", {}, Point("square", 1.0, 1.0, 1.0, "sigma"))
    se = (row.grad_var_hi - row.grad_var_lo) / (2 * stats.norm.isf(0.025))
    assert abs(row.grad_var - want) < Z_CRIT * se


def test_the_toys_summary_and_figures_compare_at_equal_evaluations_of_f():
    cfg = toy(n_estimates=2000, costs=["square"], k=[1.0])
    tables = [
        base.run_task(base.build(cfg), functools.partial(estimators.build, name), base.Context())
        .tables["metrics"]
        .assign(run=name)
        for name in ("measure_valued", "reparam")
    ]
    summary = pd.concat(tables, ignore_index=True).assign(table="metrics")
    summary["label"] = plot.estimator_labels(summary)
    text = "\n".join(toy_summary.summary_lines(summary))
    assert "## Toy: variance × evaluations of f per estimate at k = 1" in text
    sigma = summary.set_index(["estimator", "param"]).loc[("measure_valued", "sigma")]
    assert f"{sigma.grad_var * 4:.4g}" in text  # 4 evaluations per draw in one dimension
    stems = [stem for stem, fig in toy_figures.figures(summary, plot.style_for(summary["label"]))]
    assert "toy_evaluation_normalized_variance" in stems and "toy_work_normalized_variance" in stems
    # A table from before the column: the figures and sections it always had, and no new one.
    old = summary.drop(columns="evaluations")
    assert "evaluations of f" not in "\n".join(toy_summary.summary_lines(old))
    stems = [stem for stem, fig in toy_figures.figures(old, plot.style_for(old["label"]))]
    assert "toy_evaluation_normalized_variance" not in stems
    plt.close("all")


def test_a_step_cost_that_reparam_refuses_is_measured_against_its_exact_answers():
    """torch.heaviside(x, k) has no derivative: reparam is refused in one line, measure_valued
    measures it, unbiased and with its exact variance (quadrature for an imported cost)."""
    cfg = toy(costs=["torch:heaviside"], k=[0.5], n_estimates=40_000)
    with pytest.raises(ConfigError, match="has no derivative.*'reparam' needs a differentiable"):
        base.run_task(base.build(cfg), lambda: estimators.build("reparam"), base.Context())
    table = toy_metrics(cfg, coupling=False)
    assert table.exact_var.notna().all() and (table.exact_grad.abs() > 0.1).all()
    assert (table.z_score.abs() < Z_CRIT).all()
    assert (variance_z(table, table.exact_var).abs() < Z_CRIT).all()


@pytest.mark.parametrize(
    "latent, name, per_example",
    [("bernoulli", "measure_valued", 2 * 4 * 2), ("gaussian", "reinforce_baseline", 2)],
)
def test_the_vae_tables_count_evaluations_of_the_decoder(tmp_path, latent, name, per_example):
    short = ["task=vae", "task.epochs=1", "task.max_steps=2", "task.hidden=16"]
    short += ["task.latent_dim=4", "task.iwae_k=2", "task.grad_var_every=1"]
    short += ["task.grad_var_samples=4", "task.num_samples=2", f"task.latent={latent}"]
    _, result = run_config(compose_config([*short, f"estimator={name}"]), RunWriter(tmp_path))
    for table in result.tables.values():
        assert (table.evaluations == per_example).all()
