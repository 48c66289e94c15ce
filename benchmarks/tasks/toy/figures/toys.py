"""The toys' figures, from their tables (``metrics``, ``optimize``): variance against k (exact
lines, measured points with intervals), work- and evaluation-normalized variance, variance against
draws per estimate, the optimization curves, and (from ``figures.bernoulli``) the Bernoulli
toy's own."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from benchmarks.figures import legend_below, mark_zero_variance
from benchmarks.tasks.base import Style
from benchmarks.tasks.toy.figures.bernoulli import (
    THETA_TITLES,
    at_one_theta,
    optimize_variance_figure,
    optimize_with_variance,
    relaxation_bias_figure,
    theta_figure,
    theta_sweep,
)
from benchmarks.tasks.toy.figures.panels import (
    exact_variance,
    facet_by_cost_and_param,
    fewest_draws,
    measured_variance,
    measured_zero,
)


def toy_distribution(metrics: pd.DataFrame) -> str:
    """' x ~ N(μ=1, σ=1²)', ' b ~ Bernoulli(sigmoid(θ=0))' or ' x ~ 4 categoricals', for a figure
    title."""
    row = metrics.iloc[0]
    if row.get("task") == "categorical":
        return f" x ~ {row['dim']:g} categoricals, class-0 logit {row['theta']:g}"
    if pd.notna(row["theta"]):
        return f" b ~ Bernoulli(sigmoid(θ={row['theta']:g}))"
    return f" x ~ N(μ={row['mu']:g}, σ={row['sigma']:g}²)"


def toy_variance_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    def draw(ax, rows, color, marker):
        exact_variance(ax, rows, "k", color)
        measured_variance(ax, rows, "k", color, marker)

    return facet_by_cost_and_param(
        metrics,
        style,
        draw,
        "variance of one estimate",
        "Gradient variance against k\nexact (lines), measured with 95% intervals (points),"
        + toy_distribution(metrics),
    )


def optimal_baseline_rows(rows: pd.DataFrame) -> pd.Series:
    """Rows of the score function with the optimal constant baseline (``baseline=optimal``)."""
    return rows["options"].astype(object).fillna("").str.contains("baseline=optimal")


def oracle_baseline_variance(rows: pd.DataFrame) -> pd.Series:
    """Per row, the exact variance of one draw with the oracle b* = E[f s^2] / E[s^2]: the
    paper's curve, which ``baseline=optimal`` approaches as its leave-one-out b* gets more draws."""
    from benchmarks.tasks.toy.exact.gaussian.point import Point
    from benchmarks.tasks.toy.exact.gaussian.variances import optimal_baseline_variance

    return rows.apply(
        lambda r: optimal_baseline_variance(
            Point(r["cost"], r["k"], r["mu"], r["sigma"], r["param"], int(r["dim"]))
        ),
        axis=1,
    )


def per_draw_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    """Variance of one draw (variance of an estimate times its draws) against k, the quantity of
    Mohamed et al.'s Figures 2 and 3: exact lines (for ``baseline=optimal``, the oracle b*'s),
    measured points with 95% intervals."""

    def draw(ax, rows, color, marker):
        n = rows["num_samples"]
        if optimal_baseline_rows(rows).all():
            exact = oracle_baseline_variance(rows)
        else:
            exact = rows["exact_var"] * n
        per_draw = rows.assign(
            exact_var=exact, **{c: rows[c] * n for c in ("grad_var", "grad_var_lo", "grad_var_hi")}
        )
        exact_variance(ax, per_draw, "k", color)
        rounding = (exact == 0) & (rows["grad_var"] < 1e-10)  # measured 0 up to float rounding
        measured_variance(ax, per_draw[~rounding], "k", color, marker)

    return facet_by_cost_and_param(
        metrics,
        style,
        draw,
        "variance of one draw",
        "Variance of one draw (an estimate's variance times its draws) against k\n"
        "exact (lines; optimal baseline: the oracle b*), measured (95% intervals),"
        + toy_distribution(metrics),
    )


def work_normalized_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    def draw(ax, rows, color, marker):
        zero = measured_zero(rows)
        ax.plot(
            rows["k"], rows["work_normalized_var"].mask(zero), marker + "-", color=color, ms=3.5
        )
        mark_zero_variance(ax, rows.loc[zero, "k"], color)

    return facet_by_cost_and_param(
        metrics,
        style,
        draw,
        "variance × seconds per estimate",
        "Work-normalized variance\nvariance times the wall-clock seconds of one estimate",
    )


