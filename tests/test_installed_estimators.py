"""Estimators from an installed package, found through its entry points: registered when
``estimators`` loads, a name that another estimator has is left out with one line naming both,
and the command line takes them with no yaml."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli import ROOT, doc_block

LISTING = "import estimators; print(' '.join(estimators.names()))"
ANTITHETIC = "# estimators/antithetic.py"  # the README's example estimator


def install(root, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A package ``mine`` as pip would leave it on the path: its modules and a dist-info folder
    whose entry points name them."""
    (root / "mine").mkdir()
    (root / "mine/__init__.py").write_text("")
    for name, code in modules.items():
        (root / f"mine/{name}.py").write_text(code)
    info = root / "mine-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mine\nVersion: 0.1\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("[estibench.estimators]\n" + "\n".join(lines) + "\n")


SCALED = """from estimators.base import Estimator, register


@register
class Scaled(Estimator):
    name = "scaled"

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def options(self):
        return {"scale": self.scale}

    def estimate(self, dist, f, num_samples):
        return self.scale * f(dist.rsample((num_samples,)))
"""


def path(root) -> str:
    """PYTHONPATH: the package in ``root``, and this checkout's code (whatever pip installed)."""
    return f"{root}{os.pathsep}{ROOT}"


def python(root, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": path(root)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_an_installed_packages_estimators_register_by_module_or_by_class(tmp_path):
    antithetic = doc_block(ANTITHETIC)
    as_class = antithetic.replace("@register\n", "").replace('"antithetic"', '"mirrored"')
    install(
        tmp_path,
        {"antithetic": "mine.antithetic", "mirrored": "mine.mirrored:Antithetic"},
        {"antithetic": antithetic, "mirrored": as_class},
    )
    out = python(tmp_path, LISTING + "; print(estimators.build('mirrored', ).min_samples)")
    assert out.returncode == 0, out.stderr
    names, min_samples = out.stdout.split("\n")[:2]
    assert {"antithetic", "mirrored", "reparam"} <= set(names.split()) and min_samples == "2"
    assert out.stderr == ""


def test_a_name_taken_by_a_built_in_estimator_is_left_out_with_one_line(tmp_path):
    clash = (
        "from estimators.base import Estimator, register\n\n\n"
        "@register\nclass Mine(Estimator):\n    name = 'reinforce'\n"
    )
    install(tmp_path, {"clash": "mine.clash"}, {"clash": clash})
    out = python(tmp_path, LISTING + "; print(estimators.REGISTRY['reinforce'].__module__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[1] == "estimators.reinforce"  # the built-in stays
    (line,) = out.stderr.strip().splitlines()
    assert "mine" in line and "estimators.reinforce.Reinforce" in line and "mine.clash.Mine" in line


def command_line(root, *args: str) -> subprocess.CompletedProcess:
    """``python -m benchmarks.run args`` with the package in ``root`` installed."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": path(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def install_both(root) -> None:
    """The package ``mine`` with the README's antithetic estimator and ``scaled``."""
    install(
        root,
        {"antithetic": "mine.antithetic", "scaled": "mine.scaled"},
        {"antithetic": doc_block(ANTITHETIC), "scaled": SCALED},
    )


@pytest.mark.slow
def test_the_command_line_takes_an_installed_estimator_with_no_yaml(tmp_path):
    install_both(tmp_path)
    # Its default options are keys of its config, overridden as estimator.KEY=value.
    out = command_line(tmp_path, "estimator=scaled", "estimator.scale=2.5", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "estimator:\n  _target_: estimators.build\n  name: scaled\n  scale: 2.5\n" in out.stdout
    out = command_line(tmp_path, "estimator=nosuch")
    assert out.returncode == 2
    assert out.stderr.startswith(
        "error: estimator='nosuch': accepted estimators are antithetic, arm"
    )
    assert "rodeo, rws, scaled, stl," in out.stderr  # the installed one among the built-in


@pytest.mark.slow
def test_a_sweep_over_an_installed_estimator_draws_it_in_its_figures(tmp_path):
    install_both(tmp_path)
    args = ["task.num_samples=2", "task.n_estimates=2000", "task.k=[1.0]", "task.costs=[square]"]
    sweep = tmp_path / "sweep"
    out = command_line(
        tmp_path, "-m", "estimator=reparam,antithetic", *args, f"hydra.sweep.dir={sweep}"
    )
    assert out.returncode == 0, out.stderr
    assert "| Antithetic pathwise |" in (sweep / "summary.md").read_text()
    assert (sweep / "plots/toy_variance_vs_k.png").exists()


def test_the_command_line_runs_it_with_the_yaml_from_the_package(tmp_path):
    install(tmp_path, {"antithetic": "mine.antithetic"}, {"antithetic": doc_block(ANTITHETIC)})
    (tmp_path / "mine/conf/estimator").mkdir(parents=True)
    (tmp_path / "mine/conf/__init__.py").write_text("")
    yaml = doc_block("# conf/estimator/antithetic.yaml")
    (tmp_path / "mine/conf/estimator/antithetic.yaml").write_text(yaml)
    args = ["estimator=antithetic", "hydra.searchpath=[pkg://mine.conf]", "task.num_samples=2"]
    args += ["task.n_estimates=2000", "task.k=[1.0]", "task.costs=[linear]"]
    out = command_line(tmp_path, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert (tmp_path / "run/metrics.csv").exists() and "antithetic" in out.stdout


EXAMPLE = ROOT / "examples/estibench-antithetic"
ENTRY = 'antithetic = "estibench_antithetic.antithetic"'  # its pyproject.toml's entry point


def test_the_example_package_is_the_readmes_estimator_behind_an_entry_point():
    code = (EXAMPLE / "estibench_antithetic/antithetic.py").read_text()
    assert code.partition("\n")[2] == doc_block(ANTITHETIC).partition("\n")[2]  # but the path
    assert ENTRY in (EXAMPLE / "pyproject.toml").read_text()


@pytest.mark.slow
def test_the_example_package_passes_its_tests(tmp_path):
    info = tmp_path / "estibench_antithetic-0.1.0.dist-info"  # as pip would install it
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: estibench-antithetic\n")
    (info / "entry_points.txt").write_text("[estibench.estimators]\n" + ENTRY.replace('"', ""))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([path(tmp_path), str(EXAMPLE)])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout
