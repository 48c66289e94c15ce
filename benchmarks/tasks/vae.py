"""VAE training as a benchmark: each estimator on the encoder, measured for quality, noise and time.

The default model is the canonical MLP VAE (Kingma and Welling 2014; pytorch/examples vae/main.py):
a Gaussian encoder q(z|x), a standard-normal prior and a Bernoulli decoder p(x|z). The ELBO is
E_q[log p(x|z)] - KL(q(z|x) || p(z)); the KL is exact, and the chosen estimator supplies the
gradient of the first term through the estimator contract, f(z) = log p(x|z). The decoder's
gradient is pathwise, as the contract gives any parameter that f depends on directly.

With ``task.latent=bernoulli`` (independent bits) or ``categorical`` (one-hot variables), both with
a uniform prior, the estimator gets the whole learning signal f(b) = log p(x|b) + log p(b) -
log q(b|x), as in the DisARM paper's VAE; q's direct part then gets the pathwise gradient.

Measurements beside the loop: train ELBO per logged step, test ELBO per epoch and an importance
weighted (IWAE) log-likelihood at the end, and every ``grad_var_every`` steps the variance of M
independent encoder-gradient estimates on a fixed batch, from one vectorized pass.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
)
from torch.func import functional_call, vjp, vmap
from tqdm import tqdm

import estimators
from benchmarks import data
from benchmarks.results import RunWriter
from estimators.base import ConfigError, Estimator, require_int

log = logging.getLogger(__name__)
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


LATENTS = ("gaussian", "bernoulli", "categorical")
# Hidden layers and their activation: ``mlp`` is the canonical example's; ``linear`` and
# ``nonlinear`` are the DisARM paper's (LeakyReLU with slope 0.3, as in its code).
ARCHS = {"mlp": (1, nn.ReLU), "linear": (0, None), "nonlinear": (2, lambda: nn.LeakyReLU(0.3))}


# The settings that default by latent family and dataset (null in the yaml): the Gaussian latent
# gets the canonical example's on every dataset; discrete latents the DisARM paper's setup on 28x28
# images (200 bits, or 20 variables of 10 categories as in Jang et al. 2017; two hidden layers of
# 200; Adam 1e-4; batch 50) and on the 8x8 digits a smaller code (32 bits, 8 variables) with a
# larger step (3e-3), which trained best in short runs of a few hundred steps.
SETTINGS = ("arch", "hidden", "latent_dim", "lr", "batch_size")
DEFAULTS = {
    ("gaussian", None): ("mlp", 400, 20, 1e-3, 128),
    ("bernoulli", None): ("nonlinear", 200, 200, 1e-4, 50),
    ("bernoulli", "digits"): ("nonlinear", 200, 32, 3e-3, 50),
    ("categorical", None): ("nonlinear", 200, 20, 1e-4, 50),
    ("categorical", "digits"): ("nonlinear", 200, 8, 3e-3, 50),
}


def resolve(task: DictConfig, dataset: str) -> dict:
    """The task's model and optimizer settings with nulls filled in from DEFAULTS (model.json)."""
    defaults = DEFAULTS.get((task.latent, dataset), DEFAULTS[task.latent, None])
    settings = {
        key: default if task[key] is None else task[key]
        for key, default in zip(SETTINGS, defaults, strict=True)
    }
    categories = task.categories if task.latent == "categorical" else None
    return {"latent": task.latent, **settings, "categories": categories}


def encoder_size(latent: str, latent_dim: int, categories: int | None) -> int:
    """Width of the encoder's output: (mu, log var), one logit per bit, or one per category."""
    if latent == "gaussian":
        return 2 * latent_dim
    return latent_dim * (categories if latent == "categorical" else 1)


def posterior(
    h: torch.Tensor, latent: str = "gaussian", categories: int | None = None
) -> Distribution:
    """q(z|x) from the encoder's output h, for each latent family: the one place that builds it."""
    if latent == "gaussian":
        mu, logvar = h.chunk(2, dim=-1)
        return Independent(
            Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False
        )
    if latent == "bernoulli":
        return Independent(Bernoulli(logits=h, validate_args=False), 1, validate_args=False)
    logits = h.unflatten(-1, (-1, categories))
    return Independent(
        OneHotCategorical(logits=logits, validate_args=False), 1, validate_args=False
    )


