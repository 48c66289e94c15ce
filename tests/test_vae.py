"""The VAE task: training per estimator, the IWAE bound, the gradient probe, resume, divergence."""

from __future__ import annotations

import functools
import gzip
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from scipy import stats

import estimators
from benchmarks import data
from benchmarks.tasks import vae
from estimators.base import ConfigError, Estimator

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SHORT = [
    "task=vae",
    "task.epochs=2",
    "task.max_steps=16",
    "task.hidden=64",
    "task.latent=8",
    "task.iwae_k=50",
    "task.grad_var_every=5",
    "task.grad_var_samples=8",
]


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[*SHORT, *overrides])


def train(run_dir: Path, *overrides: str, make=None):
    cfg = config(*overrides)
    make = make or functools.partial(instantiate, cfg.estimator)
    return vae.run(cfg, make, CPU, run_dir)


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
    assert set(grad_var.step) == {0, 5, 10, 15}
    assert set(grad_var.param) == {
        "encoder.0.weight",
        "encoder.0.bias",
        "encoder.2.weight",
        "encoder.2.bias",
        "total",
    }
    totals = grad_var[grad_var.param == "total"].total_var
    assert (totals > 0).all()
    assert train_table.train_elbo.iloc[-3:].mean() > train_table.train_elbo.iloc[:3].mean()


def test_the_iwae_bound_is_at_least_the_elbo_and_rises_with_k(tmp_path):
    train(tmp_path)
    torch.manual_seed(0)
    x = data.load_digits().test
    model = vae.VAE(64, 64, 8)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"])
    elbos = torch.tensor([vae.test_elbo(model, x, 1000) for _ in range(20)])
    iwae = {k: vae.iwae_bound(model, x, k, 1000, 100) for k in (1, 10, 500)}
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
    model = vae.VAE(64, 32, 4)
    x = data.load_digits().train[:16]
    grads = vae.encoder_gradient_samples(model, AtTheMean(), x, num_samples=1, m=5)
    reconstruction, kl = vae.elbo_terms(model, AtTheMean(), x, model.encoder(x), 1)
    expected = torch.autograd.grad(
        (reconstruction.mean(0) - kl).sum(), list(model.encoder.parameters())
    )
    for (name, g), want in zip(grads.items(), expected, strict=True):
        assert g.shape == (5, *want.shape), name
        torch.testing.assert_close(g, want.expand_as(g), rtol=1e-4, atol=1e-5)


def test_probe_estimates_are_independent_and_unbiased():
    # reparam's M estimates must scatter (independent draws) around the mean of many more.
    torch.manual_seed(1)
    model = vae.VAE(64, 32, 4)
    x = data.load_digits().train[:16]
    est = estimators.build("reparam")
    few = vae.encoder_gradient_samples(model, est, x, 1, 200)["2.bias"]
    many = vae.encoder_gradient_samples(model, est, x, 1, 4000)["2.bias"]
    assert (few.var(0) > 0).all()
    z = (few.mean(0) - many.mean(0)) / (few.var(0) / 200 + many.var(0) / 4000).sqrt()
    assert z.abs().max() < 5


def test_resume_after_a_kill_ends_with_the_same_numbers(tmp_path, monkeypatch):
    args = (
        "estimator=reinforce_baseline",
        "estimator.baseline=ema",
        "task.max_steps=null",
        "task.epochs=3",
    )
    whole = train(tmp_path / "whole", *args)

    saves = []
    real_save = vae.save_checkpoint

    def killed_after_two_epochs(state, path):
        real_save(state, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt  # the run is killed right after its second checkpoint

    monkeypatch.setattr(vae, "save_checkpoint", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", *args)
    monkeypatch.setattr(vae, "save_checkpoint", real_save)
    resumed = train(tmp_path / "resumed", *args, "resume=true")
    for name in ("train", "eval", "grad_var"):
        a, b = whole[name].drop(columns="time_s", errors="ignore"), resumed[name]
        pd.testing.assert_frame_equal(a, b.drop(columns="time_s", errors="ignore"))


class DivergesAtCall(Estimator):
    """reparam, except that f becomes NaN on the third call (as plain REINFORCE can blow up)."""

    name = "diverges"

    def __init__(self):
        self.calls = 0

    def estimate(self, dist, f, num_samples):
        self.calls += 1
        value = f(dist.rsample((num_samples,)))
        return value * float("nan") if self.calls == 3 else value


def test_a_nan_stops_the_run_with_a_diverged_status_and_keeps_what_was_written(tmp_path, capsys):
    tables = train(tmp_path, "task.grad_var_every=0", make=DivergesAtCall)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 2
    assert "diverged at step 3" in status["message"]
    assert "diverged at step 3" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "train.csv").step.tolist() == [1, 2]
    assert tables["train"].step.tolist() == [1, 2]


def write_idx(path: Path, images: torch.Tensor) -> None:
    n, rows, cols = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (2051, n, rows, cols))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + images.to(torch.uint8).numpy().tobytes()))


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_the_mnist_loader_reads_idx_files(tmp_path, name, folder):
    torch.manual_seed(2)
    train_images = torch.randint(0, 256, (20, 28, 28))
    raw = tmp_path / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte.gz", train_images)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", torch.randint(0, 256, (10, 28, 28)))
    dataset = data.load_idx_dataset(name, tmp_path)
    assert dataset.train.shape == (20, 784) and dataset.test.shape == (10, 784)
    torch.testing.assert_close(dataset.train, train_images.reshape(20, 784).float() / 255)
    assert set(dataset.test.unique().tolist()) <= {0.0, 1.0} and dataset.dynamic_binarization


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
    model = vae.LinearGaussianVAE(cfg.x_dim, 16, 3).double()
    with torch.no_grad():
        model.log_noise.fill_(-0.3)
    return model, x


def test_the_closed_form_elbo_is_the_expectation_it_claims():
    model, x = linear_gaussian_model()
    h = model.encoder(x)
    with torch.no_grad():
        exact = model.exact_elbo(x, h)
        z = vae.posterior(h).sample((20_000,))
        mc = model.log_likelihood(x, z) - vae.kl_to_prior(h)
    z_scores = (mc.mean(0) - exact) / (mc.var(0) / 20_000).sqrt()
    assert z_scores.abs().max() < 4.5
    # The exact log-marginal bounds the ELBO and is approached by the IWAE bound.
    log_p = model.log_marginal(x)
    assert (exact < log_p).all()
    iwae = vae.iwae_bound(model, x, k=5000, batch=32, chunk=1000)
    assert exact.mean().item() < iwae <= log_p.mean().item() + 1e-3


def test_the_exact_gradient_agrees_with_finite_differences():
    model, x = linear_gaussian_model()
    exact = vae.exact_encoder_gradient(model, x)
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
    grads = vae.encoder_gradient_samples(model, estimators.build(name), x, 2, m)
    exact = vae.exact_encoder_gradient(model, x)
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
    assert grad_var.bias_sq.notna().all() and (grad_var.mse >= grad_var.bias_sq).all()
    final = tables["eval"].iloc[-1]
    assert final.test_exact_elbo < final.test_log_marginal