def with_evaluations(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows that count evaluations of f per estimate (tables from before the column have
    none), with the variance times that count: ``evaluation_normalized_var``."""
    if "evaluations" not in metrics:
        return metrics.iloc[:0]
    rows = metrics.dropna(subset=["evaluations"])
    return rows.assign(evaluation_normalized_var=rows["grad_var"] * rows["evaluations"])


def evaluation_normalized_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    """Variance times evaluations of f per estimate: the comparison at equal calls of f, where an
    estimator evaluates f more than once per draw (measure_valued: 4 D; rebar, relax: 3)."""

    def draw(ax, rows, color, marker):
        zero = measured_zero(rows)
        ax.plot(
            rows["k"],
            rows["evaluation_normalized_var"].mask(zero),
            marker + "-",
            color=color,
            ms=3.5,
        )
        mark_zero_variance(ax, rows.loc[zero, "k"], color)

    return facet_by_cost_and_param(
        metrics,
        style,
        draw,
        "variance × evaluations of f",
        "Evaluation-normalized variance\nvariance times the evaluations of f in one estimate",
        note_draws=False,
    )


def num_samples_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    """Variance against draws per estimate, at the k nearest 1."""
    k = metrics["k"].iloc[(metrics["k"] - 1.0).abs().argmin()]

    def draw(ax, panel, color, marker):
        measured_variance(ax, panel, "num_samples", color, marker, line=True)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(metrics["num_samples"].unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())

    return facet_by_cost_and_param(
        metrics[metrics["k"] == k],
        style,
        draw,
        "variance of one estimate",
        f"Gradient variance against draws per estimate\nk = {k:g}, with 95% intervals",
        x="num_samples",
        note_draws=False,
    )


def mark_divergence(
    ax: plt.Axes, optimize: pd.DataFrame, k: float, cost: str, x: str, style: Style
) -> bool:
    """An x at the last finite point of each run in this panel whose optimization diverged, and
    an axis that keeps the other runs readable (a diverged REINFORCE reaches 1e60): log where
    every finite E[f] is positive; else (cos crosses zero) the range of the runs that did not
    diverge, the marks clipped to it. True where a run diverged."""
    panel = optimize[(optimize["k"] == k) & (optimize["cost"] == cost)]
    if "diverged" not in panel:  # a table from before divergence was recorded
        return False
    panel = panel[np.isfinite(panel["objective"])]
    bad = panel.groupby("run")["diverged"].transform("any").astype(bool)
    if not bad.any():
        return False
    lo, hi = panel.loc[~bad, "objective"].agg(["min", "max"]) if (~bad).any() else (None, None)
    if (panel["objective"] > 0).all():
        ax.set_yscale("log")
    elif lo is not None:
        pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
        lo, hi = lo - pad, hi + pad
        ax.set_ylim(lo, hi)
    for (label, _), rows in panel[bad].groupby(["label", "run"]):
        last = rows.sort_values(x).iloc[-1]
        y = (
            last["objective"]
            if lo is None or ax.get_yscale() == "log"
            else min(max(last["objective"], lo), hi)
        )
        ax.plot(
            last[x], y, "x", color=style.colors[label], ms=8, mew=2, gid="diverged", clip_on=False
        )
    return True


def optimize_figure(optimize: pd.DataFrame, style: Style, x: str) -> plt.Figure:
    grid = sns.relplot(
        data=optimize,
        x=x,
        y="objective",
        **style.seaborn(),
        col="cost",
        row="k",
        kind="line",
        height=2.4,
        aspect=1.3,
        facet_kws={"sharey": False, "sharex": x == "step"},
    )
    grid.set_axis_labels("optimizer step" if x == "step" else "wall-clock (s)", "E[f] (exact)")
    grid.set_titles("{col_name}, k = {row_name}", size=9)
    diverged = [
        mark_divergence(ax, optimize, k, cost, x, style) for (k, cost), ax in grid.axes_dict.items()
    ]
    legend = grid.legend  # seaborn's entries (colour and dashes per label), placed below
    handles = []
    for text, handle in zip(legend.texts, legend.legend_handles, strict=True):
        handle.set_label(text.get_text())
        handles.append(handle)
    if any(diverged):
        handles.append(plt.Line2D([], [], color="0.3", marker="x", ls="", mew=2, label="diverged"))
    legend.remove()
    grid.figure.suptitle(
        "Toy optimization: exact objective against " + ("step" if x == "step" else "wall-clock")
    )
    legend_below(grid.figure, handles)
    return grid.figure


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """The toys' figures, each where its rows are there."""
    sweep = summary[summary["table"] == "metrics"]
    metrics = at_one_theta(sweep)
    if not metrics.empty:
        default = fewest_draws(metrics)
        yield "toy_variance_vs_k", toy_variance_figure(default, style)
        yield "toy_work_normalized_variance", work_normalized_figure(default, style)
        gaussian = default[default["theta"].isna()] if "theta" in default else default
        if (gaussian["num_samples"] > 1).any():
            yield "toy_variance_per_draw_vs_k", per_draw_figure(gaussian, style)
        counted = with_evaluations(default)
        if not counted.empty:
            yield "toy_evaluation_normalized_variance", evaluation_normalized_figure(counted, style)
        relaxed = metrics[metrics["options"].astype(object).fillna("").str.contains("temperature=")]
        if relaxed.groupby("estimator")["options"].nunique().gt(1).any():
            yield "relaxation_bias_vs_temperature", relaxation_bias_figure(relaxed, style)
        if (metrics.groupby("label")["num_samples"].nunique() > 1).any():
            yield "toy_variance_vs_num_samples", num_samples_figure(metrics, style)
    for task in THETA_TITLES:
        by_theta = theta_sweep(sweep, task)
        if not by_theta.empty:
            yield f"{task}_variance_vs_theta", theta_figure(by_theta, style, task)
    optimize = summary[summary["table"] == "optimize"]
    if not optimize.empty:
        yield "toy_optimize_vs_step", optimize_figure(optimize, style, "step")
        yield "toy_optimize_vs_time", optimize_figure(optimize, style, "time_s")
        for task in ("bernoulli", "categorical"):
            rows = optimize_with_variance(optimize, task)
            if not rows.empty:
                yield f"{task}_optimize", optimize_variance_figure(rows, style, task)
