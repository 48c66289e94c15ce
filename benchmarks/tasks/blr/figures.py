"""The Bayesian logistic regression's section of summary.md and its figure, from ``train`` tables:
as in Mohamed et al. (2020), the gradient variance (mean over coordinates) and the ELBO against
the step, one line per estimator (the mean over seeds, a band of one sd where there are several)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import seaborn as sns

from benchmarks.figures import legend_below, line_handles, over_seeds, plt
from benchmarks.results import markdown_table
from benchmarks.tasks.base import Style

PANELS = (
    ("grad_var_mean", "gradient variance (mean over coordinates)", "Gradient variance"),
    ("elbo", "ELBO (nats, full data)", "ELBO"),
)


def train_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["table"] == "train"]


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """Each estimator's last evaluation: ELBO, accuracy and gradient variance, mean over seeds."""
    rows = train_rows(summary)
    if rows.empty:
        return []
    final = rows.sort_values("step").groupby("run").tail(1)
    table = (
        final.groupby("label", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            steps=("step", "median"),
            elbo=("elbo", "mean"),
            accuracy=("accuracy", "mean"),
            grad_var_mean=("grad_var_mean", "mean"),
            grad_var_max=("grad_var_max", "mean"),
        )
        .reset_index()
        .rename(columns={"label": "estimator"})
        .sort_values("grad_var_mean")
    )
    table["steps"] = table["steps"].round().astype(int)
    return [
        "## Bayesian logistic regression: the last evaluation (full data, mean over seeds)\n",
        markdown_table(table, digits=None),
    ]


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """``blr``: the gradient variance (log scale) and the ELBO against the step."""
    rows = train_rows(summary)
    if rows.empty:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (column, ylabel, title) in zip(axes, PANELS, strict=True):
        sns.lineplot(
            data=rows,
            x="step",
            y=column,
            **style.seaborn(),
            errorbar="sd",
            ax=ax,
            legend=False,
        )
        ax.set(xlabel="training step", ylabel=ylabel, title=title)
    axes[0].set_yscale("log")
    # The first evaluations' ELBO (at initialization, -1300) is far below the rest: show where the
    # runs settle, from the lowest of their last values less a margin.
    last = rows.sort_values("step").groupby("run")["elbo"].last()
    top = rows["elbo"].max()
    axes[1].set_ylim(max(rows["elbo"].min(), last.min() - 0.5 * (top - last.min()) - 5), top + 2)
    over = over_seeds(rows["seed"].nunique())
    fig.suptitle(f"Bayesian logistic regression on breast_cancer: {over}")
    legend_below(fig, line_handles(style, rows["label"], marker=False))
    yield "blr", fig
