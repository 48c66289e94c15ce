"""The statistical gate: estimators' bias and variance, and short VAE runs, against exact values
and a committed baseline, with tolerances from confidence intervals; independent of the machine.

    python -m benchmarks.scripts.regression.stat_gate            # check (exit 1 on a failure)
    python -m benchmarks.scripts.regression.stat_gate --update   # refresh the baseline deliberately
    python -m benchmarks.scripts.regression.stat_gate --estimators NAME --baseline FILE [--update]
                                                         # registered estimators (a package's)
                                                         # on the toys, against your baseline

Every comparison is a z- or t-test; the critical values are Bonferroni-corrected so that, with all
comparisons together, an unchanged tree fails with probability below ALPHA even if its random
numbers changed (a new torch, another machine). With the fixed seeds on one machine the numbers
repeat exactly. Toy rows (the Gaussian toy, and the Bernoulli toy for the discrete estimators with
exact moments): the mean against the exact expectation (a bias; a relaxation's is its biased
one), the variance against its exact value, and both against the baseline's (a variance that
rises). VAE: the mean final
test ELBO over seeds against the baseline's, a Welch t-test. ``--estimators`` gates the toy rows
of the named estimators alone (each toy that serves it, default options), against exact values
where the toy knows them (the gradient itself for an unbiased estimator without exact moments)
and against the baseline file given, which ``--update`` writes.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from scipy import stats

import estimators
from benchmarks.config import CONF_DIR
from benchmarks.experiment import run_overrides
from benchmarks.moments import Z_95
from benchmarks.results import write_table
from benchmarks.scripts.regression import report
from benchmarks.tasks.base import Context, build, run_task
from estimators.errors import ConfigError

BASELINE_TOY = Path(__file__).with_name("stat_baseline_toy.csv")
BASELINE_VAE = Path(__file__).with_name("stat_baseline_vae.csv")
ALPHA = 1e-3
CPU = torch.device("cpu")
TOY = {"costs": ["square", "cos"], "k": [1.0, 3.0], "n_estimates": 20_000, "chunk_size": 20_000}
ESTIMATORS = {
    "reparam": {},
    "reinforce": {},
    "reinforce_baseline:loo": {"baseline": "loo"},
    "reinforce_baseline:ema": {"baseline": "ema"},
}
# The Bernoulli toy for the discrete estimators with exact moments, off theta = 0 (where DisARM is
# exact and has no variance to compare).
BERNOULLI = {"theta": 0.3, "k": [0.45, 0.499], "n_estimates": 20_000, "chunk_size": 20_000}
BERNOULLI_ESTIMATORS = {
    "bernoulli:reinforce_baseline:loo": {"baseline": "loo"},
    "bernoulli:arm": {},
    "bernoulli:disarm": {},
    "bernoulli:gumbel_softmax": {"temperature": 0.5},
    "bernoulli:straight_through": {"temperature": 0.5},
}
VAE_ESTIMATORS = ("reparam", "reinforce", "reinforce_baseline")
VAE_SEEDS = tuple(range(8))
VAE_OVERRIDES = [
    "task=vae",
    "task.epochs=10",
    "task.iwae_k=0",
    "task.grad_var_every=0",
    "task.checkpoint=false",
]


def toy_config(name: str) -> DictConfig:
    """The gate's settings of toy ``name`` (gaussian or bernoulli)."""
    overrides = {"gaussian": TOY, "bernoulli": BERNOULLI}[name]
    return OmegaConf.merge(OmegaConf.load(CONF_DIR / f"task/{name}.yaml"), overrides)


