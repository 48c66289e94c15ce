"""mkdocs hook: serve the committed figures of ``results/`` under ``results/`` in the site.

mkdocs only reads files under ``docs/``, but the figures belong to ``results/``, next to the tables
they were drawn from. Rather than copying them (the repository would hold each twice) or linking
them (symlinks break on some checkouts), this hook adds every ``results/**/*.png`` to the site's
files as if it were ``docs/results/...``. A page links a figure where it lies in the repository
(``../results/...`` from ``docs/``, ``../../results/...`` from ``docs/tasks/``), so the link works
on GitHub; the hook points it one folder down, at the site's copy, and ``mkdocs build --strict``
checks it like any other.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Links to ``results/`` written from the page's place in the repository, made the site's."""
    depth = page.file.src_uri.count("/")
    return markdown.replace(
        "](" + "../" * (depth + 1) + "results/", "](" + "../" * depth + "results/"
    )


def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).parent
    for figure in sorted((root / "results").rglob("*.png")):
        uri = figure.relative_to(root).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files
