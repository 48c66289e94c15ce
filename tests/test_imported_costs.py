"""Costs named by import path (``task.costs=[module:function]``) on both toys: exact answers by
quadrature checked against the built-ins and the measurements, the self-check of the derivative,
a cost without one, and bad input in one line."""

from __future__ import annotations

import functools
import math
import re
import sys

import pandas as pd
import pytest
import torch
from cli import run
from omegaconf import OmegaConf
from scipy import stats

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.tasks import base
from benchmarks.tasks.toy.exact import bernoulli as bx
from benchmarks.tasks.toy.exact.gaussian import catalogue as gx
from benchmarks.tasks.toy.exact.gaussian.point import PARAMS, Point
from benchmarks.tasks.toy.exact.gaussian.variances import exact_variance
from estimators.errors import ConfigError

CPU = torch.device("cpu")
Z_CRIT = stats.norm.isf(0.5e-5)  # two-sided 1e-5 per check, as in the toys' own tests
MODULE = "estibench_test_costs"
COSTS = '''
import torch
import torch.nn.functional as F


def square(x, k):
    return (x - k) ** 2


def softplus(x, k):
    return F.softplus(x - k)


def absolute(x, k):
    return (x - k).abs()


def step(x, k):
    return (x > k).to(x.dtype)


def exponential(x, k):
    return torch.exp(k * x)


class Squared(torch.autograd.Function):
    """x^2 whose backward claims 3x: a wrong derivative."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x * grad


def wrong_backward(x, k):
    return Squared.apply(x - k)


def rounded(x, k):
    return torch.round(x - k) ** 2


ratio = 0.5


def one_argument(x):
    return x


def total(x, k):
    return (x - k).sum()


def boolean(x, k):
    return x > k


def as_numpy(x, k):
    return (x - k).numpy()
'''
ESTIMATORS = [
    ("reparam", {}, None),
    ("reinforce", {}, None),
    ("reinforce_baseline", {"baseline": "loo"}, 3),
]


@pytest.fixture(scope="module", autouse=True)
def cost_module(tmp_path_factory):
    """The module ``estibench_test_costs`` importable here and, through PYTHONPATH, in a
    subprocess; its folder."""
    folder = tmp_path_factory.mktemp("costs")
    (folder / f"{MODULE}.py").write_text(COSTS)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def run_toy(task: str, name: str, opts: dict | None = None, **overrides):
    cfg = OmegaConf.load(CONF_DIR / f"task/{task}.yaml")
    cfg.n_estimates = 40_000
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    make = functools.partial(estimators.build, name, **(opts or {}))
    return base.run_task(base.build(cfg), make, base.Context(device=CPU)).tables


def assert_inside_intervals(table) -> None:
    """Each measured mean and variance within Z_CRIT standard errors of the exact ones."""
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    z_mean = (table.grad_mean - table.exact_mean) / (table.grad_var / table.n_estimates) ** 0.5
    se_var = (table.grad_var_hi - table.grad_var_lo) / (2 * stats.norm.isf(0.025))
    z_var = (table.grad_var - table.exact_var) / se_var
    shown = ["cost", "k", "param", "grad_mean", "exact_mean", "grad_var", "exact_var"]
    assert (z_mean.abs() < Z_CRIT).all(), table[shown]
    assert (z_var.abs() < Z_CRIT).all(), table[shown]


@pytest.mark.parametrize("name, opts, num_samples", ESTIMATORS)
@pytest.mark.parametrize("k, mu, sigma", [(0.5, 1.0, 1.0), (2.0, -0.4, 0.6)])
def test_an_imported_copy_of_a_built_in_has_its_exact_answers(
    name, opts, num_samples, k, mu, sigma
):
    for param in PARAMS:
        args = (k, mu, sigma, param, 2, num_samples or 1)
        built_in = exact_variance(name, opts, Point("square", *args))
        imported = exact_variance(name, opts, Point(f"{MODULE}:square", *args))
        assert imported == pytest.approx(built_in, rel=1e-9)
        imported = gx.exact_gradient(Point(f"{MODULE}:square", k, mu, sigma, param))
        assert imported == pytest.approx(
            gx.exact_gradient(Point("square", k, mu, sigma, param)), abs=1e-9
        )
    assert gx.expectation(f"{MODULE}:square", k, mu, sigma) == pytest.approx(
        gx.expectation("square", k, mu, sigma), rel=1e-9
    )


