"""Sweeps to one tidy table and figures: the plot command, the callback, failures, launchers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from cli import interrupt, run
from PIL import Image

import estimators
from benchmarks import figures, plot, tasks
from benchmarks.tasks.toy.bernoulli import BernoulliToy
from benchmarks.tasks.toy.figures import bernoulli as bernoulli_figures
from benchmarks.tasks.toy.figures import panels as toy_panels
from benchmarks.tasks.toy.figures import summary as toy_summary
from benchmarks.tasks.toy.figures import toys as toy_figures
from benchmarks.tasks.vae import figures as vae_figures

TOY = ["task.n_estimates=2000", "task.k=[1.0,2.0]", "task.costs=[square,cos]"]
VAE = [
    "task=vae",
    "task.epochs=2",
    "task.iwae_k=20",
    "task.grad_var_every=5",
    "task.grad_var_samples=4",
    "task.hidden=32",
]


def sweep(tmp_path: Path, *args: str):
    return run("-m", *args, f"hydra.sweep.dir={tmp_path}", timeout=600)


def assert_figures(paths: list[Path]) -> None:
    for path in paths:
        assert path.exists() and path.stat().st_size > 0
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
        else:
            assert path.read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_a_toy_sweep_ends_with_a_tidy_table_and_figures(tmp_path):
    out = sweep(
        tmp_path, "estimator=reparam,reinforce,reinforce_baseline", *TOY, "task.num_samples=2,4"
    )
    assert out.returncode == 0, out.stderr
    # The callback printed the paths it wrote.
    figure = tmp_path / "plots/toy_variance_vs_k.png"
    assert str(figure) in out.stdout
    summary = pd.read_csv(tmp_path / "summary.csv")
    runs = sorted(p.parent for p in tmp_path.glob("*/metrics.csv"))
    assert len(runs) == 6
    # One row per run and observation: every run's rows, each marked with its run and overrides.
    assert len(summary) == sum(len(pd.read_csv(r / "metrics.csv")) for r in runs)
    assert set(summary["table"]) == {"metrics"} and summary["run"].nunique() == 6
    assert set(summary["task.num_samples"]) == {2, 4}
    stems = ["toy_variance_vs_k", "toy_work_normalized_variance", "toy_variance_vs_num_samples"]
    assert_figures([tmp_path / "plots" / f"{s}.{e}" for s in stems for e in ("png", "pdf")])
    assert not list(tmp_path.glob("plots/bernoulli_*"))  # a Gaussian sweep has none
    text = (tmp_path / "summary.md").read_text()
    assert "REINFORCE + leave-one-out baseline" in text and "Reparameterization" in text


@pytest.mark.slow
def test_the_plot_command_on_a_vae_sweep_and_on_toy_optimization(tmp_path):
    assert sweep(tmp_path / "vae", *VAE, "estimator=reparam,nvil", "seed=0,1").returncode == 0
    assert (
        sweep(
            tmp_path / "opt",
            "task.mode=optimize",
            "task.costs=[square]",
            "task.k=[1.0]",
            "task.optimize.steps=20",
            "estimator=reparam,reinforce",
        ).returncode
        == 0
    )
    out = run(str(tmp_path), module="benchmarks.plot")
    assert out.returncode == 0, out.stderr
    written = [Path(line) for line in out.stdout.split()]
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"vae_digits", "toy_optimize_vs_step", "toy_optimize_vs_time"}
    assert_figures([p for p in written if p.parent.name == "plots"])
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["table"]) == {"train", "eval", "grad_var", "optimize"}
    text = (tmp_path / "summary.md").read_text()
    assert "REINFORCE + learned baseline (NVIL)" in text and "test_iwae" in text


@pytest.mark.slow
def test_a_failed_job_is_named_and_the_others_are_kept_and_plotted(tmp_path):
    out = sweep(tmp_path, "estimator=reparam,reinforce_baseline", "task.num_samples=1", *TOY)
    assert out.returncode == 1
    assert "job 1 (estimator=reinforce_baseline" in out.stderr and "num_samples >= 2" in (
        out.stderr
    )
    assert (tmp_path / "0/metrics.csv").exists() and not (tmp_path / "1/metrics.csv").exists()
    assert_figures([tmp_path / "plots/toy_variance_vs_k.png"])
    text = (tmp_path / "summary.md").read_text()
    assert "## Failed jobs (1)" in text and "num_samples >= 2" in text
    _, statuses, _ = plot.collect(tmp_path)
    assert statuses.set_index("run")["status"].to_dict() == {"0": "completed", "1": "failed"}


@pytest.mark.slow
def test_a_sweep_into_a_used_folder_summarizes_only_its_own_runs(tmp_path):
    first = sweep(tmp_path, "estimator=reparam,reinforce,reinforce_baseline", *TOY)
    assert first.returncode == 0, first.stderr
    second = sweep(
        tmp_path, "estimator=reparam,reinforce", "task.mode=optimize", "task.optimize.steps=20"
    )
    assert second.returncode == 0, second.stderr
    assert f"left out of the summary: 2, an earlier sweep's runs in {tmp_path}" in second.stdout
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["table"]) == {"optimize"} and set(summary["run"]) == {0, 1}
    # The earlier run stays on disk; the earlier sweep's figures, which no longer apply, do not.
    assert (tmp_path / "2/metrics.csv").exists()
    assert not (tmp_path / "plots/toy_variance_vs_k.png").exists()
    assert_figures([tmp_path / "plots/toy_optimize_vs_step.png"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_run_a_two_job_sweep(tmp_path, launcher):
    out = sweep(tmp_path, f"hydra/launcher={launcher}", "estimator=reparam,reinforce", *TOY)
    assert out.returncode == 0, out.stderr
    tables = [pd.read_csv(p) for p in sorted(tmp_path.glob("*/metrics.csv"))]
    assert {t.estimator.iloc[0] for t in tables} == {"reparam", "reinforce"}
    assert (tmp_path / "summary.md").exists()


@pytest.mark.slow
def test_the_plot_command_rejects_a_folder_without_runs(tmp_path):
    out = run(str(tmp_path), module="benchmarks.plot")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: DIR=") and "no runs found" in line


@pytest.mark.slow
def test_a_temperature_sweep_draws_the_relaxations_bias(tmp_path):
    out = sweep(
        tmp_path,
        "task=bernoulli",
        "estimator=gumbel_softmax,straight_through",
        "estimator.temperature=0.2,1.0",
        "task.n_estimates=5000",
        "task.theta=0.5",
    )
    assert out.returncode == 0, out.stderr
    assert_figures(
        [
            tmp_path / "plots/relaxation_bias_vs_temperature.png",
            tmp_path / "plots/relaxation_bias_vs_temperature.pdf",
        ]
    )
    assert "Gumbel-softmax (τ=0.2)" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_a_sweep_over_theta_draws_variance_against_theta(tmp_path):
    out = sweep(
        tmp_path,
        "task=bernoulli",
        "estimator=reinforce,disarm",
        "task.theta=-1,0,1",
        "task.n_estimates=2000",
    )
    assert out.returncode == 0, out.stderr
    assert_figures(
        [tmp_path / "plots" / f"bernoulli_variance_vs_theta.{e}" for e in ("png", "pdf")]
        + [tmp_path / "plots/toy_variance_vs_k.png"]
    )
    text = (tmp_path / "summary.md").read_text()
    # The figures and table against k stay at one theta; the new tables run over theta.
    assert "variance of one estimate at k = 0.499, θ = 0" in text
    assert "against θ, square, k = 0.45" in text and "against θ, square, k = 0.499" in text
    assert "| (exact gradient)² | 1.546e-07 | 2.5e-07 | 1.546e-07 |" in text  # k = 0.499


@pytest.mark.slow
def test_a_categorical_sweep_over_the_class_0_logit_draws_its_own_figure(tmp_path):
    out = sweep(
        tmp_path,
        "task=categorical",
        "estimator=reinforce",
        "task.logits=[-1.0,0.0,0.0],[1.0,0.0,0.0]",
        "task.n_estimates=2000",
        "task.k=[1.0]",
    )
    assert out.returncode == 0, out.stderr
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert "categorical_variance_vs_theta.png" in plots
    assert "bernoulli_variance_vs_theta.png" not in plots
    text = (tmp_path / "summary.md").read_text()
    assert "## Categorical toy: variance of one estimate against θ, abs_diff, k = 1" in text


def test_a_zero_variance_breaks_the_line_and_is_marked_on_the_bottom_edge():
    # DisARM at theta = 0 has exactly zero variance, which a log axis cannot show.
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    rows = pd.DataFrame({"k": [1.0, 2.0, 3.0], "exact_var": [1e-3, 0.0, 1e-2]})
    toy_panels.exact_variance(ax, rows, "k", "C0")
    line, marks = ax.lines
    assert pd.isna(line.get_ydata()[1]) and list(marks.get_xdata()) == [2.0]
    assert marks.get_gid() == figures.ZERO_VARIANCE
    plt.close(fig)


def write_run(path: Path, table: str, rows: list[dict], **status) -> None:
    """A finished run's folder as the runner leaves it: its table and a status naming its task
    (and whatever else ``status`` gives)."""
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path / f"{table}.csv", index=False)
    status = {"status": "completed", "task": rows[0]["task"], **status}
    (path / "status.json").write_text(json.dumps(status))


def test_a_run_is_read_from_its_status_and_tables_alone(tmp_path):
    """No .hydra/ needed: the status names the task and records the overrides, the columns (but
    Hydra's settings and the experiment config that set the others)."""
    args = ["task=bernoulli", "estimator=reinforce", "task.optimize.lr=0.01", "hydra.verbose=true"]
    write_run(
        tmp_path / "0",
        "optimize",
        optimize_rows("bernoulli", "reinforce", None),
        overrides=[*args, "+experiment=bernoulli_optimize"],
    )
    summary, statuses, classes = plot.collect(tmp_path)
    assert classes == {"bernoulli": BernoulliToy}
    assert set(summary["task.optimize.lr"]) == {"0.01"}
    assert "hydra.verbose" not in summary and "experiment" not in summary
    assert statuses["overrides"].tolist() == [
        "task=bernoulli estimator=reinforce task.optimize.lr=0.01"
    ]


def test_a_run_written_before_statuses_named_tasks_reads_as_before(tmp_path):
    """Its status names the task's class path, and Hydra's .hydra/overrides.yaml the overrides."""
    args = ["task=bernoulli", "estimator=reinforce", "task.optimize.lr=0.01"]
    rows = optimize_rows("bernoulli", "reinforce", None)
    write_run(tmp_path / "new/0", "optimize", rows, overrides=args)
    write_run(tmp_path / "old/0", "optimize", rows, task="benchmarks.tasks.toy.BernoulliToy")
    (tmp_path / "old/0/.hydra").mkdir()
    (tmp_path / "old/0/.hydra/overrides.yaml").write_text("".join(f"- {a}\n" for a in args))
    new, old = plot.collect(tmp_path / "new"), plot.collect(tmp_path / "old")
    pd.testing.assert_frame_equal(old[0], new[0])
    pd.testing.assert_frame_equal(old[1], new[1])
    assert old[2] == new[2] == {"bernoulli": BernoulliToy}


def test_a_task_this_process_has_not_imported_is_found_at_the_class_path_its_status_keeps(
    tmp_path, monkeypatch
):
    """A task from outside this repository: its name is registered only where it is imported."""
    tasks.load_builtin()
    monkeypatch.delitem(tasks.REGISTRY, "bernoulli")
    rows = optimize_rows("bernoulli", "reinforce", None)
    write_run(tmp_path / "0", "optimize", rows, task_class="benchmarks.tasks.toy.BernoulliToy")
    assert plot.collect(tmp_path)[2] == {"bernoulli": BernoulliToy}


def optimize_rows(task: str, estimator: str, grad_var: float | None) -> list[dict]:
    """A synthetic optimize.csv: the Bernoulli toy's logit (with a measured gradient variance
    where ``grad_var`` is given) or the Gaussian's (mu, sigma)."""
    rows = []
    for step in range(0, 101, 20):
        row = {
            "estimator": estimator,
            "options": "",
            "task": task,
            "seed": 0,
            "device": "cpu",
            "cost": "square",
            "k": 0.499 if task == "bernoulli" else 1.0,
            "dim": 1,
            "num_samples": 2,
            "lr": 0.01,
            "step": step,
            "time_s": 1e-3 * step,
            "objective": 0.25 - 1e-6 * step,
            "diverged": False,
        }
        if task in ("bernoulli", "categorical"):
            row["theta"] = -0.01 * step
            if grad_var is not None:
                row["grad_var"] = grad_var / (1 + step)
        else:
            row.update(mu=1.0 - 0.005 * step, sigma=1.0)
        rows.append(row)
    return rows


def test_a_bernoulli_optimization_with_variances_draws_the_relax_figure(tmp_path):
    write_run(tmp_path / "0", "optimize", optimize_rows("bernoulli", "reinforce", 0.0156))
    write_run(tmp_path / "1", "optimize", optimize_rows("bernoulli", "disarm", 2.5e-7))
    write_run(tmp_path / "2", "optimize", optimize_rows("gaussian", "reparam", None))
    written, _ = plot.plot(tmp_path)
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"toy_optimize_vs_step", "toy_optimize_vs_time", "bernoulli_optimize"}
    assert_figures([p for p in written if p.parent.name == "plots"])
    text = (tmp_path / "summary.md").read_text()
    assert "| DisARM | 0.2689 | 2.475e-09 |" in text  # sigmoid(-1), 2.5e-7 / 101


