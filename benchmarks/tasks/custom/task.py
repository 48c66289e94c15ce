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

import itertools
import logging
import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch.distributions import Distribution

import estimators
from benchmarks.measure import (
    Params,
    gradient_estimates,
    measure_estimates,
    train_control_variate,
    unvalidated,
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
from benchmarks.tasks.custom.objective import (
    Objective,
    broadcasts,
    checked,
    differentiable,
    load_target,
)
from benchmarks.tasks.custom.reference import ReferenceGradient
from estimators.base import Estimator
from estimators.errors import ConfigError, require_int

log = logging.getLogger(__name__)


@register
class CustomTask(ReferenceGradient, Task):
    """Estimates of the gradient of E[f] at the objective's parameters, against its exact
    gradient or a reference; ``objective`` in place of ``target`` serves ``benchmarks.api``."""

    name = "custom"
    tables = ("metrics",)
    figures_module = "benchmarks.tasks.custom.figures"
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