@pytest.mark.parametrize("name, opts, num_samples", ESTIMATORS)
def test_a_run_with_an_imported_copy_matches_the_built_in(name, opts, num_samples, capsys):
    costs = ["square", f"{MODULE}:square"]
    table = run_toy("gaussian", name, opts, costs=costs, k=[2.0], num_samples=num_samples)
    assert_inside_intervals(table["metrics"])
    built_in, imported = (table["metrics"][table["metrics"].cost == c] for c in costs)
    for column in ("exact_grad", "exact_var"):
        assert imported[column].values == pytest.approx(built_in[column].values, abs=1e-9)
    assert capsys.readouterr().err == ""  # the self-check passed


@pytest.mark.parametrize("k", [0.5, 3.0])
def test_a_cost_that_overflows_far_in_the_tails_has_its_exact_gradient(k):
    # exp(k x) is inf at quadrature's farthest nodes, where the Gaussian weight is 0: the
    # integrand is 0 there, not inf * 0. E[exp(k x)] = exp(k mu + k^2 sigma^2 / 2).
    mu, sigma = 1.0, 0.7
    value = math.exp(k * mu + k * k * sigma * sigma / 2)
    grads = [gx.exact_gradient(Point(f"{MODULE}:exponential", k, mu, sigma, p)) for p in PARAMS]
    assert grads == pytest.approx([k * value, k * k * sigma * value], rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name, opts, num_samples", ESTIMATORS)
@pytest.mark.parametrize("dim", [1, 3])
def test_costs_without_closed_forms_measure_their_exact_variances(name, opts, num_samples, dim):
    # softplus is smooth; |x - k| has a kink, where autograd's derivative jumps from -1 to 1.
    costs = [f"{MODULE}:softplus", f"{MODULE}:absolute"]
    table = run_toy("gaussian", name, opts, costs=costs, k=[0.5, 2.0], dim=dim)
    assert_inside_intervals(table["metrics"])


def test_a_cost_without_a_closed_form_measures_its_exact_variance():
    table = run_toy("gaussian", "reinforce_baseline", costs=[f"{MODULE}:softplus"], k=[0.5])
    assert_inside_intervals(table["metrics"])


def test_a_cost_without_a_derivative_refuses_reparam_and_serves_reinforce():
    cost = f"{MODULE}:step"
    message = f"task.costs: cost '{cost}' has no derivative (autograd finds none); estimator "
    with pytest.raises(ConfigError, match=re.escape(message + "'reparam' needs a differentiable")):
        run_toy("gaussian", "reparam", costs=[cost])
    table = run_toy("gaussian", "reinforce", costs=[cost], k=[0.5], num_samples=2)["metrics"]
    # E[1(x > k)] = Phi((mu - k) / sigma) at mu = sigma = 1.
    z, phi = 0.5, math.exp(-0.125) / math.sqrt(2 * math.pi)
    assert table.exact_grad.tolist() == pytest.approx([phi, -phi * z], abs=1e-9)
    assert_inside_intervals(table)


@pytest.mark.parametrize("fn", ["wrong_backward", pytest.param("rounded", marks=pytest.mark.slow)])
def test_a_derivative_that_fails_the_self_check_leaves_the_exact_columns_empty(fn, capsys):
    table = run_toy("gaussian", "reinforce", costs=[f"{MODULE}:{fn}"], k=[1.0])["metrics"]
    exact = ["exact_grad", "exact_mean", "exact_var", "bias", "z_score"]
    assert table[exact].isna().all().all() and table.grad_var.notna().all()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"warning: cost '{MODULE}:{fn}' at k=1: its gradient w.r.t. sigma")
    assert line.endswith("its exact columns are left empty")


def test_the_objective_of_an_imported_cost_is_its_exact_expectation():
    table = run_toy("gaussian", "reparam", mode="optimize", costs=[f"{MODULE}:square"], k=[2.0])[
        "optimize"
    ]
    first = table.iloc[0]
    assert first.objective == pytest.approx((1.0 - 2.0) ** 2 + 1.0, rel=1e-10)
    assert table.objective.iloc[-1] < 0.1 * first.objective


@pytest.mark.parametrize("name", list(bx.EXACT_MOMENTS))
@pytest.mark.parametrize("theta, dim, k", [(0.0, 1, 0.499), (-0.7, 3, 2.0)])
def test_bernoulli_exact_moments_of_an_imported_copy_match_the_built_ins(name, theta, dim, k):
    relaxed = {"gumbel_softmax": {}, "straight_through": {}, "rao_blackwell_st": {"rb_samples": 10}}
    opts = {"temperature": 0.5, **relaxed[name]} if name in relaxed else {}
    built_in = bx.exact_moments(name, opts, "square", k, theta, dim, 4)
    imported = bx.exact_moments(name, opts, f"{MODULE}:square", k, theta, dim, 4)
    assert imported == pytest.approx(built_in, rel=1e-12, abs=1e-15)


