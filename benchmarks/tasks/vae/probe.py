"""The gradient-variance probe: M independent estimates of the encoder's gradient on a fixed batch
from one vectorized pass, and their variance, SNR and (where the exact gradient is known) bias."""

from __future__ import annotations

import copy
import math

import torch
from torch.func import functional_call, vjp, vmap

from benchmarks.tasks.vae.models import VAE, LinearGaussianVAE, per_example_objective
from estimators.base import Estimator
from estimators.objectives import Objective


def probe_rows(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    m: int,
    seed: int,
    objective: Objective | None = None,
) -> list[dict]:
    """The probe's rows at one step: M estimates drawn from their own ``seed`` (the run's random
    stream is left as it was), against the exact gradient where the model has one (the ELBO's:
    not for IWAE)."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        grads = encoder_gradient_samples(model, estimator, x, num_samples, m, objective)
    known = isinstance(model, LinearGaussianVAE) and (objective is None or objective.name == "elbo")
    exact = exact_encoder_gradient(model, x) if known else None
    return gradient_variance_rows(grads, exact)


def encoder_gradient_samples(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    m: int,
    objective: Objective | None = None,
) -> dict[str, torch.Tensor]:
    """M independent estimates of the gradient of the batch's summed ELBO (or ``objective``,
    on the multi-sample path) w.r.t. the encoder.

    One vectorized pass: the encoder runs once; its output is broadcast into M copies, the
    estimator draws for all copies at once, one backward pass gives each copy its cotangent, and
    ``vmap`` of the encoder's vector-Jacobian product turns those into M parameter gradients.
    The estimator is a copy, so a moving-average baseline's state is left as it was, in eval mode,
    so a learned control variate builds no graph for its own training.
    """
    params = dict(model.encoder.named_parameters())
    h, encoder_vjp = vjp(lambda p: functional_call(model.encoder, p, (x,)), params)
    h_leaf = h.detach().requires_grad_()
    h_copies = h_leaf.expand(m, *h.shape)
    estimator = copy.deepcopy(estimator).eval()
    per_example, _ = per_example_objective(model, estimator, x, h_copies, num_samples, objective)
    (cotangents,) = torch.autograd.grad(per_example.sum(), (h_copies,))
    return vmap(encoder_vjp)(cotangents)[0]


def exact_encoder_gradient(model: LinearGaussianVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact gradient of the batch's summed ELBO w.r.t. the encoder (autograd, closed form)."""
    params = dict(model.encoder.named_parameters())
    grads = torch.autograd.grad(model.exact_elbo(x, model.encoder(x)).sum(), list(params.values()))
    return dict(zip(params, grads, strict=True))


def gradient_variance_rows(
    grads: dict[str, torch.Tensor], exact: dict[str, torch.Tensor] | None = None
) -> list[dict]:
    """Per parameter tensor and in total: summed variance, mean log-variance and mean SNR; with
    the exact gradient, also the squared bias of the mean and the MSE of one estimate (summed)."""

    def flatten(tensors: dict[str, torch.Tensor], lead: int) -> dict[str, torch.Tensor]:
        flat = {f"encoder.{n}": t.reshape(*t.shape[:lead], -1) for n, t in tensors.items()}
        flat["total"] = torch.cat(list(flat.values()), dim=-1)
        return flat

    flat = flatten(grads, 1)
    flat_exact = flatten(exact, 0) if exact is not None else {}
    rows = []
    for name, g in flat.items():
        var = g.var(0)
        mean = g.mean(0)
        truth = flat_exact.get(name)
        live = var > 0  # coordinates that receive no gradient (dead units) have no noise to measure
        rows.append(
            {
                "param": name,
                "total_var": var.sum().item(),
                "mean_log_var": var[live].log().mean().item() if live.any() else math.nan,
                "snr": (mean[live].abs() / var[live].sqrt()).mean().item()
                if live.any()
                else math.nan,
                "n_coords": g.shape[1],
                "bias_sq": math.nan if truth is None else (mean - truth).pow(2).sum().item(),
                "mse": math.nan if truth is None else (g - truth).pow(2).sum(1).mean().item(),
            }
        )
    return rows
