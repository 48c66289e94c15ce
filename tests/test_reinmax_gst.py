"""ReinMax and gapped straight-through: their measured moments on the categorical toy against the
exact ones (numpy, summed over the first variable's classes), their gradients at a fixed draw
against the hand formulas, ReinMax's second-order accuracy, GST's value and gap, bad input."""

from __future__ import annotations

import pytest
import torch
from cli import run
from scipy import stats
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical
from toy_tables import assert_agrees, metrics

import estimators
from benchmarks.tasks.toy.exact import categorical as exact
from benchmarks.testing import assert_refused
from estimators.errors import ConfigError
from estimators.gst import gapped_logits

CPU = torch.device("cpu")
# About 40 interval checks at two-sided 1e-5 each: family-wise false alarms below 1e-3.
Z_CRIT = stats.norm.isf(0.5e-5)


@pytest.mark.parametrize(
    "name, opts",
    [
        ("reinmax", {"temperature": 1.0}),
        ("reinmax", {"temperature": 2.5}),
        ("gst", {"temperature": 1.0, "gap": 1.0}),
        ("gst", {"temperature": 0.5, "gap": 2.0}),
    ],
)
@pytest.mark.parametrize(
    "categories, dim, logits, num_samples",
    [(3, 2, [0.8, -0.4, 0.1], 1), (5, 3, [1.0, -0.5, 0.3, 2.0, -1.5], 2)],
)
def test_measured_mean_and_variance_agree_with_the_exact_ones(
    name, opts, categories, dim, logits, num_samples
):
    table = metrics(
        "categorical",
        name,
        opts,
        categories=categories,
        dim=dim,
        logits=logits,
        num_samples=num_samples,
        costs=["abs_diff", "sum_sq"],
        k=[1.5],
    )
    assert table.exact_mean.notna().all() and table.exact_var.notna().all()
    assert_agrees(table, Z_CRIT)
    # Biased: the exact mean is not the gradient, and the measurement can tell (abs_diff).
    row = table[table.cost == "abs_diff"].iloc[0]
    assert abs(row.exact_mean - row.exact_grad) > 5 * (row.grad_var / row.n_estimates) ** 0.5


@pytest.mark.parametrize(
    "logits", [[0.8, -0.4, 0.1], [2.0, 0.0, -1.0, 0.5], [1.0, -0.5, 0.3, 2.0, -1.5]]
)
def test_reinmax_at_temperature_1_is_exact_for_a_quadratic_f(logits):
    """Liu et al. (2023): ReinMax is second-order accurate, its mean at tau = 1 is the gradient
    when f is quadratic in the one-hot x (sum_sq, linear); not where f is not (abs_diff), nor at
    another tau (at unequal logits), nor for GST."""
    k = 1.5
    for cost in ("sum_sq", "linear"):
        mean, _ = exact.reinmax_moments({"temperature": 1.0}, cost, k, logits, 1, 1)
        assert mean == pytest.approx(exact.exact_gradient(cost, k, logits), rel=1e-12, abs=1e-15)
    for name, opts, cost in [
        ("reinmax", {"temperature": 1.0}, "abs_diff"),
        ("reinmax", {"temperature": 2.0}, "sum_sq"),
        ("gst", {"temperature": 1.0, "gap": 1.0}, "sum_sq"),
    ]:
        mean, _ = exact.MOMENTS[name](opts, cost, k, logits, 1, 1)
        assert abs(mean - exact.exact_gradient(cost, k, logits)) > 1e-3


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """diag(p) - p p^T, [..., C, C]."""
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def gradient_at_a_draw(est, dist, params, w):
    """The draw (one-hot, recorded from f) and the gradient of f = <w, z> at it, one sample."""
    seen = []
    out = est(dist, lambda z: seen.append(z.detach()) or (w * z).sum(-1), 1)
    (grad,) = torch.autograd.grad(out.sum(), params)
    return seen[0][0], out, grad


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_reinmax_on_a_linear_f_is_the_hand_formula_at_the_draw(temperature):
    torch.manual_seed(0)
    theta = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.7, -1.2, 2.0, 0.4], dtype=torch.float64)
    est = estimators.build("reinmax", temperature=temperature)
    for dist in (OneHotCategorical(logits=theta), Independent(OneHotCategorical(logits=theta), 1)):
        d, out, grad = gradient_at_a_draw(est, dist, theta, w)
        assert torch.equal(out.detach()[0], (w * d).sum(-1))
        pi, q = theta.softmax(-1).detach(), (theta / temperature).softmax(-1).detach()
        jac = 2 * softmax_jacobian((q + d) / 2) - 0.5 * softmax_jacobian(pi)
        torch.testing.assert_close(grad, (jac @ w.unsqueeze(-1)).squeeze(-1), rtol=0, atol=1e-12)
    # A Bernoulli is the two-class categorical with logits (0, eta), b its class-1 entry.
    eta = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b, _, grad = gradient_at_a_draw(est, Bernoulli(logits=eta), eta, w[0])
    logits = torch.stack([torch.zeros_like(eta), eta], -1).detach()
    pi_d = ((logits / temperature).softmax(-1) + torch.stack([1 - b, b], -1)) / 2
    jac = 2 * softmax_jacobian(pi_d) - 0.5 * softmax_jacobian(logits.softmax(-1))
    torch.testing.assert_close(grad, jac[:, 1, 1] * w[0], rtol=0, atol=1e-12)


