"""The API reference is complete: every module of the library (the estimators and benchmarks,
less the maintainer's scripts) has its ``::: module`` line on a page under docs/api/, so a new
module cannot go undocumented."""

from __future__ import annotations

import pkgutil
import re

from cli import ROOT

import benchmarks
import estimators


def modules(package) -> set[str]:
    """The modules (not packages) under ``package``."""
    prefix = f"{package.__name__}."
    return {m.name for m in pkgutil.walk_packages(package.__path__, prefix) if not m.ispkg}


def test_every_library_module_is_in_the_api_reference():
    pages = sorted((ROOT / "docs/api").glob("*.md"))
    documented = {m for p in pages for m in re.findall(r"^::: ([\w.]+)", p.read_text(), re.M)}
    library = {m for m in modules(benchmarks) if not m.startswith("benchmarks.scripts.")}
    missing = sorted((modules(estimators) | library) - documented)
    assert not missing, f"no ::: line under docs/api/ for {', '.join(missing)}"
