"""The VAE trained on a multi-sample objective (``task.objective=elbo|iwae``): short runs per
estimator and latent family, the plain ELBO path unchanged, the log joint, and bad input."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest
import torch
from cli import run
from hydra.utils import instantiate
from scipy import stats
from test_vae import config, linear_gaussian_model, train, whole_and_resumed

import estimators
from benchmarks.figures import plt
from benchmarks.tasks.vae import data, figures, models, probe
from estimators.errors import ConfigError
from estimators.objectives import Objective


def printed_eval(table: pd.DataFrame) -> pd.DataFrame:
    """The ``eval`` rows and columns the runner prints for a VAE run."""
    return instantiate(config().task).summary_rows("eval", table)


@pytest.mark.parametrize(
    "latent, name",
    [
        ("gaussian", "reparam"),
        ("gaussian", "stl"),
        ("gaussian", "dreg"),
        ("gaussian", "rws"),
        ("gaussian", "reinforce_baseline"),
        ("bernoulli", "vimco"),
        ("bernoulli", "rws"),
        ("bernoulli", "reinforce"),
    ],
)
def test_a_short_iwae_run_per_estimator_writes_finite_tables(tmp_path, latent, name):
    tables = train(tmp_path, "task.objective=iwae", f"task.latent={latent}", f"estimator={name}")
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    s = 2 if name == "reinforce_baseline" else 1  # the leave-one-out baseline needs 2 estimates
    for table in ("train", "eval", "grad_var"):
        written = pd.read_csv(tmp_path / f"{table}.csv")
        assert set(written.objective_name) == {"iwae"} and set(written.K) == {5}, table
        assert set(written.num_samples) == {s} and set(written.evaluations) == {5 * s}, table
    train_table, evals = tables["train"], tables["eval"]
    assert train_table.step.tolist() == list(range(1, 17))
    assert train_table.train_elbo.map(math.isfinite).all()
    assert train_table.train_elbo.iloc[-3:].mean() > train_table.train_elbo.iloc[:3].mean()
    # the test IWAE-5 bound each epoch, the IWAE-50 bound at the end; both above the ELBO
    # up to the noise of their estimates
    assert evals.test_objective.map(math.isfinite).all()
    assert (evals.test_objective >= evals.test_elbo - 1.0).all()
    assert evals.test_iwae.iloc[-1] >= evals.test_objective.iloc[-1] - 1.0
    assert {"objective_name", "K", "test_objective"} <= set(printed_eval(evals))
    totals = tables["grad_var"].query("param == 'total'").total_var
    assert (totals > 0).all() and totals.map(math.isfinite).all()


def test_stl_trains_the_elbo_on_the_objective_path_with_k_draws(tmp_path):
    tables = train(tmp_path, "estimator=stl", "task.num_samples=3", "task.max_steps=4")
    evals = tables["eval"]
    assert set(evals.objective_name) == {"elbo"} and set(evals.K) == {3}
    assert (evals.test_objective == evals.test_elbo).all()


def test_the_plain_elbo_path_records_its_objective_and_is_the_default(tmp_path):
    default = train(tmp_path / "default", "task.max_steps=4")
    named = train(tmp_path / "named", "task.max_steps=4", "task.objective=elbo")
    for name in ("train", "eval", "grad_var"):
        a, b = (t[name].drop(columns="time_s", errors="ignore") for t in (default, named))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert set(a.objective_name) == {"elbo"} and set(a.K) == {1}
    assert (default["eval"].test_objective == default["eval"].test_elbo).all()
    shown = printed_eval(default["eval"])  # as before the objective path
    assert not {"objective_name", "K", "test_objective"} & set(shown.columns)


@pytest.mark.parametrize("latent", ["gaussian", "bernoulli", "categorical"])
def test_the_log_joint_less_log_q_is_the_log_weight_for_s_by_k_draws(latent):
    torch.manual_seed(0)
    categories = 3 if latent == "categorical" else None
    model = models.VAE(64, 16, 4, latent, "nonlinear", categories).double()
    x = data.load_digits().train[:6].double()
    h = model.encoder(x)
    q = model.posterior(h)
    z = q.sample((2, 3))  # [S, K, B, *event]
    log_joint = model.log_joint(x, z)
    assert log_joint.shape == (2, 3, 6)
    torch.testing.assert_close(log_joint - q.log_prob(z), model.log_weight(x, h, z))


def test_dreg_and_reparam_agree_in_mean_through_the_vae_probe():
    # Both are unbiased for the IWAE bound's encoder gradient: per coordinate, the means of M
    # probe estimates differ by less than a Bonferroni-corrected z (family-wise level 1e-3); the
    # hook DReG puts on its draws acts in the probe's backward pass.
    torch.manual_seed(7)
    model = models.VAE(64, 16, 4).double()
    x = data.load_digits().train[:8].double()
    m, objective = 2000, Objective("iwae", 4)
    grads = {
        name: probe.encoder_gradient_samples(model, estimators.build(name), x, 1, m, objective)
        for name in ("dreg", "reparam")
    }
    flat = {n: torch.cat([g.flatten(1) for g in gs.values()], 1) for n, gs in grads.items()}
    a, b = flat["dreg"], flat["reparam"]
    se = (a.var(0) / m + b.var(0) / m).sqrt()
    live = se > 0
    z = ((a.mean(0) - b.mean(0)) / se)[live]
    assert z.abs().max() < stats.norm.isf(1e-3 / (2 * z.numel()))
    assert (a.var(0)[live] < b.var(0)[live]).float().mean() > 0.5  # and DReG is less noisy


@pytest.mark.parametrize(
    "name, broken", [("stl", None), ("reparam", None), ("stl", "no prior in the log joint")]
)
def test_the_elbo_path_through_the_log_joint_is_unbiased_for_the_exact_gradient(
    monkeypatch, name, broken
):
    # On the linear-Gaussian VAE the ELBO's encoder gradient is known in closed form: every
    # coordinate of the mean of M estimates of the K = 3 ELBO (log joint less log q, no exact KL)
    # lies within a Bonferroni-corrected z of it (family-wise level 1e-3); a log joint without
    # the prior fails.
    model, x = linear_gaussian_model()
    if broken:
        monkeypatch.setattr(type(model), "log_joint", lambda self, x, z: self.log_likelihood(x, z))
    torch.manual_seed(8)
    m = 4000
    grads = probe.encoder_gradient_samples(
        model, estimators.build(name), x, 1, m, Objective("elbo", 3)
    )
    exact = probe.exact_gradient(model, x, "encoder")
    mean = torch.cat([g.mean(0).flatten() for g in grads.values()]).detach()
    se = torch.cat([g.std(0).flatten() for g in grads.values()]).detach() / m**0.5
    truth = torch.cat([t.flatten() for t in exact.values()])
    live = se > 0
    z = ((mean - truth) / se)[live]
    z_crit = stats.norm.isf(1e-3 / (2 * z.numel()))
    assert (z.abs().max() < z_crit) == (broken is None)


BERNOULLI_IWAE = "reinforce, reinforce_baseline, rws, vimco"
GAUSSIAN_IWAE = "dreg, reinforce, reinforce_baseline, reparam, rws, stl, vimco"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["estimator=dreg", "task.latent=bernoulli", "task.objective=iwae"],
            "estimator 'dreg' does not apply to Independent(Bernoulli); estimators of "
            f"task.objective=iwae that do: {BERNOULLI_IWAE}",
        ),
        (
            ["estimator=stl", "task.latent=bernoulli"],
            "estimator 'stl' does not apply to Independent(Bernoulli); estimators of "
            "task.objective=elbo that do: reinforce, reinforce_baseline",
        ),
        (
            ["estimator=stl", "task.latent=categorical", "task.objective=iwae"],
            "estimator 'stl' does not apply to Independent(OneHotCategorical); estimators of "
            f"task.objective=iwae that do: {BERNOULLI_IWAE}",
        ),
        (
            [
                "estimator=vimco",
                "task.latent=bernoulli",
                "task.objective=iwae",
                "task.num_samples=1",
            ],
            "task.num_samples=1: estimator 'vimco' needs K >= 2 importance samples",
        ),
        (
            ["estimator=arm", "task.latent=bernoulli", "task.objective=iwae"],
            "task.objective=iwae: estimator 'arm' does not estimate it; estimators that do with "
            f"task.latent=bernoulli: {BERNOULLI_IWAE}",
        ),
        (
            ["estimator=measure_valued", "task.objective=iwae"],
            "task.objective=iwae: estimator 'measure_valued' does not estimate it; estimators "
            f"that do with task.latent=gaussian: {GAUSSIAN_IWAE}",
        ),
        (
            ["estimator=relax", "task.latent=bernoulli", "task.objective=iwae"],
            "task.objective=iwae: estimator 'relax' does not estimate it; estimators that do "
            f"with task.latent=bernoulli: {BERNOULLI_IWAE}",
        ),
        (
            ["estimator=dreg"],
            "task.objective=elbo: estimator 'dreg' does not estimate it (it serves iwae); "
            "estimators that do "
            "with task.latent=gaussian: reinforce, reinforce_baseline, reparam, stl",
        ),
        (
            ["estimator=nvil", "task.objective=iwae"],
            "baseline=hook: multi-sample objectives take the baseline loo or ema",
        ),
        (
            ["estimator=reparam", "estimator.control_variate=delta", "task.objective=iwae"],
            "estimator.control_variate=delta: the control variate serves E[f] for a given f, "
            "not multi-sample objectives; leave it unset",
        ),
        (["task.objective=cubo"], "task.objective='cubo': accepted are elbo, iwae"),
        (
            ["task.objective=iwae", "task.num_samples=0"],
            "task.num_samples=0: K must be an integer >= 1",
        ),
    ],
)
def test_bad_objective_input_stops_in_one_line_before_any_work(
    tmp_path, monkeypatch, args, message
):
    monkeypatch.setattr(data, "load", lambda *a: pytest.fail("data loaded before the check"))
    with pytest.raises(ConfigError) as error:
        train(tmp_path, *args)
    assert str(error.value) == message
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # a subprocess: the in-process tests above check the same lines
def test_a_plain_only_estimator_on_iwae_gets_one_line_from_the_command_line(tmp_path):
    out = run(
        "task=vae",
        "task.latent=bernoulli",
        "task.objective=iwae",
        "estimator=disarm",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line == (
        "error: task.objective=iwae: estimator 'disarm' does not estimate it; estimators that do "
        f"with task.latent=bernoulli: {BERNOULLI_IWAE}"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_objective_speed_benchmark_times_each_estimator_against_its_reference(tmp_path):
    out = tmp_path / "speed.csv"
    args = ["--repeats=1", "--steps=1", "--ks", "2", "3", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_objectives")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert set(zip(table.latent, table.estimator, strict=True)) == {
        ("gaussian", "reparam"),
        ("gaussian", "stl"),
        ("gaussian", "dreg"),
        ("bernoulli", "reinforce_baseline"),
        ("bernoulli", "vimco"),
    }
    assert set(table.K) == {2, 3} and (table.ms_per_step > 0).all()
    references = table[table.estimator == table.reference]
    assert (references.ratio == 1.0).all() and (references.ratio_per_evaluation == 1.0).all()
    loo = table[table.estimator == "reinforce_baseline"]
    assert (loo.evaluations == 2 * loo.K).all() and table.machine.str.contains("cores").all()


@pytest.mark.slow  # about 6 s: five short runs and the figures
def test_iwae_runs_get_a_figure_per_k_and_summary_rows_apart_from_the_elbo_runs(tmp_path):
    from benchmarks import plot

    train(tmp_path / "elbo", "task.max_steps=4")
    for name, k in (("reparam", 2), ("reparam", 3), ("dreg", 2)):
        args = ("task.max_steps=4", "task.objective=iwae", f"task.num_samples={k}")
        train(tmp_path / f"{name}_{k}", f"estimator={name}", *args)
    written, statuses = plot.plot(tmp_path)
    assert set(statuses.status) == {"completed"}
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"vae_digits", "vae_digits_iwae", "vae_digits_iwae_snr"}
    # The SNR figure: a row of panels per network, one per training K, a line per estimator;
    # tables from before the decoder's rows (no network column) draw the encoder's row alone.
    summary = pd.read_csv(tmp_path / "summary.csv", low_memory=False)
    summary["label"] = plot.estimator_labels(summary)
    style = plot.style_for(summary["label"])
    fig = figures.snr_figure(summary, style, "digits", "gaussian")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Encoder, K = 2", "Encoder, K = 3", "Decoder, K = 2", "Decoder, K = 3"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 1, 2, 1]
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    plt.close(fig)
    old = summary[summary["network"].fillna("encoder") == "encoder"].drop(columns="network")
    fig = figures.snr_figure(old, style, "digits", "gaussian")
    assert [ax.get_title() for ax in fig.axes] == ["Encoder, K = 2", "Encoder, K = 3"]
    plt.close(fig)
    text = (tmp_path / "summary.md").read_text()
    assert "| digits | elbo | 1 | Reparameterization |" in text
    for k, label in ((2, "Reparameterization"), (3, "Reparameterization"), (2, "DReG")):
        assert f"| digits | iwae | {k} | {label} |" in text
    assert "| test_iwae_sd | test_objective | test_objective_sd |" in text


@pytest.mark.slow  # three epochs, twice
@pytest.mark.parametrize(
    "args",
    [
        ("estimator=dreg", "task.objective=iwae"),
        ("estimator=reinforce_baseline", "estimator.baseline=ema", "task.objective=iwae"),
    ],
)
def test_an_iwae_run_resumes_with_the_same_numbers(tmp_path, monkeypatch, args):
    # the moving-average baseline's state travels in the checkpoint on the objective path too
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, (*args, "task.batch_size=256"))
    for name in ("train", "eval", "grad_var"):
        a, b = (t[name].drop(columns="time_s", errors="ignore") for t in (whole, resumed))
        pd.testing.assert_frame_equal(a, b)
    assert set(whole["eval"].objective_name) == {"iwae"}


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize(
    "args",
    [
        ("estimator=dreg",),
        ("estimator=reinforce_baseline",),
        ("estimator=vimco", "task.latent=bernoulli"),
        ("estimator=rws", "task.latent=categorical"),
    ],
)
def test_a_short_iwae_run_on_the_gpu(tmp_path, args):
    tables = train(tmp_path, "task.objective=iwae", *args, device=torch.device("cuda"))
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    final = tables["eval"].iloc[-1]
    assert math.isfinite(final.test_objective) and final.test_iwae >= final.test_elbo - 1.0
    totals = tables["grad_var"].query("param == 'total'").total_var
    assert (totals > 0).all() and totals.map(math.isfinite).all()


def test_the_objective_speed_benchmark_on_cuda_without_a_gpu_says_so(monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from benchmarks.scripts import bench_vae_objectives

    monkeypatch.setattr(sys, "argv", ["bench_vae_objectives", "--device=cuda"])
    with pytest.raises(SystemExit) as stop:
        bench_vae_objectives.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --device='cuda': no CUDA device is available here; use cpu or auto"
    )


@needs_cuda
def test_the_objective_speed_benchmark_runs_on_the_gpu(tmp_path):
    out = tmp_path / "speed.csv"
    args = ["--device=cuda", "--repeats=1", "--steps=1", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_objectives")
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(out).machine.str.contains("GPU").all()
