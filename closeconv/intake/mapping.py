"""One raw delivery → its contract events: the dispatch by platform (kept apart from
`delivery`, which the platform mappings themselves import)."""

from __future__ import annotations

from closeconv.intake.chatwoot import map_chatwoot
from closeconv.intake.delivery import PLATFORMS, Delivery
from closeconv.intake.respondio import map_respondio


def map_delivery(platform: str, body: bytes, received_at_ms: int, delivery_id: str | None = None) -> Delivery:
    """Map one raw body. Pure: the same body and receive time always give the same events."""
    if platform == "respondio":
        return map_respondio(body, received_at_ms)
    if platform == "chatwoot":
        return map_chatwoot(body, received_at_ms, delivery_id)
    raise ValueError(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}")
