"""The VAE as a task of the harness (``benchmarks.tasks.base``): its options checked before any
work, a training run per estimator, and the tables and summary rows it declares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from benchmarks.tasks.base import Context, EstimatorFactory, Result, Task, register
from benchmarks.tasks.vae import data
from benchmarks.tasks.vae.seeds import SeedsTrainer
from benchmarks.tasks.vae.settings import (
    check_estimator,
    resolve,
    training_objective,
    validate,
)
from benchmarks.tasks.vae.train import TABLES, Trainer
from estimators.baselines import SUPPLIED, Supplied

if TYPE_CHECKING:  # annotations only: a task imports no pandas at module level
    import pandas as pd


@register
class VAETask(Task):
    """VAE training with the estimator on the encoder: ``train`` rows per logged step, ``eval``
    rows per epoch and ``grad_var`` rows per probe, encoder and decoder (``conf/task/vae.yaml``
    lists the options)."""

    name = "vae"
    tables = TABLES
    figures_module = "benchmarks.tasks.vae.figures"
    summary_columns = {
        "eval": [
            "estimator",
            "options",
            "seed",
            "dataset",
            "objective_name",
            "K",
            "epoch",
            "step",
            "time_s",
            "test_elbo",
            "test_objective",
            "test_iwae",
        ],
        "grad_var": [
            "estimator",
            "options",
            "seed",
            "step",
            "M",
            "network",
            "total_var",
            "mean_log_var",
            "snr",
        ],
    }

    def validate(self, estimator, context: Context) -> None:
        """Every task key, ``task.num_samples`` against the estimator, and on the objective path
        (``task.objective``) whether the estimator serves it for the latent family; on the plain
        ELBO path that is checked by ``run`` once the estimator is built, before any work."""
        validate(self.cfg, context.config.dataset.name, estimator)

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """The printed rows: of ``grad_var``, the totals over each network's parameters; of an ELBO
        run's ``eval``, the columns as before the objective path (no objective, K, bound at K)."""
        if name == "grad_var" and not table.empty:
            return table[table.param == "total"]
        if name == "eval" and set(table.get("objective_name", [])) <= {"elbo"}:
            return table.drop(columns=["objective_name", "K", "test_objective"], errors="ignore")
        return table

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        """Train, measure and checkpoint (resuming where ``resume=true``); the tables and status."""
        settings = resolve(self.cfg, context.config.dataset.name)
        task = OmegaConf.merge(self.cfg, settings)
        estimator = make_estimator()
        objective = training_objective(task, estimator)
        supplied = None
        if objective is not None:  # S = the fewest independent estimates (loo: 2)
            num_samples = estimator.min_samples
        else:
            if estimator.options().get("baseline") == SUPPLIED:  # NVIL: our learned b(x)
                supplied = Supplied()
                estimator = make_estimator(baseline=supplied)
            num_samples = task.num_samples or estimator.min_samples
            check_estimator(estimator, task, num_samples)

        def load(seed: int) -> data.Dataset:
            return data.load(context.config.dataset, seed).to(context.device)

        if task.parallel_seeds > 1:
            trainer = SeedsTrainer(task, load, estimator, num_samples, context, objective)
        else:
            trainer = Trainer(
                task, load(context.seed), estimator, num_samples, context, supplied, objective
            )
        if context.config.resume:
            trainer.resume()
        context.writer.json(
            "model", {**settings, "compile": task.compile, "parallel_seeds": task.parallel_seeds}
        )
        return trainer.fit()