def test_a_categorical_optimization_draws_its_own_variance_figure(tmp_path):
    """Its theta is a class-0 logit, not a Bernoulli's: sigmoid(theta) would mean nothing, so
    the top row is the exact E[f]."""
    write_run(tmp_path / "0", "optimize", optimize_rows("categorical", "reinforce", 0.0156))
    written, _ = plot.plot(tmp_path)
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"toy_optimize_vs_step", "toy_optimize_vs_time", "categorical_optimize"}
    assert_figures([p for p in written if p.parent.name == "plots"])


def test_an_exact_step_in_the_relax_figure_is_marked_on_the_bottom_edge():
    rows = pd.DataFrame(optimize_rows("bernoulli", "disarm", 2.5e-7)).assign(label="DisARM", run=0)
    rows.loc[rows["step"] == 40, "grad_var"] = 0.0  # DisARM at theta = 0 is exact
    fig = bernoulli_figures.optimize_variance_figure(
        rows, plot.style_for(rows["label"]), "bernoulli"
    )
    line, marks = fig.axes[1].lines
    assert pd.isna(line.get_ydata()[2]) and list(marks.get_xdata()) == [40]
    assert marks.get_gid() == figures.ZERO_VARIANCE
    plt.close(fig)


def test_a_folder_redraws_to_the_same_bytes(tmp_path):
    """The committed figures are checked by redrawing them: that needs the same bytes each time."""
    write_run(tmp_path / "0", "optimize", optimize_rows("bernoulli", "reinforce", 0.0156))
    write_run(tmp_path / "1", "optimize", optimize_rows("bernoulli", "disarm", 2.5e-7))
    first = {path: path.read_bytes() for path in plot.plot(tmp_path)[0]}
    assert {path: path.read_bytes() for path in plot.plot(tmp_path)[0]} == first
    assert any(path.suffix == ".png" for path in first)


