"""Any objective as a task (``task=custom``, ``benchmarks.api.compare``): per-tensor statistics
against direct computation and the toys' exact answers, bias detected against an exact gradient
and against the estimated reference, the unbatched path, and bad objectives in one line."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from cli import run
from omegaconf import OmegaConf
from torch.distributions import Independent, Normal

import estimators
from benchmarks import api
from benchmarks.config import CONF_DIR
from benchmarks.moments import CoordinateMoments, Moments, gradient_statistics, tensor_statistics
from benchmarks.tasks.base import build
from benchmarks.tasks.custom import CustomTask
from benchmarks.tasks.custom.objective import Objective
from benchmarks.tasks.toy.exact.gaussian.point import Point
from benchmarks.tasks.toy.exact.gaussian.variances import pathwise_variance, score_variance
from estimators.base import Estimator
from estimators.errors import ConfigError
from examples import bandit, logistic_regression

CPU = torch.device("cpu")


def gaussian(p: dict[str, torch.Tensor]) -> Independent:
    return Independent(Normal(p["mu"], p["sigma"]), 1)


def square(x: torch.Tensor) -> torch.Tensor:
    return ((x - 1.0) ** 2).sum(-1)


TOY = {"mu": torch.tensor([1.0]), "sigma": torch.tensor([1.0])}
TOY_EXACT = {"mu": torch.tensor([0.0]), "sigma": torch.tensor([2.0])}


def test_coordinate_moments_merge_to_those_of_the_whole():
    torch.manual_seed(0)
    g = torch.distributions.Gamma(2.0, 1.0).sample((3000, 5)).double() * torch.arange(1, 6)
    parts = (slice(0, 2), slice(2, 5))
    centre = g[:100].mean(0)
    merged = None
    for chunk in torch.split(g, [7, 993, 1000, 1000]):
        m = CoordinateMoments.of(chunk.T, centre, parts)
        merged = m if merged is None else merged.merge(m)
    for i, at in enumerate([*parts, slice(None)]):
        assert torch.allclose(merged.mean(i), g[:, at].mean(0), rtol=1e-12)
        assert torch.allclose(merged.var(i), g[:, at].var(0), rtol=1e-10)
        # The summed variance's standard error is that of the mean of ||g - E g||^2, or a
        # little above it where a bound stands in for a term second order in the centre's
        # miss (here from only 100 rows).
        d2 = ((g[:, at] - g[:, at].mean(0)) ** 2).sum(1)
        direct = (d2.var() / len(g)).sqrt().item()
        assert direct <= merged.total_var_se(i) <= 1.01 * direct


def test_one_coordinate_gets_the_toys_statistics():
    torch.manual_seed(1)
    g = torch.randn(1, 5000, dtype=torch.float64) * 2 + 0.1
    m = CoordinateMoments.of(g, g[:, :500].mean(1), (slice(0, 1),))
    row = tensor_statistics(m, 0, torch.tensor([0.0]), None, 1e-3)
    toy = gradient_statistics(Moments.of(g), 0.0, 1e-3)
    for key in ("grad_mean", "grad_var", "bias", "z_score", "mse", "snr", "work_normalized_var"):
        assert row[key] == pytest.approx(toy[key], rel=1e-9), key
    assert row["grad_var_hi"] - row["grad_var"] == pytest.approx(
        toy["grad_var_hi"] - toy["grad_var"], rel=1e-3
    )
    assert row["bias_p"] == pytest.approx(math.erfc(abs(toy["z_score"]) / math.sqrt(2)), rel=1e-9)
    assert tensor_statistics(m, 1, None, None, 1e-3)["grad_var"] == row["grad_var"]  # all = one


def test_the_gaussian_toy_as_an_objective_measures_its_exact_variances():
    # Summed over mu and sigma, the exact variance is known; the interval must hold it (4 se).
    table = api.compare(["reparam", "reinforce"], TOY, gaussian, square, 100_000, exact=TOY_EXACT)
    exact = {
        "reparam": {p: pathwise_variance({}, Point("square", 1.0, 1.0, 1.0, p)) for p in TOY},
        "reinforce": {p: score_variance({}, Point("square", 1.0, 1.0, 1.0, p)) for p in TOY},
    }
    for row in table.itertuples():
        want = sum(exact[row.estimator].values()) if row.param == "total" else None
        want = want if want is not None else exact[row.estimator][row.param]
        se = (row.grad_var_hi - row.grad_var_lo) / (2 * 1.959963984540054)
        assert abs(row.grad_var - want) < 4 * se, (row.estimator, row.param)
        assert row.bias_p > 1e-3
    assert set(table["param"]) == {"mu", "sigma", "total"}


def test_it_measures_the_same_estimates_as_the_toy():
    cfg = OmegaConf.merge(
        OmegaConf.load(CONF_DIR / "task/gaussian.yaml"), {"n_estimates": 20_000, "chunk_size": 5000}
    )
    toy = build(cfg)
    torch.manual_seed(5)
    moments, _ = toy.measure(
        estimators.build("reparam"), toy.cost("square", 1.0), toy.initial(CPU), 1, CPU
    )
    task = CustomTask(Objective(TOY, gaussian, square), **task_options(chunk_size=5000))
    task.validate(estimators.build("reparam"), context())
    torch.manual_seed(5)
    mine, _ = task.measure(estimators.build("reparam"), 1, 20_000, CPU, lambda b: None)
    for i, name in enumerate(TOY):
        # The same estimates, summed in float32 in another order: equal to 1e-6 of their sd.
        sd = moments[name].var ** 0.5
        assert mine.mean(i).item() == pytest.approx(moments[name].mean, abs=1e-6 * sd)
        assert mine.var(i).item() == pytest.approx(moments[name].var, rel=1e-5)


def task_options(**changes) -> dict:
    options = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task/custom.yaml"))
    options.pop("_target_")
    return {**options, **changes}


def context():
    from benchmarks.tasks.base import Context

    return Context(0, CPU)


def test_a_wrong_exact_gradient_is_detected_and_the_right_one_passes():
    params, policy, reward, exact = bandit.make()
    wrong = {**exact, "bias": exact["bias"] + torch.tensor([0.004, 0, 0, 0])}  # 10 se
    args = (["reinforce_baseline"], params, policy, reward, 20_000, 4)
    right = api.compare(*args, exact=exact).set_index("param")
    off = api.compare(*args, exact=wrong).set_index("param")
    assert right.loc["total", "bias_p"] > 1e-3 and right.loc["bias", "bias_p"] > 1e-3
    assert off.loc["bias", "bias_p"] < 1e-6 and off.loc["total", "bias_p"] < 1e-6
    assert off.loc["weights", "bias_p"] == right.loc["weights", "bias_p"]


class Inflated(Estimator):
    """reparam with its gradient 5% too large: a biased estimator the reference must catch."""

    name = "inflated"

    def estimate(self, dist, f, num_samples):
        fz = f(dist.rsample((num_samples,)))
        return fz + 0.05 * (fz - fz.detach())


def test_bias_against_the_estimated_reference():
    params, posterior, log_joint = logistic_regression.make()
    table = api.compare(
        ["reinforce_baseline", Inflated()],
        params,
        posterior,
        log_joint,
        2_000,
        num_samples=4,
        reference_estimates=10_000,
    ).set_index(["estimator", "param"])
    assert table.loc[("reinforce_baseline", "total"), "reference"] == "reparam x 10000"
    assert table.loc[("reinforce_baseline", "total"), "bias_p"] > 1e-3
    assert table.loc[("inflated", "total"), "bias_p"] < 1e-6
    assert table["reference_se"].gt(0).all()


def test_an_objective_that_does_not_broadcast_is_measured_one_pass_each(caplog):
    def flat(p):  # reshape(1) refuses a leading batch axis
        return Independent(Normal(p["mu"].reshape(1), p["sigma"].reshape(1)), 1)

    table = api.compare(["reparam"], TOY, flat, square, 2_000, exact=TOY_EXACT)
    assert "one backward pass per estimate" in caplog.text
    total = table.set_index("param").loc["total"]
    se = (total.grad_var_hi - total.grad_var_lo) / 3.92
    exact = sum(pathwise_variance({}, Point("square", 1.0, 1.0, 1.0, p)) for p in TOY)  # 4 + 8
    assert abs(total.grad_var - exact) < 4 * se
    assert total.bias_p > 1e-3


@pytest.mark.parametrize(
    ("objective", "match"),
    [
        (("params",), r"must give \(params, dist, f\)"),
        (({}, gaussian, square), "non-empty dict"),
        (({"mu": torch.tensor([1])}, gaussian, square), r"params\['mu'\] must be a floating"),
        ((TOY, lambda p: 3.0, square), "must return a torch.distributions.Distribution"),
        ((TOY, gaussian, lambda x: x), r"f\(z\) must return \[num_samples, \*batch_shape\]"),
        ((TOY, gaussian, square, {"mu": torch.zeros(2)}), "exact must be a dict with the keys"),
        ((TOY, gaussian, square, {**TOY, "mu": torch.zeros(2)}), r"exact\['mu'\] must be"),
    ],
)
def test_a_bad_objective_is_named_in_one_line(objective, match):
    with pytest.raises(ConfigError, match=match):
        task = CustomTask(objective, **task_options())
        task.validate(estimators.build("reinforce"), context())


def test_reparam_refuses_an_f_without_a_gradient():
    def step(x):
        return (x > 1.0).float().sum(-1)

    with pytest.raises(ConfigError, match="estimator 'reparam' needs a differentiable f"):
        api.compare(["reparam"], TOY, gaussian, step, exact=TOY_EXACT)
    table = api.compare(["reinforce"], TOY, gaussian, step, 2000, reference_estimates=20_000)
    assert table["reference"].iloc[0] == "reinforce_baseline (baseline=loo) x 20000"


def test_an_estimator_that_does_not_apply_is_refused():
    params, policy, reward, exact = bandit.make()
    with pytest.raises(ConfigError, match="does not apply to Independent\\(Categorical\\)"):
        api.compare(["reparam"], params, policy, reward, exact=exact)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "error: task.target=None: name the function that makes your objective"),
        (["task.target=nosuch.module:make"], "cannot import 'nosuch.module'"),
        (["task.target=examples.bandit:nothing"], "has no function 'nothing'"),
        (["task.target=examples.bandit:make", "task.reference=nosuch"], "task.reference='nosuch'"),
    ],
)
def test_bad_command_lines_get_one_line(args, line, tmp_path):
    out = run("task=custom", *args, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and line in out.stderr


def test_the_command_line_and_the_api_give_the_same_table(tmp_path):
    args = ["task.n_estimates=3000", "task.num_samples=4", "estimator=reinforce_baseline"]
    out = run("task=custom", "task.target=examples.bandit:make", *args, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    cli = pd.read_csv(tmp_path / "metrics.csv")
    params, policy, reward, exact = bandit.make()
    mine = api.compare(["reinforce_baseline"], params, policy, reward, 3000, 4, exact)
    timing = ["time_per_estimate_s", "work_normalized_var", "target"]
    pd.testing.assert_frame_equal(
        cli.drop(columns=timing), mine.drop(columns=timing), check_dtype=False
    )
