"""Double control variates: the estimate's exact mean and variance by enumeration (numpy, apart
from the estimator's code), unbiasedness at any alpha and after training, training that lowers
the variance below RLOO's, eval mode and state, and bad input."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from cli import run
from torch.distributions import Bernoulli, Independent, Normal
from toy_tables import metrics

import estimators
from benchmarks import measure, testing
from benchmarks.tasks.toy.exact.bernoulli import exact_moments
from estimators.errors import ConfigError
from tests.test_bernoulli_task import Z_CRIT

THETA = np.array([0.3, -0.8])
A = np.array([1.5, -2.0])


def coupled(b):
    """f(b) = (A . b - 0.5)^2: the bits interact. Works on numpy arrays and torch tensors."""
    a = torch.as_tensor(A, dtype=b.dtype) if isinstance(b, torch.Tensor) else A
    return ((a * b).sum(-1) - 0.5) ** 2


def coupled_grad(b: np.ndarray) -> np.ndarray:
    return 2 * ((A * b).sum(-1) - 0.5) * A


def enumerated_moments(alpha: float, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact gradient of E[coupled] and the exact mean and variance of one double-CV estimate
    from k draws, each per logit, by summing over all 2^(D k) draws, written out term by term."""
    p = 1 / (1 + np.exp(-THETA))
    points = [np.array(bits, dtype=float) for bits in itertools.product([0, 1], repeat=len(p))]
    prob = {tuple(b): np.prod(np.where(b > 0, p, 1 - p)) for b in points}
    exact = sum(prob[tuple(b)] * coupled(b) * (b - p) for b in points)
    first = second = 0.0
    for draws in itertools.product(points, repeat=k):
        weight = np.prod([prob[tuple(b)] for b in draws])
        f = [coupled(b) for b in draws]
        g = [coupled_grad(b) for b in draws]
        c = [sum(g[j] for j in range(k) if j != i) / (k - 1) @ (draws[i] - p) for i in range(k)]
        estimate = -alpha * sum(g) / k * p * (1 - p)
        for i in range(k):
            others = sum(f[j] + alpha * c[j] for j in range(k) if j != i) / (k - 1)
            estimate = estimate + (f[i] + alpha * c[i] - others) * (draws[i] - p) / k
        first, second = first + weight * estimate, second + weight * estimate**2
    return exact, first, second - first**2


@pytest.mark.parametrize("alpha", [0.0, 0.7, -2.5])
@pytest.mark.parametrize("k", [2, 3])
def test_the_formula_is_unbiased_at_any_alpha(alpha, k):
    exact, mean, _ = enumerated_moments(alpha, k)
    np.testing.assert_allclose(mean, exact, rtol=1e-12, atol=1e-12)


def test_without_its_correction_term_the_formula_would_be_biased():
    """The enumeration can tell: alpha's terms alone have mean alpha E[g] p (1 - p) != 0."""
    exact, mean, _ = enumerated_moments(1.0, 2)
    p = 1 / (1 + np.exp(-THETA))
    points = [np.array(b, dtype=float) for b in itertools.product([0, 1], repeat=2)]
    mean_g = sum(np.prod(np.where(b > 0, p, 1 - p)) * coupled_grad(b) for b in points)
    assert np.abs(mean + mean_g * p * (1 - p) - exact).min() > 0.05


def frozen(alpha: float) -> estimators.Estimator:
    return estimators.build("double_cv", alpha=alpha).eval()


def estimates(est, dist_of, f, k: int, n: int = 200_000) -> torch.Tensor:
    """``n`` independent estimates [n, *shape] of the gradient with respect to the logits."""
    theta = torch.as_tensor(THETA)
    return measure.gradient_estimates(
        est, lambda c: (dist_of(c["theta"]), f), {"theta": theta}, k, n
    )["theta"]


def assert_moments(g: torch.Tensor, mean: np.ndarray, var: np.ndarray) -> None:
    """Mean and variance of ``g`` within Z_CRIT standard errors of the exact ones."""
    n = g.shape[0]
    centred = g - g.mean(0)
    m2, m4 = centred.pow(2).mean(0), centred.pow(4).mean(0)
    z_mean = (g.mean(0) - torch.as_tensor(mean)) / (m2 / n).sqrt()
    z_var = (g.var(0) - torch.as_tensor(var)) / ((m4 - m2**2) / n).sqrt()
    assert (z_mean.abs() < Z_CRIT).all() and (z_var.abs() < Z_CRIT).all(), (z_mean, z_var)


@pytest.mark.parametrize("alpha, k", [(0.7, 2), (-2.5, 3)])
def test_the_estimator_has_the_enumerated_mean_and_variance(alpha, k):
    torch.manual_seed(0)
    _, mean, var = enumerated_moments(alpha, k)
    g = estimates(frozen(alpha), testing.bernoulli, coupled, k)
    assert_moments(g, mean, var)


def test_plain_bernoulli_with_a_batch_shape_is_unbiased():
    """No Independent wrapper: each of the [2, 2] logits is its own variable, f elementwise."""
    torch.manual_seed(0)
    theta = torch.tensor([[0.3, -0.8], [1.2, 0.0]], dtype=torch.float64)
    w = torch.tensor([[1.5, -2.0], [0.7, 3.0]], dtype=torch.float64)

    def f(b):
        return w * (b - 0.3) ** 2

    p = torch.sigmoid(theta)
    exact = p * (1 - p) * (f(torch.ones_like(p)) - f(torch.zeros_like(p)))

    def model(c):
        return Bernoulli(logits=c["theta"]), f

    est = frozen(1.3)
    (g,) = measure.gradient_estimates(est, model, {"theta": theta}, 3, 100_000).values()
    testing.assert_unbiased(g.flatten(1), exact.flatten(), "plain Bernoulli")