def test_bernoulli_exact_answers_of_an_imported_cost_are_those_of_enumeration():
    cost, k, theta = f"{MODULE}:softplus", 0.45, 0.3
    p = 1 / (1 + math.exp(-theta))
    c = {b: math.log1p(math.exp(b - k)) for b in (0.0, 1.0)}
    gradient = p * (1 - p) * (c[1.0] - c[0.0])
    second = p * (c[1.0] * (1 - p)) ** 2 + (1 - p) * (c[0.0] * p) ** 2  # E[(c(b) (b - p))^2]
    mean, var = bx.exact_moments("reinforce", {}, cost, k, theta)
    assert bx.exact_gradient(cost, k, theta) == pytest.approx(gradient, rel=1e-12)
    assert (mean, var) == pytest.approx((gradient, second - gradient**2), rel=1e-12)


@pytest.mark.parametrize(
    "name, opts, num_samples",
    [
        ("reinforce", {}, None),
        ("reinforce_baseline", {"baseline": "loo"}, 4),
        ("disarm", {}, 4),
        ("arms", {}, 5),
        ("gumbel_softmax", {"temperature": 0.5}, None),
    ],
)
def test_a_bernoulli_run_with_an_imported_cost_measures_its_exact_moments(name, opts, num_samples):
    costs = [f"{MODULE}:softplus"]
    table = run_toy("bernoulli", name, opts, costs=costs, theta=0.3, num_samples=num_samples)
    assert_inside_intervals(table["metrics"])


@pytest.mark.parametrize("name", ["gumbel_softmax", "straight_through", "rebar", "relax"])
def test_bernoulli_estimators_that_differentiate_f_refuse_a_cost_without_a_derivative(name):
    cost = f"{MODULE}:step"
    message = f"cost '{cost}' has no derivative (autograd finds none); estimator '{name}' needs"
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_toy("bernoulli", name, costs=[cost])
    assert not run_toy("bernoulli", "disarm", costs=[cost], n_estimates=100)["metrics"].empty


BAD = [
    ("nosuch_estibench_module:f", "does not import: ModuleNotFoundError: No module named"),
    (f"{MODULE}:missing", f": module '{MODULE}' has no 'missing'"),
    (MODULE, "is unknown; known costs: square, "),
    (f"{MODULE}:a:b", "is not of the form module:function"),
    (f":{MODULE}", "is not of the form module:function"),
    (f"{MODULE}:ratio", "is a float, not a function"),
    (f"{MODULE}:one_argument", "cannot be called as f(x, k): too many positional arguments"),
    (f"{MODULE}:total", "returns shape [] for x of shape [2, 3]; it must be elementwise"),
    (f"{MODULE}:boolean", "returns torch.bool values; it must return floating point"),
    (f"{MODULE}:as_numpy", "returns a numpy.ndarray; it must return a torch tensor"),
]


@pytest.mark.parametrize("task", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("cost, message", BAD)
def test_a_bad_cost_is_named_in_one_line_before_any_work(task, cost, message):
    with pytest.raises(ConfigError) as error:
        run_toy(task, "reinforce", costs=["square", cost])
    line = str(error.value)
    assert line.startswith(f"task.costs: cost '{cost}'") and message in line and "\n" not in line


@pytest.mark.parametrize(
    "cost, message",
    [
        ("nosuch_estibench_module:f", "does not import"),
        pytest.param(f"{MODULE}:total", "returns shape []", marks=pytest.mark.slow),
        (f"{MODULE}:step", "has no derivative (autograd finds none); estimator 'reparam' needs"),
    ],
)
def test_a_bad_cost_gets_one_line_and_exit_2_from_the_command_line(
    tmp_path, cost, cost_module, message
):
    run_dir = tmp_path / "run"
    out = run(f"task.costs=[{cost}]", f"hydra.run.dir={run_dir}", pythonpath=cost_module)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: task.costs: cost '{cost}'") and message in line
    assert not run_dir.exists()


@pytest.mark.slow
def test_the_command_line_runs_an_imported_cost_and_names_it_as_typed(tmp_path, cost_module):
    cost = f"{MODULE}:softplus"
    out = run(
        f"task.costs=[square,{cost}]",
        "task.k=[1.0]",
        "task.n_estimates=2000",
        f"hydra.run.dir={tmp_path}",
        pythonpath=cost_module,
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert table.cost.unique().tolist() == ["square", cost] and table.exact_var.notna().all()
