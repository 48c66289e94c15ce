"""From runs to one tidy table and comparison figures: ``python -m benchmarks.plot DIR``.

Reads every run under DIR (one run or a multirun sweep): each run's CSV tables get a ``table``
column naming them, a ``run`` column with the run's folder, and the run's command-line overrides
(which its status records) as columns; all of it goes into ``DIR/summary.csv``. Each task among
the runs (found by the name the run's status records) writes its sections of ``DIR/summary.md``
and its figures, as PNG and PDF, into ``DIR/plots/``, every estimator in one colour, marker and
dash pattern throughout. Figures come from tables only; nothing is recomputed here.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import IO

import pandas as pd
import seaborn as sns
import yaml
from hydra.utils import get_class
from omegaconf import OmegaConf
from PIL import Image

import estimators
from benchmarks import tasks
from benchmarks.figures import plt
from benchmarks.results import atomic_write, markdown_table, write_table
from benchmarks.tasks.base import Style, Task

MARKERS = ("o", "s", "^", "D", "P", "X", "*")
DASHES = ("", (4, 1.5), (1.5, 1.5))
DPI = 150  # a PNG's pixels per inch: sharp on a high-density screen
NOT_WHERE = ("status", "task", "task_class", "overrides", "message")  # the rest: where it was


def run_marks(root: Path) -> dict[Path, int]:
    """The files that mark a run folder under ``root`` (Hydra's record of its overrides, the
    run's status) with their modification times in ns, which say whether a sweep rewrote them."""
    marks = [*root.rglob(".hydra/overrides.yaml"), *root.rglob("status.json")]
    return {m: m.stat().st_mtime_ns for m in marks}


def run_of(mark: Path) -> Path:
    """The run folder a mark belongs to."""
    return mark.parent.parent if mark.parent.name == ".hydra" else mark.parent


def find_runs(root: Path, exclude: set[Path] = frozenset()) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a run, less those in ``exclude``."""
    runs = {run_of(m) for m in run_marks(root)} - set(exclude)
    return sorted(runs, key=natural_order)


def natural_order(path: Path) -> list:
    """Sort key putting run 2 before run 10."""
    return [int(s) if s.isdigit() else s for s in path.parts]


def stale_runs(root: Path, before: dict[Path, int]) -> set[Path]:
    """Run folders whose every mark is as it was in ``before``: an earlier sweep's leftovers,
    which a sweep into the same folder did not rewrite."""
    now = run_marks(root)
    touched = {run_of(m) for m, t in now.items() if before.get(m) != t}
    return {run_of(m) for m in now} - touched


def overrides(run: Path, status: dict) -> dict[str, str]:
    """The run's command-line overrides as {key: value}, Hydra's own settings and the experiment
    config that set the others (``+experiment=NAME``, recorded beside them) left out: from its
    status, or from Hydra's record of them (``.hydra/overrides.yaml``) where the status has none
    (a run written before statuses kept them, or one that has written no status yet)."""
    items = status.get("overrides")
    path = run / ".hydra/overrides.yaml"
    if items is None and path.exists():
        items = yaml.safe_load(path.read_text())
    pairs = ((k.lstrip("+~"), v) for k, v in (item.split("=", 1) for item in items or []))
    return {k: v for k, v in pairs if not k.startswith("hydra") and k != "experiment"}


def task_class(run: Path, status: dict) -> type[Task] | None:
    """The task class a run used: registered under the name its status records; else at the
    class path the status records (a task this process has not imported; before tasks had names,
    the status's ``task`` was that path), or that Hydra's record of the config names while the run
    has written no status yet; None where none says (no tables are read then)."""
    name = status.get("task")
    cls = tasks.lookup(name) if name else None
    if cls is not None:
        return cls
    target = status.get("task_class") or (name if name and "." in name else None)
    config = run / ".hydra/config.yaml"
    if target is None and config.exists():
        target = OmegaConf.select(OmegaConf.load(config), "task._target_")
    return get_class(target) if target else None


def collect(
    root: Path, exclude: set[Path] = frozenset()
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, type[Task]]]:
    """All runs' tables as one tidy frame, one row per run with its status and error, and the
    task classes by task name."""
    frames, statuses, classes = [], [], {}
    for run in find_runs(root, exclude):
        name = str(run.relative_to(root)) if run != root else "."
        status_path = run / "status.json"
        status = json.loads(status_path.read_text()) if status_path.exists() else {}
        extra = overrides(run, status)
        statuses.append(
            {
                "run": name,
                "overrides": " ".join(f"{k}={v}" for k, v in extra.items()),
                "status": status.get("status", "unknown"),
                "error": status.get("error", status.get("message", "")),
                "where": ", ".join(f"{k}={v}" for k, v in status.items() if k not in NOT_WHERE),
            }
        )
        cls = task_class(run, status)
        if cls is None or status.get("status") == "interrupted":  # partial tables: left out
            continue
        classes[cls.name] = cls
        for table in cls.tables:
            path = run / f"{table}.csv"
            if not path.exists() or path.stat().st_size <= 1:  # none, or a table of no rows
                continue
            frame = pd.read_csv(path)
            frame.insert(0, "table", table)
            frame.insert(1, "run", name)
            for key, value in extra.items():
                if key not in frame.columns:
                    frame[key] = value
            frames.append(frame)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return summary, pd.DataFrame(statuses), classes


def parse_options(options: str) -> dict[str, str]:
    """'baseline=ema,decay=0.9' as {'baseline': 'ema', 'decay': '0.9'}."""
    return dict(item.split("=", 1) for item in options.split(",") if "=" in item)


def label(name: str, options: str) -> str:
    """The name readers know for an estimator with these options: its class's label, or the
    registered name of an estimator this process does not know."""
    cls = estimators.REGISTRY.get(name)
    return cls.label(parse_options(options)) if cls is not None else name


def estimator_labels(summary: pd.DataFrame) -> pd.Series:
    """Names users know: 'REINFORCE + leave-one-out baseline' rather than 'reinforce_baseline'."""
    options = summary["options"].astype(object).fillna("") if "options" in summary else ""
    pairs = pd.DataFrame({"name": summary["estimator"], "opts": options})
    labels = pairs.apply(lambda r: label(r["name"], r["opts"]), axis=1)
    # Where one label covers several option sets (two decays, say), show the options too.
    ambiguous = pairs.assign(label=labels).groupby("label")["opts"].transform("nunique") > 1
    return labels.where(~ambiguous, labels + " (" + pairs["opts"] + ")")


# The built-in estimators in the order they were added: a new one goes at the end, so that no
# estimator's colour moves when another joins (sorted by name, every later one's would).
PLACES = (
    "arm",
    "disarm",
    "gumbel_softmax",
    "measure_valued",
    "rebar",
    "reinforce",
    "reinforce_baseline",
    "relax",
    "reparam",
    "straight_through",
    "dreg",
    "rws",
    "stl",
    "vimco",
    "unordered_set",
    "sum_and_sample",
    "reinmax",
    "gst",
    "arms",
    "indecater",
    "rao_blackwell_st",
    "double_cv",
    "rodeo",
    "carms",
)


def known_labels() -> list[str]:
    """Every registered estimator's known labels, the built-ins in ``PLACES``' order and then any
    other (an installed package's) by name: the fixed places that give each estimator the same
    colour in every folder."""
    others = sorted(set(estimators.REGISTRY) - set(PLACES))
    names = [name for name in (*PLACES, *others) if name in estimators.REGISTRY]
    return [label for name in names for label in estimators.REGISTRY[name].known_labels()]


def style_for(labels: pd.Series) -> Style:
    """Colour, marker and dashes per label: the known labels in their fixed places, any other
    (another temperature, an estimator from elsewhere) after them in sorted order."""
    names = list(dict.fromkeys([*known_labels(), *sorted(labels.dropna().unique())]))
    # Ten colour-blind-safe colours, then ten darker ones in an order that keeps the hues apart
    # from the first ten at the same places of the known labels.
    dark = sns.color_palette("dark", 10)
    colors = sns.color_palette("colorblind", 10) + [dark[i] for i in (0, 2, 4, 9, 6, 5, 8, 3, 7, 1)]
    places = distinct_places(names, set(labels.dropna()), len(colors))
    return Style(
        colors={n: colors[places[n]] for n in names},
        markers={n: MARKERS[i % len(MARKERS)] for i, n in enumerate(names)},
        dashes={n: DASHES[i // 10 % len(DASHES)] for i, n in enumerate(names)},
    )


def distinct_places(names: list[str], shown: set[str], size: int) -> dict[str, int]:
    """Each name's colour: its place in ``names`` modulo ``size``, except that among the
    ``shown`` labels (a folder's) a later one whose colour an earlier one took gets the first
    colour no shown label has, while any is left. A label keeps its colour from folder to folder
    unless an earlier label of the folder holds it, and no two of a folder's labels share one."""
    places = {n: i % size for i, n in enumerate(names)}
    first = {}
    for n in names:
        if n in shown:
            first.setdefault(places[n], n)
    free = [place for place in range(size) if place not in first]
    for n in names:
        if n in shown and first[places[n]] != n and free:
            places[n] = free.pop(0)
    return places


def png(fig: plt.Figure, handle: IO[bytes]) -> None:
    """``fig`` as a PNG of 256 colours: a third of the bytes of matplotlib's RGBA file and no
    difference to the eye (lines, text and flat bands on white); without metadata."""
    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=DPI)
    image = Image.open(drawn).convert("RGB")  # opaque: the figures have a white background
    colours = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours.save(handle, format="png", optimize=True)


def pdf(fig: plt.Figure, handle: IO[bytes]) -> None:
    """``fig`` as a PDF without a creation date."""
    fig.savefig(handle, format="pdf", dpi=DPI, metadata={"CreationDate": None})


def save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as PNG and PDF, each atomically and so that the same data redraws the same
    bytes."""
    paths = [
        atomic_write(out / f"{stem}.{ext}", lambda handle, write=write: write(fig, handle))
        for ext, write in (("png", png), ("pdf", pdf))
    ]
    plt.close(fig)
    return paths


def families(classes: dict[str, type[Task]]) -> list[tuple[type[Task], list[str]]]:
    """The tasks grouped by the summary and figures they share (the two toys draw theirs with
    the same code, into the same figures), each group with one of its classes."""
    groups: dict[tuple, tuple[type[Task], list[str]]] = {}
    for name, cls in classes.items():
        key = (cls.figures_module, cls.summary_lines.__func__, cls.figures.__func__)
        groups.setdefault(key, (cls, []))[1].append(name)
    return list(groups.values())


def headline(summary: pd.DataFrame, statuses: pd.DataFrame, classes: dict[str, type[Task]]) -> str:
    """The summary.md text: the runs, each task's sections, and any failed jobs."""
    parts = [f"# Summary of {len(statuses)} run(s)\n"]
    for cls, names in families(classes):
        parts += cls.summary_lines(summary[summary["task"].isin(names)])
    failed = statuses[statuses["status"] == "failed"]
    if not failed.empty:
        parts.append(f"\n## Failed jobs ({len(failed)})\n")
        parts.append(markdown_table(failed[["run", "overrides", "error"]]))
    interrupted = statuses[statuses["status"] == "interrupted"]
    if not interrupted.empty:
        parts.append(f"\n## Interrupted jobs ({len(interrupted)})\n")
        parts.append("Stopped by Ctrl-C: their tables so far stay in their folders, not above.\n")
        parts.append(markdown_table(interrupted[["run", "overrides", "where"]]))
    return "\n".join(parts) + "\n"


def plot(root: Path, exclude: set[Path] = frozenset()) -> tuple[list[Path], pd.DataFrame]:
    """Write summary.csv, summary.md and the figures for the runs under ``root`` (less those in
    ``exclude``), removing figures an earlier call left that no longer apply; return the paths
    written and each run's status."""
    written, statuses = summarize(root, exclude)
    out = root / "plots"
    for old in [*out.glob("*.png"), *out.glob("*.pdf")]:
        if old not in written:
            old.unlink()
    return written, statuses


def summarize(root: Path, exclude: set[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The writing half of ``plot``."""
    summary, statuses, classes = collect(root, exclude)
    written = [write_table(summary, root / "summary.csv")]
    if not summary.empty:
        summary["label"] = estimator_labels(summary)
    text = headline(summary, statuses, classes)
    written.append(atomic_write(root / "summary.md", lambda h: h.write(text.encode())))
    if summary.empty:
        return written, statuses
    style = style_for(summary["label"])
    out = root / "plots"
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    for cls, names in families(classes):
        for stem, fig in cls.figures(summary[summary["task"].isin(names)], style):
            written += save(fig, out, stem)
    return written, statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a run or sweep directory")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: DIR={args.dir}: not a directory", file=sys.stderr)
        return 2
    if not find_runs(args.dir):
        print(
            f"error: DIR={args.dir}: no runs found (no .hydra/ or status.json below it)",
            file=sys.stderr,
        )
        return 2
    for path in plot(args.dir)[0]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