def test_gst_value_is_the_one_hot_draw_and_its_gradient_the_hand_formula():
    torch.manual_seed(0)
    theta = torch.randn(2000, 5, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.7, -1.2, 2.0, 0.4, -0.3], dtype=torch.float64)
    est = estimators.build("gst", temperature=0.7, gap=1.3)
    d, out, grad = gradient_at_a_draw(est, OneHotCategorical(logits=theta), theta, w)
    assert ((d == 0) | (d == 1)).all() and (d.sum(-1) == 1).all()
    assert torch.equal(out.detach()[0], (w * d).sum(-1))
    # draws follow softmax(theta): every class turns up, not only the argmax
    assert (d.argmax(-1) != theta.argmax(-1)).float().mean() > 0.3
    s = (gapped_logits(theta.detach(), d, 1.3) / 0.7).softmax(-1)
    expected = (softmax_jacobian(s) @ w.unsqueeze(-1)).squeeze(-1) / 0.7
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_gst_moves_the_drawn_class_to_the_top_and_the_others_a_gap_below():
    theta = torch.tensor([[0.5, 2.0, 1.8, -1.0], [0.5, 2.0, 1.8, -1.0]], requires_grad=True)
    d = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    moved = gapped_logits(theta, d, 1.0)
    expected = torch.tensor([[2.0, 1.0, 1.0, -1.0], [0.5, 2.0, 1.0, -1.0]])
    assert torch.equal(moved.detach(), expected)
    (jac,) = torch.autograd.grad(moved[0] @ torch.arange(4.0), theta)
    assert torch.equal(jac[0], torch.arange(4.0)) and torch.equal(jac[1], torch.zeros(4))


@pytest.mark.parametrize(
    "name, opts, message",
    [
        ("reinmax", {"temperature": 0.0}, "temperature=0.0: must be a number > 0"),
        ("gst", {"temperature": -1.0}, "temperature=-1.0: must be a number > 0"),
        ("gst", {"gap": 0}, "gap=0: must be a number > 0"),
    ],
)
def test_bad_options_are_one_line(name, opts, message):
    with pytest.raises(ConfigError, match=message):
        estimators.build(name, **opts)


@pytest.mark.parametrize("name", ["reinmax", "gst"])
def test_a_normal_is_refused_before_f_is_called(name):
    normal = Independent(Normal(torch.zeros(3, 2), torch.ones(3, 2)), 1)
    assert_refused(estimators.build(name), normal, 1, name)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["task=categorical", "estimator=reinmax", "estimator.temperature=0"],
            "temperature=0: must be a number > 0",
        ),
        (
            ["task=categorical", "estimator=gst", "estimator.gap=-0.5"],
            "gap=-0.5: must be a number > 0",
        ),
        (
            ["task=gaussian", "estimator=gst"],
            "estimator 'gst' does not apply to Independent(Normal)",
        ),
    ],
)
def test_bad_input_from_the_command_line_is_one_line_and_exit_2(tmp_path, args, message):
    run_dir = tmp_path / "run"
    out = run(*args, f"hydra.run.dir={run_dir}")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not run_dir.exists()


def test_a_run_shows_the_exact_mean_beside_the_gradient(tmp_path):
    """The summary of ``task=categorical estimator=reinmax`` prints exact_mean (its bias is
    exact_mean - exact_grad) from the numpy enumeration."""
    out = run(
        "task=categorical",
        "estimator=reinmax",
        "task.n_estimates=2000",
        "task.k=[1.0]",
        f"hydra.run.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(line.split() for line in lines if "exact_grad" in line)
    row = next(line.split() for line in lines if line.split()[:1] == ["reinmax"])
    mean, var = exact.reinmax_moments({"temperature": 1.0}, "abs_diff", 1.0, [0.0] * 3, 4, 1)
    assert float(row[header.index("exact_mean")]) == pytest.approx(mean, rel=1e-3)
    assert float(row[header.index("exact_var")]) == pytest.approx(var, rel=1e-3)
    grad = exact.exact_gradient("abs_diff", 1.0, [0.0] * 3)
    assert float(row[header.index("exact_grad")]) == pytest.approx(grad, rel=1e-3)


def test_labels_write_the_temperature_as_the_relaxations_do():
    assert estimators.REGISTRY["reinmax"].known_labels() == ["ReinMax (τ=1)"]
    assert estimators.REGISTRY["gst"].label({"temperature": "0.5", "gap": "2.0"}) == (
        "GST (τ=0.5, gap=2)"
    )
