"""The VAE's summary section and figures, from its tables (``train``, ``eval``, ``grad_var``):
training curves over seeds by step and wall-clock, test ELBO per epoch, encoder gradient
variance; for runs on the IWAE bound, the test bound per estimator and K, and the gradient SNR
against step."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from benchmarks.figures import legend_below, line_handles, over_seeds
from benchmarks.results import markdown_table
from benchmarks.tasks.base import Style


def vae_latents(summary: pd.DataFrame) -> pd.Series:
    """Each row's VAE latent family (runs from before discrete latents have none: Gaussian)."""
    if "latent" not in summary:
        return pd.Series("gaussian", index=summary.index)
    return summary["latent"].fillna("gaussian")


def family_note(latent: str) -> str:
    """' (bernoulli latent)' in a title, or nothing for the default Gaussian latents."""
    return "" if latent == "gaussian" else f" ({latent} latent)"


def vae_objectives(summary: pd.DataFrame) -> pd.Series:
    """Each row's training objective (runs from before ``task.objective`` have none: the ELBO)."""
    if "objective_name" not in summary:
        return pd.Series("elbo", index=summary.index)
    return summary["objective_name"].fillna("elbo")


def grad_var_networks(summary: pd.DataFrame) -> pd.Series:
    """Each row's probed network (tables from before the decoder's rows have none: the encoder)."""
    if "network" not in summary:
        return pd.Series("encoder", index=summary.index)
    return summary["network"].fillna("encoder")


def iwae_figure(summary: pd.DataFrame, style: Style, dataset: str, latent: str) -> plt.Figure:
    """The final test IWAE bounds of runs trained on IWAE, per estimator against the training K:
    at that K, and with ``iwae_k`` samples; mean and sd over seeds."""
    here = (summary["dataset"] == dataset) & (vae_latents(summary) == latent)
    evals = summary[(summary["table"] == "eval") & here & (vae_objectives(summary) == "iwae")]
    final = evals.sort_values("step").groupby(["run", "seed"]).tail(1)  # a run may hold seeds
    ks = ", ".join(str(int(k)) for k in sorted(final["iwae_k"].dropna().unique()))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = [
        ("test_objective", "test IWAE-K bound (nats)", "Test bound at the training K"),
        ("test_iwae", f"test IWAE-{ks or '?'} bound (nats)", "Test log-likelihood bound"),
    ]
    for ax, (y, ylabel, title) in zip(axes, panels, strict=True):
        sns.lineplot(
            data=final,
            x="K",
            y=y,
            **style.seaborn(),
            markers=style.markers,
            errorbar="sd",
            ax=ax,
            legend=False,
        )
        ax.set_xscale("log")
        trained = sorted(int(k) for k in final["K"].dropna().unique())
        ax.set_xticks(trained, [str(k) for k in trained])
        ax.minorticks_off()
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set(xlabel="K, importance samples in training", ylabel=ylabel, title=title)
    handles = line_handles(style, final["label"], dashed=True)
    over = over_seeds(final["seed"].nunique())
    fig.suptitle(f"VAE on {dataset}{family_note(latent)} trained on the IWAE bound: {over}")
    legend_below(fig, handles)
    return fig


def iwae_grad_totals(summary: pd.DataFrame, dataset: str, latent: str) -> pd.DataFrame:
    """The ``grad_var`` totals of runs trained on the IWAE bound, with each row's network."""
    here = (summary["dataset"] == dataset) & (vae_latents(summary) == latent)
    here &= (summary["table"] == "grad_var") & (vae_objectives(summary) == "iwae")
    rows = summary[here & (summary["param"] == "total")]
    return rows.assign(network=grad_var_networks(rows))


