"""Double control variates (Titsias and Shi, AISTATS 2022, "Double Control Variates for Gradient
Estimation in Discrete Latent Variable Models", arXiv 2111.05300; code thjashin/double-cv) for
Bernoulli latents: RLOO whose leave-one-out baseline gets a second control variate, a linear
Taylor term of f built from the other draws' gradients of f at their binary points.

With K >= 2 draws b_k ~ Bern(p), p = sigmoid(theta), f_k = f(b_k), g_k = grad_b f(b_k) (f
differentiated at the binary points), gbar the mean of the g_k and gbar_{-k} the mean of the
others', c_k = gbar_{-k} . (b_k - p) (a dot product over the event), the estimate with respect
to the logits theta is

    1/K sum_k [f_k + alpha c_k - 1/(K-1) sum_{j != k} (f_j + alpha c_j)] (b_k - p)
        - alpha gbar p (1 - p).

Unbiased for every alpha: gbar_{-k} does not depend on b_k, so E[c_k (b_k - p)] = E[g] p (1 - p);
c_j for j != k has mean zero given everything but b_j, so E[c_j (b_k - p)] = 0; the last term
removes what is left. alpha = 0 is RLOO. alpha, one scalar as in the paper's code, is trained
(``backward``) by Adam on the squared estimate with respect to the distribution's parameters,
whose mean does not depend on it: that lowers the variance. K evaluations of f and one backward
pass through f per call.
"""

from __future__ import annotations

import copy
import math

import torch
from torch.distributions import Bernoulli, Distribution

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import ConfigError, positive_number


def finite_number(value, key: str) -> float:
    """``value`` as a float if it is a finite number; else a ConfigError naming ``key``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value)):
        raise ConfigError(f"{key}={value!r}: must be a finite number")
    return float(value)


def leave_one_out(x: torch.Tensor) -> torch.Tensor:
    """The mean over the other draws (axis 0) for each draw."""
    return (x.sum(0) - x) / (x.shape[0] - 1)


def sum_event(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.sum(tuple(range(-n, 0))) if n else x


class LearnedCoefficients:
    """Trained tensors of a control variate (``self.modules``), built at the first call on the
    logits' device and dtype, their Adam, ``backward`` lowering the squared gradient estimate,
    and the state for checkpoints (as REBAR's)."""

    lr: float
    modules: dict
    optimizer: torch.optim.Optimizer | None
    pending: dict | None
    training: bool

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        raise NotImplementedError

    def build(self, logits: torch.Tensor, event_shape: torch.Size) -> None:
        like = {"dtype": logits.dtype, "device": logits.device}
        self.modules = self.make_modules(like, event_shape)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        if self.pending is not None:
            self.load_state_dict(self.pending)

    def parameters(self) -> list[torch.Tensor]:
        """The trained tensors (empty before the first call)."""
        params = []
        for value in self.modules.values():
            params += list(value.parameters()) if isinstance(value, torch.nn.Module) else [value]
        return params

    def backward(self, loss: torch.Tensor, *dist_params: torch.Tensor) -> None:
        """``loss.backward()``, and in training mode one Adam step of the coefficients on the
        squared gradient of ``loss`` with respect to ``dist_params``."""
        params = self.parameters()
        if not (self.training and params and all(p.requires_grad for p in dist_params)):
            loss.backward()
            return
        grads = torch.autograd.grad(loss, dist_params, create_graph=True)
        cv_grads = torch.autograd.grad(
            sum(g.pow(2).sum() for g in grads), params, retain_graph=True, allow_unused=True
        )
        loss.backward()
        for param, cv_grad in zip(params, cv_grads, strict=True):
            param.grad = torch.zeros_like(param) if cv_grad is None else cv_grad
        self.optimizer.step()

    def state_dict(self) -> dict:
        if not self.modules:
            return copy.deepcopy(self.pending) if self.pending is not None else {}
        return {
            "parameters": [p.detach().clone() for p in self.parameters()],
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if not self.modules:  # sizes are known at the first call; restore then
            self.pending = state
            return
        with torch.no_grad():
            for param, saved in zip(self.parameters(), state["parameters"], strict=True):
                param.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.pending = None


def bits_and_gradients(
    dist: Distribution, f: CostFn, num_samples: int, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K draws b [K, *batch, *event], f(b) [K, *batch] (with f's own graph) and grad_b f(b),
    detached; a ConfigError where autograd finds no derivative of f."""
    b = dist.sample((num_samples,)).requires_grad_()
    with torch.enable_grad():
        fb = f(b)
        if not fb.requires_grad:
            raise ConfigError(
                f"estimator '{name}' needs the derivative of f at the binary draws; autograd "
                "finds none (f is not differentiable in its input)"
            )
        (g,) = torch.autograd.grad(fb.sum(), b, retain_graph=True, allow_unused=True)
    return b.detach(), fb, torch.zeros_like(b) if g is None else g.detach()


@register
class DoubleCV(LearnedCoefficients, Estimator):
    """RLOO with a leave-one-out Taylor control variate, alpha gbar_{-k} . (b_k - p), trained."""

    name = "double_cv"
    title = "Double CV"
    trainable = True
    differentiates_f = True  # g_k: f's gradient at the binary draws

    def __init__(self, alpha: float = 0.0, lr: float = 1e-3) -> None:
        self.alpha = finite_number(alpha, "alpha")
        self.lr = positive_number(lr, "lr")
        self.modules: dict[str, torch.Tensor] = {}
        self.optimizer = None
        self.pending = None

    @property
    def min_samples(self) -> int:
        return 2  # a leave-one-out mean needs another draw

    def options(self) -> dict:
        return {"alpha": self.alpha, "lr": self.lr}

    @classmethod
    def label(cls, options: dict) -> str:
        return cls.title

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli)

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        return {"alpha": torch.tensor(self.alpha, **like, requires_grad=True)}

    def learned(self) -> dict[str, float]:
        """The trained alpha."""
        return {"alpha": self.modules["alpha"].item() if self.modules else self.alpha}

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        base = base_distribution(dist)
        p = base.probs
        if not self.modules:
            self.build(p, dist.event_shape)
        if not (torch.is_grad_enabled() and p.requires_grad):
            return f(dist.sample((num_samples,)))
        b, fb, g = bits_and_gradients(dist, f, num_samples, self.name)
        n = len(dist.event_shape)
        alpha = self.modules["alpha"] if self.training else self.modules["alpha"].detach()
        c = sum_event(leave_one_out(g) * (b - p.detach()), n)  # [K, *batch]
        signal = fb.detach() + alpha * c
        signal = signal - leave_one_out(signal)
        logp = dist.log_prob(b)
        # -alpha gbar p (1 - p) per logit: the gradient of -alpha gbar . p, valued zero.
        correction = sum_event(g.mean(0) * (p - p.detach()), n)
        return fb + signal * (logp - logp.detach()) - alpha * correction
