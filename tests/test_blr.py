"""The Bayesian logistic regression task: a short run per estimator, the ELBO rising, bad keys in
one line, the gradient variance against a direct computation, and a sweep's figure."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli import run
from torch.nn.functional import logsigmoid

import estimators
from benchmarks.experiment import compose_config, run_config
from benchmarks.results import RunWriter
from benchmarks.tasks.blr import task as blr
from estimators.base import Estimator
from estimators.errors import ConfigError

SHORT = [
    "task=blr",
    "task.steps=20",
    "task.eval_every=10",
    "task.eval_samples=100",
    "task.grad_var_estimates=50",
    "threads=1",  # 50 x 32 logits: a second thread only waits (3x slower beside other jobs)
]
ESTIMATORS = [
    "reparam",
    "reinforce",
    "reinforce_baseline",
    "reinforce_baseline estimator.baseline=ema",
]


@pytest.fixture(autouse=True)
def torch_threads():
    """``threads=1`` sets torch's threads for the process: put them back for other tests."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train(run_dir, *overrides: str):
    _, result = run_config(compose_config([*SHORT, *overrides]), RunWriter(run_dir))
    return result


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_short_run_per_estimator(tmp_path, estimator):
    name, *extra = estimator.split()
    result = train(tmp_path, f"estimator={name}", *extra)
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    table = result.tables["train"]
    assert (tmp_path / "train.csv").exists()
    assert table.step.tolist() == [0, 10, 20]
    for column in (
        *blr.BLRTask.summary_columns["train"],
        "lr",
        "loc_grad_var_mean",
        "loc_grad_var_max",
        "log_scale_grad_var_mean",
        "log_scale_grad_var_max",
        "grad_var_samples",
    ):
        assert column in table, column
    assert (table.estimator == name).all() and table.time_s.is_monotonic_increasing
    assert table.accuracy.between(0, 1).all() and (table.grad_var_mean > 0).all()
    assert (table.grad_var_max >= table.grad_var_mean).all()
    assert table.grad_var_samples.iloc[0] == (2 if estimator == "reinforce_baseline" else 1)
    # At loc = log_scale = 0 the ELBO is near -1300 nats; 20 steps raise it whatever the noise.
    assert table.elbo.iloc[-1] > table.elbo.iloc[0] + 100


def test_the_elbo_improves_with_reparam_and_the_lr_decays_to_zero(tmp_path):
    table = train(tmp_path, "task.steps=200", "task.eval_every=50").tables["train"]
    assert table.step.tolist() == [0, 50, 100, 150, 200]
    # From about -1300 nats at initialization to within a few nats of where mc_gradients' runs
    # settle (about -75) in a few hundred steps; 100 draws estimate each ELBO within a nat or so.
    assert table.elbo.iloc[0] < -1000 and (table.elbo.iloc[2:] > -85).all()
    assert table.accuracy.iloc[-1] > 0.95
    assert table.lr.iloc[0] == pytest.approx(1e-3) and table.lr.iloc[-1] == pytest.approx(0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.steps=0", "task.steps=0: must be a positive integer"),
        ("task.batch_size=1.5", "task.batch_size=1.5: must be a positive integer"),
        ("task.lr=-1", "task.lr=-1: must be a number > 0"),
        ("task.grad_var_estimates=1", "task.grad_var_estimates=1: must be an integer >= 2"),
        ("task.data=iris", "task.data='iris': accepted are breast_cancer"),
        ("task.num_samples=0", "task.num_samples=0: estimator 'reparam'"),
    ],
)
def test_bad_keys_are_named(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        train(tmp_path, override)


def test_a_bad_key_is_one_line_on_the_command_line():
    out = run("task=blr", "task.eval_every=0")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: task.eval_every=0: must be a positive integer"
    ], out.stderr


