"""The gradient-variance probe: M independent estimates of the encoder's and the decoder's
gradients on a fixed batch from one vectorized pass, and their variance, SNR and (where the exact
gradient is known) bias."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from benchmarks.tasks.vae.models import VAE, LinearGaussianVAE, per_example_objective
from estimators.base import Estimator
from estimators.objectives import Objective

NETWORKS = ("encoder", "decoder")
# One decoder call's record: the layer, its input and its output (a graph node of the pass).
Call = tuple[nn.Linear, torch.Tensor, torch.Tensor]


def probe_rows(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    m: int,
    seed: int,
    objective: Objective | None = None,
) -> list[dict]:
    """The probe's rows at one step, per network: M estimates drawn from their own ``seed`` (the
    run's random stream is left as it was), against the exact gradient where the model has one
    (the ELBO's: not for IWAE)."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        grads = gradient_samples(model, estimator, x, num_samples, m, objective)
    known = isinstance(model, LinearGaussianVAE) and (objective is None or objective.name == "elbo")
    exact = {net: exact_gradient(model, x, net) for net in NETWORKS} if known else None
    return gradient_variance_rows(grads, exact)


def gradient_samples(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    m: int,
    objective: Objective | None = None,
    decoder: bool = True,
) -> dict[str, dict[str, torch.Tensor]]:
    """M independent estimates of the gradient of the batch's summed ELBO (or ``objective``, on
    the multi-sample path) w.r.t. the encoder and (where ``decoder``) the decoder, per network
    and parameter name, each of shape ``[M, *parameter.shape]``.

    One vectorized pass: the encoder runs once; its output is broadcast into M copies, the
    estimator draws for all copies at once, one backward pass gives each copy its cotangent, and
    ``vmap`` of the encoder's vector-Jacobian product turns those into M parameter gradients.
    The same backward pass gives the gradient w.r.t. each decoder layer's output; with the
    layer's input it makes each copy's decoder gradient (``per_copy_gradients``), the forward
    pass untouched, so the encoder's estimates are the same to the bit with or without it.
    The estimator is a copy, so a moving-average baseline's state is left as it was, in eval mode,
    so a learned control variate builds no graph for its own training.
    """
    params = dict(model.encoder.named_parameters())
    h, encoder_vjp = vjp(lambda p: functional_call(model.encoder, p, (x,)), params)
    h_leaf = h.detach().requires_grad_()
    h_copies = h_leaf.expand(m, *h.shape)
    estimator = copy.deepcopy(estimator).eval()
    with recorded_layers(model.decoder) if decoder else nullcontext([]) as calls:
        per_example, _ = per_example_objective(
            model, estimator, x, h_copies, num_samples, objective
        )
    outputs = [output for _, _, output in calls]  # none without the decoder: as before it
    cotangents, *output_grads = torch.autograd.grad(
        per_example.sum(), (h_copies, *outputs), allow_unused=bool(outputs)
    )
    grads = {"encoder": vmap(encoder_vjp)(cotangents)[0]}
    if decoder:
        grads["decoder"] = per_copy_gradients(model.decoder, calls, output_grads, m)
    return grads


def encoder_gradient_samples(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    m: int,
    objective: Objective | None = None,
) -> dict[str, torch.Tensor]:
    """The encoder's M estimates alone (``gradient_samples`` without the decoder's)."""
    grads = gradient_samples(model, estimator, x, num_samples, m, objective, decoder=False)
    return grads["encoder"]


@contextmanager
def recorded_layers(decoder: nn.Module) -> Iterator[list[Call]]:
    """Within the block, each call of the decoder's linear layers that builds a graph, recorded
    by forward hooks (removed on leaving); a decoder with other parameters is refused."""
    layers = [layer for layer in decoder.modules() if isinstance(layer, nn.Linear)]
    linear = {id(p) for layer in layers for p in layer.parameters()}
    if any(id(p) not in linear for p in decoder.parameters()):
        raise TypeError("the probe's per-copy decoder gradients take nn.Linear layers only")
    calls: list[Call] = []

    def record(layer: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if output.requires_grad:
            calls.append((layer, args[0], output))

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def per_copy_gradients(
    decoder: nn.Module, calls: list[Call], output_grads: list[torch.Tensor | None], m: int
) -> dict[str, torch.Tensor]:
    """Each copy's decoder gradient ``[M, *parameter.shape]`` from its layers' inputs a and the
    gradients g of their outputs (copy axis third from last): weight sum g a^T, bias sum g, over
    the copy's draws and examples. The copies are independent, so this is copy m's own gradient."""
    names = {layer: name for name, layer in decoder.named_modules()}
    grads = {name: p.new_zeros(m, *p.shape) for name, p in decoder.named_parameters()}
    for (layer, a, _), g in zip(calls, output_grads, strict=True):
        if g is None:  # a call whose output the objective does not use
            continue
        if a.dim() < 3 or a.shape[-3] != m:
            raise ValueError(f"decoder input of shape {tuple(a.shape)}: no copy axis of size {m}")
        prefix = f"{names[layer]}." if names[layer] else ""
        a = a.detach().reshape(-1, *a.shape[-3:])  # [leading, M, batch, in], a view if it can
        g = g.reshape(-1, *g.shape[-3:])
        for a_draw, g_draw in zip(a, g, strict=True):  # per copy: g^T a, batched over the copies
            grads[f"{prefix}weight"].baddbmm_(g_draw.transpose(1, 2), a_draw)
        if layer.bias is not None:
            grads[f"{prefix}bias"] += g.sum((0, 2))
    return grads


def exact_gradient(
    model: LinearGaussianVAE, x: torch.Tensor, network: str
) -> dict[str, torch.Tensor]:
    """The exact gradient of the batch's summed ELBO w.r.t. ``network``, the encoder or the
    decoder (autograd, closed form)."""
    params = dict(getattr(model, network).named_parameters())
    grads = torch.autograd.grad(model.exact_elbo(x, model.encoder(x)).sum(), list(params.values()))
    return dict(zip(params, grads, strict=True))


def gradient_variance_rows(
    grads: dict[str, dict[str, torch.Tensor]],
    exact: dict[str, dict[str, torch.Tensor]] | None = None,
) -> list[dict]:
    """Per network, per parameter tensor and in total: summed variance, mean log-variance and
    mean SNR; with the exact gradient, also the squared bias of the mean and the MSE of one
    estimate (summed)."""

    def flatten(network: str, tensors: dict[str, torch.Tensor], lead: int) -> dict:
        flat = {f"{network}.{n}": t.reshape(*t.shape[:lead], -1) for n, t in tensors.items()}
        flat["total"] = torch.cat(list(flat.values()), dim=-1)
        return flat

    rows = []
    for network, samples in grads.items():
        flat = flatten(network, samples, 1)
        flat_exact = flatten(network, exact[network], 0) if exact is not None else {}
        for name, g in flat.items():
            var = g.var(0)
            mean = g.mean(0)
            truth = flat_exact.get(name)
            live = var > 0  # coordinates that get no gradient (dead units) have no noise
            rows.append(
                {
                    "network": network,
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
