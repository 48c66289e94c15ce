"""Evaluation beside the training loop: the test and train-set ELBO each epoch, the exact ELBO and
log-likelihood of the linear-Gaussian model, and an importance-weighted (IWAE) bound at the end."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from benchmarks.tasks.vae import data
from benchmarks.tasks.vae.models import VAE, LinearGaussianVAE
from estimators.objectives import Objective


@torch.no_grad()
def test_elbo(model: VAE, x: torch.Tensor, batch: int) -> float:
    """The mean single-sample ELBO over ``x``, z ~ q (reparameterized where q has rsample; no
    estimator involved)."""
    total = 0.0
    for chunk in x.split(batch):
        h = model.encoder(chunk)
        q = model.posterior(h)
        z = q.rsample() if q.has_rsample else q.sample()
        total += (model.signal(chunk, h, z) - model.kl(h)).sum().item()
    return total / len(x)


@torch.no_grad()
def iwae_bound(model: VAE, x: torch.Tensor, k: int, batch: int, chunk: int) -> float:
    """The mean importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i|x) (Burda et al.)."""
    total = 0.0
    for xb in x.split(batch):
        h = model.encoder(xb)
        q = model.posterior(h)
        log_w = []
        for start in range(0, k, chunk):
            z = q.sample((min(chunk, k - start),))
            log_w.append(model.log_weight(xb, h, z))
        total += (torch.logsumexp(torch.cat(log_w), 0) - math.log(k)).sum().item()
    return total / len(x)


def fixed_train_set(dataset: data.Dataset, seed: int) -> torch.Tensor:
    """The training set as evaluated: binarized with a fixed stream where training binarizes
    afresh each step, so every epoch's train_set_elbo sees the same data."""
    if not dataset.dynamic_binarization:
        return dataset.train
    stream = torch.Generator(dataset.train.device).manual_seed(seed + 2)
    return torch.bernoulli(dataset.train, generator=stream)


def evaluation_row(
    model: VAE,
    dataset: data.Dataset,
    train_x: torch.Tensor,
    task: DictConfig,
    seed: int,
    final: bool,
    objective: Objective | None = None,
) -> dict:
    """The ``eval`` table's measures after an epoch, drawn from their own ``seed`` (the run's
    random stream is left as it was); the IWAE bound only at the end (``final``). The training
    objective on the test set, ``test_objective``: the ELBO, or the IWAE bound at the training K
    (drawn last, so that the other measures are drawn as in an ELBO run)."""
    devices = [train_x.device] if train_x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        row = {
            "test_elbo": test_elbo(model, dataset.test, task.eval_batch_size),
            "train_set_elbo": test_elbo(model, train_x, task.eval_batch_size),
            "test_iwae": math.nan,
            "iwae_k": math.nan,
        }
        if isinstance(model, LinearGaussianVAE):
            with torch.no_grad():
                test_h = model.encoder(dataset.test)
                row["test_exact_elbo"] = model.exact_elbo(dataset.test, test_h).mean().item()
                row["test_log_marginal"] = model.log_marginal(dataset.test).mean().item()
        if final and task.iwae_k:
            row["test_iwae"] = iwae_bound(
                model, dataset.test, task.iwae_k, task.eval_batch_size, task.iwae_chunk
            )
            row["iwae_k"] = task.iwae_k
        row["test_objective"] = row["test_elbo"]
        if objective is not None and objective.name == "iwae":
            row["test_objective"] = iwae_bound(
                model, dataset.test, objective.num_samples, task.eval_batch_size, task.iwae_chunk
            )
    return row
