"""CARMS, antithetic REINFORCE with n coupled categorical draws (Dimitriev and Zhou, NeurIPS 2021,
"CARMS: Categorical-Antithetic-REINFORCE Multi-Sample Gradient Estimator"), its CARMS-I form.

Per categorical variable with class probabilities p: an order of the C classes is drawn uniformly
from the C(C-1)/2 orders ``pair_orders`` lists (one per pair {a, b}: a first, b last), the unit
interval is cut into the classes' intervals in that order, and the n draws are the classes of n
Dirichlet-copula uniforms (``estimators.arms.dirichlet_uniforms``: each U(0, 1), pairwise
negatively dependent). Each draw is Categorical(p); two draws fall in classes (a, b) with
probability P(a, b), the copula's mass on the two intervals averaged over the orders (positive
for every a != b: some order puts a first and b last). The estimate for variable d's logits,

    g_d = 1/(n(n-1)) sum_{i != j} r_d(z_id, z_jd) (f(z_i) - f(z_j)) (onehot(z_id) - p_d),
    r_d(a, b) = p_d(a) p_d(b) / P_d(a, b),

is RLOO with each pair reweighted to the law of two independent draws: unbiased, because the
other variables' draws are independent of the pair (d, i, j). A pair of draws in the same class
cancels ((i, j)'s term and (j, i)'s are opposite), so it is left out: its P may be 0 (at n = 2)
or tiny, and its ratio would add rounding only. Independent draws (r = 1) give RLOO. The pair
probabilities are computed in float64, which float32 logits would lose for rare classes.
``num_samples`` is n >= 2, one estimate per call, n evaluations of f. The ratio is not clipped
(the paper's code clips it to [0.01, 10], which biases it).
"""

from __future__ import annotations

import functools

import torch
from torch.distributions import Distribution, OneHotCategorical

from estimators.arms import dirichlet_uniforms
from estimators.base import CostFn, Estimator, base_distribution, register


@functools.cache
def pair_orders(classes: int) -> tuple[tuple[int, ...], ...]:
    """The orders of the classes that CARMS draws from: for each pair a < b, a first, then the
    classes after b in cyclic order (skipping a), ending with b."""
    orders = []
    for a in range(classes):
        for b in range(a + 1, classes):
            cycle = [(b + 1 + t) % classes for t in range(classes)]
            orders.append((a, *(c for c in cycle if c != a)))
    return tuple(orders)


def drawn_bounds(
    p: torch.Tensor,
    cum: torch.Tensor,
    cum_z: torch.Tensor,
    pz: torch.Tensor,
    z: torch.Tensor,
    pair: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right ends [n, ...] of the intervals of the drawn classes z [n, ...] in the order
    of ``pair`` = (a, b): a first, then the classes from b + 1 on cyclically (skipping a), b
    last. ``cum`` [..., C + 1] holds the sums of p over the classes below each index and
    ``cum_z``, ``pz`` its and p's values at z: the classes from b + 1 up to z (excluded, wrapping
    past C - 1) come to a difference of two, and a's mass moves from among them to the front."""
    a, b = pair
    classes = p.shape[-1]
    start = b + 1
    wrapped = torch.where(z < start, cum[..., classes], 0.0)
    holds_a = (z - start) % classes > (a - start) % classes
    front = torch.where(holds_a, 0.0, p[..., a])  # a's mass, unless already passed
    left = torch.where(z == a, 0.0, cum_z - cum[..., start] + wrapped + front)
    return left.clamp(0, 1), (left + pz).clamp(0, 1)


def coupled_draws(p: torch.Tensor, n: int) -> torch.Tensor:
    """n coupled draws [n, *p.shape[:-1]] of class indices, each Categorical(p): one order per
    variable, drawn uniformly from ``pair_orders``, and n Dirichlet-copula uniforms."""
    orders = torch.tensor(pair_orders(p.shape[-1]), device=p.device)  # [O, C]
    which = torch.randint(len(orders), p.shape[:-1], device=p.device)
    order = orders[which]  # [..., C]
    right = p.gather(-1, order).cumsum(-1)
    u = dirichlet_uniforms(n, p.shape[:-1], p)
    position = (u.unsqueeze(-1) >= right).sum(-1).clamp(max=p.shape[-1] - 1)  # [n, ...]
    return order.expand(n, *order.shape).gather(-1, position.unsqueeze(-1)).squeeze(-1)


