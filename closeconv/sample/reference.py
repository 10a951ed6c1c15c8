"""Reference data files consistent with the generator's ids."""

from __future__ import annotations

import csv
from pathlib import Path

from closeconv.sample.workspace import AGENTS, CATEGORIES, TEAMS

def write_reference(ref_dir: Path, seed: int = 42) -> list[Path]:
    """Write users.csv, teams.csv and categories.csv consistent with the generator's ids.

    The workspace is fixed (module constants), so `seed` changes nothing today; it is kept so
    that a future randomised workspace stays reproducible.
    """
    del seed
    ref_dir = Path(ref_dir)
    ref_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "users.csv": (("user_id", "name", "email", "team_id", "role"), AGENTS),
        "teams.csv": (("team_id", "name"), TEAMS),
        "categories.csv": (("name", "description"), CATEGORIES),
    }
    written = []
    for name, (header, rows) in tables.items():
        path = ref_dir / name
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        written.append(path)
    return written
