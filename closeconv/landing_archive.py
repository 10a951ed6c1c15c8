"""The landing folder as an inbox: after a run, move the files it processed into the archive.

A file moves only if the staging database holds exactly its current version (same name and
fingerprint), so a file that changed or arrived during the run stays for the next one. The
move keeps the relative path, size and mtime, so the next run sees the same file version in
the archive (`discover_landing_files` reads both folders) and parses nothing again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from closeconv.ingest import discover_landing_files


def archive_processed_files(con: duckdb.DuckDBPyConnection, landing_dir: Path, archive_dir: Path) -> list[str]:
    """Move every landing file whose current version is in `landing_files`; return their names."""
    staged = dict(con.sql("SELECT file, fingerprint FROM landing_files").fetchall())
    in_landing, _ = discover_landing_files(landing_dir)
    moved = []
    for f in in_landing:
        if staged.get(f.name) != f.fingerprint:
            continue
        target = archive_dir / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(f.path, target)  # same file system: atomic, keeps mtime
        except OSError:
            # Another file system: copy with its mtime (copy2), under a hidden name until complete.
            partial = target.with_name(f".{target.name}.archiving")
            shutil.copy2(f.path, partial)
            os.replace(partial, target)
            f.path.unlink()
        moved.append(f.name)
    return moved
