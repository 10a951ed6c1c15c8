"""A small client for respond.io's Developer API v2: the list endpoints a backfill needs.

What intake.md §2 says [official], and what is assumed here:
- base URL `https://api.respond.io/v2`, configurable (white-labels have their own host);
  header `Authorization: Bearer <token>`;
- `POST /contact/list` (body: search, timezone, filter), `GET /contact/{id:N}/message/list`,
  `GET /space/user`, `GET /space/channel`, `GET /space/closing_notes`;
- pages: `limit` (1–100) and `cursorId`; a response is `{items, pagination: {next, previous}}`
  with `next` a full URL, empty on the last page. [assumed] the `space/*` lists page the same
  way (a response without `pagination` is one page), and a `next` URL is followed as given;
- HTTP 429 carries `Retry-After` (seconds; an HTTP date is accepted too) and is waited out.
  [assumed] 5xx and network errors are transient and retried with exponential backoff.

Sleeping goes through `sleep`, so tests run with short waits and can count them.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

import httpx

PAGE_LIMIT = 100
DEFAULT_BASE_URL = "https://api.respond.io/v2"
CONTACT_LIST_BODY = {"search": "", "timezone": "UTC", "filter": {"$and": []}}


class ApiError(Exception):
    """The API refused or kept failing; the message says what to do."""


@dataclass
class RetryPolicy:
    attempts: int = 8  # per request, over 429s and transient failures together
    backoff_s: float = 0.5  # first wait after a 5xx or network error; doubles each time
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is capped (and logged by the count)
    sleep: Callable[[float], None] = time.sleep


@dataclass
class ApiStats:
    requests: int = 0
    throttled: int = 0  # 429 answers waited out
    retried: int = 0  # 5xx / network errors retried
    waited_s: float = 0.0


@dataclass
class Page:
    items: list[dict]
    next_url: str | None  # None on the last page


@dataclass
class RespondioClient:
    base_url: str
    token: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 30.0
    stats: ApiStats = field(default_factory=ApiStats)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=self.timeout_s,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RespondioClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- endpoints ------------------------------------------------------------------------

    def first_url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?limit={PAGE_LIMIT}"

    def contacts_page(self, url: str | None = None) -> Page:
        return self.page("POST", url or self.first_url("contact/list"), json=CONTACT_LIST_BODY)

    def messages_page(self, contact_id: str, url: str | None = None) -> Page:
        return self.page("GET", url or self.first_url(f"contact/id:{contact_id}/message/list"))

    def all_items(self, path: str) -> list[dict]:
        """Every item of a `space/*` list, page after page."""
        items: list[dict] = []
        url: str | None = self.first_url(path)
        while url:
            page = self.page("GET", url)
            items += page.items
            url = page.next_url
        return items

    # -- transport --------------------------------------------------------------------------

    def page(self, method: str, url: str, json: dict | None = None) -> Page:
        body = self.request(method, url, json=json)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError(f"{method} {_path(url)}: the answer has no `items` list; is {self.base_url} the v2 API?")
        pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
        next_url = pagination.get("next") or None
        return Page([i for i in items if isinstance(i, dict)], next_url if isinstance(next_url, str) else None)

    def request(self, method: str, url: str, json: dict | None = None) -> dict:
        backoff = self.retry.backoff_s
        last_problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            self.stats.requests += 1
            try:
                response = self._http.request(method, url, json=json)
            except httpx.TransportError as exc:
                last_problem = f"network error: {type(exc).__name__}: {exc}"
                wait = self._backoff(backoff)
                backoff = min(backoff * 2, self.retry.max_backoff_s)
                self.stats.retried += 1
                self._wait(wait, attempt)
                continue
            if response.status_code == 429:
                self.stats.throttled += 1
                last_problem = "HTTP 429 (rate limit)"
                self._wait(self._retry_after(response, backoff), attempt)
                continue
            if response.status_code >= 500:
                self.stats.retried += 1
                last_problem = f"HTTP {response.status_code}"
                wait = self._backoff(backoff)
                backoff = min(backoff * 2, self.retry.max_backoff_s)
                self._wait(wait, attempt)
                continue
            if response.status_code in (401, 403):
                raise ApiError(
                    f"HTTP {response.status_code} from {method} {_path(url)}: the API token was refused. "
                    "Check CLOSECONV_RESPONDIO_API_TOKEN (respond.io: Settings → Integrations → Developer API) "
                    "and that --base-url is your workspace's API host."
                )
            if response.status_code >= 400:
                raise ApiError(f"HTTP {response.status_code} from {method} {_path(url)}: {response.text[:200]}")
            try:
                return response.json()
            except ValueError:
                raise ApiError(f"{method} {_path(url)}: the answer is not JSON ({response.text[:80]!r})") from None
        raise ApiError(f"{method} {_path(url)} still failing after {self.retry.attempts} attempts (last: {last_problem})")

    def _wait(self, seconds: float, attempt: int) -> None:
        if attempt < self.retry.attempts:
            self.stats.waited_s += seconds
            self.retry.sleep(seconds)

    def _backoff(self, current: float) -> float:
        return min(current, self.retry.max_backoff_s)

    def _retry_after(self, response: httpx.Response, fallback: float) -> float:
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return fallback
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return fallback
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return min(max(seconds, 0.0), self.retry.max_retry_after_s)


def _path(url: str) -> str:
    """The URL without its host, for messages (a white-label host is the user's own business)."""
    return httpx.URL(url).raw_path.decode("ascii", "replace")


def iter_pages(fetch: Callable[[str | None], Page], start: str | None = None) -> Iterator[Page]:
    url = start
    while True:
        page = fetch(url)
        yield page
        if not page.next_url:
            return
        url = page.next_url
