"""Shared drawing for the toys' figures: one panel per (parameter or k, cost) with a colour and
marker per estimator, exact variances as lines and measured ones as points with intervals."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

import estimators
from benchmarks.figures import ZERO_VARIANCE, legend_below, line_handles, mark_zero_variance
from benchmarks.tasks.base import Style

PARAM_LABELS = {"mu": "μ", "sigma": "σ", "theta": "θ"}


AXIS_LABELS = {
    "k": "k (cost constant)",
    "theta": "θ (the logit: P(b = 1) = sigmoid(θ))",
    "num_samples": "draws per estimate (num_samples)",
}


def draw_note(fewest: int, most: int) -> str:
    """' (2 draws)' in a legend where an estimator uses more than one draw per estimate."""
    return f" ({fewest} draws)" if fewest == most and fewest > 1 else ""


def facet_by_cost_and_param(
    metrics: pd.DataFrame,
    style: Style,
    draw: Callable[[plt.Axes, pd.DataFrame, tuple, str], None],
    ylabel: str,
    title: str,
    x: str = "k",
    note_draws: bool = True,
    row: str = "param",
    reference: tuple[str, Callable[[plt.Axes, pd.DataFrame], None]] | None = None,
    xlabel: str | None = None,
) -> plt.Figure:
    """One panel per (``row``, cost), log y, one colour and marker per estimator, ``x`` on the
    x axis; ``draw(ax, rows, color, marker)`` draws one estimator's rows.

    ``row`` is the parameter differentiated or another column such as k; ``reference``, a
    (legend label, draw(ax, panel)) pair, adds one grey dashed line per panel; ``xlabel``
    replaces ``x``'s usual label."""
    costs = list(dict.fromkeys(metrics["cost"]))
    values = list(dict.fromkeys(metrics[row]))
    fig, axes = plt.subplots(
        len(values),
        len(costs),
        figsize=(max(3.6 * len(costs), 8.0), 3.0 * len(values) + 1.3),
        squeeze=False,
        sharex="col",
    )
    for i, value in enumerate(values):
        for j, cost in enumerate(costs):
            ax = axes[i][j]
            panel = metrics[(metrics[row] == value) & (metrics["cost"] == cost)]
            if reference:
                reference[1](ax, panel)
            for label, rows in panel.groupby("label"):
                draw(ax, rows.sort_values(x), style.colors[label], style.markers[label])
            ax.set_yscale("log")
            xs = panel[x]
            if x == "k" and (xs > 0).all() and xs.max() >= 10 * xs.min():
                ax.set_xscale("log")  # a k grid spanning a decade or more, as in Figure 3
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            what = (
                f"gradient w.r.t. {PARAM_LABELS.get(value, value)}"
                if row == "param"
                else f"{row} = {value:g}"
            )
            ax.set_title(f"{cost}, {what}", fontsize=10)
            if i == len(values) - 1:
                ax.set_xlabel(xlabel or AXIS_LABELS.get(x, x))
            if j == 0:
                ax.set_ylabel(ylabel)
    draws = metrics.groupby("label")["num_samples"].agg(["min", "max"])
    if not note_draws:
        draws[:] = 1
    handles = line_handles(style, draws.index)
    for handle in handles:
        handle.set_label(handle.get_label() + draw_note(*draws.loc[handle.get_label()]))
    if reference:
        handles.append(plt.Line2D([], [], color="0.4", ls="--", lw=1, label=reference[0]))
    if any(artist.get_gid() == ZERO_VARIANCE for artist in fig.findobj()):
        handles.append(
            plt.Line2D([], [], color="0.4", marker="v", ls="", label="variance exactly 0")
        )
    fig.suptitle(title)
    legend_below(fig, handles)
    return fig


def measured_zero(rows: pd.DataFrame) -> pd.Series:
    """Measured variances at rounding level relative to the mean: zero in exact arithmetic."""
    return rows["grad_var"] <= 1e-12 * rows["grad_mean"] ** 2


def exact_variance(ax: plt.Axes, rows: pd.DataFrame, x: str, color) -> None:
    """Exact variances as a line, broken where one is zero and marked there on the bottom edge."""
    exact = rows.dropna(subset=["exact_var"])
    ax.plot(exact[x], exact["exact_var"].where(exact["exact_var"] > 0), color=color, lw=1.5)
    mark_zero_variance(ax, exact.loc[exact["exact_var"] == 0, x], color)


def measured_variance(
    ax: plt.Axes, rows: pd.DataFrame, x: str, color, marker: str, line: bool = False
) -> None:
    """Measured variances as points with their 95% intervals (positive ones: the y axis is log)."""
    rows = rows[~measured_zero(rows)]
    err = [
        rows["grad_var"] - rows["grad_var_lo"].clip(lower=1e-300),
        rows["grad_var_hi"] - rows["grad_var"],
    ]
    ax.errorbar(
        rows[x],
        rows["grad_var"],
        yerr=err,
        fmt=marker + ("-" if line else ""),
        ms=3.5,
        color=color,
        capsize=2,
        lw=1.2,
    )


def fewest_draws(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each estimator's rows at its fewest draws per estimate (its default), for the figures
    that compare estimators at their own cost."""
    fewest = metrics.groupby("label")["num_samples"].transform("min")
    return metrics[metrics["num_samples"] == fewest]


def title(estimator: str) -> str:
    """An estimator's name in figures: its class's title where it is registered."""
    cls = estimators.REGISTRY.get(estimator)
    return cls.title if cls is not None else estimator
