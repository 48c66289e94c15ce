"""The VAE as a task of the harness (``benchmarks.tasks.base``): its options checked before any
work, a training run per estimator, and the tables and summary rows it declares."""

from __future__ import annotations

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks import data
from benchmarks.results import RunWriter
from benchmarks.tasks.base import Context, EstimatorFactory, Result, Task
from benchmarks.tasks.vae.settings import check_estimator, resolve, validate
from benchmarks.tasks.vae.train import TABLES, Trainer
from estimators.base import Estimator
from estimators.baselines import SUPPLIED, Supplied


class VAETask(Task):
    """VAE training with the estimator on the encoder: ``train`` rows per logged step, ``eval``
    rows per epoch and ``grad_var`` rows per probe (``conf/task/vae.yaml`` lists the options)."""

    name = "vae"
    tables = TABLES
    summary_columns = {
        "eval": [
            "estimator",
            "options",
            "dataset",
            "epoch",
            "step",
            "time_s",
            "test_elbo",
            "test_iwae",
        ],
        "grad_var": ["estimator", "options", "step", "M", "total_var", "mean_log_var", "snr"],
    }

    def validate(self, estimator, context: Context) -> None:
        """Every task key, and ``task.num_samples`` against the estimator; whether the estimator
        applies to the latent family is checked by ``run`` once it is built, before any work."""
        validate(self.cfg, context.config.dataset.name, estimator)

    def summary_rows(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """The printed rows: of ``grad_var``, the totals over the encoder's parameters."""
        if name == "grad_var" and not table.empty:
            return table[table.param == "total"]
        return table

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        """Train, measure and checkpoint (resuming where ``resume=true``); the tables and status."""
        settings = resolve(self.cfg, context.config.dataset.name)
        task = OmegaConf.merge(self.cfg, settings)
        estimator = make_estimator()
        supplied = None
        if estimator.options().get("baseline") == SUPPLIED:  # NVIL: our learned b(x) is passed in
            supplied = Supplied()
            estimator = make_estimator(baseline=supplied)
        num_samples = task.num_samples or estimator.min_samples
        check_estimator(estimator, task, num_samples)
        dataset = data.load(context.config.dataset, context.seed).to(context.device)
        trainer = Trainer(task, dataset, estimator, num_samples, context, supplied)
        if context.config.resume:
            trainer.resume()
        context.writer.json("model", settings)
        return trainer.fit()


def run(
    cfg: DictConfig, make_estimator: EstimatorFactory, device: torch.device, writer: RunWriter
) -> dict[str, pd.DataFrame]:
    """Today's runner's entry, until it builds ``VAETask`` from ``conf/task/vae.yaml`` itself:
    validate, run, write the result's tables and status; return the tables."""

    def make(**options) -> Estimator:
        """Today's runner's factory takes no options; with some (NVIL's supplied baseline), the
        estimator is built as it builds it, by Hydra's instantiate, with them as keywords."""
        return instantiate(cfg.estimator, **options) if options else make_estimator()

    options = {key: value for key, value in cfg.task.items() if key != "_target_"}
    task = VAETask(**options)
    context = Context(seed=cfg.seed, device=device, writer=writer, config=cfg)
    task.validate(make_estimator(), context)
    result = task.run(make, context)
    for name, table in result.tables.items():
        writer.table(name, table)
    writer.status(result.status, **result.details)
    return result.tables
