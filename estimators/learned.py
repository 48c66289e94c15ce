"""Learned control variates (REBAR, RELAX, Double CV, RODEO): parameters whose value leaves the
estimator unbiased, trained by Adam to lower its variance.

The parameters are built at the first call, on the logits' device and dtype, since only then are
the event's sizes known. ``backward`` takes one Adam step on the squared gradient estimate with
respect to the distribution's parameters: its mean does not depend on the control variate, so
that step lowers the variance (Grathwohl et al. 2018).
"""

from __future__ import annotations

import copy

import torch

from estimators.errors import positive_number


class LearnedControlVariate:
    """Trained tensors and modules of a control variate (``self.modules``, built by
    ``make_modules``), their Adam, and their state for checkpoints. Mixed in before Estimator."""

    training: bool

    def __init__(self, lr: float) -> None:
        self.lr = positive_number(lr, "lr")
        self.modules: dict[str, torch.Tensor | torch.nn.Module] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.pending: dict | None = None  # a state loaded before the first call

    def make_modules(self, like: dict, event_shape: torch.Size) -> dict:
        """The trained tensors and modules, created with ``like`` (dtype and device)."""
        raise NotImplementedError

    def build(self, logits: torch.Tensor, event_shape: torch.Size) -> None:
        like = {"dtype": logits.dtype, "device": logits.device}
        self.modules = self.make_modules(like, event_shape)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        if self.pending is not None:
            self.load_state_dict(self.pending)

    def parameters(self) -> list[torch.Tensor]:
        """The trained parameters (empty before the first call)."""
        params = []
        for value in self.modules.values():
            params += list(value.parameters()) if isinstance(value, torch.nn.Module) else [value]
        return params

    def backward(self, loss: torch.Tensor, *dist_params: torch.Tensor) -> None:
        """``loss.backward()``, and in training mode one Adam step of the control variate on the
        squared gradient of ``loss`` with respect to ``dist_params`` (its single-sample variance
        plus a mean that does not depend on the control variate)."""
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
