"""estibench from Python, for notebooks: your objective against several estimators, no config
files, no Hydra, and no files written unless you ask.

    from benchmarks import api
    table = api.compare(["reparam", "reinforce"], params, dist, f, n_estimates=10_000)
    api.plot(table)

``compare`` runs the custom task (``task=custom`` on the command line) on the same code path as
the command line, with the same columns as its metrics.csv.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.distributions import Distribution

import estimators
from benchmarks.experiment import resolve_device
from benchmarks.results import RunWriter
from benchmarks.tasks.base import Context, EstimatorFactory, run_task
from benchmarks.tasks.custom import CustomTask
from benchmarks.tasks.custom.objective import Objective
from estimators.base import Estimator

__all__ = ["Objective", "compare", "plot"]


def factory(estimator: Estimator | str) -> EstimatorFactory:
    """Fresh estimators: built by name, or copies of a built one (whose own state stays as is)."""
    if isinstance(estimator, str):
        return lambda **extra: estimators.build(estimator, **extra)
    return lambda **extra: copy.deepcopy(estimator)


def compare(
    estimators: Sequence[Estimator | str],
    params: dict[str, torch.Tensor],
    dist: Callable[[dict[str, torch.Tensor]], Distribution],
    f: Callable[[torch.Tensor], torch.Tensor],
    n_estimates: int = 10_000,
    num_samples: int | None = None,
    exact: dict[str, torch.Tensor] | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
    chunk_size: int = 1000,
    reference: str = "auto",
    reference_estimates: int = 100_000,
    out: str | Path | None = None,
) -> pd.DataFrame:
    """One row per estimator and parameter tensor, and a ``total`` row each: the gradient of
    E[f(z)], z ~ dist(params), measured from ``n_estimates`` estimates of ``num_samples`` draws
    (None: each estimator's minimum), against ``exact`` or else a reference gradient (see
    ``task=custom``). ``estimators`` are names or built estimators; ``out``, where given, gets
    one run folder per estimator, which ``python -m benchmarks.plot OUT`` summarizes."""
    task = CustomTask(
        Objective(params, dist, f, exact),
        target=None,
        num_samples=num_samples,
        n_estimates=n_estimates,
        chunk_size=chunk_size,
        reference=reference,
        reference_estimates=reference_estimates,
        cv_steps=1000,
        cv_batch=256,
    )
    context = Context(seed, resolve_device(device))
    tables = []
    for i, estimator in enumerate(estimators):
        make = factory(estimator)
        rows = run_task(task, make, context).rows["metrics"]
        table = pd.DataFrame(rows)
        if out is not None:
            writer = RunWriter(Path(out) / f"{i}_{rows[0]['estimator']}")
            writer.task = CustomTask.name
            writer.task_class = f"{CustomTask.__module__}.{CustomTask.__qualname__}"
            writer.table("metrics", rows)
            writer.status("completed")
            writer.finish()
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def plot(table: pd.DataFrame):
    """The figure of ``compare``'s table: each estimator's summed gradient variance per parameter
    tensor with its 95% interval, beside the work-normalized variance (a matplotlib Figure)."""
    from benchmarks.plot import estimator_labels, style_for
    from benchmarks.tasks.custom.figures import variance_figure

    table = table.assign(label=estimator_labels(table))
    target = table["target"].iloc[0]
    return variance_figure(table, style_for(table["label"]), str(target))
