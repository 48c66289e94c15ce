"""The docs index what ships: every module of the library (the estimators and benchmarks, less the
maintainer's scripts) has its ``::: module`` line on a page under docs/api/, every module under
benchmarks/ is on the layout page, and the estimator lists match the registry, so a new module or
estimator cannot go undocumented; and no table is cut in two."""

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


def test_the_layout_page_names_every_module_of_benchmarks():
    """docs/layout.md's file map names each module under benchmarks/ (scripts too), by its file
    name or, in a list of one folder's modules, its stem."""
    text = (ROOT / "docs/layout.md").read_text()
    stems = {m.rsplit(".", 1)[1] for m in modules(benchmarks)}
    missing = sorted(s for s in stems if not re.search(rf"\b{s}\b", text))
    assert not missing, f"docs/layout.md does not name {', '.join(missing)}"


def test_no_table_is_cut_by_a_blank_line():
    """A blank line inside a Markdown table ends it, and the rows after it render as text."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = page.read_text().splitlines()
        for i in range(2, len(lines)):
            cut = not lines[i - 1].strip() and lines[i - 2].startswith("|")
            assert not (cut and lines[i].startswith("|")), f"{page.name}:{i + 1}"


def test_the_readme_names_every_estimator_that_ships():
    """Its list is every config under conf/estimator/ (nvil is reinforce_baseline's), no more."""
    text = (ROOT / "README.md").read_text()
    listed = text.split("The estimators that ship (", 1)[1].split(") and their options", 1)[0]
    configs = {path.stem for path in (ROOT / "conf/estimator").glob("*.yaml")}
    assert set(re.findall(r"`(\w+)`", listed)) == configs


def test_the_estimators_at_a_glance_table_matches_the_estimators():
    # every estimator of E[f] has its row, and the row's unbiased, grad f and serves columns say
    # what its class says, on a distribution of each family
    import torch
    from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

    from estimators.base import ObjectiveOnly

    families = {
        "Normal": Independent(Normal(torch.zeros(3), torch.ones(3)), 1),
        "Bernoulli": Independent(Bernoulli(logits=torch.zeros(3)), 1),
        "categorical": Independent(OneHotCategorical(logits=torch.zeros(2, 3)), 1),
    }
    text = (ROOT / "docs/estimators.md").read_text()
    section = text.split("## At a glance")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \| [^|]+ \| (yes|no) \| ([^|]+) \|$", section, re.M)
    documented = {name: (unbiased, grad_f, serves) for name, unbiased, grad_f, serves in rows}
    plain = [n for n in estimators.names() if not issubclass(estimators.REGISTRY[n], ObjectiveOnly)]
    assert sorted(documented) == plain, "one row per estimator of E[f] in docs/estimators.md"
    for name, (unbiased, grad_f, serves) in documented.items():
        cls = estimators.REGISTRY[name]
        served = [family for family, dist in families.items() if cls().supports(dist)]
        assert unbiased == ("yes" if cls.unbiased else "no"), name
        assert grad_f == ("yes" if cls.differentiates_f else "no"), name
        assert serves.split(" (")[0].strip() == ", ".join(served), name
