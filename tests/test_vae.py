"""The VAE task: training per estimator, the IWAE bound, the gradient probe, resume, divergence."""

from __future__ import annotations

import functools
import gzip
import importlib
import itertools
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli import run
from hydra.utils import instantiate
from scipy import stats

import estimators
from benchmarks.experiment import compose_config, run_config
from benchmarks.results import RunWriter
from benchmarks.tasks.vae import data, evaluate, models, probe, settings
from benchmarks.tasks.vae import train as train_module
from estimators.base import Estimator, score_surrogate
from estimators.errors import ConfigError

CPU = torch.device("cpu")
SHORT = [
    "task=vae",
    "task.epochs=2",
    "task.max_steps=16",
    "task.hidden=64",
    "task.latent_dim=8",
    "task.iwae_k=50",
    "task.grad_var_every=5",
    "task.grad_var_samples=8",
]


def config(*overrides: str):
    return compose_config([*SHORT, *overrides])


def train(run_dir: Path, *overrides: str, make=None, device: torch.device = CPU):
    cfg = config(*overrides)
    _, result = run_config(cfg, RunWriter(run_dir), make_estimator=make, device=device)
    return result.tables


@pytest.mark.parametrize(
    "estimator",
    [
        "reparam",
        "reinforce",
        "reinforce_baseline",
        "reinforce_baseline estimator.baseline=ema",
        "nvil",
    ],
)
def test_a_short_training_run_per_estimator(tmp_path, estimator):
    name, *extra = estimator.split()
    tables = train(tmp_path, f"estimator={name}", *extra)
    for table in ("train", "eval", "grad_var"):
        assert (tmp_path / f"{table}.csv").exists()
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    train_table, eval_table, grad_var = tables["train"], tables["eval"], tables["grad_var"]
    assert train_table.step.tolist() == list(range(1, 17))
    assert train_table.time_s.is_monotonic_increasing
    assert eval_table.epoch.tolist() == [1, 2] and eval_table.test_iwae.notna().tolist() == [0, 1]
    assert eval_table.train_set_elbo.between(-200, 0).all()  # nats per digit: finite, plausible
    assert set(grad_var.step) == {0, 5, 10, 15}
    layers = {f"{layer}.{p}" for layer in (0, 2) for p in ("weight", "bias")}
    for network in ("encoder", "decoder"):  # each network's parameters and its total, per probe
        rows = grad_var[grad_var.network == network]
        assert set(rows.param) == {f"{network}.{name}" for name in layers} | {"total"}
        assert (rows.groupby("step").size() == 5).all()
    totals = grad_var[grad_var.param == "total"].total_var
    assert (totals > 0).all()
    assert train_table.train_elbo.iloc[-3:].mean() > train_table.train_elbo.iloc[:3].mean()


def test_the_iwae_bound_is_at_least_the_elbo_and_rises_with_k(tmp_path):
    train(tmp_path)
    torch.manual_seed(0)
    x = data.load_digits().test
    model = models.VAE(64, 64, 8)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"])
    elbos = torch.tensor([evaluate.test_elbo(model, x, 1000) for _ in range(20)])
    iwae = {k: evaluate.iwae_bound(model, x, k, 1000, 100) for k in (1, 10, 500)}
    # k = 1 is the ELBO itself; its estimate lies within 5 standard errors of the ELBO's.
    assert abs(iwae[1] - elbos.mean().item()) < 5 * elbos.std().item()
    assert elbos.max().item() < iwae[10] < iwae[500]


class AtTheMean(Estimator):
    """A noiseless 'estimator': f at the mean, so every one of the M estimates is the same."""

    name = "at_the_mean"

    def estimate(self, dist, f, num_samples):
        return f(dist.mean.expand(num_samples, *dist.mean.shape))


def test_the_vectorized_probe_gives_each_copy_the_ordinary_gradient():
    torch.manual_seed(0)
    model = models.VAE(64, 32, 4)
    x = data.load_digits().train[:16]
    grads = probe.encoder_gradient_samples(model, AtTheMean(), x, num_samples=1, m=5)
    reconstruction, kl = models.elbo_terms(model, AtTheMean(), x, model.encoder(x), 1)
    expected = torch.autograd.grad(
        (reconstruction.mean(0) - kl).sum(), list(model.encoder.parameters())
    )
    for (name, g), want in zip(grads.items(), expected, strict=True):
        assert g.shape == (5, *want.shape), name
        torch.testing.assert_close(g, want.expand_as(g), rtol=1e-4, atol=1e-5)


def test_probe_estimates_are_independent_and_unbiased():
    # reparam's M estimates must scatter (independent draws) around the mean of many more.
    torch.manual_seed(1)
    model = models.VAE(64, 32, 4)
    x = data.load_digits().train[:16]
    est = estimators.build("reparam")
    few = probe.encoder_gradient_samples(model, est, x, 1, 200)["2.bias"]
    many = probe.encoder_gradient_samples(model, est, x, 1, 4000)["2.bias"]
    assert (few.var(0) > 0).all()
    z = (few.mean(0) - many.mean(0)) / (few.var(0) / 200 + many.var(0) / 4000).sqrt()
    assert z.abs().max() < 5


