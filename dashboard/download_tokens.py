"""Short-lived signed download links for the CSV routes.

The app mints a token only after its sign-in gate let the session through; the route serves a
file only for a valid token. So the CSV export follows the same sign-in rule as the pages,
without the route having to understand Streamlit sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

from dashboard.config import TOKEN_KEY_ENV

TOKEN_TTL_S = 15 * 60
EXPORT_KINDS = ("conversations", "users")
EXPORT_PATH = "/api/export/{kind}.csv"
# Without a key from `closeconv dashboard` (e.g. under AppTest) each process draws its own.
_PROCESS_KEY = secrets.token_bytes(32)


class InvalidToken(ValueError):
    pass


def signing_key() -> bytes:
    configured = os.environ.get(TOKEN_KEY_ENV)
    return configured.encode() if configured else _PROCESS_KEY


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(kind: str, query: str, now: float | None = None, key: bytes | None = None) -> str:
    """A token for exporting `kind` under the filters of `query` (a URL query string)."""
    if kind not in EXPORT_KINDS:
        raise ValueError(f"unknown export {kind!r}")
    expires = int((time.time() if now is None else now) + TOKEN_TTL_S)
    payload = _b64(json.dumps({"k": kind, "q": query, "e": expires}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key or signing_key(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def verify(token: str, kind: str, now: float | None = None, key: bytes | None = None) -> str:
    """The query string the token was minted for; InvalidToken when forged, expired or for another export."""
    payload, _, signature = (token or "").partition(".")
    expected = _b64(hmac.new(key or signing_key(), payload.encode(), hashlib.sha256).digest())
    if not payload or not hmac.compare_digest(signature, expected):
        raise InvalidToken("this download link is not valid; open the dashboard and use its Download CSV button")
    claims = json.loads(_unb64(payload))
    if claims.get("k") != kind:
        raise InvalidToken("this download link is for another export")
    if claims.get("e", 0) < (time.time() if now is None else now):
        raise InvalidToken("this download link has expired; use the dashboard's Download CSV button again")
    return str(claims.get("q", ""))


def export_url(kind: str, query: str) -> str:
    """The download link of `kind` under the filters of `query`, valid for TOKEN_TTL_S."""
    return EXPORT_PATH.format(kind=kind) + "?token=" + mint(kind, query)