def test_leave_one_out_needs_two_draws_per_variance_estimate(tmp_path):
    with pytest.raises(ConfigError, match="task.grad_var_samples=1: estimator"):
        train(tmp_path, "estimator=reinforce_baseline", "task.grad_var_samples=1")


class Diverging(Estimator):
    """reparam's values from the fifth call on times NaN: a loss that is not finite."""

    name = "diverging"

    def __init__(self) -> None:
        self.calls = 0

    def estimate(self, dist, f, num_samples):
        self.calls += 1
        values = f(dist.rsample((num_samples,)))
        return values * math.nan if self.calls >= 5 else values


def test_a_step_that_is_not_finite_stops_the_run_as_diverged(tmp_path):
    estimator = Diverging()  # one object, whose fifth call is step 5 (the variance takes copies)
    cfg = compose_config([*SHORT, "task.eval_every=2"])
    _, result = run_config(cfg, RunWriter(tmp_path), make_estimator=lambda: estimator)
    assert result.status == "diverged"
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "diverged"
    table = result.tables["train"]
    assert table.step.tolist() == [0, 2, 4] and table.elbo.notna().all()
    assert "diverged at step 5" in result.details["message"]


def recorded(f, draws: list):
    """f that keeps the draws it is given."""

    def wrapped(w):
        draws.append(w.detach())
        return f(w)

    return wrapped


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_gradient_variance_matches_a_direct_computation(name):
    # Tiny case: 5 examples in 3 dimensions; each of m one-draw estimates by hand from its draw.
    torch.manual_seed(0)
    x, y = torch.randn(5, 3), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    loc, log_scale = torch.randn(3), 0.3 * torch.randn(3)
    n, m = 40, 7

    def f(w):
        return blr.log_likelihood(w, x, y, n)

    draws = []
    grads = blr.gradient_matrix(
        estimators.build(name), loc, log_scale, recorded(f, draws), m, 1, chunk=3
    )
    w = torch.cat([d[0] for d in draws])  # [m, 3]: the chunks' draws in order
    scale = log_scale.exp()
    eps = (w - loc) / scale
    s = 2 * y - 1
    f_w = n * logsigmoid(s * (w @ x.T)).mean(-1)  # [m]
    grad_f = n * (s * torch.sigmoid(-s * (w @ x.T))) @ x / len(x)  # [m, 3]
    if name == "reparam":
        expected = torch.cat([grad_f, grad_f * scale * eps], -1)
    else:  # f(w) times the score of N(loc, scale^2) in loc and log_scale
        expected = f_w[:, None] * torch.cat([eps / scale, eps**2 - 1], -1)
    torch.testing.assert_close(grads, expected, rtol=1e-4, atol=1e-4)
    columns = blr.variance_columns(grads)
    var = expected.var(0)  # unbiased, over the m estimates
    assert columns["grad_var_mean"] == pytest.approx(var.mean().item(), rel=1e-4)
    assert columns["grad_var_max"] == pytest.approx(var.max().item(), rel=1e-4)
    assert columns["loc_grad_var_mean"] == pytest.approx(var[:3].mean().item(), rel=1e-4)
    assert columns["log_scale_grad_var_max"] == pytest.approx(var[3:].max().item(), rel=1e-4)


def test_the_kl_is_torch_s():
    loc, log_scale = torch.randn(4), torch.randn(4)
    prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(4), 1.0), 1)
    expected = torch.distributions.kl_divergence(blr.posterior(loc, log_scale), prior)
    torch.testing.assert_close(blr.kl_to_prior(loc, log_scale), expected)


@pytest.mark.slow
def test_a_sweep_writes_the_figure_and_summary(tmp_path):
    out = run(
        "-m",
        "task=blr",
        "estimator=reparam,reinforce",
        "task.steps=30",
        "task.grad_var_estimates=50",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "plots/blr.png").exists() and (tmp_path / "plots/blr.pdf").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "## Bayesian logistic regression" in summary
    assert "Reparameterization" in summary and "REINFORCE" in summary