def whole_and_resumed(tmp_path, monkeypatch, args, device=CPU, make=None):
    """Three epochs uninterrupted, and the same run killed after its second checkpoint and
    resumed: both runs' tables."""
    args = (*args, "task.max_steps=null", "task.epochs=3")
    training = functools.partial(train, device=device, make=make)
    whole = training(tmp_path / "whole", *args)

    saves = []
    real_save = RunWriter.checkpoint

    def killed_after_two_epochs(writer, state):
        saves.append(real_save(writer, state))
        if len(saves) == 2:
            raise KeyboardInterrupt  # the run is killed right after its second checkpoint

    monkeypatch.setattr(RunWriter, "checkpoint", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        training(tmp_path / "resumed", *args)
    monkeypatch.setattr(RunWriter, "checkpoint", real_save)
    return whole, training(tmp_path / "resumed", *args, "resume=true")


def test_resume_after_a_kill_ends_with_the_same_numbers(tmp_path, monkeypatch, run_args=None):
    run_args = run_args or ("estimator=reinforce_baseline", "estimator.baseline=ema")
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, run_args)
    for name in ("train", "eval", "grad_var"):
        a, b = whole[name].drop(columns="time_s", errors="ignore"), resumed[name]
        pd.testing.assert_frame_equal(a, b.drop(columns="time_s", errors="ignore"))


def test_resume_without_a_checkpoint_warns_and_starts_from_step_0(tmp_path, caplog):
    fresh = train(tmp_path / "fresh")
    with caplog.at_level("WARNING"):
        resumed = train(tmp_path / "nothing_here", "resume=true")
    assert f"resume=true: no checkpoint in {tmp_path / 'nothing_here'}" in caplog.text
    assert resumed["train"].step.iloc[0] == 1
    pd.testing.assert_frame_equal(
        fresh["eval"].drop(columns="time_s"), resumed["eval"].drop(columns="time_s")
    )


class DivergesAtCall(Estimator):
    """reparam (reinforce for a discrete latent), except that f becomes NaN on the third call (as
    plain REINFORCE can blow up)."""

    name = "diverges"

    def __init__(self):
        self.calls = 0

    def estimate(self, dist, f, num_samples):
        self.calls += 1
        if dist.has_rsample:
            value = f(dist.rsample((num_samples,)))
        else:
            z = dist.sample((num_samples,))
            value = score_surrogate(f(z), dist.log_prob(z))
        return self.spoil(value)

    def spoil(self, value):
        """The call's value, NaN on the third call."""
        return value * float("nan") if self.calls == 3 else value


@pytest.mark.parametrize("latent", ["gaussian", "bernoulli", "categorical"])
def test_a_nan_stops_the_run_with_a_diverged_status_and_keeps_what_was_written(
    tmp_path, capsys, latent
):
    tables = train(tmp_path, "task.grad_var_every=0", f"task.latent={latent}", make=DivergesAtCall)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 2
    assert "diverged at step 3" in status["message"]
    assert "diverged at step 3" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "train.csv").step.tolist() == [1, 2]
    assert tables["train"].step.tolist() == [1, 2]


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_the_mnist_loader_reads_idx_files(tmp_path, name, folder):
    torch.manual_seed(2)
    train_images = torch.randint(0, 256, (20, 28, 28))
    raw = tmp_path / folder / "raw"
    data.write_idx_images(raw / "train-images-idx3-ubyte.gz", train_images)
    data.write_idx_images(raw / "t10k-images-idx3-ubyte.gz", torch.randint(0, 256, (10, 28, 28)))
    dataset = data.load_idx_dataset(name, tmp_path)
    assert dataset.train.shape == (20, 784) and dataset.test.shape == (10, 784)
    torch.testing.assert_close(dataset.train, train_images.reshape(20, 784).float() / 255)
    assert set(dataset.test.unique().tolist()) <= {0.0, 1.0} and dataset.dynamic_binarization


def test_a_run_on_idx_files_binarizes_each_step_and_evaluates_one_fixed_binarization(tmp_path):
    torch.manual_seed(3)
    raw = tmp_path / "data" / "MNIST" / "raw"
    data.write_idx_images(raw / "train-images-idx3-ubyte.gz", torch.randint(0, 256, (64, 28, 28)))
    data.write_idx_images(raw / "t10k-images-idx3-ubyte.gz", torch.randint(0, 256, (16, 28, 28)))
    overrides = ["dataset=mnist", f"dataset.data_dir={tmp_path / 'data'}", "task.batch_size=32"]
    runs = [train(tmp_path / f"run{i}", *overrides)["eval"] for i in range(2)]
    assert runs[0].train_set_elbo.notna().all() and len(runs[0]) == 2
    same = ["train_set_elbo", "test_elbo", "test_iwae"]
    pd.testing.assert_frame_equal(runs[0][same], runs[1][same])  # the same seed, the same numbers