def discrete_log_q(
    h: torch.Tensor, b: torch.Tensor, latent: str, categories: int | None
) -> torch.Tensor:
    """log q(b|x), written so that it also takes relaxed b in [0, 1] (on the simplex): the same
    value as ``posterior(h).log_prob(b)`` for hard b, and smooth in b for the relaxations."""
    if latent == "bernoulli":
        return (b * F.logsigmoid(h) + (1 - b) * F.logsigmoid(-h)).sum(-1)
    return (b * torch.log_softmax(h.unflatten(-1, (-1, categories)), -1)).sum((-2, -1))


def estimators_for(latent: str) -> list[str]:
    """The registered estimators that apply to this latent family (new ones join by registering)."""
    categories = 2 if latent == "categorical" else None
    q = posterior(torch.zeros(1, encoder_size(latent, 1, categories)), latent, categories)
    return [name for name in estimators.names() if estimators.build(name).supports(q)]


def mlp(sizes: list[int], arch: str) -> nn.Sequential:
    """Linear layers through ``sizes`` with the architecture's activation between them."""
    activation = ARCHS[arch][1]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """MLP encoder x -> parameters of q(z|x) and decoder z -> Bernoulli logits of p(x|z).

    The defaults are the canonical example's (one ReLU layer, a Gaussian latent); ``latent`` picks
    the family, ``arch`` the DisARM paper's ``linear`` or ``nonlinear`` networks.
    """

    def __init__(
        self,
        x_dim: int,
        hidden: int,
        latent_dim: int,
        latent: str = "gaussian",
        arch: str = "mlp",
        categories: int | None = None,
    ) -> None:
        super().__init__()
        self.latent, self.latent_dim, self.categories = latent, latent_dim, categories
        between = [hidden] * ARCHS[arch][0]
        code = latent_dim * categories if latent == "categorical" else latent_dim
        self.encoder = mlp([x_dim, *between, encoder_size(latent, latent_dim, categories)], arch)
        self.decoder = mlp([code, *between, x_dim], arch)

    def posterior(self, h: torch.Tensor) -> Distribution:
        return posterior(h, self.latent, self.categories)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels: shape z.shape[:-1] (without the categories' axes)."""
        if self.latent == "categorical":
            z = z.flatten(-2)
        logits = self.decoder(z)
        return -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)

    def signal(self, x: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The estimator's f: log p(x|z) for a Gaussian latent (whose KL is exact); for a discrete
        one log p(x|b) + log p(b) - log q(b|x), uniform prior, at hard or relaxed b."""
        if self.latent == "gaussian":
            return self.log_likelihood(x, z)
        states = 2 if self.latent == "bernoulli" else self.categories
        log_prior = -self.latent_dim * math.log(states)
        return (
            self.log_likelihood(x, z)
            + log_prior
            - discrete_log_q(h, z, self.latent, self.categories)
        )

    def kl(self, h: torch.Tensor) -> torch.Tensor:
        """The exact KL(q || prior) for a Gaussian latent; zero for a discrete one (f holds it)."""
        if self.latent == "gaussian":
            return kl_to_prior(h)
        return h.new_zeros(h.shape[:-1])

    def log_weight(self, x: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) - log q(z|x), the importance weight of the IWAE bound."""
        if self.latent == "gaussian":
            prior = Normal(0.0, 1.0)
            return (
                self.log_likelihood(x, z)
                + prior.log_prob(z).sum(-1)
                - self.posterior(h).log_prob(z)
            )
        return self.signal(x, h, z)


class LinearGaussianVAE(VAE):
    """The same encoder; a linear Gaussian decoder p(x|z) = N(W z + b, s^2 I) with learned s.

    With it the ELBO, its gradient and the marginal likelihood are available in closed form.
    """

    def __init__(self, x_dim: int, hidden: int, latent_dim: int) -> None:
        super().__init__(x_dim, hidden, latent_dim)
        self.decoder = nn.Linear(latent_dim, x_dim)
        self.log_noise = nn.Parameter(torch.zeros(()))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return Normal(self.decoder(z), self.log_noise.exp()).log_prob(x).sum(-1)

    def exact_elbo(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E_q[log p(x|z)] - KL in closed form, per example:
        -D/2 log(2 pi s^2) - (|x - W mu - b|^2 + sum_j |W_j|^2 sigma_j^2) / (2 s^2) - KL."""
        mu, logvar = h.chunk(2, dim=-1)
        w, b = self.decoder.weight, self.decoder.bias
        noise_var = (2 * self.log_noise).exp()
        residual = (x - mu @ w.T - b).pow(2).sum(-1)
        spread = logvar.exp() @ w.pow(2).sum(0)
        d = x.shape[-1]
        expected_ll = -0.5 * d * torch.log(2 * math.pi * noise_var) - (residual + spread) / (
            2 * noise_var
        )
        return expected_ll - kl_to_prior(h)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + s^2 I), exactly."""
        w, b = self.decoder.weight, self.decoder.bias
        cov = w @ w.T + (2 * self.log_noise).exp() * torch.eye(len(b), device=b.device)
        return MultivariateNormal(b, cov).log_prob(x)


def make_model(dataset: data.Dataset, task: DictConfig) -> VAE:
    """The VAE for images; the linear-Gaussian one for ``linear_gaussian`` data. ``task`` holds
    the resolved settings (``resolve``)."""
    if dataset.likelihood == "gaussian":
        return LinearGaussianVAE(dataset.dim, task.hidden, task.latent_dim)
    return VAE(dataset.dim, task.hidden, task.latent_dim, task.latent, task.arch, task.categories)


def kl_to_prior(h: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) in closed form: -1/2 sum(1 + log var - mu^2 - var)."""
    mu, logvar = h.chunk(2, dim=-1)
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def elbo_terms(
    model: VAE, estimator: Estimator, x: torch.Tensor, h: torch.Tensor, num_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """f per draw [num_samples, *batch] with the estimator's gradient, and the exact KL (zero for
    a discrete latent, whose f holds log p(b) - log q(b|x)): the one place the estimator is called.

    The per-example ELBO is ``reconstruction.mean(0) - kl``.
    """
    f = lambda z: model.signal(x, h, z)  # noqa: E731
    reconstruction = estimator(model.posterior(h), f, num_samples)
    return reconstruction, model.kl(h)


class Baseline(nn.Module):
    """NVIL's learned input-dependent baseline b(x): a small MLP regressing the learning signal."""

    def __init__(self, x_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def uses_learned_baseline(estimator: Estimator) -> bool:
    return getattr(estimator, "baseline", None) == "hook"


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


def encoder_gradient_samples(
    model: VAE, estimator: Estimator, x: torch.Tensor, num_samples: int, m: int
) -> dict[str, torch.Tensor]:
    """M independent estimates of the gradient of the batch's summed ELBO w.r.t. the encoder.

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
    reconstruction, kl = elbo_terms(
        model, copy.deepcopy(estimator).eval(), x, h_copies, num_samples
    )
    total = (reconstruction.mean(0) - kl).sum()
    (cotangents,) = torch.autograd.grad(total, (h_copies,))
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


def validate(cfg: DictConfig, estimator: Estimator) -> None:
    """Raise ConfigError with one line naming the first bad task key, before any work."""
    task = cfg.task
    if task.latent not in LATENTS:
        hint = " (the latent size is task.latent_dim)" if isinstance(task.latent, int) else ""
        raise ConfigError(f"task.latent={task.latent!r}: accepted are {', '.join(LATENTS)}{hint}")
    if task.arch is not None and task.arch not in ARCHS:
        raise ConfigError(
            f"task.arch={task.arch!r}: accepted are {', '.join(ARCHS)}, or null (by latent family)"
        )
    if task.latent != "gaussian" and cfg.dataset.name == "linear_gaussian":
        raise ConfigError(
            f"task.latent={task.latent!r}: dataset=linear_gaussian needs task.latent=gaussian "
            "(its exact ELBO is for a Gaussian latent)"
        )
    for key in ("epochs", "log_every", "eval_batch_size"):
        require_int(task[key], f"task.{key}")
    for key in ("hidden", "latent_dim", "batch_size"):
        require_int(task[key], f"task.{key}", nullable=True)
    require_int(task.categories, "task.categories", minimum=2)
    for key in ("grad_var_every", "grad_var_samples", "iwae_k", "max_steps"):
        require_int(task[key], f"task.{key}", minimum=0, nullable=True)
    budget = task.max_seconds
    if budget is not None and not (isinstance(budget, int | float) and budget > 0):
        raise ConfigError(f"task.max_seconds={budget!r}: must be a positive number or null")
    if task.grad_var_samples is not None and 0 < task.grad_var_samples < 2:
        raise ConfigError(f"task.grad_var_samples={task.grad_var_samples}: needs >= 2 estimates")
    if task.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"task.optimizer={task.optimizer!r}: accepted are {', '.join(OPTIMIZERS)}"
        )
    lr = task.lr
    if lr is not None and not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"task.lr={lr!r}: must be a positive number or null")
    if task.num_samples is not None:
        estimator.check_num_samples(task.num_samples, "task.num_samples")


def check_estimator(estimator: Estimator, task: DictConfig, num_samples: int) -> None:
    """Stop with the contract's one line if the estimator does not apply to this latent family,
    checked on q built from a dummy encoder output before any work."""
    if uses_learned_baseline(estimator):
        estimator.hook = lambda z: 0.0  # a stand-in; train_step sets the learned baseline
    h = torch.zeros(1, encoder_size(task.latent, task.latent_dim, task.categories))
    estimator.check(posterior(h, task.latent, task.categories), num_samples)


def train_step(
    model: VAE,
    estimator: Estimator,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    x: torch.Tensor,
    num_samples: int,
    baseline: Baseline | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """One step on -ELBO (plus NVIL's regression of the learning signal when ``baseline``).

    Returns the batch's mean ELBO, the loss, the gradient norm and whether both were finite; a
    step whose loss or gradient is not finite leaves the parameters as they were.
    """
    h = model.encoder(x)
    if baseline is not None:
        b = baseline(x)
        estimator.hook = lambda z: b.detach()
    reconstruction, kl = elbo_terms(model, estimator, x, h, num_samples)
    per_example = reconstruction.mean(0) - kl
    loss = -per_example.sum()
    if baseline is not None:
        loss = loss + (reconstruction.detach() - b).pow(2).mean(0).sum()
    optimizer.zero_grad(set_to_none=True)
    estimator.backward(loss, h)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, math.inf)
    finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
    if finite:
        optimizer.step()
    return per_example.detach().mean(), loss.detach(), grad_norm, finite


class Progress:
    """A tqdm bar on a terminal; plain log lines once per epoch elsewhere (CI, cluster jobs)."""

    def __init__(self, total: int, initial: int) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="step") if sys.stderr.isatty() else None

    def step(self, elbo_value: float) -> None:
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(train_elbo=f"{elbo_value:.2f}", refresh=False)

    def epoch(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            log.info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(
    cfg: DictConfig,
    make_estimator: Callable[[], Estimator],
    device: torch.device,
    writer: RunWriter,
) -> dict[str, pd.DataFrame]:
    """Train, measure and checkpoint; return ``train``, ``eval`` and ``grad_var`` tables."""
    estimator = make_estimator()
    validate(cfg, estimator)
    settings = resolve(cfg.task, cfg.dataset.name)
    task = OmegaConf.merge(cfg.task, settings)
    num_samples = task.num_samples or estimator.min_samples
    check_estimator(estimator, task, num_samples)
    dataset = data.load(cfg.dataset, cfg.seed).to(device)
    torch.manual_seed(cfg.seed)
    model = make_model(dataset, task).to(device)
    baseline = Baseline(dataset.dim, task.baseline_hidden).to(device)
    learned_baseline = uses_learned_baseline(estimator)
    params = list(model.parameters()) + (list(baseline.parameters()) if learned_baseline else [])
    optimizer = OPTIMIZERS[task.optimizer](params, lr=task.lr)
    batches = torch.Generator(device=device).manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(dataset.train) / task.batch_size)
    total_steps = task.epochs * steps_per_epoch
    if task.max_steps:
        total_steps = min(total_steps, task.max_steps)
    probe_x = dataset.train[: task.batch_size]
    if dataset.dynamic_binarization:
        probe_x = torch.bernoulli(probe_x, generator=torch.Generator(device).manual_seed(cfg.seed))

    state = {"epoch": 0, "step": 0, "seconds": 0.0, "train": [], "eval": [], "grad_var": []}
    saved = writer.load_checkpoint(device) if cfg.resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        baseline.load_state_dict(saved["baseline"])
        optimizer.load_state_dict(saved["optimizer"])
        estimator.load_state_dict(saved["estimator"])
        # map_location moved every tensor to the device; RNG states must be CPU byte tensors
        torch.set_rng_state(saved["rng"].cpu())
        batches.set_state(saved["batches"].cpu())
        if device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
        state = saved["state"]
        log.info(
            "resumed from %s at epoch %d, step %d",
            writer.path("checkpoint.pt"),
            state["epoch"],
            state["step"],
        )
    elif cfg.resume:  # a job requeued before its first checkpoint, or a mistyped folder
        log.warning("resume=true: no checkpoint in %s; starting from step 0", writer.run_dir)

    def tables() -> dict[str, pd.DataFrame]:
        run_columns = {
            "estimator": estimator.name,
            "options": ",".join(f"{k}={v}" for k, v in estimator.options().items()),
            "task": "vae",
            "dataset": dataset.name,
            "seed": cfg.seed,
            "device": device.type,
            "num_samples": num_samples,
            "latent": task.latent,
        }
        return {
            name: pd.DataFrame([{**run_columns, **row} for row in state[name]])
            for name in ("train", "eval", "grad_var")
        }

    def write(status: str, message: str = "") -> dict[str, pd.DataFrame]:
        out = tables()
        for name, table in out.items():
            writer.table(name, table)
        writer.status(status, epoch=state["epoch"], step=state["step"], message=message)
        return out

    def probe() -> None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed + 1_000_003 * state["step"])
            if learned_baseline:
                estimator.hook = lambda z: baseline(probe_x)
            grads = encoder_gradient_samples(
                model, estimator, probe_x, num_samples, task.grad_var_samples
            )
        exact = (
            exact_encoder_gradient(model, probe_x) if isinstance(model, LinearGaussianVAE) else None
        )
        for row in gradient_variance_rows(grads, exact):
            state["grad_var"].append({"step": state["step"], "M": task.grad_var_samples, **row})

    def train_eval_x() -> torch.Tensor:
        """The training set as evaluated: binarized with a fixed stream where training
        binarizes afresh each step, so every epoch's train_set_elbo sees the same data."""
        if not dataset.dynamic_binarization:
            return dataset.train
        return torch.bernoulli(
            dataset.train, generator=torch.Generator(device).manual_seed(cfg.seed + 2)
        )

    def evaluate(final: bool) -> dict:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed + 7_919 * state["step"])
            row = {
                "epoch": state["epoch"],
                "step": state["step"],
                "time_s": state["seconds"],
                "test_elbo": test_elbo(model, dataset.test, task.eval_batch_size),
                "train_set_elbo": test_elbo(model, train_eval_x(), task.eval_batch_size),
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
        state["eval"].append(row)
        return row

    writer.json("model", settings)
    progress = Progress(total_steps, state["step"])
    if task.grad_var_every and task.grad_var_samples and state["step"] == 0:
        probe()

    def done() -> bool:
        over_time = task.max_seconds is not None and state["seconds"] >= task.max_seconds
        return state["step"] >= total_steps or over_time

    while not done():
        order = torch.randperm(len(dataset.train), generator=batches, device=device)
        for index in order.split(task.batch_size):
            if done():
                break
            start = time.perf_counter()
            x = dataset.train[index]
            if dataset.dynamic_binarization:
                x = torch.bernoulli(x, generator=batches)
            value, loss, grad_norm, finite = train_step(
                model,
                estimator,
                optimizer,
                params,
                x,
                num_samples,
                baseline if learned_baseline else None,
            )
            if not finite:
                progress.close()
                message = (
                    f"diverged at step {state['step'] + 1}: "
                    f"loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}"
                )
                print(f"{estimator.name}: {message}; stopping this run", file=sys.stderr)
                return write("diverged", message)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            state["seconds"] += time.perf_counter() - start
            state["step"] += 1
            value = value.item()
            progress.step(value)
            if state["step"] % task.log_every == 0 or done():
                state["train"].append(
                    {
                        "step": state["step"],
                        "epoch": state["epoch"] + 1,
                        "time_s": state["seconds"],
                        "train_elbo": value,
                    }
                )
            if (
                task.grad_var_every
                and task.grad_var_samples
                and (state["step"] % task.grad_var_every == 0)
            ):
                probe()
        state["epoch"] += 1
        final = done()
        row = evaluate(final)
        progress.epoch(
            f"epoch {state['epoch']}/{task.epochs} step {state['step']}: "
            f"test ELBO {row['test_elbo']:.3f}"
            + (f", IWAE({task.iwae_k}) {row['test_iwae']:.3f}" if final and task.iwae_k else "")
            + f" ({state['seconds']:.1f} s training)"
        )
        if task.checkpoint:
            writer.checkpoint(
                {
                    "model": model.state_dict(),
                    "baseline": baseline.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "estimator": estimator.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "batches": batches.get_state(),
                    "state": state,
                }
            )
            write("running")
    progress.close()
    return write("completed")
