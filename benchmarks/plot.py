"""From runs to one tidy table and comparison figures: ``python -m benchmarks.plot DIR``.

Reads every run under DIR (one run or a multirun sweep): each run's CSV tables get a ``table``
column naming them, a ``run`` column with the run's folder, and the run's Hydra overrides as
columns; all of it goes into ``DIR/summary.csv``. The headline numbers go into ``DIR/summary.md``
and the figures, as PNG and PDF, into ``DIR/plots/``. Figures come from tables only; nothing is
recomputed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from benchmarks.measure import Z_95  # noqa: E402
from benchmarks.results import TABLES, atomic_write, markdown_table, write_table  # noqa: E402

BASE_LABELS = {
    "reparam": "Reparameterization",
    "reinforce": "REINFORCE",
    "arm": "ARM",
    "disarm": "DisARM",
    "gumbel_softmax": "Gumbel-softmax",
    "straight_through": "Straight-through Gumbel-softmax",
    "rebar": "REBAR",
    "relax": "RELAX",
}
BASELINE_LABELS = {
    "loo": "REINFORCE + leave-one-out baseline",
    "ema": "REINFORCE + moving-average baseline",
    "hook": "REINFORCE + learned baseline (NVIL)",
}
PARAM_LABELS = {"mu": "μ", "sigma": "σ", "theta": "θ"}
AXIS_LABELS = {
    "k": "k (cost constant)",
    "theta": "θ (the logit: P(b = 1) = sigmoid(θ))",
    "num_samples": "draws per estimate (num_samples)",
}


def run_marks(root: Path) -> dict[Path, int]:
    """The files that mark a run folder under ``root`` (Hydra's record of its overrides, the
    run's status) with their modification times in ns, which say whether a sweep rewrote them."""
    marks = [*root.rglob(".hydra/overrides.yaml"), *root.rglob("status.json")]
    return {m: m.stat().st_mtime_ns for m in marks}


def run_of(mark: Path) -> Path:
    """The run folder a mark belongs to."""
    return mark.parent.parent if mark.parent.name == ".hydra" else mark.parent


def find_runs(root: Path, exclude: set[Path] = frozenset()) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a run, less those in ``exclude``."""
    runs = {run_of(m) for m in run_marks(root)} - set(exclude)
    return sorted(runs, key=natural_order)


def natural_order(path: Path) -> list:
    """Sort key putting run 2 before run 10."""
    return [int(s) if s.isdigit() else s for s in path.parts]


def stale_runs(root: Path, before: dict[Path, int]) -> set[Path]:
    """Run folders whose every mark is as it was in ``before``: an earlier sweep's leftovers,
    which a sweep into the same folder did not rewrite."""
    now = run_marks(root)
    touched = {run_of(m) for m, t in now.items() if before.get(m) != t}
    return {run_of(m) for m in now} - touched


def overrides(run: Path) -> dict[str, str]:
    """The run's command-line overrides as {key: value}, Hydra's own settings left out."""
    path = run / ".hydra/overrides.yaml"
    if not path.exists():
        return {}
    pairs = (item.split("=", 1) for item in yaml.safe_load(path.read_text()) or [])
    return {k.lstrip("+~"): v for k, v in pairs if not k.lstrip("+~").startswith("hydra")}


def collect(root: Path, exclude: set[Path] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All runs' tables as one tidy frame, and one row per run with its status and error."""
    frames, statuses = [], []
    for run in find_runs(root, exclude):
        name = str(run.relative_to(root)) if run != root else "."
        extra = overrides(run)
        status_path = run / "status.json"
        status = json.loads(status_path.read_text()) if status_path.exists() else {}
        statuses.append(
            {
                "run": name,
                "overrides": " ".join(f"{k}={v}" for k, v in extra.items()),
                "status": status.get("status", "unknown"),
                "error": status.get("error", status.get("message", "")),
            }
        )
        for table in TABLES:
            path = run / f"{table}.csv"
            if not path.exists():
                continue
            frame = pd.read_csv(path)
            frame.insert(0, "table", table)
            frame.insert(1, "run", name)
            for key, value in extra.items():
                if key not in frame.columns:
                    frame[key] = value
            frames.append(frame)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return summary, pd.DataFrame(statuses)


def estimator_labels(summary: pd.DataFrame) -> pd.Series:
    """Names users know: 'REINFORCE + leave-one-out baseline' rather than 'reinforce_baseline'."""
    options = summary["options"].astype(object).fillna("") if "options" in summary else ""

    def label(name: str, opts: str) -> str:
        parsed = dict(item.split("=", 1) for item in opts.split(",") if "=" in item)
        if name == "reinforce_baseline" and parsed.get("baseline") in BASELINE_LABELS:
            return BASELINE_LABELS[parsed["baseline"]]
        if "temperature" in parsed:
            start = "τ from " if "eta" in parsed else "τ="  # rebar, relax train their temperature
            return f"{BASE_LABELS.get(name, name)} ({start}{float(parsed['temperature']):g})"
        return BASE_LABELS.get(name, name)

    pairs = pd.DataFrame({"name": summary["estimator"], "opts": options})
    labels = pairs.apply(lambda r: label(r["name"], r["opts"]), axis=1)
    # Where one label covers several option sets (two decays, say), show the options too.
    ambiguous = pairs.assign(label=labels).groupby("label")["opts"].transform("nunique") > 1
    return labels.where(~ambiguous, labels + " (" + pairs["opts"] + ")")


def palette(labels: pd.Series) -> dict[str, tuple]:
    names = sorted(labels.unique())
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=False))


