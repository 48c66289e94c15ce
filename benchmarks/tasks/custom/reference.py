"""The gradient bias is measured against where the objective has no exact one: the mean of
``reference_estimates`` estimates of an unbiased estimator, with its standard errors."""

from __future__ import annotations

import zlib

import torch

import estimators
from benchmarks.measure import Params, unvalidated
from benchmarks.progress import Progress
from benchmarks.tasks.base import Context
from benchmarks.tasks.custom.objective import differentiable
from estimators.base import Estimator

REFERENCES = ("reparam", "reinforce_baseline")
"""The unbiased estimators ``reference=auto`` chooses among (the latter with leave-one-out)."""


class ReferenceGradient:
    """The custom task's reference gradient, found once per seed and device (a mixin of
    ``CustomTask``, whose ``measure`` and ``gradient_estimates`` it uses)."""

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
