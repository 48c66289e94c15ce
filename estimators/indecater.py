"""IndeCateR, the CatLog-derivative estimator for independent categoricals (De Smet, Sansone and
Zuidberg Dos Martires, ICML 2023, "Differentiable Sampling of Categorical Distributions Using the
CatLog-Derivative Trick").

With N draws x^(n) of D independent variables of C classes each, and x^(n)_{d<-k} the draw with
variable d set to class k, the estimate is

    g = sum_d sum_k grad p_d(k) (1/N) sum_n f(x^(n)_{d<-k}),

unbiased: for each d it sums out variable d exactly and samples the others. It takes N * D * C
evaluations of f, made in one call on all the modified points. A Bernoulli variable is a class
of {0, 1} with p(1) = sigmoid(logit). The variables of Independent(OneHotCategorical) are its
reinterpreted batch dimensions (logits [..., D, C]), those of Independent(Bernoulli) its event.
For f additive across the variables the estimate is exact (zero variance) at any N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from estimators.base import CostFn, Estimator, base_distribution, register


def variables(dist: Distribution) -> tuple[torch.Size, int, bool]:
    """The shape of ``dist``'s variables within its event, the classes C of each, and whether
    they are one-hot (else Bernoulli bits)."""
    inner = base_distribution(dist)
    one_hot = isinstance(inner, OneHotCategorical)
    event = dist.event_shape
    if one_hot:
        return event[:-1], event[-1], True
    return event, 2, False


def class_probs(dist: Distribution) -> torch.Tensor:
    """p_d(k) for every variable and class: [*batch, D, C], differentiable in the parameters."""
    inner = base_distribution(dist)
    shape, classes, one_hot = variables(dist)
    if one_hot:
        probs = inner.probs.expand(*dist.batch_shape, *dist.event_shape)
    else:
        p = inner.probs.expand(*dist.batch_shape, *dist.event_shape)
        probs = torch.stack([1 - p, p], -1)
    return probs.reshape(*dist.batch_shape, math.prod(shape), classes)


def modified_points(x: torch.Tensor, classes: int, one_hot: bool) -> torch.Tensor:
    """Every draw with each variable set to each class: [D, C, *x.shape] from ``x`` of shape
    [N, *batch, D, C] (one-hot) or [N, *batch, D] (bits)."""
    dim = x.shape[-2] if one_hot else x.shape[-1]
    eye = torch.eye(dim, dtype=torch.bool, device=x.device)
    values = torch.arange(classes, dtype=x.dtype, device=x.device)
    if one_hot:
        values = F.one_hot(values.long(), classes).to(x.dtype)  # [C, C]
        batch = (1,) * (x.dim() - 2)
        mask = eye.reshape(dim, 1, *batch, dim, 1)
        values = values.reshape(1, classes, *batch, 1, classes)
    else:
        batch = (1,) * (x.dim() - 1)
        mask = eye.reshape(dim, 1, *batch, dim)
        values = values.reshape(1, classes, *batch, 1)
    return torch.where(mask, values, x)


@register
class IndeCateR(Estimator):
    """sum_d sum_k grad p_d(k) mean_n f(x^(n) with variable d set to k) (unbiased)."""

    name = "indecater"
    title = "IndeCateR"

    def supports(self, dist: Distribution) -> bool:
        """Bernoulli and one-hot categorical distributions, Independent-wrapped or not."""
        return isinstance(base_distribution(dist), Bernoulli | OneHotCategorical)

    def evaluations(self, dist: Distribution, num_samples: int) -> int:
        """N * D * C: each draw with each variable set to each class."""
        shape, classes, _ = variables(dist)
        return num_samples * math.prod(shape) * classes

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        shape, classes, one_hot = variables(dist)
        dim, batch = math.prod(shape), dist.batch_shape
        x = dist.sample((num_samples,))
        flat = (
            x.reshape(num_samples, *batch, dim, classes) if one_hot else x.reshape(-1, *batch, dim)
        )
        points = modified_points(flat, classes, one_hot)  # [D, C, N, *batch, D(, C)]
        leading = dim * classes * num_samples
        fk = f(points.reshape(leading, *batch, *dist.event_shape))
        fk = fk.reshape(dim, classes, num_samples, *batch)
        # f(x^(n)) itself: variable 0 set to its own drawn class.
        own = flat[..., 0, :].argmax(-1) if one_hot else flat[..., 0].long()  # [N, *batch]
        fx = fk[0].gather(0, own.unsqueeze(0)).squeeze(0)
        mean_fk = fk.detach().mean(2).movedim(0, -1).movedim(0, -1)  # [*batch, D, C]
        s = (class_probs(dist) * mean_fk).sum((-2, -1))
        return fx + (s - s.detach())
