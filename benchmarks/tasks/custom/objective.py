"""Your objective, loaded and checked: what ``make(cfg)`` returns, the function named by
``task.target=module:function``, and what the task learns of it (whether it broadcasts over a
batch of parameter copies, whether f is differentiable in the draws)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from omegaconf import DictConfig
from torch.distributions import Distribution

from benchmarks.measure import Params
from estimators.errors import ConfigError


class Objective(NamedTuple):
    """What ``make(cfg)`` returns (a plain tuple of three or four does too)."""

    params: Params
    """The parameters, by name: leaf tensors whose gradient is estimated."""
    dist: Callable[[Params], Distribution]
    """The distribution at the parameters."""
    f: Callable[[torch.Tensor], torch.Tensor]
    """Samples [num_samples, *batch_shape, *event_shape] -> values [num_samples, *batch_shape]."""
    exact: Params | None = None
    """The exact gradient of E[f], by parameter name, where known."""


def load_target(target: object) -> Callable[[DictConfig], object]:
    """The function ``module:function`` names; a ConfigError naming ``task.target`` otherwise."""
    key = f"task.target={target!r}"
    if not isinstance(target, str) or target.count(":") != 1:
        raise ConfigError(f"{key}: name the function that makes your objective as module:function")
    module_name, name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{key}: cannot import {module_name!r} ({error})") from None
    make = getattr(module, name, None)
    if not callable(make):
        raise ConfigError(f"{key}: module {module_name!r} has no function {name!r}")
    return make


def checked(objective: object, where: str) -> Objective:
    """``objective`` as an Objective of floating parameter tensors, with exact gradients shaped
    like them; a ConfigError naming ``where`` (the key or the argument) otherwise."""
    if not isinstance(objective, tuple) or len(objective) not in (3, 4):
        raise ConfigError(
            f"{where}: must give (params, dist, f) or (params, dist, f, exact), "
            f"not {type(objective).__name__}"
        )
    objective = Objective(*objective)
    params = objective.params
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{where}: params must be a non-empty dict of tensors by name")
    for name, p in params.items():
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            raise ConfigError(f"{where}: params[{name!r}] must be a floating-point tensor")
        if name == "total":
            raise ConfigError(f"{where}: 'total' names the row of all parameters; rename it")
    if not callable(objective.dist) or not callable(objective.f):
        raise ConfigError(f"{where}: dist and f must be functions")
    if objective.exact is not None:
        exact = objective.exact
        if not isinstance(exact, dict) or set(exact) != set(params):
            raise ConfigError(f"{where}: exact must be a dict with the keys of params")
        for name, g in exact.items():
            if not isinstance(g, torch.Tensor) or g.shape != params[name].shape:
                raise ConfigError(
                    f"{where}: exact[{name!r}] must be a tensor of shape "
                    f"{tuple(params[name].shape)}, like params[{name!r}]"
                )
    return objective


def broadcasts(objective: Objective, num_samples: int) -> bool:
    """Whether ``dist`` and ``f`` broadcast over a leading batch dimension of the parameters:
    two copies give a distribution of batch shape [2, *batch_shape] and values to match."""
    with torch.no_grad():
        single = objective.dist(objective.params).batch_shape
        try:
            dist = objective.dist({n: p.expand(2, *p.shape) for n, p in objective.params.items()})
            if dist.batch_shape != (2, *single):
                return False
            return objective.f(dist.sample((num_samples,))).shape == (num_samples, 2, *single)
        except Exception:  # the user's functions do not take the extra axis: one pass each
            return False


def differentiable(f: Callable[[torch.Tensor], torch.Tensor], dist: Distribution) -> bool:
    """Whether autograd finds a gradient of f with respect to draws of ``dist`` (as floats)."""
    z = dist.sample((2,))
    z = (z if z.is_floating_point() else z.float()).requires_grad_()
    try:
        return f(z).requires_grad
    except Exception:  # an f that takes only integer draws (indices)
        return False
