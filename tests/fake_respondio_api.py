"""A local fake of respond.io's Developer API v2 (the real one is out of reach in tests).

A real HTTP server (http.server in a thread) on 127.0.0.1 and a free port. It serves the list
endpoints the backfill uses, pages them by `limit` + `cursorId` with `pagination.next` as a
full URL, checks the Bearer token, and misbehaves on purpose and deterministically: a 429 with
`Retry-After` every `throttle_every` requests, a 500 every `fail_every` requests, and an
outage (503 to everything) once `down_after` requests have been served.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

TOKEN = "test-token"


@dataclass
class FakeWorkspace:
    users: list[dict] = field(default_factory=list)
    channels: list[dict] = field(default_factory=list)
    closing_notes: list[dict] = field(default_factory=list)
    contacts: list[dict] = field(default_factory=list)
    messages: dict[int, list[dict]] = field(default_factory=dict)  # contact id → messages


@dataclass
class Faults:
    throttle_every: int | None = None
    retry_after: str = "0"
    fail_every: int | None = None
    down_after: int | None = None
    max_page: int = 100  # the server's own page size cap, to force many pages
    delay_s: float = 0.0


class FakeRespondioApi:
    def __init__(self, workspace: FakeWorkspace, faults: Faults | None = None, prefix: str = "/v2"):
        self.workspace = workspace
        self.faults = faults or Faults()
        self.prefix = prefix.rstrip("/")
        self.requests: list[tuple[str, str, int]] = []  # method, path+query, status
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def __enter__(self) -> "FakeRespondioApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def statuses(self) -> list[int]:
        return [s for _, _, s in self.requests]

    # ------------------------------------------------------------------------------------

    def _answer(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict, dict]:
        """(status, extra headers, JSON body) for one request."""
        with self._lock:
            n = len(self.requests) + 1
            f = self.faults
            if headers.get("Authorization") != f"Bearer {TOKEN}":
                status = 401
            elif f.down_after is not None and n > f.down_after:
                status = 503
            elif f.throttle_every and n % f.throttle_every == 0:
                status = 429
            elif f.fail_every and n % f.fail_every == 0:
                status = 500
            else:
                status = 200
            self.requests.append((method, target, status))
        if status == 429:
            return 429, {"Retry-After": f.retry_after, "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}, {"message": "Too many requests"}
        if status != 200:
            return status, {}, {"message": "unauthorized" if status == 401 else "server error"}
        url = urlsplit(target)
        path = url.path.removeprefix(self.prefix)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        limit = int(query.get("limit", "10"))
        if not 1 <= limit <= 100:
            return 400, {}, {"message": "limit must be between 1 and 100"}
        ws = self.workspace
        if method == "POST" and path == "/contact/list":
            search = json.loads(body or b"{}")
            if "filter" not in search:
                return 400, {}, {"message": "filter is required"}
            return 200, {}, self._page(ws.contacts, "id", limit, query, url.path)
        if method == "GET" and path.startswith("/contact/id:") and path.endswith("/message/list"):
            contact_id = int(path.split("/")[2].removeprefix("id:"))
            return 200, {}, self._page(ws.messages.get(contact_id, []), "messageId", limit, query, url.path)
        listed = {"/space/user": ws.users, "/space/channel": ws.channels, "/space/closing_notes": ws.closing_notes}
        if method == "GET" and path in listed:
            return 200, {}, self._page(listed[path], None, limit, query, url.path)
        return 404, {}, {"message": f"no route {method} {path}"}

    def _page(self, items: list[dict], key: str | None, limit: int, query: dict, path: str) -> dict:
        size = min(limit, self.faults.max_page)
        # cursorId names the last item of the previous page (by its id; by position without one)
        start = 0
        if "cursorId" in query:
            cursor = query["cursorId"]
            if key is None:
                start = int(cursor)
            else:
                start = next(i for i, item in enumerate(items) if str(item[key]) == cursor) + 1
        page = items[start:start + size]
        more = start + size < len(items)
        next_url = None
        if more:
            cursor = str(page[-1][key]) if key else str(start + size)
            next_url = f"{self.base_url.rsplit(self.prefix, 1)[0]}{path}?{urlencode({'limit': limit, 'cursorId': cursor})}"
        return {"items": page, "pagination": {"next": next_url, "previous": None}}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if api.faults.delay_s:
                    threading.Event().wait(api.faults.delay_s)
                status, headers, payload = api._answer(method, self.path, self.headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler


def sample_workspace(contacts: int = 7, messages_per_contact: int = 9, start_ms: int = 1_767_225_600_000) -> FakeWorkspace:
    """A workspace whose message lists hold every [open] reading of intake.md §2.

    Start: 2026-01-01T00:00:00Z. Per contact, messages alternate incoming / outgoing, one
    minute apart; outgoing ones vary their sender (a user, a workflow, another user, none at all); some
    carry their time in seconds, some only in `status`, one none at all; the first
    message of each contact lies a day before the start (for --since).
    """
    users = [
        {"id": 101, "firstName": "Ann", "lastName": "Agent", "email": "ann@example.com", "role": "agent", "team": {"id": 7, "name": "Support"}, "restrictions": []},
        {"id": "102", "firstName": "Bo", "lastName": "", "email": "bo@example.com", "role": "manager", "team": None, "restrictions": []},
        {"id": 103, "firstName": "Cy", "lastName": "Lee", "email": "cy@example.com", "role": "agent", "team": {"id": 8, "name": "Sales, EMEA"}, "restrictions": []},
    ]
    channels = [{"id": 1, "name": "WhatsApp", "source": "whatsapp", "created_at": 1700000000},
                {"id": 2, "name": "Messenger", "source": "facebook", "created_at": 1700000000}]
    notes = [{"category": "Resolved", "description": "The question was answered"},
             {"category": "Spam", "description": ""}]
    ws = FakeWorkspace(users=users, channels=channels, closing_notes=notes)
    message_id = 5_000_000
    for c in range(contacts):
        contact_id = 900 + c
        ws.contacts.append({"id": contact_id, "firstName": f"Contact {c}", "status": "open"})
        msgs = []
        for m in range(messages_per_contact):
            message_id += 1
            at = start_ms + c * 3_600_000 + m * 60_000 - (86_400_000 if m == 0 else 0)
            item = {"messageId": message_id, "channelMessageId": f"wamid.{message_id}", "contactId": contact_id,
                    "channelId": 1 + (c % 2), "traffic": "incoming" if m % 2 == 0 else "outgoing",
                    "message": {"type": "text", "text": f"message {m}"}, "status": []}
            if m == 1:
                item["sender"] = {"source": "user", "userId": 101, "teamId": 7}
            elif m == 3:
                item["sender"] = {"source": "workflow", "workflowId": 55}
            elif m == 5:
                item["sender"] = {"source": "user", "userId": "103", "teamId": 8}
            # m == 7: no sender at all
            if m == 5:
                item["status"] = [{"value": "read", "timestamp": at + 9000}, {"value": "sent", "timestamp": at}]
            elif m == 6:
                item["timestamp"] = at // 1000  # an older payload: seconds
            elif m == 7 and c == 0:
                pass  # no time anywhere
            else:
                item["timestamp"] = at
            msgs.append(item)
        ws.messages[contact_id] = msgs
    return ws


def expected_event_ids(ws: FakeWorkspace, since_ms: int) -> set[str]:
    """The ids a complete backfill from `since_ms` must write (an independent reading of the data)."""
    ids = set()
    for msgs in ws.messages.values():
        for item in msgs:
            at = item.get("timestamp")
            if at is None and item.get("status"):
                at = min(s["timestamp"] for s in item["status"])
            if at is None:
                continue
            at = at * 1000 if at < 100_000_000_000 else at
            if at >= since_ms:
                ids.add(f"respondio:message:{item['messageId']}")
    return ids
