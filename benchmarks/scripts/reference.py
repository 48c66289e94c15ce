"""The committed reference sweep: ``python -m benchmarks.scripts.reference [SWEEP ...]`` (all of
them by default; named ones alone replace only their folders).

Runs these sweeps through the normal command line, each ending with its summary and figures
(the plot callback), into ``results/reference/``:

- ``toy_figure2``, ``toy_figure3``: the Gaussian toy over the k ranges of Mohamed et al. (2020),
  Figures 2 and 3, with their four estimators: reinforce, reinforce with the optimal constant
  baseline, reparam and the coupled measure_valued;
- ``bernoulli``: the Bernoulli toy at theta = 0 for every discrete estimator, up to k = 0.499;
- ``bernoulli_theta``: the same estimators, REBAR and RELAX too, against theta at k = 0.45, 0.499;
- ``bernoulli_optimize``: the RELAX paper's toy optimization, with the gradient variance by step;
- ``relaxations``: the relaxations' bias against temperature on the Bernoulli toy;
- ``toy_optimize``: the toy optimization mode on two costs;
- ``vae``: the digits VAE for 30 epochs with four estimators over three seeds;
- ``vae_bernoulli``: the Bernoulli-latent digits VAE for 30 epochs, six estimators, three seeds;
- ``vae_iwae``, ``vae_bernoulli_iwae``: the digits VAE trained on the IWAE bound at K = 5 and 50,
  Gaussian latents (reparam, stl, dreg, rws) and Bernoulli ones (vimco, rws, the leave-one-out
  baseline), three seeds;
- ``custom_logistic_regression``, ``custom_bandit``: the two examples of your own objective
  (``examples/``), at 8 and 4 draws per estimate;
- ``blr``: Bayesian logistic regression as in Mohamed et al. (2020), 5000 SGD steps, for
  reparam, reinforce, both baselines, the delta-method control variate and measure_valued;
- ``gaussian_lvm``: Rainforth et al.'s (2018) Gaussian model, the gradient SNR against K for
  every estimator of multi-sample objectives, ELBO and IWAE.

A sweep is one Hydra sweep (a list of arguments) or several into the same folder (a list of
such lists: options that only some estimators take, the moving-average baseline); the later
parts' runs go to ``partN_JOB`` and one summary and set of figures then covers them all.

Each sweep's folder is replaced as a whole, then pruned to what is committed (``PRUNED`` goes);
checkpoints are not written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path("results/reference")
# A reference folder keeps each run's tables and status.json (its task and overrides), and per
# sweep Hydra's multirun.yaml (the composed config and the sweep's command line; for a sweep of
# several parts, the last part's), summary.md and the PNG figures. PRUNED goes: Hydra's record of
# each run, the runs' log lines, and what `python -m benchmarks.plot FOLDER` rebuilds from the
# tables in seconds (summary.csv, the union of every table; the PDF figures).
PRUNED = ("*/.hydra", "*/run.log", "summary.csv", "plots/*.pdf")
ESTIMATORS = "estimator=reparam,reinforce,reinforce_baseline"
DISCRETE = "estimator=reinforce,reinforce_baseline,disarm,rebar,relax"


def mohamed_figure(cost: str, k: str) -> list[list[str]]:
    """The sweep parts of one cost of Mohamed et al.'s Figures 2-3: score function, pathwise and
    coupled measure-valued at one draw; the optimal constant baseline at 512 draws."""
    grid = [f"task.costs=[{cost}]", f"task.k={k}"]
    return [
        ["estimator=reinforce,reparam,measure_valued", *grid],
        [
            "estimator=reinforce_baseline",
            "estimator.baseline=optimal",
            "task.num_samples=512",
            "task.n_estimates=20000",
            *grid,
        ],
    ]


SWEEPS = {
    # Mohamed et al. (2020) at mu = sigma = 1, their four curves: Figure 2, (x-k)^2 over k in
    # [-3, 3]; Figure 3, exp(-k x^2) for k from 0.1 to 10 and cos(kx) from 0.5 to 5, log-spaced.
    # The optimal baseline estimates b* leave-one-out from 511 other draws, where its variance per
    # draw is within a few percent of the oracle b*'s (the paper's curve).
    "toy_figure2": mohamed_figure("square", "[-3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,2.5,3]"),
    "toy_figure3": [
        *mohamed_figure("exp", "[0.1,0.178,0.316,0.562,1,1.78,3.16,5.62,10]"),
        *mohamed_figure("cos", "[0.5,0.681,0.928,1.26,1.72,2.34,3.19,4.34,5]"),
    ],
    # The Bernoulli toy of REBAR, RELAX and DisARM at theta = 0, up to the hard case k = 0.499.
    "bernoulli": [
        "task=bernoulli",
        f"{DISCRETE},arm,gumbel_softmax,straight_through",
        "task.k=[0.1,0.2,0.3,0.4,0.45,0.499]",
    ],
    # The same estimators (REBAR and RELAX with their control variates trained at each theta)
    # against the logit, at the paper's two k.
    "bernoulli_theta": [
        "task=bernoulli",
        f"{DISCRETE},gumbel_softmax,straight_through,arm",
        "task.theta=-3,-2,-1,0,1,2,3",
        "task.k=[0.45,0.499]",
    ],
    # The RELAX paper's Figure 1 (right): Adam on the logit, with the gradient's variance logged.
    "bernoulli_optimize": [
        "task=bernoulli",
        DISCRETE,
        "task.mode=optimize",
        "task.k=[0.45,0.499]",
        "task.optimize.steps=5000",
        "task.optimize.lr=0.01",
        "task.optimize.log_every=100",
    ],
    # The relaxations' bias against temperature, at theta = 0.5.
    "relaxations": [
        "task=bernoulli",
        "estimator=gumbel_softmax,straight_through",
        "estimator.temperature=0.1,0.2,0.5,1.0,2.0",
        "task.theta=0.5",
    ],
    "toy_optimize": [
        ESTIMATORS,
        "task.mode=optimize",
        "task.costs=[square,cos]",
        "task.k=[1.0,3.0]",
        "task.num_samples=2",
        "task.optimize.lr=0.01",
        "task.optimize.steps=1000",
        "task.optimize.log_every=20",
    ],
    "vae": [
        "task=vae",
        f"{ESTIMATORS},nvil",
        "seed=0,1,2",
        "task.epochs=30",
        "task.checkpoint=false",
        "task.grad_var_every=20",
    ],
    # The Bernoulli-latent VAE on digits (the DisARM paper's nonlinear networks, scaled down).
    "vae_bernoulli": [
        "task=vae",
        "task.latent=bernoulli",
        "estimator=reinforce_baseline,arm,disarm,gumbel_softmax,rebar,relax",
        "seed=0,1,2",
        "task.epochs=30",
        "task.checkpoint=false",
        "task.grad_var_every=20",
    ],
    # The digits VAE trained on the IWAE bound at K = 5 and 50 (Gaussian latents, then Bernoulli).
    "vae_iwae": [
        "task=vae",
        "task.objective=iwae",
        "task.num_samples=5,50",
        "estimator=reparam,stl,dreg,rws",
        "seed=0,1,2",
        "task.epochs=30",
        "task.checkpoint=false",
        "task.grad_var_every=20",
    ],
    "vae_bernoulli_iwae": [
        "task=vae",
        "task.latent=bernoulli",
        "task.objective=iwae",
        "task.num_samples=5,50",
        "estimator=vimco,rws,reinforce_baseline",
        "seed=0,1,2",
        "task.epochs=30",
        "task.checkpoint=false",
        "task.grad_var_every=20",
    ],
    # The examples of docs/own-objective.md: your own objective through task=custom.
    "custom_logistic_regression": [
        "task=custom",
        "task.target=examples.logistic_regression:make",
        ESTIMATORS,
        "task.num_samples=8",
    ],
    "custom_bandit": [
        "task=custom",
        "task.target=examples.bandit:make",
        "estimator=reinforce,reinforce_baseline",
        "task.num_samples=4",
    ],
    # Mohamed et al. (2020), Section 8.3: the leave-one-out baseline too, and the moving average
    # (an option of reinforce_baseline alone, so a second sweep into the same folder).
    "blr": [
        ["task=blr", ESTIMATORS],
        ["task=blr", "estimator=reinforce_baseline", "estimator.baseline=ema"],
        # The delta method with a coefficient of 1 diverges here within 10 steps (the quadratic
        # expansion at the posterior mean is poor far from the mode): estimated, as mc_gradients.
        [
            "task=blr",
            "estimator=reinforce",
            "estimator.control_variate=delta",
            "estimator.cv_coefficient=estimated",
        ],
        ["task=blr", "estimator=measure_valued"],
    ],
    # Rainforth et al. (2018), their Figure on the Gaussian model: K from 1 to 1000, M = 1000.
    "gaussian_lvm": [
        "task=gaussian_lvm",
        "estimator=reparam,stl,dreg,vimco,rws,reinforce,reinforce_baseline",
    ],
}


# Sweeps of tiny tensors (the learned control variates take thousands of steps on 256 draws) run
# on one torch thread: a second one only waits, and while another process shares the 2 cores the
# bernoulli_theta sweep took 710 s on two threads against 123 s on one.
# So do the blr runs (50 x 32 logits a step): 500 steps of reinforce took 10 s on two threads,
# 0.5 s on one.
ONE_THREAD = {
    "bernoulli",
    "bernoulli_theta",
    "bernoulli_optimize",
    "vae_bernoulli",
    "vae_bernoulli_iwae",
    "blr",
}


def prune(folder: Path) -> None:
    """Remove what a finished sweep's folder does not commit (``PRUNED``)."""
    for pattern in PRUNED:
        for path in folder.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    unknown = [name for name in names if name not in SWEEPS]
    if unknown:
        print(
            f"error: sweep {unknown[0]!r} is unknown; sweeps: {', '.join(SWEEPS)}", file=sys.stderr
        )
        return 2
    for name in names or SWEEPS:
        shutil.rmtree(OUT / name, ignore_errors=True)
    for name in names or SWEEPS:
        parts = SWEEPS[name] if isinstance(SWEEPS[name][0], list) else [SWEEPS[name]]
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if name in ONE_THREAD else None
        for part, args in enumerate(parts):
            several = len(parts) > 1  # run folders partN_JOB (all named alike: they sort)
            subdir = [f"hydra.sweep.subdir=part{part}_${{hydra.job.num}}"] if several else []
            command = [
                sys.executable,
                "-m",
                "benchmarks.run",
                "-m",
                *args,
                f"hydra.sweep.dir={OUT / name}",
                *subdir,
            ]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        if len(parts) > 1:  # each part's callback summarized its own runs: now all of them
            command = [sys.executable, "-m", "benchmarks.plot", str(OUT / name)]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        prune(OUT / name)
    print(f"reference sweep written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
