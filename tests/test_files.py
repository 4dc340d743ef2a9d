"""Output files: written whole, with the mode the user's umask gives a new file."""

from __future__ import annotations

import os
import stat

import pytest

from placer.files import write_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_file_follows_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = tmp_path / "out" / "plan.json"
        write_atomic(path, "{}\n")
        # what open() would give a new file under the same umask
        reference = tmp_path / "reference"
        reference.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o666 & ~mask
    assert mode == stat.S_IMODE(reference.stat().st_mode)
    assert path.read_text() == "{}\n"


def test_overwrite_keeps_no_temporary_and_umask_mode(tmp_path):
    path = tmp_path / "report.md"
    old = os.umask(0o022)
    try:
        write_atomic(path, "first\n")
        write_atomic(path, "second\n")
    finally:
        os.umask(old)
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "plan.json"

    with pytest.raises(TypeError):
        write_atomic(path, 12345)  # type: ignore[arg-type]  # not text: the write fails
    assert list(tmp_path.iterdir()) == []
