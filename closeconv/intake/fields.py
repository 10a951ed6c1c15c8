"""Tolerant readers for platform payload values: ids as numbers or text, times in s or ms."""

from __future__ import annotations

from datetime import datetime, timezone

# Epoch values at or above this are milliseconds (1e11 ms is 1973; 1e11 s is the year 5138).
MS_THRESHOLD = 100_000_000_000
# A "duration" at or above this (epoch seconds: 2001-09-09) is an instant, not a duration.
INSTANT_THRESHOLD_S = 1_000_000_000


def obj(value) -> dict:
    """A JSON object, or {} for null, absent or anything that is not an object."""
    return value if isinstance(value, dict) else {}


def dig(payload, *path):
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def as_id(value) -> str | None:
    """An id as text: 42, 42.0 and "42" are all "42"; null, "", {} and objects are no id."""
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None


def as_text(value) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def as_number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def epoch_ms(value) -> int | None:
    """Epoch seconds or milliseconds (told apart by magnitude), or ISO-8601 with an offset → ms."""
    number = as_number(value)
    if number is not None:
        return int(round(number if abs(number) >= MS_THRESHOLD else number * 1000))
    text = as_text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a local time is never guessed
    return int(round(parsed.timestamp() * 1000))


def occurred_at(value):
    """The contract's `occurred_at`: epoch ms when readable; else the text as given, so the
    pipeline quarantines it with its own reason (no offset, not a time) instead of losing it."""
    ms = epoch_ms(value)
    if ms is not None:
        return ms
    return as_text(value)


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration_s(value, start_ms: int | None) -> float | None:
    """A platform figure that is a duration in seconds, or an instant (then: instant − start).

    intake.md leaves open which one respond.io sends; magnitude tells them apart."""
    number = as_number(value)
    if number is None:
        return None
    if abs(number) >= INSTANT_THRESHOLD_S:
        instant = epoch_ms(number)
        return None if start_ms is None or instant is None else (instant - start_ms) / 1000
    return number


def as_count(value) -> int | None:
    number = as_number(value)
    return None if number is None else int(number)
