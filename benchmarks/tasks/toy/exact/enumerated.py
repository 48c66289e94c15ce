"""Exact moments of an estimator whose only randomness is its K draws, by running the estimator
itself on every K-tuple of joint outcomes at once.

Each of the M = 2^(D K) tuples of K draws of D bits is one row of a batch: the distribution's
``sample`` hands the estimator those draws, autograd gives each row's estimate of the gradient
with respect to its first logit, and the tuples' probabilities weight them. So the moments are
those of the estimator as it stands, learned coefficients included (Double CV's alpha, RODEO's
network after training), with no formula of ours to get wrong.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch.distributions import Bernoulli, Independent

from benchmarks.measure import unvalidated
from estimators.base import CostFn, Estimator

ENUMERATED = ("double_cv", "rodeo")
"""The estimators whose moments the Bernoulli toy takes by enumeration (their only randomness is
their draws; the closed forms of ``exact.bernoulli`` serve the others)."""

MAX_TUPLES = 2**16
"""The most K-tuples of joint outcomes enumerated; beyond, the moments are unknown (None)."""


class GivenDraws(Independent):
    """Independent Bernoulli bits whose ``sample`` returns fixed draws [K, M, D] (each tuple a
    batch row), and refuses any other request: an estimator drawing more is not enumerable."""

    def __init__(self, logits: torch.Tensor, draws: torch.Tensor) -> None:
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)
        self.draws = draws

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        if tuple(sample_shape) != tuple(self.draws.shape[:1]):
            raise RuntimeError(
                f"enumerated draws are {tuple(self.draws.shape[:1])}, not {sample_shape}"
            )
        return self.draws.clone()


def all_tuples(dim: int, num_samples: int) -> torch.Tensor:
    """Every K-tuple of D-bit draws, as [K, M, D] in float64, M = 2^(D K)."""
    bits = itertools.product((0.0, 1.0), repeat=dim * num_samples)
    bits = torch.tensor(list(bits), dtype=torch.float64)
    return bits.reshape(-1, num_samples, dim).transpose(0, 1)


def enumerated_moments(
    estimator: Estimator, f: CostFn, theta: list[float], num_samples: int
) -> tuple[float, float] | tuple[None, None]:
    """(expectation, variance) of one estimate of d/dtheta_1 E[f] at the logits ``theta`` (one
    per bit), from a frozen copy of ``estimator``; (None, None) beyond ``MAX_TUPLES`` tuples."""
    if 2 ** (len(theta) * num_samples) > MAX_TUPLES:
        return None, None
    frozen = copy.deepcopy(estimator).eval()
    learned = frozen.parameters() if hasattr(frozen, "parameters") else []
    device = learned[0].device if learned else torch.device("cpu")  # where the toy trained it
    draws = all_tuples(len(theta), num_samples).to(device)
    logits = torch.tensor(theta, dtype=draws.dtype, device=device).expand(draws.shape[1:]).clone()
    logits.requires_grad_()
    dist = GivenDraws(logits, draws)
    with unvalidated():
        out = frozen(dist, f, num_samples).mean(0)
        (grad,) = torch.autograd.grad(out.sum(), logits)
        weight = dist.log_prob(draws).sum(0).exp().detach()
    g = grad[:, 0]
    mean = float(weight @ g)
    return mean, max(float(weight @ g**2) - mean**2, 0.0)
