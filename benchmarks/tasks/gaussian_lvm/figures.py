"""The Gaussian latent variable model's section of summary.md and its figure, from ``snr`` tables:
each network's total SNR against K per estimator and objective (the mean over seeds where there
are several), as in Rainforth et al. (2018)."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.ticker
import pandas as pd

from benchmarks.figures import legend_below, line_handles, plt
from benchmarks.results import markdown_table
from benchmarks.tasks.base import Style

NETWORKS = ("encoder", "decoder")


def totals(summary: pd.DataFrame) -> pd.DataFrame:
    """Each network's ``total`` rows, averaged over seeds per estimator, objective and K."""
    rows = summary[(summary["table"] == "snr") & (summary["param"] == "total")]
    if rows.empty:
        return rows
    keys = ["label", "objective", "network", "K"]
    return rows.groupby(keys, sort=False)[["snr", "grad_var", "z_vs_reparam"]].mean().reset_index()


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """Per objective and network: the SNR against K per estimator; and the largest z-score of
    each estimator's mean encoder gradient against reparam's (large: biased)."""
    rows = totals(summary)
    if rows.empty:
        return []
    lines = []
    for (objective, network), part in rows.groupby(["objective", "network"], sort=False):
        table = part.pivot(index="label", columns="K", values="snr").reset_index()
        table.columns = ["estimator", *(f"K={k}" for k in table.columns[1:])]
        lines += [
            f"## Gaussian LVM: {network} SNR against K, {objective}\n",
            markdown_table(table, digits=None),
        ]
    encoder = rows[(rows["network"] == "encoder") & rows["z_vs_reparam"].notna()]
    if not encoder.empty:
        table = encoder.pivot_table(
            index=["label", "objective"], columns="K", values="z_vs_reparam"
        ).reset_index()
        table.columns = ["estimator", "objective", *(f"K={k}" for k in table.columns[2:])]
        lines += [
            "## Gaussian LVM: the encoder's mean gradient against reparam's\n",
            "The largest |z| over coordinates of the difference of the means (M estimates "
            "each): about 4 or less where both are unbiased for the same gradient.\n",
            markdown_table(table, digits=None),
        ]
    return lines


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """``gaussian_lvm_snr``: SNR against K, log-log, a panel per objective and network."""
    rows = totals(summary)
    if rows.empty:
        return
    objectives = [o for o in ("elbo", "iwae") if o in set(rows["objective"])]
    fig, axes = plt.subplots(len(objectives), 2, figsize=(11, 4.2 * len(objectives)), squeeze=False)
    for axes_row, objective in zip(axes, objectives, strict=True):
        for ax, network in zip(axes_row, NETWORKS, strict=True):
            panel = rows[(rows["objective"] == objective) & (rows["network"] == network)]
            for label, line in panel.groupby("label", sort=False):
                line = line.sort_values("K")
                ax.plot(
                    line["K"],
                    line["snr"],
                    color=style.colors[label],
                    marker=style.markers[label],
                    linestyle=style.linestyle(label),
                )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="K (importance samples)",
                ylabel="SNR (mean over coordinates)",
                title=f"{objective.upper()}, {network}",
            )
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(sorted(set(rows["K"]))))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.suptitle(
        "Signal-to-noise ratio of the gradient at one data point against K (Rainforth et al. 2018)"
    )
    legend_below(fig, line_handles(style, rows["label"]))
    yield "gaussian_lvm_snr", fig
