"""The toys' sections of summary.md, from their tables: the variance at the k nearest 1 with the
largest z-scores, the variance against the Bernoulli logit, and the optimizations' last steps.
With ``figures.toys.figures`` beside them, the toys' ``figures_module``."""

from __future__ import annotations

import pandas as pd

from benchmarks.results import markdown_table
from benchmarks.tasks.toy.figures.bernoulli import (
    THETA_TITLES,
    at_one_theta,
    optimize_with_variance,
    sigmoid,
    theta_sweep,
)
from benchmarks.tasks.toy.figures.panels import PARAM_LABELS, fewest_draws
from benchmarks.tasks.toy.figures.toys import (
    figures as figures,  # re-exported: the toys' figures_module has both
)
from benchmarks.tasks.toy.figures.toys import with_evaluations


def theta_headline(metrics: pd.DataFrame, task: str) -> list[str]:
    """Per (cost, k) of a sweep over ``task``'s logit: each estimator's measured variance against
    theta, and the squared exact gradient for scale."""
    parts = []
    if metrics.empty:  # a sweep without toy rows may have no cost column at all (VAE only)
        return parts
    for (cost, k), rows in metrics.groupby(["cost", "k"]):
        table = rows.pivot_table(index="label", columns="theta", values="grad_var")
        table.loc["(exact gradient)²"] = rows.groupby("theta")["exact_grad"].first() ** 2
        table.columns = [f"θ={t:g}" for t in table.columns]
        toy = THETA_TITLES[task].split(":")[0]
        parts.append(f"## {toy}: variance of one estimate against θ, {cost}, k = {k:g}\n")
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


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """The toys' sections of summary.md: the variance table at the k nearest 1, the largest
    z-scores, the variance against theta, and the optimizations' last steps."""
    parts = []
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
            markdown_table(pivot.reset_index().rename(columns={"label": "estimator"}), digits=None)
        )
        parts.append(z_score_line(sweep))
        counted = with_evaluations(fewest_draws(rows))
        if not counted.empty:
            pivot = counted.pivot_table(
                index="label", columns=["cost", "param"], values="evaluation_normalized_var"
            )
            pivot.columns = [f"{c} {PARAM_LABELS.get(p, p)}" for c, p in pivot.columns]
            parts.append(
                f"\n## Toy: variance × evaluations of f per estimate at k = {k:g}{at}\n\n"
                "At each estimator's fewest draws: the variance at equal calls of f.\n"
            )
            parts.append(
                markdown_table(
                    pivot.reset_index().rename(columns={"label": "estimator"}), digits=None
                )
            )
    for task in THETA_TITLES:
        parts += theta_headline(theta_sweep(sweep, task), task)
    optimize = summary[summary["table"] == "optimize"]
    parts += optimize_headline(optimize_with_variance(optimize, "bernoulli"))
    if not optimize.empty:
        final = optimize.sort_values("step").groupby(["run", "cost", "k"]).tail(1)
        table = final.pivot_table(index="label", columns=["cost", "k"], values="objective")
        table.columns = [f"{c}, k={k:g}" for c, k in table.columns]
        parts.append("## Toy optimization: exact E[f] at the last step\n")
        parts.append(
            markdown_table(table.reset_index().rename(columns={"label": "estimator"}), digits=None)
        )
        if final["diverged"].any():
            gone = final[final["diverged"]]
            parts.append(
                "\nDiverged (non-finite gradient): "
                + ", ".join(
                    f"{r.label} on {r.cost} k={r.k:g} at step {r.step}" for r in gone.itertuples()
                )
                + "\n"
            )
    return parts
