"""Optional reference data in data/reference/: users.csv, teams.csv, categories.csv.

Without these files, team membership comes from team_id seen in events and names fall back
to ids. A malformed file is a configuration error naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from closeconv.errors import ConfigError

REFERENCE_FILES: dict[str, tuple[str, ...]] = {
    "users.csv": ("user_id", "name", "email", "team_id", "role"),
    "teams.csv": ("team_id", "name"),
    "categories.csv": ("name", "description"),
}
# Columns a file must have in its header and a value on every row; the others are optional.
REQUIRED_VALUES: dict[str, tuple[str, ...]] = {
    "users.csv": ("user_id",),
    "teams.csv": ("team_id",),
    "categories.csv": ("name",),
}


def load_reference(ref_dir: Path, name: str) -> pl.DataFrame | None:
    """Read one reference file strictly; None when it is absent.

    The one reader of reference files (pipeline, what-if, validation). Optional columns
    missing from the header are null; unknown extra columns are ignored.
    """
    path = ref_dir / name
    if not path.is_file():
        return None
    columns = REFERENCE_FILES[name]
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED_VALUES[name] if c not in header]
        if missing:
            optional = [c for c in columns if c not in REQUIRED_VALUES[name]]
            raise ConfigError(
                f"{path}:1: header lacks column(s) {', '.join(missing)}. "
                f"Fix: start the file with a header naming {', '.join(REQUIRED_VALUES[name])}"
                + (f" (optional: {', '.join(optional)})" if optional else "")
            )
        rows: dict[str, list[str | None]] = {c: [] for c in columns}
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{path}:{line}: {len(row)} values for {len(header)} columns. "
                    "Fix: quote values that contain commas"
                )
            record = dict(zip(header, (c.strip() for c in row)))
            for required in REQUIRED_VALUES[name]:
                if not record.get(required):
                    raise ConfigError(f"{path}:{line}: {required} is empty. Fix: give every row a {required}")
            for c in columns:
                rows[c].append(record.get(c) or None)
    return pl.DataFrame(rows, schema={c: pl.String for c in columns})


# Published warehouse table -> reference file it is read from.
REFERENCE_TABLES: dict[str, str] = {"users": "users.csv", "teams": "teams.csv", "categories": "categories.csv"}


def build_reference_tables(con, reference_dir: Path | None) -> None:
    """Copy the reference files into tables `users`, `teams`, `categories` (empty without a file),
    so the warehouse carries names for the ids (dashboard, analysts)."""
    for table, name in REFERENCE_TABLES.items():
        frame = load_reference(reference_dir, name) if reference_dir else None
        if frame is None:
            frame = pl.DataFrame(schema={c: pl.String for c in REFERENCE_FILES[name]})
        key = REFERENCE_FILES[name][0]
        # A repeated id keeps its first row, so each id has one name.
        con.register("_reference_frame", frame.unique(subset=key, keep="first", maintain_order=True))
        try:
            con.sql(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _reference_frame ORDER BY {key}")
        finally:
            con.unregister("_reference_frame")
