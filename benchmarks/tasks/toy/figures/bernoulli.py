"""The Bernoulli toy's own figures: variance against the logit theta, the RELAX paper's toy
optimization with the gradient variance by step, and the relaxations' bias against temperature."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import estimators
from benchmarks.figures import legend_below, line_handles, mark_zero_variance
from benchmarks.moments import Z_95
from benchmarks.tasks.base import Style
from benchmarks.tasks.toy.figures.panels import (
    exact_variance,
    facet_by_cost_and_param,
    fewest_draws,
    measured_variance,
    title,
)


def at_one_theta(metrics: pd.DataFrame) -> pd.DataFrame:
    """Where a sweep spans several Bernoulli logits, the rows at the one nearest 0 (and any
    Gaussian rows): the figures against k and the headline compare estimators at one theta."""
    if "theta" not in metrics or metrics["theta"].nunique() < 2:
        return metrics
    thetas = metrics["theta"].dropna()
    theta = thetas.iloc[thetas.abs().argmin()]
    return metrics[metrics["theta"].isna() | (metrics["theta"] == theta)]


def toy_rows(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """One discrete toy's rows of a summary (both carry a theta: a logit, a class-0 logit)."""
    if "theta" not in table:
        return table.iloc[:0]
    rows = table.dropna(subset=["theta"])
    if "task" not in rows:  # tables from before runs named their task: the Bernoulli toy's
        return rows if task == "bernoulli" else rows.iloc[:0]
    return rows[rows["task"] == task]


def theta_sweep(metrics: pd.DataFrame, task: str) -> pd.DataFrame:
    """The rows of ``task`` (bernoulli or categorical) of a sweep over its measured logit theta,
    at each estimator's fewest draws; empty unless they span more than one theta."""
    rows = toy_rows(metrics, task)
    if rows.empty:
        return rows
    rows = fewest_draws(rows)
    return rows if rows["theta"].nunique() > 1 else rows.iloc[:0]


THETA_TITLES = {
    "bernoulli": "Bernoulli toy: gradient variance against θ",
    "categorical": "Categorical toy: gradient variance against the class-0 logit θ",
}
THETA_LABELS = {"categorical": "θ (the class-0 logit, the other classes' at task.logits)"}


def theta_figure(metrics: pd.DataFrame, style: Style, task: str) -> plt.Figure:
    """Variance against the logit per (cost, k): exact (lines), measured with 95% intervals
    (points), and the squared exact gradient for scale (an estimator far above it is useless)."""

    def draw(ax, rows, color, marker):
        exact_variance(ax, rows, "theta", color)
        measured_variance(ax, rows, "theta", color, marker)

    def gradient_squared(ax, panel):
        exact = panel.drop_duplicates("theta").sort_values("theta")
        ax.plot(exact["theta"], exact["exact_grad"] ** 2, color="0.4", ls="--", lw=1)

    return facet_by_cost_and_param(
        metrics,
        style,
        draw,
        "variance of one estimate",
        f"{THETA_TITLES[task]}\nexact (lines), measured with 95% intervals (points)",
        x="theta",
        row="k",
        reference=("(exact gradient)²", gradient_squared),
        xlabel=THETA_LABELS.get(task),
    )


def optimize_with_variance(optimize: pd.DataFrame, task: str) -> pd.DataFrame:
    """``task``'s optimization rows (bernoulli or categorical), where they carry a measured
    gradient variance."""
    if "grad_var" not in optimize:
        return optimize.iloc[:0]
    rows = toy_rows(optimize, task)
    return rows if rows["grad_var"].notna().any() else rows.iloc[:0]


def sigmoid(x: pd.Series) -> pd.Series:
    return 1.0 / (1.0 + np.exp(-x))