def snr_figure(summary: pd.DataFrame, style: Style, dataset: str, latent: str) -> plt.Figure:
    """The gradient SNR against step of runs trained on the IWAE bound: a row of panels per
    network (the decoder's where its rows exist), one per training K, a line per estimator."""
    rows = iwae_grad_totals(summary, dataset, latent)
    networks = [n for n in ("encoder", "decoder") if (rows["network"] == n).any()]
    ks = sorted(int(k) for k in rows["K"].unique())
    fig, axes = plt.subplots(
        len(networks),
        len(ks),
        figsize=(5.5 * len(ks), 3.8 * len(networks) + 0.8),
        squeeze=False,
        sharex=True,
        sharey="row",
    )
    for network, row in zip(networks, axes, strict=True):
        for k, ax in zip(ks, row, strict=True):
            sns.lineplot(
                data=rows[(rows["network"] == network) & (rows["K"] == k)],
                x="step",
                y="snr",
                **style.seaborn(),
                errorbar="sd",
                ax=ax,
                legend=False,
            )
            ax.set_yscale("log")  # ticks at 1, 2, 5 per decade, written as plain numbers
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set(
                xlabel="training step",
                ylabel=f"{network} gradient SNR",
                title=f"{network.capitalize()}, K = {k}",
            )
    handles = line_handles(style, rows["label"], marker=False, dashed=True)
    over = over_seeds(rows["seed"].nunique())
    m = ", ".join(str(int(v)) for v in sorted(rows["M"].unique()))
    fig.suptitle(
        f"VAE on {dataset}{family_note(latent)} trained on the IWAE bound: gradient SNR by step\n"
        f"(mean over coordinates of |mean| / sd of M = {m} estimates on a fixed batch; {over})"
    )
    legend_below(fig, handles)
    return fig


def vae_figure(summary: pd.DataFrame, style: Style, dataset: str, latent: str) -> plt.Figure:
    """Training curves over seeds: the mean with a band of one standard deviation."""
    here = (summary["dataset"] == dataset) & (vae_latents(summary) == latent)
    here &= vae_objectives(summary) == "elbo"
    pick = lambda table: summary[(summary["table"] == table) & here]  # noqa: E731
    train, evals, grad_var = pick("train"), pick("eval"), pick("grad_var")
    grad_var = grad_var[(grad_var["param"] == "total") & (grad_var_networks(grad_var) == "encoder")]
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
                **style.seaborn(),
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
    handles = line_handles(style, summary.loc[here, "label"], marker=False, dashed=True)
    over = over_seeds(summary.loc[here, "seed"].nunique())
    fig.suptitle(f"VAE on {dataset}{family_note(latent)}: {over}")
    legend_below(fig, handles)
    return fig


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """The VAE's section of summary.md: each estimator's final test ELBO and IWAE bound, mean and
    sd over seeds, per dataset (and latent family, where a discrete one is there; and objective
    and K with the test bound at the training K, where a run trained on the IWAE bound is)."""
    evals = summary[summary["table"] == "eval"]
    if evals.empty:
        return []
    final = evals.sort_values("step").groupby(["run", "seed"]).tail(1)  # a run may hold seeds
    final = final.assign(latent=vae_latents(final), objective=vae_objectives(final))
    discrete = (final["latent"] != "gaussian").any()  # else the table as it always was
    keys = ["dataset", "latent", "label"] if discrete else ["dataset", "label"]
    measures = ["test_elbo", "test_iwae"]
    if (final["objective"] != "elbo").any():  # runs on the IWAE bound: apart, per K
        final = final.assign(K=final["K"].fillna(1).astype(int))
        keys = [*keys[:-1], "objective", "K", "label"]
        measures.append("test_objective")  # the IWAE bound at the training K
    aggregates = {"seeds": ("seed", "nunique"), "steps": ("step", "median")}
    for measure in measures:
        aggregates[measure] = (measure, "mean")
        aggregates[f"{measure}_sd"] = (measure, "std")
    table = (
        final.groupby(keys).agg(**aggregates).reset_index().rename(columns={"label": "estimator"})
    )
    table["steps"] = table["steps"].round().astype(int)
    return [
        "## VAE: final test ELBO and IWAE log-likelihood (nats, mean and sd)\n",
        markdown_table(table),
    ]


def figures(summary: pd.DataFrame, style: Style) -> Iterator[tuple[str, plt.Figure]]:
    """One figure of training curves per dataset and latent family (ELBO runs); where runs
    trained on the IWAE bound, one of the test bounds per estimator and K, and one of the
    gradient SNR against step."""
    train = summary[summary["table"] == "train"].dropna(subset=["dataset"])
    runs = train[["dataset"]].assign(latent=vae_latents(train), objective=vae_objectives(train))
    for dataset, latent, objective in runs.drop_duplicates().itertuples(index=False):
        stem = f"vae_{dataset}" if latent == "gaussian" else f"vae_{dataset}_{latent}"
        if objective == "iwae":
            yield f"{stem}_iwae", iwae_figure(summary, style, dataset, latent)
            if not iwae_grad_totals(summary, dataset, latent).empty:
                yield f"{stem}_iwae_snr", snr_figure(summary, style, dataset, latent)
        elif objective == "elbo":
            yield stem, vae_figure(summary, style, dataset, latent)