def test_a_png_keeps_its_resolution_in_256_colours(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    with open(tmp_path / "line.png", "wb") as handle:
        plot.png(fig, handle)
    plt.close(fig)
    with Image.open(tmp_path / "line.png") as image:
        assert image.mode == "P" and image.size == (4 * plot.DPI, 3 * plot.DPI)


def test_toy_optimizations_without_variances_draw_no_relax_figure(tmp_path):
    write_run(tmp_path / "0", "optimize", optimize_rows("bernoulli", "reinforce", None))
    write_run(tmp_path / "1", "optimize", optimize_rows("gaussian", "reparam", None))
    written, _ = plot.plot(tmp_path)
    stems = {p.stem for p in written if p.parent.name == "plots"}
    assert stems == {"toy_optimize_vs_step", "toy_optimize_vs_time"}


@pytest.mark.slow
def test_a_real_bernoulli_optimization_sweep_draws_the_relax_figure(tmp_path):
    out = sweep(
        tmp_path,
        "task=bernoulli",
        "task.mode=optimize",
        "estimator=reinforce,disarm",
        "task.k=[0.499]",
        "task.optimize.steps=20",
        "task.optimize.log_every=10",
        "task.optimize.var_estimates=50",
    )
    assert out.returncode == 0, out.stderr
    assert_figures([tmp_path / "plots" / f"bernoulli_optimize.{e}" for e in ("png", "pdf")])
    text = (tmp_path / "summary.md").read_text()
    assert "P(b = 1) = sigmoid(θ) and the gradient variance" in text


def test_the_z_score_line_checks_a_biased_estimator_against_its_own_exact_mean():
    metrics = pd.DataFrame(
        {
            "label": ["REINFORCE", "Gumbel-softmax (τ=0.5)"],
            "exact_grad": [0.025, 0.025],
            "exact_mean": [0.025, 0.02146],
            "grad_mean": [0.0251, 0.02129],
            "grad_var": [0.04, 0.01412],
            "n_estimates": [20000, 20000],
        }
    )
    se = (metrics.grad_var / metrics.n_estimates) ** 0.5
    metrics["z_score"] = (metrics.grad_mean - metrics.exact_grad) / se
    line = toy_summary.z_score_line(metrics)
    assert line.endswith(", REINFORCE 0.07\n")  # unbiased: against the gradient only
    assert "Gumbel-softmax (τ=0.5) 4.42 (biased by design; 0.20 against its exact mean)" in line


@pytest.mark.slow
def test_an_interrupted_sweep_ends_with_the_summary_of_the_jobs_that_finished(tmp_path):
    out = interrupt(
        "-m",
        "task.mode=optimize",
        "task.costs=[square]",
        "task.k=[1.0]",
        "task.optimize.steps=10,100000000",
        f"hydra.sweep.dir={tmp_path}",
        started=tmp_path / "1/.hydra/config.yaml",
    )
    assert out.returncode == 130, out.stderr
    assert f"optimize.csv so far kept in {tmp_path / '1'}" in out.stderr
    assert "Traceback" not in out.stderr
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["run"].astype(str)) == {"0"}  # the finished job only
    text = (tmp_path / "summary.md").read_text()
    assert "## Interrupted jobs (1)" in text
    assert "task.optimize.steps=100000000 | cost=square, k=1.0, step=" in text
    assert (tmp_path / "plots/toy_optimize_vs_step.png").exists()