def selected(names: list[str]) -> tuple[dict, dict]:
    """The gate keys of registered estimators ``names`` on each toy that serves them, default
    options: as ``ESTIMATORS`` and ``BERNOULLI_ESTIMATORS``; a ConfigError for a name not
    registered or served by neither toy."""
    toys = {toy: build(toy_config(toy)) for toy in ("gaussian", "bernoulli")}
    gated: dict[str, dict] = {"gaussian": {}, "bernoulli": {}}
    for name in names:
        est = estimators.build(name)
        served = [
            t for t, task in toys.items() if est.supports(task.distribution(*task.initial(CPU)))
        ]
        if not served:
            raise ConfigError(f"--estimators {name}: serves neither toy (a Normal, Bernoulli bits)")
        for toy in served:
            gated[toy]["bernoulli:" * (toy == "bernoulli") + name] = {}
    return gated["gaussian"], gated["bernoulli"]


def measure_toy(
    gaussian: dict = ESTIMATORS, bernoulli: dict = BERNOULLI_ESTIMATORS
) -> pd.DataFrame:
    """The toys' statistics for every gated estimator (gate key: options), at a fixed seed."""
    tables = []
    for name, gated in (("gaussian", gaussian), ("bernoulli", bernoulli)):
        cfg = toy_config(name)
        for key, options in gated.items():
            estimator = key.removeprefix("bernoulli:").split(":")[0]
            make = functools.partial(estimators.build, estimator, **options)
            result = run_task(build(cfg), make, Context(seed=0, device=CPU))
            tables.append(result.tables["metrics"].assign(gate_key=key))
    return pd.concat(tables, ignore_index=True)


def measure_vae() -> pd.DataFrame:
    """The final test ELBO of a short digits run per estimator and seed."""
    rows = []
    for name in VAE_ESTIMATORS:
        for seed in VAE_SEEDS:
            overrides = [*VAE_OVERRIDES, f"estimator={name}", f"seed={seed}"]
            final = run_overrides(overrides, device=CPU).tables["eval"].iloc[-1]
            rows.append({"estimator": name, "seed": seed, "test_elbo": final.test_elbo})
    return pd.DataFrame(rows)


def variance_se(table: pd.DataFrame) -> pd.Series:
    """The standard error of each measured variance, from its 95% interval."""
    return (table["grad_var_hi"] - table["grad_var_lo"]) / (2 * Z_95)


def check(
    toy: pd.DataFrame, vae_rows: pd.DataFrame, base_toy: pd.DataFrame, base_vae: pd.DataFrame
) -> tuple[list[str], int]:
    """The failed comparisons, one line each, and how many comparisons were made."""
    keys = ["gate_key", "cost", "k", "param"]
    merged = toy.merge(base_toy, on=keys, suffixes=("", "_base"), how="left")
    tests: list[tuple[str, float]] = []  # (description, z)
    for row, se in zip(merged.itertuples(), variance_se(merged), strict=True):
        where = f"{row.gate_key} {row.cost} k={row.k:g} d/d{row.param}"
        # A relaxation's mean is tested against its exact (biased) expectation; a biased
        # estimator's without one, against nothing exact.
        exact = row.exact_grad if math.isnan(row.exact_mean) else row.exact_mean
        sd_exact = math.sqrt(row.grad_var / row.n_estimates)
        if not math.isnan(row.exact_mean) or estimators.REGISTRY[row.estimator].unbiased:
            tests.append(
                (
                    f"{where}: mean {row.grad_mean:.4g} vs exact expectation {exact:.4g}",
                    (row.grad_mean - exact) / sd_exact if sd_exact > 0 else row.z_score,
                )
            )
        if not math.isnan(row.exact_var) and se > 0:
            tests.append(
                (
                    f"{where}: variance {row.grad_var:.4g} vs exact {row.exact_var:.4g}",
                    (row.grad_var - row.exact_var) / se,
                )
            )
        if math.isnan(row.grad_mean_base):
            tests.append((f"{where}: not in the baseline", math.inf))
            continue
        se_base = (row.grad_var_hi_base - row.grad_var_lo_base) / (2 * Z_95)
        sd_mean = math.sqrt(row.grad_var / row.n_estimates + row.grad_var_base / row.n_estimates)
        if sd_mean > 0:
            tests.append(
                (
                    f"{where}: mean {row.grad_mean:.4g} vs baseline {row.grad_mean_base:.4g}",
                    (row.grad_mean - row.grad_mean_base) / sd_mean,
                )
            )
        if se > 0 or se_base > 0:
            tests.append(
                (
                    f"{where}: variance {row.grad_var:.4g} vs baseline {row.grad_var_base:.4g}",
                    (row.grad_var - row.grad_var_base) / math.hypot(se, se_base),
                )
            )
    vae_tests = []
    for name, runs in vae_rows.groupby("estimator"):
        base = base_vae[base_vae["estimator"] == name]["test_elbo"]
        vae_tests.append(
            (
                f"vae {name}: test ELBO {runs['test_elbo'].mean():.3f} vs baseline "
                f"{base.mean():.3f} (Welch t)",
                welch_p(runs["test_elbo"], base),
            )
        )
    # Half the false-alarm budget to the toy's z-tests, half to the VAE's t-tests.
    z_crit = stats.norm.isf(ALPHA / 2 / (2 * len(tests)))
    p_crit = ALPHA / 2 / max(len(vae_tests), 1)
    failures = [
        f"{d} (z = {z:.2f}, allowed |z| < {z_crit:.2f})" for d, z in tests if not abs(z) < z_crit
    ]
    failures += [f"{d}: p = {p:.2g} < {p_crit:.2g}" for d, p in vae_tests if not p >= p_crit]
    return failures, len(tests) + len(vae_tests)


