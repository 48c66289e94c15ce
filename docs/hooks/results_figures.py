"""mkdocs hook: serve the committed figures of ``results/`` under ``results/`` in the site.

mkdocs only reads files under ``docs/``, but the figures belong to ``results/``, next to the tables
they were drawn from. Rather than copying them (the repository would hold each twice) or linking
them (symlinks break on some checkouts), this hook adds every ``results/**/*.png`` to the site's
files as if it were ``docs/results/...``; a page then links ``results/...`` (``../results/...``
from a subfolder) and ``mkdocs build --strict`` checks the link like any other.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files


def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).parent
    for figure in sorted((root / "results").rglob("*.png")):
        uri = figure.relative_to(root).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files