def test_a_diverged_optimization_is_marked_on_a_readable_axis():
    steps = list(range(0, 50, 10))
    rows = []
    for cost, label, name, values in [
        ("square", "REINFORCE", "0", [2.0, 1.0, 1e20, 1e60, 1e60]),
        ("square", "Reparameterization", "1", [2.0, 1.0, 0.5, 0.3, 0.2]),
        ("cos", "REINFORCE", "2", [-0.2, -0.4, 1e40, -1e60, -1e60]),
        ("cos", "Reparameterization", "3", [-0.2, -0.4, -0.5, -0.6, -0.6]),
    ]:
        for i, (step, value) in enumerate(zip(steps, values, strict=True)):
            diverged = label == "REINFORCE" and i == len(steps) - 1
            rows.append(
                dict(
                    cost=cost,
                    k=1.0,
                    step=step,
                    time_s=step / 100,
                    objective=value,
                    label=label,
                    run=name,
                    diverged=diverged,
                )
            )
    table = pd.DataFrame(rows)
    fig = toy_figures.optimize_figure(table, plot.style_for(table["label"]), "step")
    square, cos = fig.axes[:2]
    assert square.get_yscale() == "log"  # E[f] > 0: a log axis spans 1e-1 to 1e60
    assert cos.get_yscale() == "linear" and cos.get_ylim()[1] < 0  # the calm run's range
    for ax in (square, cos):
        (mark,) = [a for a in ax.get_lines() if a.get_gid() == "diverged"]
        assert mark.get_xdata()[0] == 40
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["REINFORCE", "Reparameterization", "diverged"]
    plt.close(fig)


