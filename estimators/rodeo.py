"""RODEO (Shi, Zhou, Hwang, Titsias and Mackey, NeurIPS 2022, "Gradient Estimation with Discrete
Stein Operators"; code thjashin/rodeo) for Bernoulli latents: RLOO plus Stein control variates
over the one-bit-flip neighbours, with no more evaluations of f.

For independent bits x ~ q, the Gibbs Stein operator over the D coordinates,

    (A h)(x) = 1/D sum_i [q(flip_i x)_i h(flip_i x) + (q(x)_i - 1) h(x)]
             = 1/D sum_i w_i [h(flip_i x) - h(x)],   w_i = q_i(1 - x_i),

has E_q[A h] = 0 for any h (resampling coordinate i from q leaves q unchanged). With K >= 2 draws
b_k, f_k = f(b_k) and g_k = grad_b f(b_k), each draw gets its own h_k, a small network (output
(h0, h1)) of a Taylor surrogate of f built from the other draws only,
s_k(y) = 1/(K-1) sum_{j != k} [f_j + g_j . (y - b_j)], fed as (s_k(y) - fbar_{-k}, fbar_{-k}),
so h_k does not depend on b_k. The estimate with respect to the logits is

    1/K sum_k [(f_k - 1/(K-1) sum_{j != k} (f_j + alpha (A h0_j)(b_j))) (b_k - p)
               + beta (A [h1_k(.) (. - p)])(b_k)],

unbiased for every alpha, beta and network: given the other draws, (A h0_j)(b_j) has mean zero
and is multiplied by a score of another draw, and the last term has mean zero given the others.
alpha, beta and the network are trained by Adam on the squared estimate (``backward``), as
REBAR's eta is. h is evaluated at the K (D + 1) points, f only at the K draws; one backward pass
through f for the g_k.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from estimators.base import base_distribution, register
from estimators.double_cv import LeaveOneOutControlVariate, leave_one_out
from estimators.errors import require_int


@register
class Rodeo(LeaveOneOutControlVariate):
    """RLOO plus Stein control variates over one-bit flips, h a network of a Taylor surrogate."""

    name = "rodeo"
    title = "RODEO"

    def __init__(self, lr: float = 1e-3, hidden: int = 100) -> None:
        super().__init__(lr)
        require_int(hidden, "hidden")
        self.hidden = hidden

    def options(self) -> dict:
        return {"lr": self.lr, "hidden": self.hidden}

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        # Its own seed: building it at the first call must not shift the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hidden)
            net = nn.Sequential(
                nn.Linear(2, self.hidden), nn.LeakyReLU(0.3), nn.Linear(self.hidden, 2)
            )
        return {
            "alpha": torch.zeros((), **like, requires_grad=True),
            "beta": torch.zeros((), **like, requires_grad=True),
            "h": net.to(**like),
        }

    def learned(self) -> dict[str, float]:
        """The trained alpha and beta (0 before training: RLOO)."""
        if not self.modules:
            return {"alpha": 0.0, "beta": 0.0}
        return {"alpha": self.modules["alpha"].item(), "beta": self.modules["beta"].item()}

    def from_draws(
        self, dist: Distribution, b_event: torch.Tensor, fb: torch.Tensor, g_event: torch.Tensor
    ) -> torch.Tensor:
        base = base_distribution(dist)
        logits = base.logits
        n = len(dist.event_shape)
        # Flatten the event to D coordinates (D = 1 for a plain Bernoulli).
        flat = (lambda x: x.flatten(-n)) if n else (lambda x: x.unsqueeze(-1))
        b, g, p = flat(b_event), flat(g_event), flat(base.probs.detach())
        fd = fb.detach()
        fbar = leave_one_out(fd)  # [K, *batch]
        gbar = leave_one_out(g)  # [K, *batch, D]
        # s_k(y) - fbar_{-k} = gbar_{-k} . y - mean_{j != k} g_j . b_j, at b_k and its neighbours.
        t_x = (gbar * b).sum(-1) - leave_one_out((g * b).sum(-1))
        t_n = t_x.unsqueeze(-1) + gbar * (1 - 2 * b)
        h = self.modules["h"]
        h_x = h(torch.stack([t_x, fbar], -1))  # [K, *batch, 2]
        h_n = h(torch.stack([t_n, fbar.unsqueeze(-1).expand_as(t_n)], -1))  # [K, *batch, D, 2]
        w = torch.where(b > 0, 1 - p, p)  # q_i of the flipped bit
        d = b.shape[-1]
        stein0 = (w * (h_n[..., 0] - h_x[..., :1])).mean(-1)  # (A h0)(b_k): [K, *batch]
        score = b - p
        # (A [h1(.) (. - p)])(b_k): flipping bit i changes the score's coordinate i only.
        stein1 = score * (w * (h_n[..., 1] - h_x[..., 1:])).mean(-1, keepdim=True)
        stein1 = stein1 + w * h_n[..., 1] * (1 - 2 * b) / d  # [K, *batch, D]
        alpha, beta = self.modules["alpha"], self.modules["beta"]
        if not self.training:
            alpha, beta, stein0, stein1 = (x.detach() for x in (alpha, beta, stein0, stein1))
        signal = fd - leave_one_out(fd + alpha * stein0)
        logp = dist.log_prob(b_event)
        linear = (beta * stein1 * (flat(logits) - flat(logits).detach())).sum(-1)
        return fb + signal * (logp - logp.detach()) + linear
