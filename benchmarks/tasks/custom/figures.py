"""The custom task's section of summary.md and its figure, from metrics tables: per objective,
each estimator's summed gradient variance with its interval, per parameter tensor and in total,
beside the same variance times the seconds per estimate (work-normalized)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd

from benchmarks.figures import legend_below, plt
from benchmarks.results import markdown_table
from benchmarks.tasks.base import Style

COLUMNS = {
    "label": "estimator",
    "param": "param",
    "numel": "numel",
    "grad_var": "variance (sum)",
    "grad_var_lo": "95% lo",
    "grad_var_hi": "95% hi",
    "snr": "SNR",
    "bias_norm": "|bias|",
    "bias_p": "bias p",
    "time_per_estimate_s": "s / estimate",
    "work_normalized_var": "variance x s",
}


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """Per objective, a table of every estimator's rows: ``total`` first, then each parameter,
    each from the smallest variance up."""
    parts = []
    for target, rows in summary.groupby("target", sort=False):
        reference = ", ".join(rows["reference"].dropna().astype(str).unique())
        parts.append(f"## Custom objective {target}: summed gradient variance of one estimate\n")
        parts.append(f"Bias against: {reference}.\n")
        order = ["total", *(p for p in dict.fromkeys(rows["param"]) if p != "total")]
        rows = rows.assign(param=pd.Categorical(rows["param"], order, ordered=True))
        table = rows.sort_values(["param", "grad_var"])[[c for c in COLUMNS if c in rows]]
        parts.append(markdown_table(table.rename(columns=COLUMNS), digits=None) + "\n")
    return parts


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """One figure per objective: ``custom_variance`` (with the objective's name where a folder
    holds several)."""
    targets = summary["target"].unique()
    for target in targets:
        stem = "custom_variance"
        if len(targets) > 1:
            stem += "_" + re.sub(r"[^A-Za-z0-9]+", "_", str(target)).strip("_")
        yield stem, variance_figure(summary[summary["target"] == target], style, str(target))


def variance_figure(rows: pd.DataFrame, style: Style, target: str) -> plt.Figure:
    """Horizontal bars per parameter (``total`` on top), one per estimator, with the variance's
    95% interval, on log axes; left the variance, right the work-normalized variance."""
    params = ["total", *(p for p in dict.fromkeys(rows["param"]) if p != "total")]
    labels = [lbl for lbl in style.colors if lbl in set(rows["label"])]
    height = 0.8 / len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.2 + 0.5 * len(params) * max(len(labels), 2) / 2))
    for ax, column, title in (
        (axes[0], "grad_var", "summed variance of one estimate"),
        (axes[1], "work_normalized_var", "variance x seconds per estimate"),
    ):
        for i, lbl in enumerate(labels):
            mine = rows[rows["label"] == lbl].set_index("param").reindex(params)
            y = [p + (i - (len(labels) - 1) / 2) * height for p in range(len(params))]
            scale = mine[column] / mine["grad_var"]  # 1, or the seconds per estimate
            err = [
                (mine["grad_var"] - mine["grad_var_lo"]).clip(lower=0) * scale,
                (mine["grad_var_hi"] - mine["grad_var"]) * scale,
            ]
            ax.barh(
                y, mine[column], height, xerr=err, color=style.colors[lbl], label=lbl, capsize=2
            )
        ax.set_yticks(range(len(params)), params)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(title)
    axes[1].set_yticklabels([])
    fig.suptitle(f"{target}: gradient variance per parameter tensor", fontsize="medium")
    legend_below(fig, axes[0].get_legend_handles_labels()[0])
    return fig
