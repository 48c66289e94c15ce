"""REBAR (Tucker et al. 2017): REINFORCE for Bernoulli and one-hot categorical latents with a
control variate built from the Concrete relaxation; unbiased for every value of the control
variate's parameters, which the harness trains to minimize the estimator's variance.

Per dimension, with logit theta and u, v ~ U(0, 1): z = theta + logit(u) and b = 1[z > 0] (so b is
a Bernoulli(sigmoid(theta)) draw); z~ is z drawn again given b, reparameterized in theta with b
held fixed: z~ = softplus(logit(v) + softplus(theta)) if b = 1, else
-softplus(logit(v) + softplus(-theta)). With the control variate c(z) = eta f(sigmoid(z / tau)),

    g = [f(b) - c(z~)] d log p(b) / dtheta + d c(z) / dtheta - d c(z~) / dtheta,

unbiased because z and (b, z~) have the same distribution. For a one-hot categorical with logits
theta: z = theta + G (G standard Gumbel), b = onehot(argmax z), z~ drawn from z's law given b
(top-down, ``relaxed.conditional_perturbed``) and softmax(z / tau) in place of the sigmoid
(Tucker et al. 2017, appendix; Grathwohl et al. 2018, appendix). f is called once, on
[b; sigmoid(z/tau); sigmoid(z~/tau)] (softmax for a categorical), so ``num_samples`` draws cost
3 num_samples evaluations. eta and log tau are trained, as in the RELAX paper, by Adam on the
squared gradient estimate with respect to the distribution's parameters in ``backward``
(``estimators.learned``); E[g] does not depend on them, so that lowers the variance.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import finite_number, positive_number
from estimators.learned import LearnedControlVariate
from estimators.relaxed import conditional_perturbed, gumbel


def logit_uniform(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """logit(u) for u ~ U(0, 1), with u kept off 0 and 1 so that the logit is finite."""
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(tiny, 1 - 1e-7)
    return torch.log(u) - torch.log1p(-u)


def conditional_logit(theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z~ ~ p(z | b) for z = theta + logit(u): a fresh draw consistent with b, differentiable in
    theta (log-space formulas, finite for any theta)."""
    noise = logit_uniform(b.shape, theta)
    return torch.where(
        b > 0, F.softplus(noise + F.softplus(theta)), -F.softplus(noise + F.softplus(-theta))
    )


@register
class Rebar(LearnedControlVariate, Estimator):
    """[f(b) - c(z~)] grad log p(b) + grad c(z) - grad c(z~), c(z) = eta f(relaxed z at tau)."""

    name = "rebar"
    title = "REBAR"
    trainable = True
    differentiates_f = True  # its control variate is f at relaxed samples

    def __init__(self, temperature: float = 0.5, eta: float = 1.0, lr: float = 1e-3) -> None:
        self.temperature = positive_number(temperature, "temperature")
        self.eta = finite_number(eta, "eta")
        super().__init__(lr)

    def options(self) -> dict:
        return {"temperature": self.temperature, "eta": self.eta, "lr": self.lr}

    def evaluations(self, dist: Distribution, num_samples: int) -> int:
        """3 num_samples: f at b and at the two relaxed samples of each draw (relax too)."""
        return 3 * num_samples

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli and one-hot categorical distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli | OneHotCategorical)

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        return {
            "eta": torch.tensor(self.eta, **like, requires_grad=True),
            "log_temperature": torch.tensor(math.log(self.temperature), **like, requires_grad=True),
            **self.extra_modules(like, event_shape),
        }

    def extra_modules(self, like: dict, event_shape: torch.Size) -> dict[str, torch.nn.Module]:
        """Further trained parts of the control variate (RELAX's surrogate network)."""
        return {}

    def learned(self) -> dict[str, float]:
        """The trained eta and temperature."""
        if not self.modules:
            return {"eta": self.eta, "temperature": self.temperature}
        return {
            "eta": self.modules["eta"].item(),
            "temperature": self.modules["log_temperature"].exp().item(),
        }

    def control_variate(self, f_relaxed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """c(z) from f at the relaxed sample, sigmoid(z / tau) or softmax(z / tau)."""
        return self.modules["eta"] * f_relaxed

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        inner = base_distribution(dist)
        logits = inner.logits
        shape = (num_samples, *dist.batch_shape, *dist.event_shape)
        if not self.modules:
            self.build(logits, dist.event_shape)
        if isinstance(inner, Bernoulli):
            z = logits + logit_uniform(shape, logits)
            b = (z > 0).to(logits.dtype).detach()
            z_tilde = conditional_logit(logits, b)
            relaxation = torch.sigmoid
        else:  # one-hot categorical: Gumbel-max, its conditional draw, and the softmax
            z = logits + gumbel(shape, logits)
            b = F.one_hot(z.argmax(-1), z.shape[-1]).to(logits.dtype)
            z_tilde = conditional_perturbed(logits, b)
            relaxation = partial(torch.softmax, dim=-1)
        tau = self.modules["log_temperature"].exp()
        f_all = f(torch.cat([b, relaxation(z / tau), relaxation(z_tilde / tau)]))
        f_b, f_z, f_z_tilde = f_all.split(num_samples)
        c_z, c_z_tilde = self.control_variate(f_z, z), self.control_variate(f_z_tilde, z_tilde)
        logp = dist.log_prob(b)
        out = f_b + (f_b.detach() - c_z_tilde) * (logp - logp.detach())
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return out
        # grad c(z) - grad c(z~) flows to the distribution's parameters only: f's own parameters
        # (a decoder) get the pathwise gradient of f(b) alone, as the contract asks.
        (cv_grad,) = torch.autograd.grad(
            (c_z - c_z_tilde).sum(), logits, retain_graph=True, create_graph=self.training
        )
        event_dims = tuple(range(-len(dist.event_shape), 0))
        linear = (logits - logits.detach()) * cv_grad
        return out + (linear.sum(event_dims) if event_dims else linear) / num_samples

    @classmethod
    def label(cls, options: dict) -> str:
        """The temperature is trained: the label gives where it starts."""
        if "temperature" not in options:
            return cls.title
        return f"{cls.title} (τ from {float(options['temperature']):g})"