def save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as PNG and PDF, each atomically; without a creation date, so that the same
    data redraws the same bytes."""
    paths = []
    for ext, metadata in (("png", {}), ("pdf", {"CreationDate": None})):
        path = out / f"{stem}.{ext}"
        atomic_write(
            path,
            lambda handle, ext=ext, metadata=metadata: fig.savefig(
                handle, format=ext, dpi=150, metadata=metadata
            ),
        )
        paths.append(path)
    plt.close(fig)
    return paths


def draw_note(fewest: int, most: int) -> str:
    """' (2 draws)' in a legend where an estimator uses more than one draw per estimate."""
    return f" ({fewest} draws)" if fewest == most and fewest > 1 else ""


def legend_below(fig: plt.Figure, handles: list) -> None:
    """The legend under the panels in rows of three, or fewer where long labels would not fit
    the figure's width, with room made for it."""
    for ncol in range(min(len(handles), 3), 0, -1):
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
        box = legend.get_window_extent(fig.canvas.get_renderer())
        if ncol == 1 or box.width <= 0.98 * fig.bbox.width:
            break
        legend.remove()
    fig.tight_layout(rect=(0, box.height / fig.bbox.height + 0.01, 1, 1))


def facet_by_cost_and_param(
    metrics: pd.DataFrame,
    colors: dict,
    draw: Callable[[plt.Axes, pd.DataFrame, tuple], None],
    ylabel: str,
    title: str,
    x: str = "k",
    note_draws: bool = True,
    row: str = "param",
    reference: tuple[str, Callable[[plt.Axes, pd.DataFrame], None]] | None = None,
) -> plt.Figure:
    """One panel per (``row``, cost), log y, one colour per estimator, ``x`` on the x axis.

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
                draw(ax, rows.sort_values(x), colors[label])
            ax.set_yscale("log")
            xs = panel[x]
            if x == "k" and (xs > 0).all() and xs.max() >= 20 * xs.min():
                ax.set_xscale("log")  # a k grid spanning decades, as in Mohamed et al.'s Figure 3
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
    handles = [
        plt.Line2D([], [], color=c, marker="o", label=lbl + draw_note(*draws.loc[lbl]))
        for lbl, c in colors.items()
        if lbl in draws.index
    ]
    if reference:
        handles.append(plt.Line2D([], [], color="0.4", ls="--", lw=1, label=reference[0]))
    if any(artist.get_gid() == ZERO_VARIANCE for artist in fig.findobj()):
        handles.append(
            plt.Line2D([], [], color="0.4", marker="v", ls="", label="variance exactly 0")
        )
    fig.suptitle(title)
    legend_below(fig, handles)
    return fig


ZERO_VARIANCE = "zero_variance"


def mark_zero_variance(ax: plt.Axes, xs: pd.Series, color) -> None:
    """A triangle on the bottom edge at each x where the variance is zero, which has no place
    on a log axis (DisARM at theta = 0 is exact)."""
    if xs.empty:
        return  # an empty line's extent would throw off the layout
    bottom = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    ax.plot(
        xs, [0.0] * len(xs), "v", color=color, clip_on=False, gid=ZERO_VARIANCE, transform=bottom
    )


def measured_zero(rows: pd.DataFrame) -> pd.Series:
    """Measured variances at rounding level relative to the mean: zero in exact arithmetic."""
    return rows["grad_var"] <= 1e-12 * rows["grad_mean"] ** 2


def exact_variance(ax: plt.Axes, rows: pd.DataFrame, x: str, color) -> None:
    """Exact variances as a line, broken where one is zero and marked there on the bottom edge."""
    exact = rows.dropna(subset=["exact_var"])
    ax.plot(exact[x], exact["exact_var"].where(exact["exact_var"] > 0), color=color, lw=1.5)
    mark_zero_variance(ax, exact.loc[exact["exact_var"] == 0, x], color)


def measured_variance(ax: plt.Axes, rows: pd.DataFrame, x: str, color, fmt: str) -> None:
    """Measured variances as points with their 95% intervals (positive ones: the y axis is log)."""
    rows = rows[~measured_zero(rows)]
    err = [
        rows["grad_var"] - rows["grad_var_lo"].clip(lower=1e-300),
        rows["grad_var_hi"] - rows["grad_var"],
    ]
    ax.errorbar(
        rows[x], rows["grad_var"], yerr=err, fmt=fmt, ms=3.5, color=color, capsize=2, lw=1.2
    )


def toy_distribution(metrics: pd.DataFrame) -> str:
    """' x ~ N(μ=1, σ=1²)' or ' b ~ Bernoulli(sigmoid(θ=0))', for a figure title."""
    row = metrics.iloc[0]
    if row["task"] == "bernoulli":
        return f" b ~ Bernoulli(sigmoid(θ={row['theta']:g}))"
    return f" x ~ N(μ={row['mu']:g}, σ={row['sigma']:g}²)"


def toy_variance_figure(metrics: pd.DataFrame, colors: dict) -> plt.Figure:
    def draw(ax, rows, color):
        exact_variance(ax, rows, "k", color)
        measured_variance(ax, rows, "k", color, "o")

    return facet_by_cost_and_param(
        metrics,
        colors,
        draw,
        "variance of one estimate",
        "Gradient variance against k\nexact (lines), measured with 95% intervals (points),"
        + toy_distribution(metrics),
    )


def work_normalized_figure(metrics: pd.DataFrame, colors: dict) -> plt.Figure:
    def draw(ax, rows, color):
        zero = measured_zero(rows)
        ax.plot(rows["k"], rows["work_normalized_var"].mask(zero), "o-", color=color, ms=3.5)
        mark_zero_variance(ax, rows.loc[zero, "k"], color)

    return facet_by_cost_and_param(
        metrics,
        colors,
        draw,
        "variance × seconds per estimate",
        "Work-normalized variance\nvariance times the wall-clock seconds of one estimate",
    )


def num_samples_figure(metrics: pd.DataFrame, colors: dict) -> plt.Figure:
    """Variance against draws per estimate, at the k nearest 1."""
    k = metrics["k"].iloc[(metrics["k"] - 1.0).abs().argmin()]

    def draw(ax, panel, color):
        measured_variance(ax, panel, "num_samples", color, "o-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(metrics["num_samples"].unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())

    return facet_by_cost_and_param(
        metrics[metrics["k"] == k],
        colors,
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
    rows = fewest_draws(metrics[metrics["task"] == "bernoulli"])
    return rows if rows["theta"].nunique() > 1 else rows.iloc[:0]


def bernoulli_theta_figure(metrics: pd.DataFrame, colors: dict) -> plt.Figure:
    """Variance against the logit per (cost, k): exact (lines), measured with 95% intervals
    (points), and the squared exact gradient for scale (an estimator far above it is useless)."""

    def draw(ax, rows, color):
        exact_variance(ax, rows, "theta", color)
        measured_variance(ax, rows, "theta", color, "o")

    def gradient_squared(ax, panel):
        exact = panel.drop_duplicates("theta").sort_values("theta")
        ax.plot(exact["theta"], exact["exact_grad"] ** 2, color="0.4", ls="--", lw=1)

    return facet_by_cost_and_param(
        metrics,
        colors,
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
    rows = optimize[optimize["task"] == "bernoulli"]
    return rows if rows["grad_var"].notna().any() else rows.iloc[:0]


def sigmoid(x: pd.Series) -> pd.Series:
    return 1.0 / (1.0 + np.exp(-x))


def bernoulli_optimize_figure(optimize: pd.DataFrame, colors: dict) -> plt.Figure:
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
            axes[0][j].plot(run["step"], sigmoid(run["theta"]), color=colors[label], lw=1.3)
            zero = run["grad_var"] <= floor
            axes[1][j].plot(run["step"], run["grad_var"].mask(zero), color=colors[label], lw=1.3)
            mark_zero_variance(axes[1][j], run.loc[zero, "step"], colors[label])
        axes[0][j].set_title(f"{cost}, k = {k:g}", fontsize=10)
        axes[1][j].set_xlabel("Adam step")
        for ax in axes[:, j]:
            ax.set_yscale("log")
    theta = "mean logit θ" if optimize["dim"].max() > 1 else "θ"
    axes[0][0].set_ylabel(f"P(b = 1) = sigmoid({theta})")
    axes[1][0].set_ylabel("variance of one gradient\nestimate w.r.t. θ₁")
    labels = [lbl for lbl in colors if lbl in set(optimize["label"])]
    handles = [plt.Line2D([], [], color=colors[lbl], label=lbl) for lbl in labels]
    fig.suptitle(
        "Bernoulli toy optimization (as in the RELAX paper, Figure 1)\n"
        "the exact loss E[f] moves with P(b = 1); the gradient variance at each logged step"
    )
    legend_below(fig, handles)
    return fig


def relaxation_bias_figure(metrics: pd.DataFrame) -> plt.Figure:
    """The relaxations' bias against temperature: exact (lines), measured with 95% intervals."""
    rows = metrics.assign(
        temperature=metrics["options"].str.extract(r"temperature=([0-9.eE+-]+)")[0].astype(float),
        relaxation=metrics["estimator"].map(BASE_LABELS),
        exact_bias=metrics["exact_mean"] - metrics["exact_grad"],
        half_width=Z_95 * (metrics["grad_var"] / metrics["n_estimates"]) ** 0.5,
    ).dropna(subset=["temperature"])
    ks = sorted(rows["k"].unique())
    colors = palette(rows["relaxation"])
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.2 * len(ks), 8.0), 4.2), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for name, curve in rows[rows["k"] == k].groupby("relaxation"):
            curve = curve.sort_values("temperature")
            ax.plot(curve["temperature"], curve["exact_bias"], color=colors[name], lw=1.5)
            ax.errorbar(
                curve["temperature"],
                curve["bias"],
                yerr=curve["half_width"],
                fmt="o",
                ms=3.5,
                color=colors[name],
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
    handles = [plt.Line2D([], [], color=c, marker="o", label=n) for n, c in colors.items()]
    fig.suptitle(
        "Relaxations' bias against temperature\nexact (lines), measured with 95% intervals (points)"
    )
    legend_below(fig, handles)
    return fig


def optimize_figure(optimize: pd.DataFrame, colors: dict, x: str) -> plt.Figure:
    grid = sns.relplot(
        data=optimize,
        x=x,
        y="objective",
        hue="label",
        palette=colors,
        col="cost",
        row="k",
        kind="line",
        height=2.4,
        aspect=1.3,
        facet_kws={"sharey": False, "sharex": x == "step"},
    )
    grid.set_axis_labels("optimizer step" if x == "step" else "wall-clock (s)", "E[f] (exact)")
    grid.set_titles("{col_name}, k = {row_name}", size=9)
    sns.move_legend(grid, "lower center", ncol=3, title=None, bbox_to_anchor=(0.5, 0))
    grid.figure.suptitle(
        "Toy optimization: exact objective against " + ("step" if x == "step" else "wall-clock")
    )
    grid.figure.tight_layout(rect=(0, 0.06, 1, 1))
    return grid.figure


def vae_latents(summary: pd.DataFrame) -> pd.Series:
    """Each row's VAE latent family (runs from before discrete latents have none: Gaussian)."""
    if "latent" not in summary:
        return pd.Series("gaussian", index=summary.index)
    return summary["latent"].fillna("gaussian")


def vae_figure(summary: pd.DataFrame, colors: dict, dataset: str, latent: str) -> plt.Figure:
    """Training curves over seeds: the mean with a band of one standard deviation."""
    here = (summary["dataset"] == dataset) & (vae_latents(summary) == latent)
    pick = lambda table: summary[(summary["table"] == table) & here]  # noqa: E731
    train, evals, grad_var = pick("train"), pick("eval"), pick("grad_var")
    grad_var = grad_var[grad_var["param"] == "total"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [
        (train, "step", "train_elbo", "training step", "train ELBO (nats)", "Train ELBO by step"),
        (
            train,
            "time_s",
            "train_elbo",
            "training wall-clock (s)",
            "train ELBO (nats)",
            "Train ELBO by wall-clock",
        ),
        (evals, "epoch", "test_elbo", "epoch", "test ELBO (nats)", "Test ELBO per epoch"),
        (
            grad_var,
            "step",
            "total_var",
            "training step",
            "encoder gradient variance (sum)",
            "Encoder gradient variance",
        ),
    ]
    for ax, (rows, x, y, xlabel, ylabel, title) in zip(axes.flat, panels, strict=True):
        if rows.empty:
            pass
        elif x == "time_s":  # seeds log different times: average time and value per step
            for label, curve in rows.groupby("label"):
                by_step = curve.groupby("step").agg(t=(x, "mean"), m=(y, "mean"), sd=(y, "std"))
                ax.plot(by_step["t"], by_step["m"], color=colors[label])
                sd = by_step["sd"].fillna(0)
                ax.fill_between(
                    by_step["t"],
                    by_step["m"] - sd,
                    by_step["m"] + sd,
                    color=colors[label],
                    alpha=0.2,
                    lw=0,
                )
        else:
            sns.lineplot(
                data=rows, x=x, y=y, hue="label", palette=colors, errorbar="sd", ax=ax, legend=False
            )
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes[1][1].set_yscale("log")
    for ax in axes[0]:  # the first steps' ELBO is far below the rest; show where it settles
        if not train.empty:
            ax.set_ylim(train["train_elbo"].quantile(0.05), train["train_elbo"].max() + 1)
    labels = [lbl for lbl in colors if lbl in set(summary["label"].dropna())]
    handles = [plt.Line2D([], [], color=colors[lbl], label=lbl) for lbl in labels]
    seeds = summary.loc[here, "seed"].nunique()
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False)
    family = "" if latent == "gaussian" else f" ({latent} latent)"
    fig.suptitle(f"VAE on {dataset}{family}: mean over {seeds} seed(s), band ±1 sd")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def theta_headline(metrics: pd.DataFrame) -> list[str]:
    """Per (cost, k) of a sweep over the logit: each estimator's measured variance against theta,
    and the squared exact gradient for scale."""
    parts = []
    if metrics.empty:  # a sweep without toy rows may have no cost column at all (VAE only)
        return parts
    for (cost, k), rows in metrics.groupby(["cost", "k"]):
        table = rows.pivot_table(index="label", columns="theta", values="grad_var")
        table.loc["(exact gradient)²"] = rows.groupby("theta")["exact_grad"].first() ** 2
        table.columns = [f"θ={t:g}" for t in table.columns]
        parts.append(f"## Bernoulli toy: variance of one estimate against θ, {cost}, k = {k:g}\n")
        parts.append(
            markdown_table(table.reset_index().rename(columns={"label": "estimator"}), digits=None)
            + "\n"
        )
    return parts


def optimize_headline(optimize: pd.DataFrame) -> list[str]:
    """The Bernoulli optimization's last step: P(b = 1) (its exact E[f] moves in the fourth
    decimal at k = 0.499) and the variance of one gradient estimate there."""
    if optimize.empty:
        return []
    final = optimize.sort_values("step").groupby(["run", "cost", "k"]).tail(1)
    final = final.assign(p=sigmoid(final["theta"]))
    table = final.pivot_table(index="label", columns=["cost", "k"], values=["p", "grad_var"])
    names = {"p": "sigmoid(θ)", "grad_var": "variance"}
    table = table[[(v, c, k) for c, k in table["p"].columns for v in names]]
    table.columns = [f"{c}, k={k:g}: {names[v]}" for v, c, k in table.columns]
    return [
        "## Bernoulli toy optimization: P(b = 1) = sigmoid(θ) and the gradient variance at the "
        "last step\n",
        markdown_table(table.reset_index().rename(columns={"label": "estimator"}), digits=None)
        + "\n",
    ]


def z_score_line(metrics: pd.DataFrame) -> str:
    """Each estimator's largest |z| of the mean against the exact gradient; for one biased by
    design (a relaxation: exact_mean is not the gradient), also against its own exact mean, the
    check that the harness measured what that estimator computes."""
    own_z = (metrics["grad_mean"] - metrics["exact_mean"]) / (
        metrics["grad_var"] / metrics["n_estimates"]
    ) ** 0.5
    biased = (metrics["exact_mean"] - metrics["exact_grad"]).abs() > 1e-9 * metrics[
        "exact_grad"
    ].abs().clip(lower=1e-12)
    parts = []
    for label, rows in metrics.groupby("label"):
        text = f"{label} {rows['z_score'].abs().max():.2f}"
        if biased[rows.index].any():
            text += (
                f" (biased by design; {own_z[rows.index].abs().max():.2f} against its exact mean)"
            )
        parts.append(text)
    return "\nLargest |z-score| of the mean against the exact gradient: " + ", ".join(parts) + "\n"


def headline(summary: pd.DataFrame, statuses: pd.DataFrame) -> str:
    """The summary.md text: the runs, the headline tables, and any failed jobs."""
    parts = [f"# Summary of {len(statuses)} run(s)\n"]
    if "table" in summary:
        sweep = summary[summary["table"] == "metrics"]
        metrics = at_one_theta(sweep)
        if not metrics.empty:
            k = metrics["k"].iloc[(metrics["k"] - 1.0).abs().argmin()]
            rows = metrics[metrics["k"] == k]
            pivot = rows.pivot_table(index="label", columns=["cost", "param"], values="grad_var")
            pivot.columns = [f"{c} {PARAM_LABELS.get(p, p)}" for c, p in pivot.columns]
            at = f", θ = {rows['theta'].dropna().iloc[0]:g}" if len(metrics) < len(sweep) else ""
            parts.append(f"## Toy: variance of one estimate at k = {k:g}{at}\n")
            parts.append(
                markdown_table(
                    pivot.reset_index().rename(columns={"label": "estimator"}), digits=None
                )
            )
            parts.append(z_score_line(sweep))
        parts += theta_headline(theta_sweep(sweep))
        optimize = summary[summary["table"] == "optimize"]
        parts += optimize_headline(bernoulli_optimize(optimize))
        if not optimize.empty:
            final = optimize.sort_values("step").groupby(["run", "cost", "k"]).tail(1)
            table = final.pivot_table(index="label", columns=["cost", "k"], values="objective")
            table.columns = [f"{c}, k={k:g}" for c, k in table.columns]
            parts.append("## Toy optimization: exact E[f] at the last step\n")
            parts.append(
                markdown_table(
                    table.reset_index().rename(columns={"label": "estimator"}), digits=None
                )
            )
            if final["diverged"].any():
                gone = final[final["diverged"]]
                parts.append(
                    "\nDiverged (non-finite gradient): "
                    + ", ".join(
                        f"{r.label} on {r.cost} k={r.k:g} at step {r.step}"
                        for r in gone.itertuples()
                    )
                    + "\n"
                )
        evals = summary[summary["table"] == "eval"]
        if not evals.empty:
            final = evals.sort_values("step").groupby("run").tail(1)
            final = final.assign(latent=vae_latents(final))
            discrete = (final["latent"] != "gaussian").any()  # else the table as it always was
            table = (
                final.groupby(["dataset", "latent", "label"] if discrete else ["dataset", "label"])
                .agg(
                    seeds=("seed", "nunique"),
                    steps=("step", "median"),
                    test_elbo=("test_elbo", "mean"),
                    test_elbo_sd=("test_elbo", "std"),
                    test_iwae=("test_iwae", "mean"),
                    test_iwae_sd=("test_iwae", "std"),
                )
                .reset_index()
                .rename(columns={"label": "estimator"})
            )
            table["steps"] = table["steps"].round().astype(int)
            parts.append("## VAE: final test ELBO and IWAE log-likelihood (nats, mean and sd)\n")
            parts.append(markdown_table(table))
    failed = statuses[statuses["status"] == "failed"]
    if not failed.empty:
        parts.append(f"\n## Failed jobs ({len(failed)})\n")
        parts.append(markdown_table(failed[["run", "overrides", "error"]]))
    return "\n".join(parts) + "\n"


def plot(root: Path, exclude: set[Path] = frozenset()) -> tuple[list[Path], pd.DataFrame]:
    """Write summary.csv, summary.md and the figures for the runs under ``root`` (less those in
    ``exclude``), removing figures an earlier call left that no longer apply; return the paths
    written and each run's status."""
    written, statuses = summarize(root, exclude)
    out = root / "plots"
    for old in [*out.glob("*.png"), *out.glob("*.pdf")]:
        if old not in written:
            old.unlink()
    return written, statuses


def summarize(root: Path, exclude: set[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The writing half of ``plot``."""
    summary, statuses = collect(root, exclude)
    written = [write_table(summary, root / "summary.csv")]
    if not summary.empty:
        summary["label"] = estimator_labels(summary)
    written.append(
        atomic_write(root / "summary.md", lambda h: h.write(headline(summary, statuses).encode()))
    )
    if summary.empty:
        return written, statuses
    colors = palette(summary["label"])
    out = root / "plots"
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    sweep = summary[summary["table"] == "metrics"]
    metrics = at_one_theta(sweep)
    if not metrics.empty:
        default = fewest_draws(metrics)
        written += save(toy_variance_figure(default, colors), out, "toy_variance_vs_k")
        written += save(
            work_normalized_figure(default, colors), out, "toy_work_normalized_variance"
        )
        relaxed = metrics[metrics["options"].fillna("").str.contains("temperature=")]
        if relaxed.groupby("estimator")["options"].nunique().gt(1).any():
            written += save(relaxation_bias_figure(relaxed), out, "relaxation_bias_vs_temperature")
        if (metrics.groupby("label")["num_samples"].nunique() > 1).any():
            written += save(num_samples_figure(metrics, colors), out, "toy_variance_vs_num_samples")
    by_theta = theta_sweep(sweep)
    if not by_theta.empty:
        written += save(
            bernoulli_theta_figure(by_theta, colors), out, "bernoulli_variance_vs_theta"
        )
    optimize = summary[summary["table"] == "optimize"]
    if not optimize.empty:
        for x in ("step", "time_s"):
            written += save(
                optimize_figure(optimize, colors, x),
                out,
                f"toy_optimize_vs_{'step' if x == 'step' else 'time'}",
            )
        learned = bernoulli_optimize(optimize)
        if not learned.empty:
            written += save(bernoulli_optimize_figure(learned, colors), out, "bernoulli_optimize")
    if "dataset" in summary:
        train = summary[summary["table"] == "train"].dropna(subset=["dataset"])
        pairs = train[["dataset"]].assign(latent=vae_latents(train)).drop_duplicates()
        for dataset, latent in pairs.itertuples(index=False):
            stem = f"vae_{dataset}" if latent == "gaussian" else f"vae_{dataset}_{latent}"
            written += save(vae_figure(summary, colors, dataset, latent), out, stem)
    return written, statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a run or sweep directory")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: DIR={args.dir}: not a directory", file=sys.stderr)
        return 2
    if not find_runs(args.dir):
        print(
            f"error: DIR={args.dir}: no runs found (no .hydra/ or status.json below it)",
            file=sys.stderr,
        )
        return 2
    for path in plot(args.dir)[0]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
