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

import torch
from torch.distributions import Bernoulli, Distribution

from estimators.base import CostFn, Estimator, base_distribution, register
from estimators.errors import ConfigError, finite_number
from estimators.learned import LearnedControlVariate


def leave_one_out(x: torch.Tensor) -> torch.Tensor:
    """The mean over the other draws (axis 0) for each draw."""
    return (x.sum(0) - x) / (x.shape[0] - 1)


def sum_event(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.sum(tuple(range(-n, 0))) if n else x


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


class LeaveOneOutControlVariate(LearnedControlVariate, Estimator):
    """What Double CV and RODEO share: RLOO over K >= 2 Bernoulli draws with a learned control
    variate built from f's gradients at the draws."""

    trainable = True
    differentiates_f = True  # g_k: f's gradient at the binary draws

    @property
    def min_samples(self) -> int:
        return 2  # a leave-one-out mean needs another draw

    @classmethod
    def label(cls, options: dict) -> str:
        return cls.title

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli)

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        """The control variate built at the first call; f at plain draws where there is no
        gradient to estimate; else ``from_draws`` on the draws, f and grad f at them."""
        logits = base_distribution(dist).logits
        if not self.modules:
            self.build(logits, dist.event_shape)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return f(dist.sample((num_samples,)))
        return self.from_draws(dist, *bits_and_gradients(dist, f, num_samples, self.name))

    def from_draws(
        self, dist: Distribution, b: torch.Tensor, fb: torch.Tensor, g: torch.Tensor
    ) -> torch.Tensor:
        """The estimate from K draws b, f(b) (with f's own graph) and grad_b f(b)."""
        raise NotImplementedError


@register
class DoubleCV(LeaveOneOutControlVariate):
    """RLOO with a leave-one-out Taylor control variate, alpha gbar_{-k} . (b_k - p), trained."""

    name = "double_cv"
    title = "Double CV"

    def __init__(self, alpha: float = 0.0, lr: float = 1e-3) -> None:
        self.alpha = finite_number(alpha, "alpha")
        super().__init__(lr)

    def options(self) -> dict:
        return {"alpha": self.alpha, "lr": self.lr}

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        return {"alpha": torch.tensor(self.alpha, **like, requires_grad=True)}

    def learned(self) -> dict[str, float]:
        """The trained alpha."""
        return {"alpha": self.modules["alpha"].item() if self.modules else self.alpha}

    def from_draws(
        self, dist: Distribution, b: torch.Tensor, fb: torch.Tensor, g: torch.Tensor
    ) -> torch.Tensor:
        p = base_distribution(dist).probs
        n = len(dist.event_shape)
        alpha = self.modules["alpha"] if self.training else self.modules["alpha"].detach()
        c = sum_event(leave_one_out(g) * (b - p.detach()), n)  # [K, *batch]
        signal = fb.detach() + alpha * c
        signal = signal - leave_one_out(signal)
        logp = dist.log_prob(b)
        # -alpha gbar p (1 - p) per logit: the gradient of -alpha gbar . p, valued zero.
        correction = sum_event(g.mean(0) * (p - p.detach()), n)
        return fb + signal * (logp - logp.detach()) - alpha * correction
