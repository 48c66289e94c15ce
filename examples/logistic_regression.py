"""Bayesian logistic regression on scikit-learn's breast_cancer data (569 x 30, standardized,
plus a bias), prior N(0, I), a diagonal Gaussian posterior q(w) = N(loc, exp(log_scale)^2):
the gradient of the expected log joint E_q[log p(y | X, w) + log p(w)], the part of the ELBO that
needs Monte Carlo (the entropy of q has a closed form).

    python -m benchmarks.run task=custom \
        task.target=examples.logistic_regression:make estimator=reparam
"""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal
from torch.nn.functional import logsigmoid


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized features with a column of ones, and labels in {-1, +1}."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return torch.cat([x, torch.ones(len(x), 1)], 1), torch.as_tensor(2.0 * y - 1.0)


def make(cfg=None):
    """The posterior at loc = 0, scale = 0.1: the parameters, q, and the log joint."""
    x, y = data()
    dim = x.shape[1]
    params = {"loc": torch.zeros(dim), "log_scale": torch.full((dim,), -2.3)}

    def posterior(p: dict[str, torch.Tensor]) -> Independent:
        return Independent(Normal(p["loc"], p["log_scale"].exp()), 1)

    def log_joint(w: torch.Tensor) -> torch.Tensor:
        """[..., dim] weights -> [...] log p(y | X, w) + log p(w)."""
        likelihood = logsigmoid(y * (w @ x.T)).sum(-1)
        return likelihood - 0.5 * (w * w).sum(-1)

    return params, posterior, log_joint
