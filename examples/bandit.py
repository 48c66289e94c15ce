"""Policy gradient on a contextual bandit: a softmax policy pi(a | x) = softmax(x W + b) over 4
arms in each of 16 fixed contexts (5 features), the expected reward averaged over the contexts.
The rewards are a fixed table r(x, a), so the exact gradient of E[r] is a finite sum, which
autograd gives; actions are discrete, so only estimators without a pathwise gradient apply.

    python -m benchmarks.run task=custom task.target=examples.bandit:make estimator=reinforce
"""

from __future__ import annotations

import torch
from torch.distributions import Categorical, Independent

CONTEXTS, FEATURES, ARMS = 16, 5, 4


def make(cfg=None):
    """The policy at small random weights, its action distribution, the reward, and the exact
    gradient of the expected reward there."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(CONTEXTS, FEATURES, generator=generator)
    reward = torch.rand(CONTEXTS, ARMS, generator=generator)
    params = {
        "weights": 0.1 * torch.randn(FEATURES, ARMS, generator=generator),
        "bias": torch.zeros(ARMS),
    }
    rows = torch.arange(CONTEXTS)

    def policy(p: dict[str, torch.Tensor]) -> Independent:
        """One action per context; the parameters may carry leading batch axes."""
        return Independent(Categorical(logits=x @ p["weights"] + p["bias"].unsqueeze(-2)), 1)

    def mean_reward(actions: torch.Tensor) -> torch.Tensor:
        """[..., CONTEXTS] actions -> [...] reward averaged over the contexts."""
        return reward[rows, actions].mean(-1)

    def expected_reward(p: dict[str, torch.Tensor]) -> torch.Tensor:
        probs = policy(p).base_dist.probs
        return (probs * reward).sum(-1).mean(-1)

    leaves = {name: p.clone().requires_grad_() for name, p in params.items()}
    grads = torch.autograd.grad(expected_reward(leaves), list(leaves.values()))
    exact = dict(zip(params, grads, strict=True))
    return params, policy, mean_reward, exact
