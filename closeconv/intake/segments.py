"""Durable JSON-lines segment files: hidden while written, renamed into place when complete.

A segment is written as `.NAME.jsonl.part` (hidden, so the landing discovery skips it) and
renamed to `NAME.jsonl` when it is full, old, or the writer stops. `append` returns only after
write + flush + fsync (and, for a new file, an fsync of its folder), so a caller may acknowledge
what it appended. `recover_parts` finishes the parts a killed writer left: it keeps every
complete line (an acknowledged line is always complete) and drops a torn last one.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

PART_SUFFIX = ".part"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def final_name(part: Path) -> Path:
    return part.with_name(part.name[1 : -len(PART_SUFFIX)])


class SegmentWriter:
    """One writer per (folder, prefix). Not thread-safe: one thread appends at a time."""

    def __init__(self, folder: Path, prefix: str, suffix: str = ".jsonl",
                 max_bytes: int = 64 << 20, max_age_s: float = 300.0) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.suffix = suffix
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._fh = None
        self._part: Path | None = None
        self._opened_at = 0.0
        self._committed = 0  # bytes known durable in the current part
        self._before_last = 0
        self._seq = 0

    @property
    def current_part(self) -> Path | None:
        return self._part

    @property
    def committed_bytes(self) -> int:
        return self._committed

    def _open(self) -> None:
        self._seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f".{self.prefix}-{stamp}-{os.getpid()}-{self._seq:05d}{self.suffix}{PART_SUFFIX}"
        part = self.folder / name
        self._fh = open(part, "xb")
        self._part, self._opened_at, self._committed = part, time.monotonic(), 0
        fsync_dir(self.folder)  # the new name itself must survive a crash

    def append(self, lines: list[bytes]) -> None:
        """Write these lines (each ending in a newline) durably, or raise OSError."""
        if lines:
            self.write(lines)
            self.sync()

    def write(self, lines: list[bytes]) -> None:
        """Write and flush, not yet durable: `sync` makes it so (two files can sync in parallel)."""
        if not lines:
            return
        try:
            if self._fh is None:
                self._open()
            self._before_last = self._committed
            self._fh.write(b"".join(lines))
            self._fh.flush()
        except OSError:
            self._abandon()
            raise

    def sync(self) -> None:
        if self._fh is None:
            return
        try:
            # fdatasync: the data and the size, without the timestamps nobody needs back after a crash
            os.fdatasync(self._fh.fileno())
            self._committed = self._fh.tell()
        except OSError:
            self._abandon()
            raise
        if self._committed >= self.max_bytes:
            self.finish()

    def undo_last(self) -> None:
        """Take back the last write (still in the current part): what it held was not acknowledged."""
        if self._fh is None or self._fh.tell() == self._before_last:
            return
        self._fh.truncate(self._before_last)
        self._fh.seek(self._before_last)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._committed = self._before_last

    def rotate_if_due(self) -> None:
        if self._fh is not None and time.monotonic() - self._opened_at >= self.max_age_s:
            self.finish()

    def finish(self) -> Path | None:
        """Close the current part and rename it into place; returns the finished file."""
        if self._fh is None:
            return None
        fh, part, committed = self._fh, self._part, self._committed
        self._fh = self._part = None
        fh.close()
        if committed == 0:
            part.unlink(missing_ok=True)
            return None
        target = final_name(part)
        os.rename(part, target)
        fsync_dir(self.folder)
        return target

    def _abandon(self) -> None:
        """After a failed write the file's tail is unknown: cut it back to what was durable and
        finish it if possible (else `recover_parts` does it on the next start)."""
        fh, part, committed = self._fh, self._part, self._committed
        self._fh = self._part = None
        if fh is None:
            return
        try:
            fh.close()
        except OSError:
            pass
        try:
            if committed == 0:
                part.unlink(missing_ok=True)
            else:
                os.truncate(part, committed)
                os.rename(part, final_name(part))
                fsync_dir(self.folder)
        except OSError:
            pass


def complete_lines(data: bytes) -> bytes:
    """Everything up to and including the last newline: a torn last line was never acknowledged."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def leftover_parts(folder: Path, suffix: str = ".jsonl") -> list[Path]:
    return sorted(folder.glob(f".*{suffix}{PART_SUFFIX}")) if folder.is_dir() else []


def recover_parts(folder: Path, suffix: str = ".jsonl") -> list[Path]:
    """Finish the hidden parts a stopped or killed writer left in `folder`; returns finished files."""
    finished: list[Path] = []
    for part in leftover_parts(folder, suffix):
        data = part.read_bytes()
        keep = complete_lines(data)
        if not keep:
            part.unlink()
            continue
        if len(keep) != len(data):
            os.truncate(part, len(keep))
            with open(part, "rb+") as fh:
                os.fsync(fh.fileno())
        target = final_name(part)
        os.rename(part, target)
        finished.append(target)
    if finished:
        fsync_dir(folder)
    return finished
