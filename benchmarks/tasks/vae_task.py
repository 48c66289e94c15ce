"""The VAE under the task contract, around ``benchmarks.tasks.vae.run`` (which writes its own
tables and status as it trains)."""

from __future__ import annotations

import json

from benchmarks.tasks import vae, vae_figures
from benchmarks.tasks.base import Context, EstimatorFactory, Result, Task


class VAETask(Task):
    name = "vae"
    tables = ("train", "eval", "grad_var")
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

    def run(self, make_estimator: EstimatorFactory, context: Context) -> Result:
        tables = vae.run(context.config, make_estimator, context.device, context.writer)
        status = json.loads(context.writer.path("status.json").read_text())
        return Result(tables, status.pop("status"), status)

    def summary_rows(self, name, table):
        return table[table.param == "total"] if name == "grad_var" else table

    summary_lines = classmethod(lambda cls, summary: vae_figures.summary_lines(summary))
    figures = classmethod(lambda cls, summary, style: vae_figures.figures(summary, style))
