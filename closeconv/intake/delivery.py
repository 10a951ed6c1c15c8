"""The outcome of mapping one webhook delivery, and the dispatch by platform."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from closeconv.contract import EVENT_FIELDS, PLATFORM_FIELDS

PLATFORMS = ("respondio", "chatwoot")

MAPPED, IGNORED, MALFORMED = "mapped", "ignored", "malformed"


@dataclass
class Delivery:
    """What one request body became: contract events, an ignored event type, or a malformed body."""

    outcome: str  # mapped | ignored | malformed
    event_type: str | None = None  # the platform's event type, when readable
    events: list[dict] = field(default_factory=list)
    dedupe_keys: list[str] = field(default_factory=list)  # a redelivery shares at least one
    reason: str | None = None  # why it was ignored or malformed


def body_key(platform: str, body: bytes) -> str:
    return f"{platform}:body:{hashlib.sha256(body).hexdigest()[:32]}"


def parse_object(platform: str, body: bytes) -> dict | Delivery:
    """The JSON object of a body, or a malformed Delivery saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return Delivery(MALFORMED, dedupe_keys=[body_key(platform, body)], reason=f"body is not valid JSON ({exc})")
    if not isinstance(payload, dict):
        return Delivery(MALFORMED, dedupe_keys=[body_key(platform, body)],
                        reason=f"body is a JSON {type(payload).__name__}, not an object")
    return payload


def contract_event(**values) -> dict:
    """An event with the contract's fields in their order; absent values left out (assignee_id kept)."""
    order = (*EVENT_FIELDS, *PLATFORM_FIELDS)
    unknown = set(values) - set(order)
    if unknown:
        raise ValueError(f"not contract fields: {sorted(unknown)}")
    return {k: values[k] for k in order if k in values and (values[k] is not None or k == "assignee_id")}
