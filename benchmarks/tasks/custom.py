"""Any objective as a task: ``task=custom task.target=mypkg.module:make``.

``make(cfg)`` (``cfg``: this task's options) returns an ``Objective``: the parameters (a dict of
tensors), a function from parameters to a ``torch.distributions.Distribution``, the function f of
samples and, where known, the exact gradient. The objective is E[f(z)], summed over the
distribution's batch dimensions. The task measures ``n_estimates`` independent estimates of its
gradient, per parameter tensor and in a ``total`` row; without an exact gradient, bias is taken
against a reference gradient from ``reference_estimates`` estimates of an unbiased estimator,
reported with its standard error. Estimates come in batched passes where the objective's
functions broadcast over a leading batch dimension of the parameters, one pass each otherwise.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, NamedTuple

import torch
from omegaconf import DictConfig
from torch.distributions import Distribution

import estimators
from benchmarks.measure import (
    Params,
    gradient_estimates,
    measure_estimates,
    train_control_variate,
)
from benchmarks.moments import CoordinateMoments, tensor_statistics
from benchmarks.progress import Progress
from benchmarks.tasks.base import (
    Context,
    EstimatorFactory,
    Result,
    Task,
    learned_columns,
    register,
    run_columns,
)
from estimators.base import Estimator
from estimators.errors import ConfigError, require_int

log = logging.getLogger(__name__)
REFERENCES = ("reparam", "reinforce_baseline")
"""The unbiased estimators ``reference=auto`` chooses among (the latter with leave-one-out)."""


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


@contextmanager
def unvalidated() -> Iterator[None]:
    """Distributions built with torch's default skip their argument checks while estimates are
    measured (validate made them once), as the built-in tasks build theirs."""
    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


@register
class CustomTask(Task):
    """Estimates of the gradient of E[f] at the objective's parameters, against its exact
    gradient or a reference; ``objective`` in place of ``target`` serves ``benchmarks.api``."""

    name = "custom"
    tables = ("metrics",)
    figures_module = "benchmarks.tasks.custom_figures"
    summary_columns: ClassVar[dict[str, list[str]]] = {
        "metrics": [
            "estimator",
            "options",
            "param",
            "numel",
            "num_samples",
            "grad_mean_norm",
            "bias_norm",
            "bias_p",
            "reference",
            "grad_var",
            "grad_var_lo",
            "grad_var_hi",
            "snr",
            "time_per_estimate_s",
        ]
    }

    def __init__(self, objective: Objective | None = None, **options) -> None:
        super().__init__(**options)
        self.given = objective
        self.objective: Objective | None = None
        self.batched = True
        self.references: dict[tuple, tuple[str, Params | None, Params | None]] = {}

    @property
    def where(self) -> str:
        """How messages name the objective: the key that made it, or the API's argument."""
        return "objective" if self.given is not None else f"task.target={self.cfg.target}"

    def load(self, device: torch.device) -> Objective:
        """The objective, made once under ``device`` (tensors ``make`` creates land there) with
        its parameters moved there, and checked."""
        if self.objective is None:
            with device:
                made = self.given or load_target(self.cfg.target)(self.cfg)
            objective = checked(made, self.where)
            params = {n: p.detach().to(device) for n, p in objective.params.items()}
            exact = objective.exact and {n: g.to(device) for n, g in objective.exact.items()}
            self.objective = objective._replace(params=params, exact=exact)
        return self.objective

    def validate(self, estimator: Estimator, context: Context) -> None:
        cfg = self.cfg
        for key in ("n_estimates", "chunk_size", "reference_estimates", "cv_batch"):
            require_int(cfg[key], f"task.{key}")
        require_int(cfg.cv_steps, "task.cv_steps", minimum=0)
        if cfg.n_estimates < 2 or cfg.reference_estimates < 2:
            raise ConfigError("task.n_estimates, task.reference_estimates: a variance needs 2")
        if cfg.reference not in ("auto", "none") and cfg.reference not in estimators.names():
            raise ConfigError(
                f"task.reference={cfg.reference!r}: accepted are auto, none or an estimator name "
                f"({', '.join(estimators.names())})"
            )
        if cfg.num_samples is not None:
            estimator.check_num_samples(cfg.num_samples, "task.num_samples")
        objective = self.load(context.device)
        num_samples = cfg.num_samples or estimator.min_samples
        dist = objective.dist(objective.params)
        if not isinstance(dist, Distribution):
            raise ConfigError(
                f"{self.where}: dist(params) must return a "
                f"torch.distributions.Distribution, not {type(dist).__name__}"
            )
        estimator.check(dist, num_samples)
        if estimator.differentiates_f and not differentiable(objective.f, dist):
            raise ConfigError(
                f"{self.where}: f has no gradient with respect to the draws "
                f"(autograd finds none); estimator '{estimator.name}' needs a differentiable f"
            )
        with torch.no_grad():
            values = objective.f(dist.sample((num_samples,)))
        wanted = (num_samples, *dist.batch_shape)
        if not isinstance(values, torch.Tensor) or values.shape != wanted:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ConfigError(
                f"{self.where}: f(z) must return [num_samples, *batch_shape] = "
                f"{list(wanted)}, not {shape}"
            )
        self.batched = broadcasts(objective, num_samples)
        if not self.batched:
            log.warning(
                "dist(params) or f do not broadcast over a leading batch dimension of the "
                "parameters: one backward pass per estimate, slower"
            )

    # Measurement.

    @property
    def names(self) -> list[str]:
        """The rows: each parameter tensor, and ``total``."""
        return [*self.objective.params, "total"]

    @property
    def parts(self) -> tuple[slice, ...]:
        """Where each parameter's coordinates lie in an estimate of all of them, flattened."""
        ends = [0, *itertools.accumulate(p.numel() for p in self.objective.params.values())]
        return tuple(slice(a, b) for a, b in itertools.pairwise(ends))

    def gradient_estimates(
        self, estimator: Estimator, num_samples: int, batch: int
    ) -> list[torch.Tensor]:
        """``batch`` independent estimates of the gradient with respect to every parameter,
        flattened and stacked as rows [D, batch] (``CoordinateMoments``' layout), from one
        backward pass or, unbatched, one each."""
        objective = self.objective
        model = self.model
        if self.batched:
            grads = gradient_estimates(estimator, model, objective.params, num_samples, batch)
        else:
            single = [
                gradient_estimates(estimator, model, objective.params, num_samples, None)
                for _ in range(batch)
            ]
            grads = {name: torch.stack([g[name] for g in single]) for name in objective.params}
        return [torch.cat([g.reshape(batch, -1).T for g in grads.values()])]

    def model(self, copies: Params) -> tuple[Distribution, Callable]:
        """The objective's distribution at ``copies`` of its parameters, and its f."""
        return self.objective.dist(copies), self.objective.f

    def measure(
        self,
        estimator: Estimator,
        num_samples: int,
        n_estimates: int,
        device: torch.device,
        on_chunk: Callable[[int], None],
    ) -> tuple[CoordinateMoments, float]:
        """Streaming sums of the estimates (``CoordinateMoments``, grouped as ``parts`` and all
        together) and the seconds per estimate."""
        with unvalidated():
            if estimator.trainable:
                self.train_control_variate(estimator, num_samples)
            moments, seconds = measure_estimates(
                lambda batch: self.gradient_estimates(estimator, num_samples, batch),
                ["all"],
                n_estimates,
                self.cfg.chunk_size,
                device,
                on_chunk,
                summary=lambda warmup: CoordinateMoments.about(warmup, self.parts),
            )
        return moments["all"], seconds

    def train_control_variate(self, estimator: Estimator, num_samples: int) -> None:
        """``cv_steps`` steps of a learned control variate (rebar, relax) at the parameters, each
        on ``cv_batch`` estimates, as the toys train it; then freeze it."""
        batch = self.cfg.cv_batch if self.batched else None
        train_control_variate(
            estimator, self.model, self.objective.params, num_samples, batch, self.cfg.cv_steps
        )

    def reference(
        self, context: Context, progress: Progress
    ) -> tuple[str, Params | None, Params | None]:
        """The gradient bias is measured against: (how it was found, its value by name with
        ``total``, its standard errors, None for the exact one); computed once per seed and
        device, on a random stream of its own, so every estimator of a sweep meets the same."""
        objective = self.objective
        if objective.exact is not None:
            exact = {n: g.reshape(-1) for n, g in objective.exact.items()}
            return "exact", {**exact, "total": torch.cat(list(exact.values()))}, None
        key = (context.seed, context.device.type)
        if self.cfg.reference == "none":
            return "none", None, None
        if key not in self.references:
            n = self.cfg.reference_estimates
            devices = [context.device] if context.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(zlib.crc32(f"{context.seed}/reference".encode()))
                estimator, num_samples = self.reference_estimator(context)
                progress.describe(f"reference ({estimator.name})")
                moments, _ = self.measure(
                    estimator, num_samples, n, context.device, progress.update
                )
            label = f"{estimator.name}{estimator.describe_options()} x {n}"
            means = {name: moments.mean(i) for i, name in enumerate(self.names)}
            ses = {name: (moments.var(i) / n).sqrt() for i, name in enumerate(self.names)}
            self.references[key] = (label, means, ses)
        return self.references[key]

    def reference_estimator(self, context: Context) -> tuple[Estimator, int]:
        """``task.reference``, or for auto the unbiased estimator (reparam where f is
        differentiable, the leave-one-out baseline) whose pilot chunk has the smallest summed
        variance per evaluation of f; with its number of draws."""
        options = {"reinforce_baseline": {"baseline": "loo"}}
        if self.cfg.reference != "auto":
            names = [self.cfg.reference]
        else:
            names = [name for name in REFERENCES if self.serves(name, options.get(name, {}))]
        best = None
        for name in names:
            estimator = estimators.build(name, **options.get(name, {}))
            num_samples = max(self.cfg.num_samples or 1, estimator.min_samples)
            if len(names) > 1:
                with unvalidated():
                    (pilot,) = self.gradient_estimates(estimator, num_samples, self.cfg.chunk_size)
                dist = self.objective.dist(self.objective.params)
                cost = pilot.var(1).sum().item() * estimator.evaluations(dist, num_samples)
            else:
                cost = 0.0
            if best is None or cost < best[0]:
                best = (cost, estimator, num_samples)
        return best[1], best[2]

    def serves(self, name: str, options: dict) -> bool:
        """Whether estimator ``name`` applies here: its distribution, and an f differentiable in
        the draws where the estimator differentiates f (reparam)."""
        objective = self.objective
        dist = objective.dist(objective.params)
        estimator = estimators.build(name, **options)
        return estimator.supports(dist) and (
            not estimator.differentiates_f or differentiable(objective.f, dist)
        )

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        """One ``metrics`` row per parameter tensor and a ``total`` row."""
        cfg = self.cfg
        objective = self.load(context.device)
        estimator = make_estimator()
        num_samples = cfg.num_samples or estimator.min_samples
        needs_reference = objective.exact is None and cfg.reference != "none"
        key = (context.seed, context.device.type)
        total = cfg.n_estimates + (
            cfg.reference_estimates if needs_reference and key not in self.references else 0
        )
        with Progress(total, "estimates") as progress:
            context.progress["estimates"] = 0

            def done(batch: int) -> None:
                context.progress["estimates"] += batch
                progress.update(batch)

            reference, target, target_se = self.reference(context, progress)
            progress.describe(estimator.name)
            moments, seconds = self.measure(
                estimator, num_samples, cfg.n_estimates, context.device, done
            )
        evaluations = estimator.evaluations(objective.dist(objective.params), num_samples)
        where = {"target": cfg.target if self.given is None else "objective"}
        columns = run_columns(estimator, self.name, context.seed, context.device, where)
        rows = []
        for i, name in enumerate(self.names):
            stats = tensor_statistics(
                moments,
                i,
                None if target is None else target[name],
                None if target_se is None else target_se[name],
                seconds,
            )
            rows.append(
                {
                    **columns,
                    "param": name,
                    "num_samples": num_samples,
                    "evaluations": evaluations,
                    "n_estimates": cfg.n_estimates,
                    **stats,
                    "reference": reference,
                    "reference_se": math.nan
                    if target_se is None
                    else target_se[name].norm().item(),
                    **learned_columns(estimator),
                }
            )
        return Result({"metrics": rows})
