"""The toys' summary sections and figures, from their tables (``metrics``, ``optimize``): variance
against k (exact lines, measured points with intervals), work-normalized variance, variance against
draws per estimate or the Bernoulli logit, the relaxations' bias, and the optimization curves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

import estimators
from benchmarks.figures import ZERO_VARIANCE, legend_below, line_handles, mark_zero_variance
from benchmarks.measure import Z_95
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
) -> plt.Figure:
    """One panel per (``row``, cost), log y, one colour and marker per estimator, ``x`` on the
    x axis; ``draw(ax, rows, color, marker)`` draws one estimator's rows.

    ``row`` is the parameter differentiated or another column such as k; ``reference``, a
    (legend label, draw(ax, panel)) pair, adds one grey dashed line per panel."""
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
                ax.set_xlabel(AXIS_LABELS.get(x, x))
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


def toy_distribution(metrics: pd.DataFrame) -> str:
    """' x ~ N(μ=1, σ=1²)' or ' b ~ Bernoulli(sigmoid(θ=0))', for a figure title."""
    row = metrics.iloc[0]
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
    from benchmarks.tasks.gaussian_exact import optimal_baseline_variance

    return rows.apply(
        lambda r: optimal_baseline_variance(
            r["cost"], r["k"], r["mu"], r["sigma"], r["param"], int(r["dim"])
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


def fewest_draws(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each estimator's rows at its fewest draws per estimate (its default), for the figures
    that compare estimators at their own cost."""
    fewest = metrics.groupby("label")["num_samples"].transform("min")
    return metrics[metrics["num_samples"] == fewest]


def at_one_theta(metrics: pd.DataFrame) -> pd.DataFrame:
    """Where a sweep spans several Bernoulli logits, the rows at the one nearest 0 (and any
    Gaussian rows): the figures against k and the headline compare estimators at one theta."""
    if "theta" not in metrics or metrics["theta"].nunique() < 2:
        return metrics
    thetas = metrics["theta"].dropna()
    theta = thetas.iloc[thetas.abs().argmin()]
    return metrics[metrics["theta"].isna() | (metrics["theta"] == theta)]


def theta_sweep(metrics: pd.DataFrame) -> pd.DataFrame:
    """The Bernoulli rows of a sweep over the logit theta, at each estimator's fewest draws;
    empty unless they span more than one theta."""
    if "theta" not in metrics:
        return metrics.iloc[:0]
    rows = fewest_draws(metrics.dropna(subset=["theta"]))
    return rows if rows["theta"].nunique() > 1 else rows.iloc[:0]


def bernoulli_theta_figure(metrics: pd.DataFrame, style: Style) -> plt.Figure:
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
        "Bernoulli toy: gradient variance against θ\n"
        "exact (lines), measured with 95% intervals (points)",
        x="theta",
        row="k",
        reference=("(exact gradient)²", gradient_squared),
    )


def bernoulli_optimize(optimize: pd.DataFrame) -> pd.DataFrame:
    """The Bernoulli toy's optimization rows, where they carry a measured gradient variance."""
    if "grad_var" not in optimize or "theta" not in optimize:
        return optimize.iloc[:0]
    rows = optimize.dropna(subset=["theta"])
    return rows if rows["grad_var"].notna().any() else rows.iloc[:0]


def sigmoid(x: pd.Series) -> pd.Series:
    return 1.0 / (1.0 + np.exp(-x))


def bernoulli_optimize_figure(optimize: pd.DataFrame, style: Style) -> plt.Figure:
    """The RELAX paper's Figure 1 (right) on our toy, per (cost, k): P(b = 1) = sigmoid(theta),
    of which the exact loss is an affine function, and the variance of one gradient estimate,
    against step; one line per run."""
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
            axes[0][j].plot(run["step"], sigmoid(run["theta"]), **pen)
            zero = run["grad_var"] <= floor
            axes[1][j].plot(run["step"], run["grad_var"].mask(zero), **pen)
            mark_zero_variance(axes[1][j], run.loc[zero, "step"], style.colors[label])
        axes[0][j].set_title(f"{cost}, k = {k:g}", fontsize=10)
        axes[1][j].set_xlabel("Adam step")
        for ax in axes[:, j]:
            ax.set_yscale("log")
    theta = "mean logit θ" if optimize["dim"].max() > 1 else "θ"
    axes[0][0].set_ylabel(f"P(b = 1) = sigmoid({theta})")
    axes[1][0].set_ylabel("variance of one gradient\nestimate w.r.t. θ₁")
    handles = line_handles(style, optimize["label"], marker=False)
    fig.suptitle(
        "Bernoulli toy optimization (as in the RELAX paper, Figure 1)\n"
        "the exact loss E[f] moves with P(b = 1); the gradient variance at each logged step"
    )
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
        hue="label",
        palette=style.colors,
        style="label",
        dashes=style.dashes,
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
    if any(diverged):
        legend = grid.legend
        data = {t.get_text(): h for t, h in zip(legend.texts, legend.legend_handles, strict=True)}
        data["diverged"] = plt.Line2D([], [], color="0.3", marker="x", ls="", mew=2)
        legend.remove()
        grid.add_legend(legend_data=data, label_order=list(data))
    sns.move_legend(grid, "lower center", ncol=3, title=None, bbox_to_anchor=(0.5, 0))
    grid.figure.suptitle(
        "Toy optimization: exact objective against " + ("step" if x == "step" else "wall-clock")
    )
    grid.figure.tight_layout(rect=(0, 0.06, 1, 1))
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
    by_theta = theta_sweep(sweep)
    if not by_theta.empty:
        yield "bernoulli_variance_vs_theta", bernoulli_theta_figure(by_theta, style)
    optimize = summary[summary["table"] == "optimize"]
    if not optimize.empty:
        yield "toy_optimize_vs_step", optimize_figure(optimize, style, "step")
        yield "toy_optimize_vs_time", optimize_figure(optimize, style, "time_s")
        learned = bernoulli_optimize(optimize)
        if not learned.empty:
            yield "bernoulli_optimize", bernoulli_optimize_figure(learned, style)


def title(estimator: str) -> str:
    """An estimator's name in figures: its class's title where it is registered."""
    cls = estimators.REGISTRY.get(estimator)
    return cls.title if cls is not None else estimator