def test_mnist_without_files_or_torchvision_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="pip install torchvision.*or put train-images-idx3"):
        data.load_idx_dataset("mnist", tmp_path)


def test_a_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(b"".join(v.to_bytes(4, "big") for v in (2051, 5, 28, 28))))
    with pytest.raises(ConfigError, match="truncated"):
        data.read_idx_images(path)


def linear_gaussian_model(seed: int = 3):
    """A partly trained linear-Gaussian VAE in float64 and a batch of its data."""
    torch.manual_seed(seed)
    cfg = config("dataset=linear_gaussian").dataset
    x = data.load(cfg, 0).train[:32].double()
    model = models.LinearGaussianVAE(cfg.x_dim, 16, 3).double()
    with torch.no_grad():
        model.log_noise.fill_(-0.3)
    return model, x


def test_the_closed_form_elbo_is_the_expectation_it_claims():
    model, x = linear_gaussian_model()
    h = model.encoder(x)
    with torch.no_grad():
        exact = model.exact_elbo(x, h)
        z = models.posterior(h).sample((20_000,))
        mc = model.log_likelihood(x, z) - models.kl_to_prior(h)
    z_scores = (mc.mean(0) - exact) / (mc.var(0) / 20_000).sqrt()
    assert z_scores.abs().max() < 4.5
    # The exact log-marginal bounds the ELBO and is approached by the IWAE bound.
    log_p = model.log_marginal(x)
    assert (exact < log_p).all()
    iwae = evaluate.iwae_bound(model, x, k=5000, batch=32, chunk=1000)
    assert exact.mean().item() < iwae <= log_p.mean().item() + 1e-3


