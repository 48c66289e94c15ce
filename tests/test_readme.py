"""What the README and the documentation pages show is what the commands do: the "Adding an
estimator" example works as written (one file, one yaml, nothing else), the sample output in
docs/getting-started.md is what its command prints, and so are the examples of docs/bad-input.md."""

from __future__ import annotations

import re
import shlex

import pandas as pd
import pytest
from cli import ROOT, doc_block, run, run_with_estimator


def run_readme_example(tmp_path, *args: str):
    """The README's example estimator, installed as it says (its file and its yaml), run with
    ``args``."""
    yaml = doc_block("# conf/estimator/antithetic.yaml")
    assert yaml.endswith("_target_: estimators.build\nname: antithetic\n")  # what the helper writes
    code = doc_block("# estimators/antithetic.py")
    return run_with_estimator(tmp_path, "antithetic", code, *args)


def test_the_readme_example_estimator_runs_from_one_file_and_one_yaml(tmp_path):
    out = run_readme_example(
        tmp_path,
        "task.num_samples=2",
        "task.n_estimates=20000",
        "task.costs=[linear,square]",
        "task.k=[1.0]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "run/metrics.csv").set_index(["cost", "param"])
    assert set(table.estimator) == {"antithetic"}
    # Antithetic pairs cancel the linear cost's noise exactly, and stay unbiased on the square.
    assert table.loc[("linear", "mu"), "grad_var"] == 0
    assert table.loc[("linear", "sigma"), "grad_var"] < 1e-10
    assert (table.z_score.abs() < 5).all()


def test_the_readme_example_estimator_says_it_does_not_serve_a_bernoulli(tmp_path):
    out = run_readme_example(tmp_path, "task=bernoulli", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(
        "error: estimator 'antithetic' does not apply to Independent(Bernoulli); estimators that "
        "do: arm, arms, disarm,"
    )
    assert "antithetic" not in line.partition("estimators that do")[2]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_readme_example_estimator_refuses_a_cost_without_a_derivative(tmp_path):
    """It is pathwise (``differentiates_f``): on a step cost it would return zero gradients."""
    (tmp_path / "stepcost.py").write_text("def step(x, k):\n    return (x > k).to(x.dtype)\n")
    out = run_readme_example(
        tmp_path, "task.costs=[stepcost:step]", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line == (
        "error: task.costs: cost 'stepcost:step' has no derivative (autograd finds none); "
        "estimator 'antithetic' needs a differentiable cost"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_readme_example_estimator_trains_a_gaussian_vae(tmp_path):
    out = run_readme_example(
        tmp_path,
        "task=vae",
        "task.epochs=1",
        "task.max_steps=3",
        "task.hidden=16",
        "task.iwae_k=0",
        "task.grad_var_every=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 0, out.stderr
    assert set(pd.read_csv(tmp_path / "run/train.csv").estimator) == {"antithetic"}


def printed_tables(text: str) -> pd.DataFrame:
    """The summary tables a run prints (whitespace-aligned, one header per job), as one frame."""
    frames = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        starts = [i for i, line in enumerate(lines) if line.lstrip().startswith("estimator ")]
        if starts:  # a run's output puts "metrics.csv:" above the header
            header, *rows = lines[starts[0] :]
            frames.append(pd.DataFrame([row.split() for row in rows], columns=header.split()))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_the_documented_sample_output_is_what_its_command_prints(tmp_path):
    (command,) = [
        line
        for line in doc_block(
            "python -m benchmarks.run -m estimator=reparam,reinforce,reinforce_baseline '",
            "docs/getting-started.md",
        ).splitlines()
        if line
    ]
    args = [arg.strip("'") for arg in command.split()[3:]]
    out = run(*args, f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    printed = printed_tables(out.stdout).drop(columns="time_per_estimate_s")
    shown = printed_tables(doc_block("estimator   cost  k param", "docs/getting-started.md")).drop(
        columns="time_per_estimate_s"
    )
    assert list(shown.columns) == list(printed.columns)
    text = ["estimator", "cost", "param", "options"]
    pd.testing.assert_frame_equal(shown[text], printed[text])
    numbers = [c for c in printed.columns if c not in text]
    # printed to 4 significant digits: the last one may round the other way on another machine
    pd.testing.assert_frame_equal(
        shown[numbers].astype(float), printed[numbers].astype(float), rtol=2e-3
    )


@pytest.mark.slow
def test_the_documented_bad_input_examples_print_what_they_show(tmp_path):
    lines = doc_block(
        "$ python -m benchmarks.run estimator=reparm", "docs/bad-input.md"
    ).splitlines()
    for command, expected in zip(lines[::2], lines[1::2], strict=True):
        args = [arg.strip("'") for arg in command.split()[4:]]
        run_dir = tmp_path / "run"
        out = run(*args, f"hydra.run.dir={run_dir}")
        assert (out.returncode, out.stderr.strip()) == (2, expected)
        assert not run_dir.exists()


def documented_run_commands() -> list[str]:
    """Every ``python -m benchmarks.run`` line in a fenced bash block of the README or the docs,
    continuation lines joined and comments dropped; not those that add a config folder of the
    reader's own (``hydra.searchpath``: tests/test_adding_a_task.py runs them with theirs)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    commands = []
    for page in pages:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.startswith("python -m benchmarks.run ") and "searchpath" not in line:
                    commands.append(line.split(" #")[0].strip())
    return commands


@pytest.mark.slow
def test_every_documented_run_command_names_existing_keys_and_options():
    from benchmarks.run import check_overrides

    commands = documented_run_commands()
    assert "python -m benchmarks.run estimator=reparam" in commands  # the README's main job
    for command in commands:
        check_overrides(shlex.split(command)[3:])  # raises ConfigError on a stale key or option


def test_the_readme_stays_a_front_page():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000
