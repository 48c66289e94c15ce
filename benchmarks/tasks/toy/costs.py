"""Per-coordinate costs c(x; k) of the toys: built in, or a function named by its import path.

``task.costs=[square,mypkg.costs:softplus]`` names a built-in cost and a function ``softplus`` of
the module ``mypkg.costs``. That function takes x and k as torch tensors (k a scalar of x's dtype
and device) and returns c(x; k) elementwise: a floating tensor of x's shape. The toys sample with
it, and compute exact answers with it in float64, its derivative by autograd.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from estimators.base import Estimator
from estimators.errors import ConfigError

Scalars = np.ndarray | float
"""What exact answers evaluate a cost on: a numpy array (a quadrature grid) or one float."""


@dataclass(frozen=True)
class Cost:
    """A per-coordinate cost c(x; k) in torch (for sampling) and in float64 on numpy arrays or
    floats (for exact answers), with its derivative there; None where it has none."""

    torch_fn: Callable[[torch.Tensor, float], torch.Tensor]
    np_fn: Callable[[Scalars, float], Scalars]
    np_derivative: Callable[[Scalars, float], Scalars] | None


C = TypeVar("C", bound=Cost)


def find(name: str, known: Mapping[str, C]) -> C | Cost:
    """The built-in cost ``name`` of ``known``, or the function ``name`` imports as
    ``module:function``, checked; a ConfigError naming ``task.costs`` otherwise."""
    if isinstance(name, str) and name in known:
        return known[name]
    if not isinstance(name, str) or ":" not in name:
        raise ConfigError(
            f"task.costs: cost {name!r} is unknown; known costs: {', '.join(known)}, "
            "or a function as module:function"
        )
    return imported(name)


def require_derivative(name: str, cost: Cost, estimator: Estimator) -> None:
    """A ConfigError where ``estimator`` differentiates f and the cost has no derivative."""
    if estimator.differentiates_f and cost.np_derivative is None:
        raise ConfigError(
            f"task.costs: cost {name!r} has no derivative (autograd finds none); estimator "
            f"'{estimator.name}' needs a differentiable cost"
            + (
                " (its control variate expands it)"
                if getattr(estimator, "control_variate", None)
                else ""
            )
        )


@functools.cache
def imported(path: str) -> Cost:
    """The cost of the function ``path`` names, checked on a probe x of shape [2, 3] (see
    ``load``); without a derivative where autograd fails on it or its output has no grad_fn."""
    fn = load(path)
    x, k = probe(), float64(1.0)
    where = f"task.costs: cost {path!r}"
    try:
        out = fn(x, k)
    except Exception as error:
        raise ConfigError(f"{where} fails on x of shape [2, 3]: {one_line(error)}") from None
    if not isinstance(out, torch.Tensor):
        kind = f"{type(out).__module__}.{type(out).__qualname__}"
        raise ConfigError(f"{where} returns a {kind}; it must return a torch tensor")
    if out.shape != x.shape:
        raise ConfigError(
            f"{where} returns shape {list(out.shape)} for x of shape [2, 3]; it must be "
            "elementwise (the shape of x)"
        )
    if not out.is_floating_point():
        raise ConfigError(f"{where} returns {out.dtype} values; it must return floating point")

    def torch_fn(x: torch.Tensor, k: float) -> torch.Tensor:
        return fn(x, torch.tensor(k, dtype=x.dtype, device=x.device)).to(x.dtype)

    def np_fn(x: Scalars, k: float) -> Scalars:
        return as_numpy(fn(torch.tensor(x, dtype=torch.float64), float64(k)))

    def np_derivative(x: Scalars, k: float) -> Scalars:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(t, float64(k)).sum(), t)
        return as_numpy(grad)

    return Cost(torch_fn, np_fn, np_derivative if differentiable(fn) else None)


def load(path: str) -> Callable:
    """The callable ``module:function`` names, that binds as f(x, k); one ConfigError line
    naming ``task.costs`` and the value otherwise."""
    where = f"task.costs: cost {path!r}"
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ConfigError(f"{where} is not of the form module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # not found, or the module's own failure
        raise ConfigError(f"{where} does not import: {one_line(error)}") from None
    try:
        fn = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ConfigError(f"{where}: module '{module_name}' has no '{attribute}'") from None
    if not callable(fn):
        raise ConfigError(f"{where} is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError as error:
        raise ConfigError(f"{where} cannot be called as f(x, k): {error}") from None
    except ValueError:  # a builtin without a signature: the probe call decides
        pass
    return fn


def differentiable(fn: Callable) -> bool:
    """Whether autograd differentiates ``fn(x, k)`` in x on a probe."""
    x = probe().requires_grad_()
    try:
        out = fn(x, float64(1.0))
        return out.requires_grad and torch.autograd.grad(out.sum(), x)[0] is not None
    except Exception:
        return False


def probe() -> torch.Tensor:
    """The x on which an imported cost is checked: [2, 3], float64, on both sides of 0."""
    return torch.linspace(-2.0, 2.0, 6, dtype=torch.float64).reshape(2, 3)


def float64(k: float) -> torch.Tensor:
    return torch.tensor(k, dtype=torch.float64)


def as_numpy(t: torch.Tensor) -> Scalars:
    """A float64 array, or a numpy float for a scalar (quadrature asks for one value at a time):
    numpy's arithmetic, where an overflow is inf, not Python's OverflowError."""
    out = t.detach().to(torch.float64).cpu().numpy()
    return out if out.ndim else out[()]


def one_line(error: Exception) -> str:
    """``Type: message``, the message's first line: a ConfigError is one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