def optimize_variance_figure(optimize: pd.DataFrame, style: Style, task: str) -> plt.Figure:
    """The RELAX paper's Figure 1 (right) on our toy, per (cost, k): for the Bernoulli toy
    P(b = 1) = sigmoid(theta), of which the exact loss is an affine function, for the categorical
    the exact E[f]; below, the variance of one gradient estimate, against step; one line per
    run."""
    bernoulli = task == "bernoulli"
    panels = optimize[["cost", "k"]].drop_duplicates().sort_values(["cost", "k"])
    fig, axes = plt.subplots(
        2, len(panels), figsize=(max(4.0 * len(panels), 8.0), 6.8), squeeze=False, sharex="col"
    )
    for j, (cost, k) in enumerate(panels.itertuples(index=False)):
        rows = optimize[(optimize["cost"] == cost) & (optimize["k"] == k)]
        # An exact estimate (DisARM at theta = 0) measures zero or float64 rounding: marked.
        floor = 1e-12 * rows["grad_var"].max()
        for (label, _), run in rows.groupby(["label", "run"]):
            run = run.sort_values("step")
            pen = {"color": style.colors[label], "lw": 1.3, "ls": style.linestyle(label)}
            top = sigmoid(run["theta"]) if bernoulli else run["objective"]
            axes[0][j].plot(run["step"], top, **pen)
            zero = run["grad_var"] <= floor
            axes[1][j].plot(run["step"], run["grad_var"].mask(zero), **pen)
            mark_zero_variance(axes[1][j], run.loc[zero, "step"], style.colors[label])
        axes[0][j].set_title(f"{cost}, k = {k:g}", fontsize=10)
        axes[1][j].set_xlabel("optimizer step")
        for ax in axes[:, j] if bernoulli else axes[1:, j]:
            ax.set_yscale("log")
    if bernoulli:
        theta = "mean logit θ" if optimize["dim"].max() > 1 else "θ"
        axes[0][0].set_ylabel(f"P(b = 1) = sigmoid({theta})")
        axes[1][0].set_ylabel("variance of one gradient\nestimate w.r.t. θ₁")
        title = (
            "Bernoulli toy optimization (as in the RELAX paper, Figure 1)\n"
            "the exact loss E[f] moves with P(b = 1); the gradient variance at each logged step"
        )
    else:
        axes[0][0].set_ylabel("E[f] (exact)")
        axes[1][0].set_ylabel("variance of one gradient estimate\nw.r.t. the class-0 logit")
        title = (
            "Categorical toy optimization\n"
            "the exact E[f]; the gradient variance at each logged step"
        )
    handles = line_handles(style, optimize["label"], marker=False, dashed=True)
    fig.suptitle(title)
    legend_below(fig, handles)
    return fig


def relaxation_bias_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
    """The relaxations' bias against temperature: exact (lines), measured with 95% intervals."""
    rows = metrics.assign(
        temperature=metrics["options"].str.extract(r"temperature=([0-9.eE+-]+)")[0].astype(float),
        relaxation=metrics["estimator"].map(title),
        exact_bias=metrics["exact_mean"] - metrics["exact_grad"],
        half_width=Z_95 * (metrics["grad_var"] / metrics["n_estimates"]) ** 0.5,
    ).dropna(subset=["temperature"])
    ks = sorted(rows["k"].unique())
    # Each relaxation in the colour and marker of its label at the default temperature (of its
    # first row's, for an estimator this process does not know).
    pens = {
        title(name): (
            estimators.REGISTRY[name].known_labels()[0]
            if name in estimators.REGISTRY
            else group["label"].iloc[0]
        )
        for name, group in rows.groupby("estimator")
    }
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.2 * len(ks), 8.0), 4.2), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for name, curve in rows[rows["k"] == k].groupby("relaxation"):
            curve = curve.sort_values("temperature")
            color, marker = style.colors[pens[name]], style.markers[pens[name]]
            ax.plot(curve["temperature"], curve["exact_bias"], color=color, lw=1.5)
            ax.errorbar(
                curve["temperature"],
                curve["bias"],
                yerr=curve["half_width"],
                fmt=marker,
                ms=3.5,
                color=color,
                capsize=2,
                lw=1,
            )
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set(
            title=f"cost (b - {k:g})², θ = {rows['theta'].iloc[0]:g}",
            xlabel="temperature τ",
            ylabel="bias of the gradient estimate",
        )
    handles = [
        plt.Line2D([], [], color=style.colors[pen], marker=style.markers[pen], label=name)
        for name, pen in pens.items()
    ]
    fig.suptitle(
        "Relaxations' bias against temperature\nexact (lines), measured with 95% intervals (points)"
    )
    legend_below(fig, handles)
    return fig