def test_unbiased_after_training_with_alpha_frozen():
    """Trained on the 3-bit coupled toy of the generic checks, then frozen: the mean is the
    enumerated gradient, and the variance lies below RLOO's from the same draws' count."""
    start, make, costs = testing.TOYS["Bernoulli"]
    f, (exact,) = costs["coupled"]
    torch.manual_seed(0)
    est = estimators.build("double_cv", lr=0.05)
    measure.train_control_variate(est, lambda c: (make(c["theta"]), f), start, 2, 256, 100)
    assert not est.training and est.learned()["alpha"] != 0.0
    (g,) = testing.gradient_estimates(est, "Bernoulli", f, 2)
    testing.assert_unbiased(g, exact, "double_cv trained then frozen")
    torch.manual_seed(0)
    (rloo,) = testing.gradient_estimates(estimators.build("double_cv").eval(), "Bernoulli", f, 2)
    assert g.var(0).sum() < 0.9 * rloo.var(0).sum()


@pytest.mark.slow  # 200 training steps and 10^5 estimates at two k: a few seconds
def test_training_on_the_toy_lowers_the_variance_far_below_rloo():
    """The Bernoulli toy at theta = 2, cost (b - k)^2, K = 2: RLOO's exact variance against the
    trained double CV's measured one (alpha* from the enumeration leaves 1.2% and 1.5%)."""
    table = metrics(
        "bernoulli",
        "double_cv",
        {},
        theta=2.0,
        k=[0.45, 0.499],
        num_samples=2,
        cv_steps=200,
        n_estimates=100_000,
    )
    assert (table.z_score.abs() < Z_CRIT).all(), table[["k", "grad_mean", "exact_grad"]]
    for row in table.itertuples():
        _, rloo = exact_moments(
            "reinforce_baseline", {"baseline": "loo"}, "square", row.k, 2.0, 1, 2
        )
        assert row.learned_alpha < 0 and row.grad_var_hi < 0.05 * rloo, (row, rloo)


def test_eval_freezes_alpha_and_the_state_round_trips():
    start, make, costs = testing.TOYS["Bernoulli"]
    f = costs["coupled"][0]

    def model(c):
        return make(c["theta"]), f

    est = estimators.build("double_cv", lr=0.05)
    torch.manual_seed(0)
    measure.train_control_variate(est, model, start, 2, 64, 10)
    alpha = est.learned()["alpha"]
    measure.train_control_variate(est.eval(), model, start, 2, 64, 3)  # eval: no update
    assert est.learned()["alpha"] == alpha != 0.0
    restored = estimators.build("double_cv", lr=0.05)
    restored.load_state_dict(copy.deepcopy(est.state_dict()))  # before its first call: kept
    outs = []
    for e in (est, restored.eval()):
        torch.manual_seed(5)
        outs.append(testing.gradient_estimates(e, "Bernoulli", f, 2, 64)[0])
    torch.testing.assert_close(outs[0], outs[1])
    assert restored.learned()["alpha"] == alpha and restored.state_dict()["optimizer"]["state"]


def test_bad_input_is_refused_in_one_line():
    est = estimators.build("double_cv")
    bits = Independent(Bernoulli(logits=torch.zeros(2, 3, requires_grad=True)), 1)
    with pytest.raises(ConfigError, match=r"needs an integer num_samples >= 2"):
        est(bits, lambda b: b.sum(-1), 1)
    with pytest.raises(ConfigError, match="'double_cv' does not apply to Independent\\(Normal\\)"):
        est(Independent(Normal(torch.zeros(3), torch.ones(3)), 1), lambda z: z.sum(-1), 2)
    with pytest.raises(ConfigError, match="needs the derivative of f at the binary draws"):
        est(bits, lambda b: (b > 0.5).to(b.dtype).sum(-1), 2)
    with pytest.raises(ConfigError, match="alpha=nan: must be a finite number"):
        estimators.build("double_cv", alpha=float("nan"))
    with pytest.raises(ConfigError, match="lr=0: must be a number > 0"):
        estimators.build("double_cv", lr=0)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["task.num_samples=1"],
            "task.num_samples=1: estimator 'double_cv' (alpha=0.0, lr=0.001) ",
        ),
        (["task.costs=[stepcost:step]"], "cost 'stepcost:step' has no derivative (autograd finds"),
        (["task=gaussian"], "estimator 'double_cv' does not apply to Independent(Normal)"),
        (["estimator.lr=-1"], "estimator.lr=-1"),
    ],
)
def test_bad_input_from_the_command_line_is_one_line_exit_2_and_nothing_on_disk(
    tmp_path, args, message
):
    (tmp_path / "stepcost.py").write_text("def step(x, k):\n    return (x > k).to(x.dtype)\n")
    run_dir = tmp_path / "day" / "run"
    out = run(
        "task=bernoulli",
        "estimator=double_cv",
        *args,
        f"hydra.run.dir={run_dir}",
        pythonpath=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not run_dir.parent.exists()


def test_the_briefs_command_runs_and_reports_alpha(tmp_path):
    out = run(
        "task=bernoulli",
        "estimator=double_cv",
        "task.num_samples=2",
        "task.cv_steps=200",
        "task.n_estimates=2000",
        f"hydra.run.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    assert "learned_alpha" in out.stdout and "double_cv" in out.stdout
