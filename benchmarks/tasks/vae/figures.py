"""The VAE's summary section and figures, from its tables (``train``, ``eval``, ``grad_var``):
training curves over seeds by step and wall-clock, test ELBO per epoch, encoder gradient
variance."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from benchmarks.figures import line_handles
from benchmarks.results import markdown_table
from benchmarks.tasks.base import Style


def vae_latents(summary: pd.DataFrame) -> pd.Series:
    """Each row's VAE latent family (runs from before discrete latents have none: Gaussian)."""
    if "latent" not in summary:
        return pd.Series("gaussian", index=summary.index)
    return summary["latent"].fillna("gaussian")


def vae_figure(summary: pd.DataFrame, style: Style, dataset: str, latent: str) -> plt.Figure:
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
                ax.plot(
                    by_step["t"], by_step["m"], color=style.colors[label], ls=style.linestyle(label)
                )
                sd = by_step["sd"].fillna(0)
                ax.fill_between(
                    by_step["t"],
                    by_step["m"] - sd,
                    by_step["m"] + sd,
                    color=style.colors[label],
                    alpha=0.2,
                    lw=0,
                )
        else:
            sns.lineplot(
                data=rows,
                x=x,
                y=y,
                hue="label",
                palette=style.colors,
                style="label",
                dashes=style.dashes,
                errorbar="sd",
                ax=ax,
                legend=False,
            )
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if x == "epoch":  # no epoch 1.5
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1][1].set_yscale("log")
    for ax in axes[0]:  # the first steps' ELBO is far below the rest; show where it settles
        if not train.empty:
            ax.set_ylim(train["train_elbo"].quantile(0.05), train["train_elbo"].max() + 1)
    handles = line_handles(style, summary.loc[here, "label"], marker=False)
    seeds = summary.loc[here, "seed"].nunique()
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False)
    family = "" if latent == "gaussian" else f" ({latent} latent)"
    over = "1 seed" if seeds == 1 else f"mean over {seeds} seeds, band ±1 sd"
    fig.suptitle(f"VAE on {dataset}{family}: {over}")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """The VAE's section of summary.md: each estimator's final test ELBO and IWAE bound, mean and
    sd over seeds, per dataset (and latent family, where a discrete one is there)."""
    evals = summary[summary["table"] == "eval"]
    if evals.empty:
        return []
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
    return [
        "## VAE: final test ELBO and IWAE log-likelihood (nats, mean and sd)\n",
        markdown_table(table),
    ]


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """One figure of training curves per dataset and latent family."""
    train = summary[summary["table"] == "train"].dropna(subset=["dataset"])
    pairs = train[["dataset"]].assign(latent=vae_latents(train)).drop_duplicates()
    for dataset, latent in pairs.itertuples(index=False):
        stem = f"vae_{dataset}" if latent == "gaussian" else f"vae_{dataset}_{latent}"
        yield stem, vae_figure(summary, style, dataset, latent)