def welch_p(a: pd.Series, b: pd.Series) -> float:
    """Two-sided p-value of Welch's t-test; 1 for equal constant samples, 0 for unequal ones
    (or for a missing baseline)."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    diff = a.mean() - b.mean()
    if se == 0:
        return 1.0 if abs(diff) < 1e-9 else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write a new baseline")
    parser.add_argument(
        "--estimators", nargs="+", metavar="NAME", help="gate these on the toys alone"
    )
    parser.add_argument("--baseline", type=Path, help="their toy baseline (--update writes it)")
    args = parser.parse_args(argv)
    if args.estimators or args.baseline:
        try:
            return gate_estimators(args.estimators, args.baseline, args.update)
        except ConfigError as error:
            print(f"statistical gate: error: {error}", file=sys.stderr)
            return 2
    toy, vae_rows = measure_toy(), measure_vae()
    if args.update:
        write_table(toy, BASELINE_TOY)
        write_table(vae_rows, BASELINE_VAE)
        print(f"wrote {BASELINE_TOY} and {BASELINE_VAE}")
        return 0
    failures, n = check(toy, vae_rows, pd.read_csv(BASELINE_TOY), pd.read_csv(BASELINE_VAE))
    passed = f"{n} comparisons passed (family-wise false-alarm rate {ALPHA})"
    return report("statistical gate", failures, passed)


def gate_estimators(names: list[str] | None, baseline: Path | None, update: bool) -> int:
    """The toy rows of registered estimators ``names`` against exact values and ``baseline``,
    or written into ``baseline`` where ``update``; the exit code."""
    if not names or baseline is None:
        raise ConfigError("--estimators NAME ... and --baseline FILE go together")
    if not update and not baseline.is_file():
        raise ConfigError(f"--baseline {baseline}: no such file; --update writes it")
    toy = measure_toy(*selected(names))
    if update:
        write_table(toy, baseline)
        print(f"wrote {baseline}")
        return 0
    no_vae = pd.DataFrame(columns=["estimator", "seed", "test_elbo"])
    failures, n = check(toy, no_vae, pd.read_csv(baseline), no_vae)
    return report(
        "statistical gate", failures, f"{n} comparisons passed (false-alarm rate {ALPHA})"
    )


if __name__ == "__main__":
    sys.exit(main())
