"""A fingerprint of the settings a step's output depends on (values and file contents), for the
change journal's `settings_changed` / `record_settings` (closeconv/changes.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path


def fingerprint(values: dict[str, object], files: Iterable[Path] = ()) -> str:
    """sha256 of ``values`` and of each file's name and content (an absent file counts too)."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"absent")
    return digest.hexdigest()
