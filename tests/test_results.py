"""The one writer: whole files or none, readable as any new file is."""

from __future__ import annotations

import os

import pytest

from benchmarks.results import RunWriter, atomic_write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_an_ordinary_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        writer = RunWriter(tmp_path)
        paths = [writer.table("metrics", [{"a": 1}]), writer.status("completed")]
        paths.append(writer.checkpoint({"step": 1}))
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [mode] * 3


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "table.csv", fail)
    assert list(tmp_path.iterdir()) == []
