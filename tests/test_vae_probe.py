"""The VAE's gradient probe on the decoder: each copy's gradient, the encoder's rows left as they
were, and the decoder's mean against the exact ELBO gradient on the linear-Gaussian VAE."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy import stats
from test_vae import linear_gaussian_model

import estimators
from benchmarks.tasks.vae import data, models, probe
from estimators.objectives import Objective

# (latent, estimator, objective): plain paths that call f once, twice (measure_valued's
# perturbations, rebar's relaxed draws) or at relaxed draws, and the multi-sample path.
CASES = [
    ("gaussian", "reparam", None),
    ("gaussian", "reinforce_baseline", None),
    ("gaussian", "measure_valued", None),
    ("bernoulli", "disarm", None),
    ("bernoulli", "rebar", None),
    ("categorical", "gumbel_softmax", None),
    ("gaussian", "dreg", Objective("iwae", 4)),
    ("gaussian", "rws", Objective("iwae", 4)),
    ("bernoulli", "vimco", Objective("iwae", 4)),
    ("linear_gaussian", "reparam", None),
]


def small_model(latent: str) -> tuple[models.VAE, torch.Tensor]:
    """A float64 VAE of the latent family (or the linear-Gaussian one) and a batch of 6."""
    torch.manual_seed(0)
    if latent == "linear_gaussian":
        model, x = linear_gaussian_model()
        return model, x[:6]
    categories = 3 if latent == "categorical" else None
    model = models.VAE(64, 16, 3, latent, "mlp", categories).double()
    return model, data.load_digits().train[:6].double()


@pytest.mark.parametrize("latent, name, objective", CASES)
def test_each_copys_gradients_are_the_gradients_of_its_own_objective(latent, name, objective):
    # With the probe's draws (same seed, same calls), autograd of copy c's summed objective alone
    # gives copy c's encoder and decoder gradients.
    model, x = small_model(latent)
    estimator = estimators.build(name)
    s, m = estimator.min_samples, 3
    torch.manual_seed(1)
    grads = probe.gradient_samples(model, estimator, x, s, m, objective)
    torch.manual_seed(1)
    h = model.encoder(x)
    per_example, _ = models.per_example_objective(
        model, copy.deepcopy(estimator).eval(), x, h.expand(m, *h.shape), s, objective
    )
    for network in probe.NETWORKS:
        params = dict(getattr(model, network).named_parameters())
        for c in range(m):
            want = torch.autograd.grad(
                per_example[c].sum(), list(params.values()), retain_graph=True, allow_unused=True
            )
            for (param, p), w in zip(params.items(), want, strict=True):
                w = torch.zeros_like(p) if w is None else w
                torch.testing.assert_close(grads[network][param][c], w, msg=f"{network}.{param}")


@pytest.mark.parametrize("latent, name, objective", CASES)
def test_the_decoder_rows_leave_the_encoder_estimates_as_they_were(latent, name, objective):
    # The decoder's gradients come from the same pass without changing it: the encoder's M
    # estimates are the same to the bit as the encoder-only probe's (the code before them).
    model, x = small_model(latent)
    estimator = estimators.build(name)
    s = estimator.min_samples
    torch.manual_seed(2)
    both = probe.gradient_samples(model, estimator, x, s, 5, objective)["encoder"]
    torch.manual_seed(2)
    alone = probe.encoder_gradient_samples(model, estimator, x, s, 5, objective)
    for param, g in both.items():
        assert torch.equal(g, alone[param]), param


def plug_in_gradient(model: models.LinearGaussianVAE, x: torch.Tensor) -> dict:
    """A plausible mistake: the decoder's gradient of log p(x | z = mu) - KL, the ELBO without
    the spread of q (the sum_j |W_j|^2 sigma_j^2 term)."""
    h = model.encoder(x)
    mu = h.chunk(2, dim=-1)[0]
    params = dict(model.decoder.named_parameters())
    value = (model.log_likelihood(x, mu) - models.kl_to_prior(h)).sum()
    return dict(zip(params, torch.autograd.grad(value, list(params.values())), strict=True))


@pytest.mark.parametrize(
    "name, objective, broken",
    [
        ("reparam", None, False),
        ("reinforce_baseline", None, False),
        ("stl", Objective("elbo", 3), False),
        ("reparam", None, True),
    ],
)
def test_decoder_estimates_are_unbiased_for_the_exact_elbo_gradient(name, objective, broken):
    # Every coordinate of the mean of M decoder estimates lies within a Bonferroni-corrected z of
    # the exact ELBO gradient (family-wise level 1e-3; z from the estimates' own sd); the
    # plug-in gradient at the posterior mean, a real mistake, fails it.
    model, x = linear_gaussian_model()
    estimator = estimators.build(name)
    torch.manual_seed(9)
    m = 2000
    grads = probe.gradient_samples(model, estimator, x, estimator.min_samples, m, objective)
    exact = plug_in_gradient(model, x) if broken else probe.exact_gradient(model, x, "decoder")
    decoder = grads["decoder"]
    mean = torch.cat([g.mean(0).flatten() for g in decoder.values()])
    se = torch.cat([g.std(0).flatten() for g in decoder.values()]) / m**0.5
    truth = torch.cat([t.flatten() for t in exact.values()])
    assert (se > 0).all()
    z = (mean - truth) / se
    z_crit = stats.norm.isf(1e-3 / (2 * z.numel()))
    assert (z.abs().max() < z_crit) == (not broken)


def test_the_probe_refuses_a_decoder_with_parameters_outside_linear_layers():
    model, x = small_model("gaussian")
    model.decoder.append(torch.nn.LayerNorm(64).double())
    with pytest.raises(TypeError, match="nn.Linear layers only"):
        probe.gradient_samples(model, estimators.build("reparam"), x, 1, 3)
