"""Baselines as pieces: each keeps the score-function estimate unbiased (tolerances from the
estimates' variance), a moving average's state round-trips, and bad names or decays are named."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from scipy import stats
from torch.distributions import Normal

from benchmarks.experiment import compose_config
from estimators.baselines import Baseline, LeaveOneOut, MovingAverage, Supplied, from_name
from estimators.errors import ConfigError
from estimators.reinforce_baseline import ReinforceBaseline

B = 20_000  # independent estimates: one per batch element of a single call
MU = 0.7
Z_CRIT = stats.norm.isf(1e-4 / 2 / 4)  # two-sided 1e-4 over this module's four comparisons


class WithOwnDraw(Baseline):
    """A broken baseline: the mean over all draws, each draw's own included (biased)."""

    def __call__(self, fz: torch.Tensor) -> torch.Tensor:
        return fz.detach().mean(0, keepdim=True)


def estimates(baseline: Baseline, calls: int = 1) -> torch.Tensor:
    """B independent estimates of d/dmu E[z^2] = 2 mu, z ~ N(mu, 1), with two draws each; the
    last of ``calls`` calls (earlier ones give a moving average its past)."""
    est = ReinforceBaseline(baseline)
    for _ in range(calls):
        mu = torch.full((B,), MU, requires_grad=True)
        out = est(Normal(mu, 1.0), lambda z: z**2, 2)
    (grad,) = torch.autograd.grad(out.mean(0).sum(), mu)
    return grad


@pytest.mark.parametrize(
    "make, calls, unbiased",
    [
        (LeaveOneOut, 1, True),
        (lambda: MovingAverage(0.5), 3, True),
        (Supplied, 1, True),
        (WithOwnDraw, 1, False),
    ],
    ids=["loo", "ema", "supplied", "own draw (biased)"],
)
def test_each_baseline_keeps_the_estimate_unbiased(make, calls, unbiased):
    torch.manual_seed(0)
    baseline = make()
    if isinstance(baseline, Supplied):
        x = torch.linspace(-1.0, 1.0, B)  # a value per example, as NVIL's b(x)
        with baseline.given(1.5 + x):
            grad = estimates(baseline, calls)
    else:
        grad = estimates(baseline, calls)
    z = (grad.mean() - 2 * MU) / (grad.std() / B**0.5)
    assert (abs(z.item()) < Z_CRIT) == unbiased


def test_a_moving_average_uses_earlier_calls_only_and_its_state_round_trips():
    average = MovingAverage(0.5)
    assert average(torch.full((2, 3), 4.0)) == 0.0  # no past yet
    assert average(torch.full((2, 3), 2.0)).item() == 4.0
    fresh = MovingAverage(0.5)
    fresh.load_state_dict(average.state_dict())
    assert fresh(torch.zeros(2, 3)).item() == average(torch.zeros(2, 3)).item() == 3.0
    assert fresh.options() == {"baseline": "ema", "decay": 0.5}


def test_stateless_baselines_keep_nothing_and_name_themselves():
    assert LeaveOneOut().state_dict() == Supplied().state_dict() == {}
    assert LeaveOneOut().options() == {"baseline": "loo"}
    assert Supplied().options() == {"baseline": "hook"}
    assert LeaveOneOut().min_samples == 2 and MovingAverage().min_samples == 1


def test_leave_one_out_is_the_mean_of_the_other_draws():
    fz = torch.tensor([[1.0], [2.0], [6.0]])
    torch.testing.assert_close(LeaveOneOut()(fz), torch.tensor([[4.0], [3.5], [1.5]]))


def test_a_supplied_baseline_is_used_only_inside_given():
    supplied = Supplied()
    with pytest.raises(RuntimeError, match="given"):
        supplied(torch.zeros(2))
    value = torch.ones(3, requires_grad=True)
    with supplied.given(value * 2):
        assert not supplied(torch.zeros(2, 3)).requires_grad  # a baseline carries no gradient
    assert supplied.value is None


@pytest.mark.parametrize(
    "name, decay, message",
    [
        ("mean", 0.9, "baseline='mean' is unknown; known baselines: loo, ema, hook"),
        ("ema", 1.0, r"decay=1.0: the moving-average decay must be in \[0, 1\)"),
        ("loo", -0.1, r"decay=-0.1: the moving-average decay must be in \[0, 1\)"),
    ],
)
def test_bad_names_and_decays_are_one_line_naming_the_key(name, decay, message):
    with pytest.raises(ConfigError, match=message):
        from_name(name, decay)


def test_a_task_passes_its_supplied_baseline_through_the_estimator_config():
    # How the VAE hands NVIL its learned baseline: Hydra's instantiate with a keyword option.
    cfg = compose_config(["estimator=nvil"])
    assert instantiate(cfg.estimator).options() == {"baseline": "hook"}
    supplied = Supplied()
    est = instantiate(cfg.estimator, baseline=supplied)
    assert est.baseline is supplied and est.options() == {"baseline": "hook"}