def test_a_one_seed_vae_figure_has_integer_epochs_and_no_band(tmp_path):
    rows = []
    for step in range(1, 31):
        rows.append(dict(table="train", step=step, time_s=step / 10, train_elbo=-100.0 + step))
    for epoch in (1, 2, 3):
        rows.append(dict(table="eval", step=10 * epoch, epoch=epoch, test_elbo=-90.0 + epoch))
    rows.append(dict(table="grad_var", step=10, param="total", total_var=1.0))
    summary = pd.DataFrame(rows).assign(
        dataset="digits", seed=0, label="Reparameterization", task="vae"
    )
    fig = vae_figures.vae_figure(summary, plot.style_for(summary["label"]), "digits", "gaussian")
    assert fig._suptitle.get_text() == "VAE on digits: 1 seed"
    epochs = fig.axes[2]
    assert epochs.get_xlabel() == "epoch"
    ticks = [t for t in epochs.get_xticks() if epochs.get_xlim()[0] <= t <= epochs.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


@pytest.mark.slow
def test_a_run_without_options_or_rows_plots_without_a_warning(tmp_path):
    out = run("task.n_estimates=100", "task.k=[1.0]", f"hydra.run.dir={tmp_path}")  # reparam
    assert out.returncode == 0, out.stderr
    (tmp_path / "optimize.csv").write_text("\n")  # what a table of no rows is written as
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' deprecations of fillna included
        assert plot.main([str(tmp_path)]) == 0


def test_tasks_share_a_summary_only_where_they_share_its_module():
    """The two toys draw into the same figures; every other task draws its own."""
    from benchmarks.tasks.blr.task import BLRTask
    from benchmarks.tasks.toy.bernoulli import BernoulliToy
    from benchmarks.tasks.toy.gaussian import GaussianToy
    from benchmarks.tasks.vae.task import VAETask

    classes = {"gaussian": GaussianToy, "bernoulli": BernoulliToy, "blr": BLRTask, "vae": VAETask}
    groups = sorted(sorted(names) for _, names in plot.families(classes))
    assert groups == [["bernoulli", "gaussian"], ["blr"], ["vae"]]


def test_an_estimator_that_joins_the_registry_moves_no_other_estimators_colour(monkeypatch):
    """A name sorting before the others ('aaa') still takes the places after the built-ins."""
    labels = pd.Series(["REINFORCE", "Reparameterization", "DReG", "Some other label"])
    before = plot.style_for(labels)

    class Newcomer(estimators.base.Estimator):
        name = title = "aaa"

    monkeypatch.setitem(estimators.REGISTRY, "aaa", Newcomer)
    after = plot.style_for(pd.concat([labels, pd.Series(["aaa"])]))
    for label in labels[:3]:
        assert after.colors[label] == before.colors[label]
        assert after.markers[label] == before.markers[label]
    assert plot.known_labels()[-1] == "aaa"


def test_no_two_estimators_of_a_folder_share_a_colour():
    """With 28 known labels the 20 colours come round again (CARMS on leave-one-out's grey): a
    folder's later label takes the first colour none of its labels has; the others keep theirs."""
    every = plot.style_for(pd.Series(plot.known_labels()[:20]))
    shown = pd.Series(["REINFORCE + leave-one-out baseline", "CARMS", "REINFORCE", "RODEO", "ARM"])
    style = plot.style_for(shown)
    assert len({style.colors[label] for label in shown}) == len(shown)
    for label in ("REINFORCE + leave-one-out baseline", "REINFORCE", "ARM"):
        assert style.colors[label] == every.colors[label]
    alone = plot.style_for(pd.Series(["CARMS"]))  # nothing to share with: its own place
    assert alone.colors["CARMS"] == every.colors["REINFORCE + leave-one-out baseline"]
