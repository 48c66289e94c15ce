"""The library's modules import one another without a cycle, annotations' imports included,
and none grows past 400 lines."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import benchmarks
import estimators

PACKAGES = (estimators, benchmarks)


def library_modules() -> dict[str, Path]:
    """Every module of the library, by name, with its source file."""
    modules = {package.__name__: Path(package.__file__) for package in PACKAGES}
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            origin = importlib.util.find_spec(info.name).origin
            if origin and origin.endswith(".py"):
                modules[info.name] = Path(origin)
    return modules


def module_level(statements: list[ast.stmt]):
    """The statements run when a module is imported: those under ``if`` (``TYPE_CHECKING`` too),
    ``try`` and ``with`` and in class bodies, not in function bodies."""
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        yield statement
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(statement, field, [])
            if field == "handlers":
                inner = [line for handler in inner for line in handler.body]
            yield from module_level(inner)


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules that module ``name`` imports at module level."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for statement in module_level(ast.parse(path.read_text()).body):
        if isinstance(statement, ast.Import):
            found |= {alias.name for alias in statement.names}
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                parent = package.rsplit(".", statement.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in statement.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found & set(modules) - {name}


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as its path (first node repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_library_has_no_import_cycle():
    modules = library_modules()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert "estimators.base" in graph and "benchmarks.tasks.base" in graph
    cycle = first_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert first_cycle(graph) == ["a", "b", "c", "a"]
    assert first_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_library_is_over_400_lines():
    # A module past 400 lines holds more than one job: split it along its seams.
    lengths = {name: len(path.read_text().splitlines()) for name, path in library_modules().items()}
    long = {name: n for name, n in lengths.items() if n > 400}
    assert not long, f"modules over 400 lines: {long}"