def test_the_exact_gradient_agrees_with_finite_differences():
    model, x = linear_gaussian_model()
    exact = probe.exact_gradient(model, x, "encoder")
    weight = model.encoder[2].weight
    for index in [(0, 0), (1, 5), (4, 11)]:
        with torch.no_grad():
            original = weight[index].item()
            values = []
            for step in (1e-6, -1e-6):
                weight[index] = original + step
                values.append(model.exact_elbo(x, model.encoder(x)).sum().item())
            weight[index] = original
        fd = (values[0] - values[1]) / 2e-6
        assert exact["2.weight"][index].item() == pytest.approx(fd, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(
    "name, scale", [("reparam", 1.0), ("reinforce_baseline", 1.0), ("reparam", 1.1)]
)
def test_estimates_are_unbiased_for_the_exact_elbo_gradient(name, scale):
    # Every coordinate of the mean of M estimates lies within a Bonferroni-corrected z of the
    # exact gradient (family-wise level 1e-3); a gradient scaled by 1.1 (a real error) fails it.
    model, x = linear_gaussian_model()
    torch.manual_seed(4)
    m = 4000
    grads = probe.encoder_gradient_samples(model, estimators.build(name), x, 2, m)
    exact = probe.exact_gradient(model, x, "encoder")
    mean = torch.cat([scale * g.mean(0).flatten() for g in grads.values()]).detach()
    se = torch.cat([scale * g.std(0).flatten() for g in grads.values()]).detach() / m**0.5
    truth = torch.cat([t.flatten() for t in exact.values()])
    dead = se == 0  # units that no example activates: no gradient, no noise
    torch.testing.assert_close(mean[dead], truth[dead])
    z = ((mean - truth) / se)[~dead]
    z_crit = stats.norm.isf(1e-3 / (2 * z.numel()))
    if scale == 1.0:
        assert z.abs().max() < z_crit
    else:
        assert z.abs().max() > 2 * z_crit


def test_linear_gaussian_runs_report_bias_and_mse(tmp_path):
    tables = train(tmp_path, "dataset=linear_gaussian")
    grad_var = tables["grad_var"]
    assert set(grad_var.network) == {"encoder", "decoder"}  # the exact gradient of each
    assert grad_var.bias_sq.notna().all() and (grad_var.mse >= grad_var.bias_sq).all()
    final = tables["eval"].iloc[-1]
    assert final.test_exact_elbo < final.test_log_marginal


# Discrete latents: the estimator gets the whole signal f(b) = log p(x|b) + log p(b) - log q(b|x).


@pytest.mark.parametrize(
    "latent, estimator",
    [
        (latent, e)
        for latent in ("bernoulli", "categorical")
        for e in [*models.estimators_for(latent, latent_dim=8, categories=10), "nvil"]
    ]
    + [("bernoulli", "disarm task.arch=linear"), ("categorical", "reinforce task.arch=mlp")],
)
def test_a_short_discrete_run_per_estimator_writes_finite_tables(tmp_path, latent, estimator):
    name, *extra = estimator.split()
    tables = train(tmp_path, f"task.latent={latent}", f"estimator={name}", *extra)
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    measured = {"train": ["train_elbo"], "eval": ["test_elbo"], "grad_var": ["total_var", "snr"]}
    for table, columns in measured.items():
        written = pd.read_csv(tmp_path / f"{table}.csv")
        assert not written.empty and set(written.latent) == {latent}
        assert written[columns].map(math.isfinite).all().all(), table
    assert math.isfinite(tables["eval"].test_iwae.iloc[-1])
    assert tables["train"].step.tolist() == list(range(1, 17))
    assert tables["eval"].test_iwae.iloc[-1] >= tables["eval"].test_elbo.iloc[-1] - 1.0
    assert (tables["grad_var"][tables["grad_var"].param == "total"].total_var > 0).all()
    settings = json.loads((tmp_path / "model.json").read_text())
    arch = extra[0].split("=")[1] if extra else "nonlinear"
    assert settings == {
        "latent": latent,
        "arch": arch,
        "hidden": 64,
        "latent_dim": 8,
        "lr": 3e-3,
        "batch_size": 50,
        "categories": 10 if latent == "categorical" else None,
        "compile": False,
        "parallel_seeds": 1,
    }


def test_null_settings_resolve_by_latent_and_dataset():
    cfg = config().task
    gaussian = {"arch": "mlp", "hidden": 400, "latent_dim": 20, "lr": 1e-3, "batch_size": 128}
    for dataset in ("digits", "mnist", "linear_gaussian"):
        resolved = settings.resolve(
            config("task.hidden=null", "task.latent_dim=null").task, dataset
        )
        assert resolved == {"latent": "gaussian", **gaussian, "categories": None}
    disarm = {"arch": "nonlinear", "hidden": 200, "latent_dim": 200, "lr": 1e-4, "batch_size": 50}
    bits = config("task.latent=bernoulli", "task.hidden=null", "task.latent_dim=null").task
    assert settings.resolve(bits, "mnist") == {"latent": "bernoulli", **disarm, "categories": None}
    assert settings.resolve(bits, "digits")["latent_dim"] == 32
    one_hot = config("task.latent=categorical", "task.hidden=null", "task.latent_dim=null").task
    assert settings.resolve(one_hot, "fashion_mnist")["latent_dim"] == 20
    assert settings.resolve(one_hot, "fashion_mnist")["categories"] == 10
    assert settings.resolve(cfg, "digits")["hidden"] == 64  # a value given is kept


def all_states(model: models.VAE, dtype: torch.dtype) -> torch.Tensor:
    """Every latent configuration b, shape [states, *event_shape]."""
    if model.latent == "bernoulli":
        return torch.tensor(
            list(itertools.product([0.0, 1.0], repeat=model.latent_dim)), dtype=dtype
        )
    eye = torch.eye(model.categories, dtype=dtype)
    choices = itertools.product(range(model.categories), repeat=model.latent_dim)
    return torch.stack([eye[list(c)] for c in choices])


def enumerated_elbo(model: models.VAE, x: torch.Tensor) -> torch.Tensor:
    """The exact per-example ELBO, sum over every b of q(b|x) f(b)."""
    h = model.encoder(x)
    b = all_states(model, x.dtype)
    b = b[:, None].expand(len(b), len(x), *b.shape[1:])
    return (model.posterior(h).log_prob(b).exp() * model.signal(x, h, b)).sum(0)


def tiny_discrete_model(latent: str) -> tuple[models.VAE, torch.Tensor]:
    """3 bits, or 2 variables of 3 categories, so that enumeration is exact; float64."""
    torch.manual_seed(5)
    dim, categories = (3, None) if latent == "bernoulli" else (2, 3)
    model = models.VAE(64, 16, dim, latent, "nonlinear", categories).double()
    return model, data.load_digits().train[:8].double()


def test_the_relaxed_log_q_is_the_log_prob_at_hard_samples():
    for latent in ("bernoulli", "categorical"):
        model, x = tiny_discrete_model(latent)
        h = model.encoder(x)
        b = model.posterior(h).sample((4,))
        want = model.posterior(h).log_prob(b)
        got = models.discrete_log_q(h, b, latent, model.categories)
        torch.testing.assert_close(got, want)
        # The enumerated probabilities sum to one: the states are all of them, once each.
        states = all_states(model, x.dtype).reshape(-1, 1, *b.shape[2:])
        assert model.posterior(h).log_prob(states).exp().sum(0).sub(1).abs().max() < 1e-12


class SelfBaseline(Estimator):
    """A classic bug: a 'leave-one-out' baseline that keeps each draw's own f. Biased: it scales
    the score term by (n - 1) / n."""

    name = "self_baseline"
    min_samples = 2

    def estimate(self, dist, f, num_samples):
        z = dist.sample((num_samples,))
        fz = f(z)
        return score_surrogate(fz, dist.log_prob(z), fz.detach().mean(0))


def no_direct_term(h, b, latent, categories, real=models.discrete_log_q):
    """log q(b|x) with h detached: f loses its direct dependence on the encoder."""
    return real(h.detach(), b, latent, categories)


UNBIASED = [
    (latent, name)
    for latent in ("bernoulli", "categorical")
    for name in models.estimators_for(latent)
    if estimators.REGISTRY[name].unbiased  # the relaxations and their kin are biased by design
]


@pytest.mark.parametrize(
    "latent, name, broken",
    [(latent, name, None) for latent, name in UNBIASED]
    + [
        ("bernoulli", "disarm", "scaled by 1.1"),
        ("bernoulli", "self_baseline", "own draw in the baseline"),
        ("categorical", "self_baseline", "own draw in the baseline"),
        ("bernoulli", "gumbel_softmax", "a relaxation"),
        ("categorical", "gumbel_softmax", "a relaxation"),
        ("bernoulli", "reinforce", "no direct term"),
    ],
)
def test_discrete_estimates_match_the_enumerated_elbo_gradient(monkeypatch, latent, name, broken):
    # Every coordinate of the mean of M probe estimates lies within a Bonferroni-corrected z of
    # the gradient of the ELBO summed exactly over all b (family-wise level 1e-3); a biased
    # estimator (a broken one, or a relaxation at temperature 0.5) fails it. Dropping the direct
    # term d f / dh = -d log q(b|x) / dh does not: its expectation, E_q[grad log q], is zero, so
    # it only changes the variance.
    model, x = tiny_discrete_model(latent)
    if broken == "no direct term":
        monkeypatch.setattr(models, "discrete_log_q", no_direct_term)
    estimator = SelfBaseline() if name == "self_baseline" else estimators.build(name)
    torch.manual_seed(6)
    m = 2000
    grads = probe.encoder_gradient_samples(model, estimator, x, estimator.min_samples, m)
    scale = 1.1 if broken == "scaled by 1.1" else 1.0
    mean = torch.cat([scale * g.mean(0).flatten() for g in grads.values()]).detach()
    se = torch.cat([scale * g.std(0).flatten() for g in grads.values()]).detach() / m**0.5
    params = list(model.encoder.parameters())
    truth = torch.cat(
        [g.flatten() for g in torch.autograd.grad(enumerated_elbo(model, x).sum(), params)]
    )
    dead = se == 0  # weights of pixels that are off in every example: no gradient, no noise
    torch.testing.assert_close(mean[dead], truth[dead])
    z = ((mean - truth) / se)[~dead]
    z_crit = stats.norm.isf(1e-3 / (2 * z.numel()))
    if broken in (None, "no direct term"):
        assert z.abs().max() < z_crit
    else:
        assert z.abs().max() > z_crit


@pytest.mark.slow  # the Gaussian resume test keeps the fast suite's check of resuming
@pytest.mark.parametrize(
    "args",
    [("task.latent=bernoulli", "estimator=disarm"), ("task.latent=bernoulli", "estimator=relax")],
)
def test_a_discrete_run_resumes_with_the_same_numbers(tmp_path, monkeypatch, args):
    # relax keeps state of its own (its control variate and optimizer) in the checkpoint.
    args = (*args, "task.batch_size=256")
    test_resume_after_a_kill_ends_with_the_same_numbers(tmp_path, monkeypatch, args)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["task.latent=bernoulli", "estimator=reparam"],
            "estimator 'reparam' does not apply to Independent(Bernoulli); estimators that do: "
            "arm, arms, disarm, double_cv, gst, gumbel_softmax, indecater, ",
        ),
        (
            ["task.latent=categorical", "estimator=arm"],
            "estimator 'arm' does not apply to Independent(OneHotCategorical); estimators that do",
        ),
        (
            ["task.latent=categorical", "estimator=disarm"],
            "estimator 'disarm' does not apply to Independent(OneHotCategorical)",
        ),
        (["task.latent=foo"], "task.latent='foo': accepted are gaussian, bernoulli, categorical"),
        (["task.latent=20"], "task.latent=20: accepted are gaussian, bernoulli, categorical (the "),
        (["task.arch=foo"], "task.arch='foo': accepted are mlp, linear, nonlinear, or null"),
        (["task.categories=1", "task.latent=categorical"], "task.categories=1: must be an integer"),
        (
            ["task.latent=bernoulli", "dataset=linear_gaussian"],
            "task.latent='bernoulli': dataset=linear_gaussian needs task.latent=gaussian",
        ),
        (["task.compile=1"], "task.compile=1: must be true or false"),
        (
            ["task.latent=bernoulli", "estimator=relax", "task.compile=true"],
            "task.compile=true: estimator 'relax' trains its own control variate in its backward",
        ),
        (["task.parallel_seeds=0"], "task.parallel_seeds=0: must be a positive integer"),
        (["task.parallel_seeds=two"], "task.parallel_seeds='two': must be a positive integer"),
        (
            ["estimator=reinforce_baseline", "estimator.baseline=ema", "task.parallel_seeds=2"],
            "task.parallel_seeds=2: estimator 'reinforce_baseline' (baseline=ema, decay=0.9) "
            "keeps state between steps",
        ),
        (["estimator=nvil", "task.parallel_seeds=2"], "estimator 'reinforce_baseline' (baseline"),
        (
            ["task.latent=bernoulli", "estimator=rebar", "task.parallel_seeds=2"],
            "task.parallel_seeds=2: estimator 'rebar' (",
        ),
        (
            ["estimator=measure_valued", "task.parallel_seeds=2"],
            "task.parallel_seeds=2: estimator 'measure_valued' cannot run under torch.func.vmap",
        ),
        (
            ["estimator=dreg", "task.objective=iwae", "task.parallel_seeds=2"],
            "task.parallel_seeds=2: estimator 'dreg' cannot run under torch.func.vmap",
        ),
        (
            ["task.compile=true", "task.parallel_seeds=2"],
            "task.parallel_seeds=2: not with task.compile=true",
        ),
    ],
)
def test_bad_discrete_input_stops_before_any_work(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(data, "load", lambda *a: pytest.fail("data loaded before the check"))
    with pytest.raises(ConfigError) as error:
        train(tmp_path, *args)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not any(tmp_path.iterdir())


def test_an_estimator_that_does_not_apply_gets_one_line_from_the_command_line(tmp_path):
    out = run(
        "task=vae",
        "task.latent=bernoulli",
        "estimator=reparam",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: estimator 'reparam' does not apply to Independent(Bernoulli)")
    assert "reinforce" in line and "disarm" in line
    assert not (tmp_path / "run").exists()


def test_discrete_runs_get_their_own_figure_and_summary_rows(tmp_path):
    from benchmarks import plot

    train(tmp_path / "gaussian", "task.max_steps=4")
    train(tmp_path / "bernoulli", "task.max_steps=4", "task.latent=bernoulli", "estimator=disarm")
    written, statuses = plot.plot(tmp_path)
    assert set(statuses.status) == {"completed"}
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"vae_digits", "vae_digits_bernoulli"}
    text = (tmp_path / "summary.md").read_text()
    assert "| digits | gaussian | Reparameterization |" in text
    assert "| digits | bernoulli | DisARM |" in text


@pytest.mark.slow
def test_the_discrete_speed_benchmark_times_every_bernoulli_estimator(tmp_path):
    from benchmarks.scripts import bench_vae_discrete

    out = tmp_path / "speed.csv"
    args = ["--repeats=1", "--steps=1", "--threads=1", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_discrete")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out).set_index("estimator")
    assert set(table.index) == set(models.estimators_for("bernoulli", bench_vae_discrete.BITS))
    assert table.loc[["arm", "disarm", "reinforce_baseline"], "evaluations"].tolist() == [2, 2, 2]
    assert table.loc["reinforce_baseline", "ratio_to_loo"] == 1.0
    assert (table.ms_per_step > 0).all() and table.machine.str.contains("cores").all()


def test_the_discrete_quality_comparison_covers_every_bernoulli_estimator_and_nvil():
    from benchmarks.scripts import vae_quality

    contenders = settings.compared("bernoulli")
    assert next(iter(contenders)) == "reinforce_baseline (loo)"  # it sets the time budget
    named = {args[0].removeprefix("estimator=") for args in contenders.values()}
    assert named == {*models.estimators_for("bernoulli", latent_dim=32), "nvil"}
    assert "unordered_set" not in named  # it enumerates 2^32 outcomes: a small latent's only
    assert vae_quality.describe("bernoulli") == (
        "nonlinear, 64-200-200-32 bits, Adam 0.003, batch 50"
    )
    assert vae_quality.describe("gaussian") == "64-400-20, Adam 0.001, batch 128"


@pytest.mark.slow
def test_the_vae_speed_benchmark_times_the_step_and_the_probe(tmp_path):
    out = tmp_path / "speed.csv"
    done = run(
        "--repeats=1", "--steps=1", "--m=4", f"--out={out}", module="benchmarks.scripts.bench_vae"
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert len(table) == 6 and (table.seconds > 0).all()
    assert table.groupby("group").ratio.last().eq(1.0).all()  # each group's reference
    tiny = ["--tiny", "--repeats=1", "--steps=1", f"--out={out}"]
    done = run(*tiny, module="benchmarks.scripts.bench_vae")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)  # the step alone, on the tiny model
    assert table.group.tolist() == ["training step, 64-16-2, batch 8"] * 2


@pytest.mark.slow
def test_the_epoch_benchmark_reads_mnist_files_where_they_are(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    data.write_idx_images(raw / "train-images-idx3-ubyte.gz", torch.randint(0, 256, (200, 28, 28)))
    data.write_idx_images(raw / "t10k-images-idx3-ubyte.gz", torch.randint(0, 256, (10, 28, 28)))
    out = tmp_path / "epoch.csv"
    args = ["--repeats=1", f"--data-dir={tmp_path / 'data'}", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_epoch")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert table.estimator.tolist()[0] == "reparam" and len(table) == 5
    assert set(table.data) == {"MNIST"} and set(table.steps) == {2}  # 200 images, batch 128
    assert (table.epoch_seconds > 0).all() and table.ratio_to_reparam.iloc[0] == 1.0


@pytest.mark.slow
def test_the_epoch_benchmark_without_mnist_times_random_images_of_its_shape(tmp_path):
    out = tmp_path / "epoch.csv"
    args = ["--repeats=1", "--images=256", f"--data-dir={tmp_path}", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_epoch")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert set(table.data) == {"random images of MNIST's shape"} and set(table.steps) == {2}
    assert not any(tmp_path.glob("MNIST"))  # written to a temporary folder, gone afterwards


@pytest.mark.parametrize(
    "module",
    [
        "benchmarks.scripts.bench_vae",
        "benchmarks.scripts.bench_vae_discrete",
        "benchmarks.scripts.bench_vae_epoch",
        "benchmarks.scripts.bench_vae_seeds",
    ],
)
def test_the_vae_speed_benchmarks_on_cuda_without_a_gpu_say_so(module, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(sys, "argv", [module, "--device=cuda"])
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --device='cuda': no CUDA device is available here; use cpu or auto"
    )


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize(
    "estimator",
    [
        "reparam",
        "reinforce_baseline",
        "nvil",
        "disarm task.latent=bernoulli",
        "relax task.latent=bernoulli",
    ],
)
def test_a_short_training_run_on_the_gpu(tmp_path, estimator):
    name, *extra = estimator.split()
    tables = train(tmp_path, f"estimator={name}", *extra, device=torch.device("cuda"))
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"
    final = tables["eval"].iloc[-1]
    assert math.isfinite(final.test_elbo) and final.test_iwae >= final.test_elbo - 1.0
    totals = tables["grad_var"].query("param == 'total'").total_var
    assert (totals > 0).all() and totals.map(math.isfinite).all()


@needs_cuda
@pytest.mark.parametrize(
    "module, args",
    [
        ("benchmarks.scripts.bench_vae", ["--repeats=1", "--steps=1", "--m=4"]),
        ("benchmarks.scripts.bench_vae_discrete", ["--repeats=1", "--steps=1"]),
        ("benchmarks.scripts.bench_vae_epoch", ["--repeats=1", "--images=256", "--data-dir={tmp}"]),
        ("benchmarks.scripts.bench_vae_seeds", ["--repeats=1", "--steps=2", "--images=256"]),
    ],
)
def test_the_vae_speed_benchmarks_run_on_the_gpu(tmp_path, module, args):
    out = tmp_path / "speed.csv"
    args = [arg.format(tmp=tmp_path) for arg in args]
    done = run("--device=cuda", *args, f"--out={out}", module=module)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(out).machine.str.contains("GPU").all()


@needs_cuda
@pytest.mark.parametrize(
    "args",
    [
        ["estimator=reinforce_baseline", "estimator.baseline=ema"],
        ["estimator=relax", "task.latent=bernoulli"],
    ],
)
def test_a_gpu_run_resumes_from_its_checkpoint(tmp_path, monkeypatch, args):
    # The RNG states in the checkpoint go back to the CPU; the run picks up where it stopped.
    args = (*args, "task.batch_size=256")
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, args, torch.device("cuda"))
    assert resumed["train"].step.tolist() == whole["train"].step.tolist()
    assert resumed["eval"].epoch.tolist() == [1, 2, 3]
    # the GPU's kernels need not be bit-reproducible; the same course within float32 noise
    pd.testing.assert_series_equal(resumed["eval"].test_elbo, whole["eval"].test_elbo, rtol=1e-3)


def test_the_task_runs_under_the_contract_and_returns_its_result(tmp_path):
    # VAETask as the runner builds it (conf/task/vae.yaml's _target_): it writes only while it
    # runs (running status, checkpoint), and returns its tables and final status.
    from benchmarks.tasks.base import Context
    from benchmarks.tasks.vae import VAETask

    cfg = config("estimator=nvil")
    task = instantiate(cfg.task)
    assert isinstance(task, VAETask) and task.tables == ("train", "eval", "grad_var")
    context = Context(seed=0, device=CPU, writer=RunWriter(tmp_path), config=cfg)
    make = functools.partial(instantiate, cfg.estimator)
    task.validate(make(), context)
    result = task.run(make, context)
    assert result.status == "completed"
    assert result.details == {"epoch": 2, "step": 16, "message": ""}
    assert context.progress == {"epoch": 2, "step": 16}
    assert set(result.tables["train"].options) == {"baseline=hook"}
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "running"
    shown = task.summary_rows("grad_var", result.tables["grad_var"])
    assert set(shown.param) == {"total"} and set(shown.step) == {0, 5, 10, 15}


READS = {
    name: getattr(torch.Tensor, name)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")
}
"""The Tensor methods that copy a value to the host (on a GPU: wait for the device)."""


@pytest.mark.parametrize(
    "args",
    [
        ["estimator=reparam"],
        ["estimator=reinforce_baseline", "task.latent=bernoulli"],
        ["estimator=relax", "task.latent=bernoulli"],
        ["estimator=gumbel_softmax", "task.latent=categorical"],
        ["estimator=nvil", "task.latent=bernoulli"],
        ["estimator=dreg", "task.objective=iwae"],
        pytest.param(["estimator=reparam", "task.compile=true"], marks=pytest.mark.slow),
    ],
    ids=lambda args: "-".join(a.split("=")[1] for a in args),
)
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch, args):
    # A read in the step would make every step wait for a GPU: the step runs with those methods
    # raising, and the run still completes with a row per step. torch.optim's reads are exempt:
    # they are of step counts that torch keeps on the CPU whatever the parameters' device; so are
    # the compiler's (task.compile), which folds constants once as it builds a graph.
    step = train_module.Trainer.step
    steps = []

    def guarded(self, index):
        with monkeypatch.context() as patch:
            for name in READS:

                def read(tensor, *args, name=name, method=READS[name], **kwargs):
                    caller = sys._getframe(1).f_globals.get("__name__", "")
                    if not caller.startswith(("torch.optim.", "torch._inductor.")):
                        raise AssertionError(f"Tensor.{name} in a training step")
                    return method(tensor, *args, **kwargs)

                patch.setattr(torch.Tensor, name, read)
            step(self, index)
        steps.append(self.state["step"])

    monkeypatch.setattr(train_module.Trainer, "step", guarded)
    tables = train(tmp_path, *args, "task.iwae_k=0")
    assert steps == list(range(1, 17))
    assert tables["train"].step.tolist() == steps


def test_the_read_guard_catches_a_step_that_reads(tmp_path, monkeypatch):
    # the guard of the test above fails a step that waits for its loss, as train_step once did
    train_step = train_module.train_step

    def reading(*args, **kwargs):
        values = train_step(*args, **kwargs)
        bool(values[3])
        return values

    monkeypatch.setattr(train_module, "train_step", reading)
    with pytest.raises(AssertionError, match="Tensor.__bool__ in a training step"):
        test_a_training_step_reads_nothing_back_from_the_device(
            tmp_path, monkeypatch, ["estimator=reparam"]
        )


@pytest.mark.slow  # torch.compile takes 10-30 s a run on 2 CPU cores
@pytest.mark.parametrize(
    "args",
    [["estimator=reparam"], ["estimator=reinforce_baseline", "task.latent=bernoulli"]],
    ids=["reparam", "rloo-bernoulli"],
)
def test_a_compiled_step_gives_the_eager_numbers(tmp_path, args):
    # The same seed and the same draws (eager's generator, fallback_random), so the compiled run's
    # tables equal the eager run's up to float rounding: fused kernels sum in another order, a
    # relative change of about sqrt(n) * eps = 7e-6 on a sum of n = 3,200 float32 terms (a batch
    # of 50 digits of 64 pixels); 4e-6 at most measured over 16 steps. rtol 1e-4 leaves room for
    # the rounding to grow with the steps and is 60 times below what other draws of the
    # Bernoulli latent give (6e-3, measured with fallback_random off). A Bernoulli draw is a
    # threshold, flipped where rounding moves p across it: about once in the 10^5 draws of a late
    # probe (4e-3 on a decoder variance, measured), so the probe's table is compared where the
    # latent is continuous and rounding stays rounding.
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    train(tmp_path / "eager", *args)
    train(tmp_path / "compiled", *args, "task.compile=true")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    for run_dir, compiled in (("eager", False), ("compiled", True)):
        assert json.loads((tmp_path / run_dir / "model.json").read_text())["compile"] is compiled
    measured = {"train": ["train_elbo"], "eval": ["test_elbo", "train_set_elbo", "test_iwae"]}
    if "task.latent=bernoulli" not in args:
        measured["grad_var"] = ["total_var", "snr"]
    for table, columns in measured.items():
        eager = pd.read_csv(tmp_path / "eager" / f"{table}.csv")
        compiled = pd.read_csv(tmp_path / "compiled" / f"{table}.csv")
        assert len(compiled) == len(eager) > 0, table
        for column in columns:
            assert compiled[column].to_numpy() == pytest.approx(
                eager[column].to_numpy(), rel=1e-4, nan_ok=True
            ), f"{table}.{column}"
