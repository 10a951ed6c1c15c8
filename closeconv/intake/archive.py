"""The raw-body archive: one JSON line per accepted delivery, and `remap` over it.

Each record keeps the body exactly as received (text, or Base64 when it is not UTF-8) with the
receive time and delivery id, so re-running the mapping after a fix gives the events the fixed
mapping would have given at the time (`closeconv intake remap`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from closeconv.intake.delivery import MAPPED, Delivery
from closeconv.intake.mapping import map_delivery
from closeconv.intake.segments import SegmentWriter, leftover_parts

ARCHIVE_SUFFIX = ".archive.jsonl"


def archive_record(platform: str, body: bytes, received_at_ms: int, delivery_id: str | None, delivery: Delivery) -> bytes:
    record = {
        "platform": platform,
        "received_at_ms": received_at_ms,
        "delivery_id": delivery_id,
        "outcome": delivery.outcome,
        "event_type": delivery.event_type,
        "reason": delivery.reason,
        "dedupe_keys": delivery.dedupe_keys,
        "event_ids": [e["event_id"] for e in delivery.events],
    }
    try:
        record["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        record["body_b64"] = base64.b64encode(body).decode("ascii")
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def record_body(record: dict) -> bytes:
    if "body_b64" in record:
        return base64.b64decode(record["body_b64"])
    return record["body"].encode("utf-8")


def event_line(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def archive_files(path: Path) -> list[Path]:
    """An archive file, or the finished archive files in a folder, oldest first."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.glob(f"*{ARCHIVE_SUFFIX}") if not p.name.startswith("."))


def read_archive(paths: list[Path]) -> Iterator[tuple[Path, int, dict]]:
    for path in paths:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield path, number, json.loads(line)


@dataclass
class RemapCounts:
    deliveries: int = 0
    events: int = 0
    duplicates: int = 0
    ignored: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)


def remap(archive: Path, out_dir: Path) -> RemapCounts:
    """Re-run the mapping over an archive (file or folder) into new landing files in `out_dir`."""
    paths = archive_files(archive)
    counts = RemapCounts(unfinished=leftover_parts(archive, ARCHIVE_SUFFIX) if archive.is_dir() else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = SegmentWriter(out_dir, "remap", max_bytes=1 << 62, max_age_s=float("inf"))  # one file
    seen: set[str] = set()
    batch: list[bytes] = []
    for _, _, record in read_archive(paths):
        counts.deliveries += 1
        keys = record.get("dedupe_keys") or []
        if any(k in seen for k in keys):
            counts.duplicates += 1
            continue
        delivery = map_delivery(record["platform"], record_body(record), record["received_at_ms"], record.get("delivery_id"))
        seen.update(keys)
        seen.update(delivery.dedupe_keys)
        if delivery.outcome == MAPPED:
            batch.extend(event_line(e) for e in delivery.events)
            counts.events += len(delivery.events)
        elif delivery.outcome == "ignored":
            counts.ignored += 1
        else:
            counts.malformed[delivery.reason or "malformed"] = counts.malformed.get(delivery.reason or "malformed", 0) + 1
        if len(batch) >= 10_000:
            writer.append(batch)
            batch = []
    writer.append(batch)
    finished = writer.finish()
    counts.files = [finished] if finished else []
    return counts
