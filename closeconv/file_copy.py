"""Byte copies of whole database files that go to disk without passing through the page cache.

A publish copies the published (or staging) file, up to ~1 GB at 10M events. Through the page
cache, each copied page is a newly allocated page of memory; once the run has used a few GB,
getting those pages was measured at 6-15 s of kernel time for 1 GB here, against under 1 s for
the same copy made with O_DIRECT writes from one reused buffer (docs/performance.md, session
19). Where O_DIRECT is missing (macOS, Windows) or refused (tmpfs), the copy is an ordinary one.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 8 << 20  # bytes per read/write; a multiple of any logical block size
_ALIGN = 4096  # O_DIRECT lengths and offsets: a multiple of the device's logical block size


def copy_file(source: Path | str, dest: Path | str) -> str:
    """Copy ``source`` to ``dest`` (created or truncated) and flush ``dest`` to disk. Returns
    how: "direct" (O_DIRECT writes) or "page cache"."""
    if hasattr(os, "O_DIRECT"):
        try:
            _copy_direct(source, dest)
            return "direct"
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            log.debug(f"O_DIRECT refused for {dest} ({exc}); copying through the page cache")
    shutil.copyfile(source, dest)
    with open(dest, "rb") as fh:
        os.fsync(fh.fileno())
    return "page cache"


def _copy_direct(source: Path | str, dest: Path | str) -> None:
    """The copy with O_DIRECT writes; on any error, no partial ``dest`` is left."""
    buf = mmap.mmap(-1, _CHUNK)  # page-aligned, as O_DIRECT needs
    view = memoryview(buf)
    fd_in = os.open(source, os.O_RDONLY)
    fd_out = None
    try:
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
        offset = 0
        while filled := _read_chunk(fd_in, view, offset):
            padded = -(-filled // _ALIGN) * _ALIGN  # the last write is padded, then cut back
            view[filled:padded] = bytes(padded - filled)
            written = 0
            while written < padded:
                written += os.pwritev(fd_out, [view[written:padded]], offset + written)
            offset += filled
        os.ftruncate(fd_out, offset)
        os.fsync(fd_out)
    except BaseException:
        if fd_out is not None:
            Path(dest).unlink(missing_ok=True)
        raise
    finally:
        if fd_out is not None:
            os.close(fd_out)
        os.close(fd_in)
        view.release()
        buf.close()


def _read_chunk(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` (short only at the end of the file, so that every write but
    the last is aligned); the number of bytes read, 0 at the end."""
    filled = 0
    while filled < len(view) and (n := os.preadv(fd, [view[filled:]], offset + filled)):
        filled += n
    return filled
