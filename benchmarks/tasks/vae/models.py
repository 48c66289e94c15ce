"""The VAE's models: encoder and decoder per latent family, q(z|x), the exact KL, and the ELBO's
two terms or the objective's estimates with the estimator's gradient (the one place the estimator
is called: ``elbo_terms`` and ``objective_estimates``, side by side), and the per-example training
objective that training and the gradient probe share (``per_example_objective``), with the loss a
training step descends (``step_loss``).

The default model is the canonical MLP VAE (Kingma and Welling 2014; pytorch/examples vae/main.py):
a Gaussian encoder q(z|x), a standard-normal prior and a Bernoulli decoder p(x|z). The ELBO is
E_q[log p(x|z)] - KL(q(z|x) || p(z)); the KL is exact, and the chosen estimator supplies the
gradient of the first term through the estimator contract, f(z) = log p(x|z). The decoder's
gradient is pathwise, as the contract gives any parameter that f depends on directly.

With ``task.latent=bernoulli`` (independent bits) or ``categorical`` (one-hot variables), both with
a uniform prior, the estimator gets the whole learning signal f(b) = log p(x|b) + log p(b) -
log q(b|x), as in the DisARM paper's VAE; q's direct part then gets the pathwise gradient.

With ``task.objective=iwae`` (or an estimator of objectives only, such as ``stl``) the estimator
gets the whole log joint p(x, z) through the multi-sample contract (``estimators.objectives``) and
returns estimates of the ELBO or the IWAE bound over K draws: ``objective_estimates``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
)

import estimators
from benchmarks.tasks.vae import data
from estimators.base import Estimator, ObjectiveOnly, serving
from estimators.baselines import Supplied
from estimators.objectives import Objective

LATENTS = ("gaussian", "bernoulli", "categorical")
# Hidden layers and their activation: ``mlp`` is the canonical example's; ``linear`` and
# ``nonlinear`` are the DisARM paper's (LeakyReLU with slope 0.3, as in its code).
ARCHS = {"mlp": (1, nn.ReLU), "linear": (0, None), "nonlinear": (2, lambda: nn.LeakyReLU(0.3))}


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


def estimators_for(latent: str, latent_dim: int = 1, categories: int = 2) -> list[str]:
    """The registered estimators of E[f] (not ``ObjectiveOnly``) that apply to this latent family
    at this size (new ones join by registering; one that enumerates the joint outcomes serves
    only a small latent)."""
    categories = categories if latent == "categorical" else None
    size = encoder_size(latent, latent_dim, categories)
    q = posterior(torch.zeros(1, size), latent, categories)
    return [
        name
        for name in estimators.names()
        if not issubclass(estimators.REGISTRY[name], ObjectiveOnly)
        and estimators.build(name).supports(q)
    ]


def objective_estimators(objective: str, latent: str) -> list[str]:
    """The registered estimators of ``objective`` (elbo or iwae) through the multi-sample contract
    that apply to this latent family: for error messages and sweeps."""
    categories = 2 if latent == "categorical" else None
    q = posterior(torch.zeros(1, encoder_size(latent, 1, categories)), latent, categories)
    return serving([objective], q)


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

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) + log p(z), standard-normal prior for a Gaussian latent and uniform for a
        discrete one; z of shape ``[S, K, *batch, *event]`` gives ``[S, K, *batch]``."""
        if self.latent == "gaussian":
            prior = Normal(0.0, 1.0, validate_args=False)
            return self.log_likelihood(x, z) + prior.log_prob(z).sum(-1)
        states = 2 if self.latent == "bernoulli" else self.categories
        return self.log_likelihood(x, z) - self.latent_dim * math.log(states)

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
    a discrete latent, whose f holds log p(b) - log q(b|x)): the plain path's estimator call.

    The per-example ELBO is ``reconstruction.mean(0) - kl``.
    """
    f = lambda z: model.signal(x, h, z)  # noqa: E731
    reconstruction = estimator(model.posterior(h), f, num_samples)
    return reconstruction, model.kl(h)


def objective_estimates(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    h: torch.Tensor,
    objective: Objective,
    num_samples: int,
) -> torch.Tensor:
    """``num_samples`` estimates [num_samples, *batch] of the ELBO or IWAE bound over
    ``objective.num_samples`` draws, with the estimator's gradient (the objective path's call)."""
    log_joint = lambda z: model.log_joint(x, z)  # noqa: E731
    return estimator.surrogate(model.posterior(h), log_joint, objective, num_samples)


def per_example_objective(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    h: torch.Tensor,
    num_samples: int,
    objective: Objective | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-example training objective [*batch] with the estimator's gradient: the mean of
    ``objective``'s estimates, or the ELBO; and the plain path's f per draw (None on the objective
    path), which NVIL's learned baseline regresses. Training and the gradient probe both call it."""
    if objective is not None:
        estimates = objective_estimates(model, estimator, x, h, objective, num_samples)
        return estimates.mean(0), None
    reconstruction, kl = elbo_terms(model, estimator, x, h, num_samples)
    return reconstruction.mean(0) - kl, reconstruction


def step_loss(
    model: VAE,
    estimator: Estimator,
    x: torch.Tensor,
    num_samples: int,
    baseline: LearnedBaseline | None = None,
    objective: Objective | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a training step descends on the batch ``x``: the encoder's output h (which the
    estimator's backward needs), each example's objective, and the loss (minus their sum, plus the
    learned baseline's regression where there is one). The step on one model and the step of
    seeds side by side both call it."""
    h = model.encoder(x)
    with baseline.supplying(x) if baseline is not None else nullcontext() as b:
        per_example, reconstruction = per_example_objective(
            model, estimator, x, h, num_samples, objective
        )
    loss = -per_example.sum()
    if baseline is not None:
        loss = loss + (reconstruction.detach() - b).pow(2).mean(0).sum()
    return h, per_example, loss


class LearnedBaseline(nn.Module):
    """NVIL's learned input-dependent baseline b(x): a small MLP regressing the learning signal,
    handed to the estimator through ``supplied``, the baseline the estimator was built with."""

    def __init__(self, x_dim: int, hidden: int, supplied: Supplied | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.supplied = supplied or Supplied()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    @contextmanager
    def supplying(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """b(x), the estimator's baseline in the calls of the block (and the regression's)."""
        b = self(x)
        with self.supplied.given(b):
            yield b
