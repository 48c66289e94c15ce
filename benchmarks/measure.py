"""The measurement every task shares: a batch of gradient estimates, and a stream of them.

``gradient_estimates`` broadcasts leaf copies of the parameters and makes one forward and one
backward pass, so row b of each gradient is an independent estimate; ``measure_estimates`` times
chunks of such estimates and reduces them to streaming moments (``benchmarks.moments``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.distributions import Distribution

from benchmarks.moments import Moments, Summary
from estimators.base import Estimator
from estimators.objectives import Objective

Params = dict[str, torch.Tensor]
"""Parameter tensors by name."""

Model = Callable[[Params], tuple[Distribution, Callable]]
"""The distribution and f at (copies of) the parameters; f is the log joint on the multi-sample
path (``Estimator.surrogate``)."""


def leaf_copies(params: Params, batch: int | None) -> Params:
    """``batch`` broadcast copies of each parameter along a new first axis, differentiable one by
    one (row b of a gradient with respect to a copy is copy b's) and none materialized; one plain
    differentiable copy where ``batch`` is None."""
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    if batch is None:
        return leaves
    return {name: p.expand(batch, *p.shape) for name, p in leaves.items()}


def estimator_values(
    estimator: Estimator,
    model: Model,
    copies: Params,
    num_samples: int,
    batch: int | None,
    objective: Objective | None = None,
) -> torch.Tensor:
    """The estimator's output at ``copies`` (``leaf_copies(params, batch)``): ``estimator(dist,
    f, num_samples)``, its shape checked against the contract, or its surrogate of ``objective``
    where one is given. The sum over the batch of each copy's mean over its draws is the loss
    whose gradient is each copy's estimate."""
    dist, f = model(copies)
    if objective is not None:
        return estimator.surrogate(dist, f, objective, num_samples)
    out = estimator(dist, f, num_samples)
    leading = [num_samples] if batch is None else [num_samples, batch]
    if list(out.shape[: len(leading)]) != leading:
        raise RuntimeError(
            f"estimator '{estimator.name}' returned shape {tuple(out.shape)}; the contract asks "
            f"for [num_samples, *batch_shape], here {leading} first"
        )
    return out


def gradient_estimates(
    estimator: Estimator,
    model: Model,
    params: Params,
    num_samples: int,
    batch: int | None,
    objective: Objective | None = None,
) -> Params:
    """``batch`` independent estimates [batch, *shape] of the gradient of E[f] (or of
    ``objective``) with respect to each parameter, from one forward and one backward pass over
    ``leaf_copies``; one estimate [*shape] where ``batch`` is None."""
    copies = leaf_copies(params, batch)
    out = estimator_values(estimator, model, copies, num_samples, batch, objective)
    # The sum over copies of each one's mean over its draws; sum()/n, not mean(0).sum(), whose
    # backward materializes a full tensor (the same gradient, 1/n for every value, either way).
    loss = out.sum() / out.shape[0]
    grads = torch.autograd.grad(loss, list(copies.values()), materialize_grads=True)
    return dict(zip(copies, grads, strict=True))


def train_control_variate(
    estimator: Estimator,
    model: Model,
    params: Params,
    num_samples: int,
    batch: int | None,
    steps: int,
) -> None:
    """``steps`` steps of a learned control variate (rebar, relax) at fixed ``params``, each on
    the variance of ``batch`` estimates, as the RELAX paper trains it; then freeze it."""
    for _ in range(steps):
        copies = leaf_copies(params, batch)
        out = estimator_values(estimator, model, copies, num_samples, batch)
        estimator.backward(out.sum() / out.shape[0], *copies.values())
    estimator.eval()


@contextmanager
def unvalidated() -> Iterator[None]:
    """torch.distributions' argument checks off while estimates are measured or a model trains:
    each check reads values back (a wait for a GPU), and OneHotCategorical's inner Categorical
    checks its logits whatever it is told. The distributions are built valid."""
    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_estimates(
    estimate_chunk: Callable[[int], Sequence[torch.Tensor]],
    names: Sequence[str],
    n_estimates: int,
    chunk_size: int,
    device: torch.device,
    on_chunk: Callable[[int], None] = lambda batch: None,
    summary: Callable[[torch.Tensor], Callable[[torch.Tensor], Summary]] = lambda warmup: (
        Moments.of
    ),
) -> tuple[dict[str, Summary], float]:
    """Streaming moments of ``n_estimates`` estimates of each named gradient, and the wall-clock
    seconds per estimate; ``estimate_chunk(b)`` returns b estimates of each, in ``names``' order,
    and ``on_chunk(b)`` hears of each measured chunk, outside the timing (progress).

    One untimed warm-up chunk comes first: it warms caches and the allocator and gives a
    moving-average baseline its first value, so every measured chunk sees the steady state.
    ``summary(warmup)`` gives the reduction of a chunk of one gradient's estimates: the scalar
    ``Moments`` by default, or ``CoordinateMoments`` about the warm-up chunk's mean.
    """
    chunk = min(chunk_size, n_estimates)
    warmup = estimate_chunk(chunk)
    reduce = [summary(w) for w in warmup]
    moments: dict[str, Summary] = {}
    seconds = 0.0
    done = 0
    while done < n_estimates:
        batch = min(chunk, n_estimates - done)
        synchronize(device)
        start = time.perf_counter()
        grads = estimate_chunk(batch)
        synchronize(device)
        seconds += time.perf_counter() - start
        for name, g, of in zip(names, grads, reduce, strict=True):
            moments[name] = moments[name].merge(of(g)) if name in moments else of(g)
        done += batch
        on_chunk(batch)
    return moments, seconds / n_estimates
