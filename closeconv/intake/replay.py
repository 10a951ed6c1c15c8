"""Sample payloads for trying the receiver: move their times to now, keeping each unit."""

from __future__ import annotations

from closeconv.intake.fields import MS_THRESHOLD, as_number

# (object path, time keys) of the respond.io payload times, as intake.md lists them
_TIME_FIELDS = ((("message",), ("timestamp",)),
                (("conversation",), ("conversationOpenedAt", "openedTime", "closedTime", "lastAssignmentTime")))


def latest_time_s(payload: dict) -> float | None:
    times = [t for _, t in _times(payload)]
    return max(times) if times else None


def _times(payload: dict):
    for path, keys in _TIME_FIELDS:
        node = payload
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for key in keys:
            value = as_number(node.get(key))
            if value is not None:
                yield (node, key), (value / 1000 if abs(value) >= MS_THRESHOLD else value)


def shift_times(payload: dict, delta_s: int) -> dict:
    """Shift every time of the payload by delta_s seconds, in place; returns the payload."""
    for (node, key), _ in list(_times(payload)):
        value = as_number(node[key])
        node[key] = int(value + delta_s * 1000) if abs(value) >= MS_THRESHOLD else int(value + delta_s)
    message = payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("status"), list):
        for status in message["status"]:
            value = as_number(status.get("timestamp")) if isinstance(status, dict) else None
            if value is not None:
                status["timestamp"] = int(value + delta_s * 1000) if abs(value) >= MS_THRESHOLD else int(value + delta_s)
    return payload