def copula_below(root_x: torch.Tensor, root_y: torch.Tensor, n: int) -> torch.Tensor:
    """P(u_i < x, u_j < y) = (x^e + y^e - 1)_+^(n-1) for two of n Dirichlet-copula uniforms,
    from the roots x^e, y^e, e = 1/(n-1)."""
    below = (root_x + root_y - 1).clamp_min_(0)
    return below if n == 2 else below.pow_(n - 1)


def pair_probabilities(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """P(z_i, z_j) [n, n, ...] for every pair i != j of the n coupled draws z [n, ...] of classes
    with probabilities p [..., C] (0 on the diagonal): the copula's mass on the two classes'
    intervals, averaged over the orders; a box's mass is the alternating sum of
    ``copula_below`` at its corners."""
    n = z.shape[0]
    pz = p.gather(-1, z.movedim(0, -1)).movedim(-1, 0)  # p(z_i)
    cum = torch.cat([torch.zeros_like(p[..., :1]), p], -1).cumsum(-1)  # [..., C + 1]
    cum_z = cum.gather(-1, z.movedim(0, -1)).movedim(-1, 0)
    first, second = torch.triu_indices(n, n, 1, device=z.device)  # the pairs i < j
    pairs = [(order[0], order[-1]) for order in pair_orders(p.shape[-1])]
    total = p.new_zeros(len(first), *z.shape[1:])
    for pair in pairs:
        left, right = drawn_bounds(p, cum, cum_z, pz, z, pair)
        if n > 2:
            left, right = left ** (1 / (n - 1)), right ** (1 / (n - 1))
        lo_i, lo_j, hi_i, hi_j = left[first], left[second], right[first], right[second]
        total += copula_below(hi_i, hi_j, n) - copula_below(lo_i, hi_j, n)
        total += copula_below(lo_i, lo_j, n) - copula_below(hi_i, lo_j, n)
    total /= len(pairs)
    grid = p.new_zeros(n, n, *z.shape[1:])
    grid[first, second] = total
    grid[second, first] = total
    return grid


def carms_weights(p: torch.Tensor, z: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    """w_i [n, ...] = 1/(n(n-1)) sum_{j != i} r(z_i, z_j) (f_i - f_j) per draw and variable: the
    estimate for the variable's logits is sum_i w_i (onehot(z_i) - p). ``fz`` [n, ...]
    broadcasts against the variables' axes."""
    n = z.shape[0]
    exact = p.double()
    pz = exact.gather(-1, z.movedim(0, -1)).movedim(-1, 0)  # p(z_i) [n, ...]
    joint = pair_probabilities(exact, z)
    independent = pz[:, None] * pz[None]
    apart = (joint > 0) & (z[:, None] != z[None])  # same-class pairs cancel: left out
    ratio = torch.where(apart, independent / joint, 0.0).to(p.dtype)
    difference = fz[:, None] - fz[None]  # f_i - f_j
    return (ratio * difference).sum(1) / (n * (n - 1))


@register
class CARMS(Estimator):
    """RLOO over n copula-coupled categorical draws, each pair reweighted to independence."""

    name = "carms"
    title = "CARMS"

    @property
    def min_samples(self) -> int:
        return 2

    def supports(self, dist: Distribution) -> bool:
        """One-hot categorical distributions of at least two classes, Independent-wrapped or
        not."""
        inner = base_distribution(dist)
        return isinstance(inner, OneHotCategorical) and inner.event_shape[-1] >= 2

    def estimate(self, dist: Distribution, f: CostFn, num_samples: int) -> torch.Tensor:
        inner = base_distribution(dist)
        variables = inner.batch_shape[len(dist.batch_shape) :]
        probs = inner.probs.expand(*inner.batch_shape, inner.event_shape[-1])
        p = probs.detach()
        z = coupled_draws(p, num_samples)  # [n, *batch, *variables]
        one_hot = torch.nn.functional.one_hot(z, p.shape[-1]).to(p.dtype)
        fz = f(one_hot)
        values = fz.detach().reshape(*fz.shape, *(1,) * len(variables))  # against the variables
        w = carms_weights(p, z, values)
        log_p = inner.log_prob(one_hot)  # [n, *batch, *variables]
        surrogate = (w * log_p).sum(tuple(range(-len(variables), 0))) if variables else w * log_p
        return fz + num_samples * (surrogate - surrogate.detach())
