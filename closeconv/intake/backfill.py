"""`closeconv intake backfill`: reference data and message history from respond.io's API v2.

- Reference data → the reference folder: users.csv (with each user's team), teams.csv,
  categories.csv (the closing-note categories), channels.csv (id, name, source; for people,
  the pipeline does not read it).
- Every contact's messages from `since` on → `message.received` / `message.sent` events in
  the v1 contract, as JSON-lines files in LANDING/respondio-backfill/, each written under a
  hidden name, fsynced and renamed into place.

Resumable: after each file, a checkpoint (JSON, replaced atomically) records the file number,
the contact-list cursor, the contacts still to do on that page and the message cursor of the
current one. A second run starts from the checkpoint and re-writes from there under the same
file numbers, so a crash between a file and its checkpoint leaves no duplicate. Event ids
come from respond.io's messageId (`respondio:message:<id>`), so a message seen twice is the
same event to the pipeline too.

The API has no endpoint for past opens, closes, closing notes or assignments (intake.md §2):
those come from the webhooks from the day they are set up.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from closeconv.config import ConfigError
from closeconv.intake.respondio_api import ApiError, RespondioClient, RetryPolicy

TOKEN_ENV = "CLOSECONV_RESPONDIO_API_TOKEN"
STATE_VERSION = 1
OUTPUT_FOLDER = "respondio-backfill"
EVENT_ID_PREFIX = "respondio:message:"
# An outgoing message whose answer names no sender cannot be told apart from a workflow's: it
# is recorded as `api`, never as a human response (counted and reported).
UNKNOWN_SENDER_SOURCE = "api"
# below this, a message time is epoch seconds (older payloads), above it milliseconds (intake.md)
_MS_THRESHOLD = 100_000_000_000


class BackfillError(Exception):
    """The run stopped (API refusing or failing); the checkpoint lets the next run continue."""


@dataclass
class Checkpoint:
    base_url: str
    since: str
    version: int = STATE_VERSION
    reference_done: bool = False
    contacts_page_url: str | None = None  # None: the first page
    pending_contacts: list[str] | None = None  # None: that page is not fetched yet
    contacts_next_url: str | None = None
    messages_next_url: str | None = None  # cursor within pending_contacts[0]; None: from the start
    next_file: int = 1
    contacts_done: int = 0
    events_written: int = 0
    before_since: int = 0
    untimed: int = 0
    unknown_sender: int = 0
    complete: bool = False

    @classmethod
    def load(cls, path: Path, base_url: str, since: str) -> "Checkpoint":
        if not path.exists():
            return cls(base_url=base_url, since=since)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"checkpoint {path} is not readable ({exc}); delete it to start the backfill over") from None
        if (state.base_url, state.since) != (base_url, since):
            raise ConfigError(
                f"checkpoint {path} belongs to a backfill of {state.base_url} since {state.since}, not "
                f"{base_url} since {since}. Run with those settings to continue it, or pass another --state "
                "(or delete the file) to start a new one."
            )
        return state

    def save(self, path: Path) -> None:
        _write_atomically(path, json.dumps(asdict(self), indent=1).encode())


@dataclass
class BackfillSummary:
    state: Checkpoint
    state_path: Path
    output_dir: Path
    reference: dict[str, int] = field(default_factory=dict)
    api_requests: int = 0
    throttled: int = 0
    retried: int = 0
    already_complete: bool = False

    def lines(self) -> list[str]:
        s = self.state
        head = "closeconv intake backfill: " + ("already complete (nothing fetched)" if self.already_complete else "done")
        lines = [
            head,
            f"  contacts            {s.contacts_done:>10,}",
            f"  message events      {s.events_written:>10,}  in {self.output_dir}",
            f"  before --since      {s.before_since:>10,}  (left out)",
            f"  without a time      {s.untimed:>10,}  (left out: the API gave no timestamp)",
        ]
        if s.unknown_sender:
            lines.append(f"  sender not given    {s.unknown_sender:>10,}  (outgoing; written with source {UNKNOWN_SENDER_SOURCE}, not as a human reply)")
        for name, n in self.reference.items():
            lines.append(f"  {name:<20}{n:>10,}")
        if not self.already_complete:
            lines.append(f"  API requests        {self.api_requests:>10,}  ({self.throttled} rate-limited and waited out, {self.retried} retried)")
        lines.append(f"  checkpoint          {self.state_path}")
        return lines


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _id(value) -> str | None:
    """Ids come as numbers or text: stored as text."""
    if value is None or isinstance(value, bool) or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _epoch_ms(value) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    return number if number >= _MS_THRESHOLD else number * 1000


def message_time_ms(item: dict) -> int | None:
    """`timestamp`, else the earliest `status[].timestamp` [open in intake.md §2]."""
    at = _epoch_ms(item.get("timestamp"))
    if at is not None:
        return at
    statuses = item.get("status") if isinstance(item.get("status"), list) else []
    times = [t for t in (_epoch_ms(s.get("timestamp")) for s in statuses if isinstance(s, dict)) if t is not None]
    return min(times) if times else None


def message_event(contact_id: str, item: dict, at_ms: int) -> tuple[dict | None, bool]:
    """One message-list item → (contract event or None, sender unknown?)."""
    message_id = _id(item.get("messageId")) or _id(item.get("id"))
    traffic = str(item.get("traffic") or "").lower()
    if message_id is None or traffic not in ("incoming", "outgoing"):
        return None, False
    event = {
        "event_id": EVENT_ID_PREFIX + message_id,
        "event_type": "message.received" if traffic == "incoming" else "message.sent",
        "occurred_at": datetime.fromtimestamp(at_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "contact_id": contact_id,
        "channel_id": _id(item.get("channelId")),
    }
    if traffic == "incoming":
        event["source"] = "contact"
        return event, False
    # [assumed] a list item may carry the webhook's sender object; the SDK's type does not.
    sender = item.get("sender") if isinstance(item.get("sender"), dict) else {}
    user = item.get("user") if isinstance(item.get("user"), dict) else {}
    user_id = _id(sender.get("userId")) or _id(user.get("id"))
    source = (str(sender.get("source") or "").strip().lower()) or ("user" if user_id else "")
    unknown = not source
    event.update(source=source or UNKNOWN_SENDER_SOURCE, user_id=user_id, team_id=_id(sender.get("teamId")))
    return event, unknown


def _csv(columns: tuple[str, ...], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return buf.getvalue().encode("utf-8")


def write_reference(client: RespondioClient, reference_dir: Path) -> dict[str, int]:
    """users.csv, teams.csv, categories.csv, channels.csv from the space endpoints."""
    users, teams = [], {}
    for u in client.all_items("space/user"):
        team = u.get("team") if isinstance(u.get("team"), dict) else {}
        team_id = _id(team.get("id"))
        if team_id:
            teams[team_id] = {"team_id": team_id, "name": team.get("name") or team_id}
        name = " ".join(str(p) for p in (u.get("firstName"), u.get("lastName")) if p) or None
        users.append({"user_id": _id(u.get("id")), "name": name, "email": u.get("email"),
                      "team_id": team_id, "role": u.get("role")})
    users = [u for u in users if u["user_id"]]
    categories = [
        {"name": n.get("category") or n.get("name"), "description": n.get("description")}
        for n in client.all_items("space/closing_notes")
    ]
    categories = [c for c in categories if c["name"]]
    channels = [{"channel_id": _id(c.get("id")), "name": c.get("name"), "source": c.get("source")}
                for c in client.all_items("space/channel")]
    channels = [c for c in channels if c["channel_id"]]
    files = {
        "users.csv": (("user_id", "name", "email", "team_id", "role"), users),
        "teams.csv": (("team_id", "name"), sorted(teams.values(), key=lambda t: t["team_id"])),
        "categories.csv": (("name", "description"), categories),
        "channels.csv": (("channel_id", "name", "source"), channels),
    }
    for name, (columns, rows) in files.items():
        _write_atomically(reference_dir / name, _csv(columns, rows))
    return {name: len(rows) for name, (_, rows) in files.items()}


def _progress(enabled: bool):
    from tqdm import tqdm

    return tqdm(desc="contacts", unit=" contacts", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def run_backfill(
    *,
    base_url: str,
    token: str,
    since: datetime,
    reference_dir: Path,
    landing_dir: Path,
    state_path: Path,
    progress: bool = True,
    batch_events: int = 5000,
    retry: RetryPolicy | None = None,
) -> BackfillSummary:
    """Run (or continue) a backfill. Raises BackfillError when the API keeps failing."""
    since_iso = since.astimezone(timezone.utc).isoformat()
    since_ms = int(since.timestamp() * 1000)
    state = Checkpoint.load(state_path, base_url.rstrip("/"), since_iso)
    out_dir = landing_dir / OUTPUT_FOLDER
    summary = BackfillSummary(state, state_path, out_dir)
    if state.complete:
        summary.already_complete = True
        return summary
    client = RespondioClient(base_url, token, retry=retry or RetryPolicy())
    buffer: list[dict] = []

    def flush() -> None:
        # The file, then the checkpoint that points past it: a crash in between re-writes the
        # same file number from the previous checkpoint, never a second copy.
        if buffer:
            data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in buffer).encode()
            _write_atomically(out_dir / f"messages-{state.next_file:06d}.jsonl", data)
            state.events_written += len(buffer)
            state.next_file += 1
            buffer.clear()
        state.save(state_path)

    bar = _progress(progress)
    bar.update(state.contacts_done)
    try:
        if not state.reference_done:
            summary.reference = write_reference(client, reference_dir)
            state.reference_done = True
            state.save(state_path)
        while True:
            if state.pending_contacts is None:
                page = client.contacts_page(state.contacts_page_url)
                state.pending_contacts = [c for c in (_id(i.get("id")) for i in page.items) if c]
                state.contacts_next_url = page.next_url
            seen: set[str] = set()
            while state.pending_contacts:
                contact_id = state.pending_contacts[0]
                page = client.messages_page(contact_id, state.messages_next_url)
                for item in page.items:
                    at_ms = message_time_ms(item)
                    if at_ms is None:
                        state.untimed += 1
                        continue
                    if at_ms < since_ms:
                        state.before_since += 1
                        continue
                    event, unknown = message_event(contact_id, item, at_ms)
                    if event is None or event["event_id"] in seen:
                        continue
                    seen.add(event["event_id"])
                    state.unknown_sender += unknown
                    buffer.append(event)
                # The state must describe exactly what the buffer holds before any flush: a
                # contact whose last page is in it is done (a resume must not start it again).
                state.messages_next_url = page.next_url
                if not page.next_url:
                    state.pending_contacts.pop(0)
                    state.contacts_done += 1
                    seen = set()
                    bar.update(1)
                if len(buffer) >= batch_events:
                    flush()
            if not state.contacts_next_url:
                break
            state.contacts_page_url, state.pending_contacts = state.contacts_next_url, None
            state.contacts_next_url = None
        state.complete = True
        flush()
    except ApiError as exc:
        # A failed request changed nothing yet: what was fetched before it is saved.
        flush()
        raise BackfillError(str(exc)) from None
    finally:
        bar.close()
        summary.api_requests = client.stats.requests
        summary.throttled = client.stats.throttled
        summary.retried = client.stats.retried
        client.close()
    if not summary.reference:
        summary.reference = _reference_counts(reference_dir)
    return summary


def _reference_counts(reference_dir: Path) -> dict[str, int]:
    counts = {}
    for name in ("users.csv", "teams.csv", "categories.csv", "channels.csv"):
        path = reference_dir / name
        if path.is_file():
            counts[name] = max(len(path.read_text(encoding="utf-8").splitlines()) - 1, 0)
    return counts
