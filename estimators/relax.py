"""RELAX (Grathwohl et al. 2018) for Bernoulli and one-hot categorical latents: REBAR's estimator
with a control variate that adds a small learned surrogate network to the scaled relaxed f,
c(z) = eta f(relaxed z) + r(z), r an MLP of the perturbed logits z over the event.

Unbiased for any r; r, eta and tau are trained together on the estimator's variance (see
``estimators.rebar``). r's last layer starts at zero, so an untrained RELAX is REBAR.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from estimators.base import register
from estimators.errors import require_int
from estimators.rebar import Rebar


@register
class Relax(Rebar):
    """REBAR plus a learned surrogate r(z) in the control variate."""

    name = "relax"
    title = "RELAX"

    def __init__(
        self, temperature: float = 0.5, eta: float = 1.0, lr: float = 1e-3, hidden: int = 50
    ) -> None:
        super().__init__(temperature, eta, lr)
        require_int(hidden, "hidden")
        self.hidden = hidden
        self.event_ndim = 0

    def options(self) -> dict:
        return {**super().options(), "hidden": self.hidden}

    def extra_modules(self, like: dict, event_shape: torch.Size) -> dict[str, nn.Module]:
        size = math.prod(event_shape)
        # Its own seed: building it at the first call must not shift the caller's random stream
        # (a resumed run builds it at a different point than an uninterrupted one).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(size)
            surrogate = nn.Sequential(
                nn.Linear(size, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1)
            )
        nn.init.zeros_(surrogate[-1].weight)
        nn.init.zeros_(surrogate[-1].bias)
        self.event_ndim = len(event_shape)
        return {"surrogate": surrogate.to(**like)}

    def control_variate(self, f_relaxed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """eta f(relaxed z) + r(z), r applied to each sample's flattened event."""
        flat = z.reshape(*z.shape[: z.dim() - self.event_ndim], -1)
        return super().control_variate(f_relaxed, z) + self.modules["surrogate"](flat).squeeze(-1)
