"""One-hot categoricals at the harness's leaf copies of one logit table, made once, not per copy.

``benchmarks.measure.leaf_copies`` hands a toy b copies of its [D, C] logits, expanded along a
new first axis (stride 0), so that row b of their gradient is estimate b. torch's
``OneHotCategorical`` would normalize every copy, turn each into probabilities and take each
log-probability by argmax and gather, each a pass over [b, D, C] forward and back. Here the
normalization and the probabilities are computed once and expanded, and every gradient is
written down per copy: the same values, and each copy's gradient its own.
"""

from __future__ import annotations

import torch
from torch.distributions import OneHotCategorical


def class_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over the last (class) axis, kept: a matrix-vector product, which on a CPU takes
    half the time of torch's reduction over an axis of a few classes."""
    return (x @ x.new_ones(x.shape[-1])).unsqueeze(-1)


class CopiesLogSoftmax(torch.autograd.Function):
    """log_softmax over the last axis of copies of one tensor (expanded along the first axis):
    computed once and expanded, each copy's gradient its own, g - softmax * sum(g)."""

    @staticmethod
    def forward(ctx, copies: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(copies[0], -1)
        ctx.save_for_backward(log_p.exp())
        return log_p.expand_as(copies)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return grad - p * class_sum(grad)


class CopiesSoftmax(torch.autograd.Function):
    """softmax over the last axis of copies of one tensor, as ``CopiesLogSoftmax``: each copy's
    gradient p * (g - <p, g>)."""

    @staticmethod
    def forward(ctx, copies: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(copies[0], -1)
        ctx.save_for_backward(p)
        return p.expand_as(copies)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return p * (grad - class_sum(p * grad))


class OneHotLogProb(torch.autograd.Function):
    """log p of one-hot values x [..., C] at normalized ``logits``: sum(x * logits) over the
    classes, its gradient g x with respect to the logits (summed over what they broadcast over)
    written down rather than walked back through a product and a sum. Constant in x, as torch's
    (which reads x through its argmax)."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(value)
        ctx.logits_shape = logits.shape
        return class_sum(value * logits).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (value,) = ctx.saved_tensors
        return None, (grad.unsqueeze(-1) * value).sum_to_size(ctx.logits_shape)


class SharedOneHotCategorical(OneHotCategorical):
    """One-hot categoricals at copies of one logit table along the first axis (the harness's
    ``leaf_copies``, stride 0): normalized once, each copy's gradient its own. The log-probability
    of a one-hot x is ``OneHotLogProb``, where torch takes an argmax, a gather and a sum."""

    @classmethod
    def of(cls, copies: torch.Tensor) -> SharedOneHotCategorical:
        """The categoricals at ``copies`` [b, ..., C] of logits ``copies[0]``."""
        dist = cls(logits=copies[0].detach(), validate_args=False).expand(copies.shape[:-1])
        inner = dist._categorical
        inner.logits = inner._param = CopiesLogSoftmax.apply(copies)
        inner.probs = CopiesSoftmax.apply(copies)
        return dist

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return OneHotLogProb.apply(value, self.logits)
