"""Webhook signature checks. Keys are compared in constant time and never appear in a message."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

# Chatwoot signs "{timestamp}.{body}"; a timestamp further than this from now is refused (replay).
CHATWOOT_TIMESTAMP_WINDOW_S = 300


def respondio_signature(key: str, body: bytes) -> str:
    """Standard Base64 (with padding) of HMAC-SHA256 over the raw body, as respond.io sends it."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode("ascii")


def chatwoot_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`, as Chatwoot sends it."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None  # a short code for the metrics and the 401 answer: never the key


def verify_respondio(body: bytes, header: str | None, keys: list[str]) -> Verdict:
    """Each respond.io webhook has its own key, so every configured key is tried in turn."""
    if not header:
        return Verdict(False, "missing_signature")
    given = header.strip().encode()
    for key in keys:
        if hmac.compare_digest(respondio_signature(key, body).encode(), given):
            return Verdict(True)
    return Verdict(False, "bad_signature")


def verify_chatwoot(
    body: bytes, signature: str | None, timestamp: str | None, secret: str, now_s: float,
    window_s: int = CHATWOOT_TIMESTAMP_WINDOW_S,
) -> Verdict:
    if not signature:
        return Verdict(False, "missing_signature")
    if not timestamp:
        return Verdict(False, "missing_timestamp")
    try:
        ts = int(timestamp.strip())
    except ValueError:
        return Verdict(False, "bad_timestamp")
    if abs(now_s - ts) > window_s:
        return Verdict(False, "stale_timestamp")
    expected = chatwoot_signature(secret, timestamp.strip(), body)
    if hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        return Verdict(True)
    return Verdict(False, "bad_signature")
