"""closeconv.file_copy: the publish's byte copies, written past the page cache where the
filesystem allows it, exact in every case."""

from __future__ import annotations

import errno
import os

import pytest

from closeconv import file_copy
from closeconv.file_copy import copy_file


def _direct_io_supported(folder) -> bool:
    if not hasattr(os, "O_DIRECT"):
        return False
    probe = folder / "probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, file_copy._CHUNK, file_copy._CHUNK + 12_345, 2 * file_copy._CHUNK + 1])
def test_the_copy_has_the_same_bytes_for_any_size(tmp_path, size):
    source, dest = tmp_path / "source.duckdb", tmp_path / "dest.duckdb"
    data = os.urandom(size)
    source.write_bytes(data)
    dest.write_bytes(b"x" * (size + 10_000))  # a longer file at the destination is replaced, not overlaid
    method = copy_file(source, dest)
    assert dest.read_bytes() == data
    assert method == ("direct" if _direct_io_supported(tmp_path) else "page cache")


def test_a_filesystem_that_refuses_direct_io_gets_an_ordinary_copy(tmp_path, monkeypatch):
    # No filesystem here refuses O_DIRECT (tmpfs accepts it on this kernel), so the refusal is injected.
    def refuse(source, dest):
        open(dest, "wb").close()  # what a refused open after O_CREAT could leave
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(file_copy, "_copy_direct", refuse)
    source, dest = tmp_path / "source.duckdb", tmp_path / "dest.duckdb"
    data = os.urandom(3 * 4096 + 7)
    source.write_bytes(data)
    assert copy_file(source, dest) == "page cache"
    assert dest.read_bytes() == data


def test_other_errors_are_raised_and_leave_no_partial_copy(tmp_path):
    with pytest.raises(FileNotFoundError):
        copy_file(tmp_path / "missing.duckdb", tmp_path / "dest.duckdb")
    assert not (tmp_path / "dest.duckdb").exists()
