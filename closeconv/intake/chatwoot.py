"""Chatwoot webhook payloads → contract events (intake.md §3). Plain functions, no web framework.

Chatwoot names no actor for status and assignee changes: a resolve is credited to the
conversation's assignee (source `user`) when it has one, else recorded as `api`, as are reopens
and assignee changes (documented in docs/intake.md).
"""

from __future__ import annotations

from closeconv.intake.delivery import IGNORED, MALFORMED, MAPPED, Delivery, body_key, contract_event, parse_object
from closeconv.intake.fields import as_id, as_text, dig, obj, occurred_at

UNKNOWN_ACTOR_SOURCE = "api"
# message_type arrives as text or as Chatwoot's enum number
MESSAGE_TYPES = {"0": "incoming", "1": "outgoing", "2": "activity", "3": "template"}
# sender.type of an outgoing message → contract source; anything else (no sender) is automation
SENDER_SOURCES = {"user": "user", "agent_bot": "bot", "agentbot": "bot", "captain_assistant": "ai_agent"}


def map_chatwoot(body: bytes, received_at_ms: int, delivery_id: str | None = None) -> Delivery:
    payload = parse_object("chatwoot", body)
    if isinstance(payload, Delivery):
        return payload
    kind = (as_text(payload.get("event")) or "").lower()
    keys = [f"chatwoot:delivery:{delivery_id}"] if delivery_id else []
    keys.append(body_key("chatwoot", body))
    if not kind:
        return Delivery(MALFORMED, dedupe_keys=keys, reason="no event in the body")
    mapper = _MAPPERS.get(kind)
    if mapper is None:
        return Delivery(IGNORED, kind, dedupe_keys=keys, reason=f"event {kind} is not used by closeconv")
    result = mapper(payload, received_at_ms, delivery_id or keys[-1])
    if isinstance(result, str):
        outcome = MALFORMED if result.startswith("missing") else IGNORED
        return Delivery(outcome, kind, dedupe_keys=keys, reason=result)
    if result["event_type"].startswith("message.") and "chatwoot:message:" in result["event_id"]:
        keys.append(result["event_id"])
    return Delivery(MAPPED, kind, events=[result], dedupe_keys=keys)


def _conversation(payload: dict) -> dict:
    # Conversation events carry the conversation at the top level; message events nest it.
    return obj(payload.get("conversation")) or payload


def _contact_id(payload: dict) -> str | None:
    conversation = _conversation(payload)
    return (
        as_id(dig(conversation, "contact_inbox", "contact_id"))
        or as_id(dig(conversation, "meta", "sender", "id"))
        or as_id(dig(payload, "contact", "id"))
    )


def _message_created(payload: dict, received_at_ms: int, delivery: str) -> dict | str:
    kind = MESSAGE_TYPES.get(str(payload.get("message_type")).strip().lower(), str(payload.get("message_type")).lower())
    if payload.get("private") is True:
        return "private note"
    if kind not in ("incoming", "outgoing"):
        return f"message_type {kind} is not a customer message"
    sender = obj(payload.get("sender"))
    contact_id = _contact_id(payload) or (as_id(sender.get("id")) if kind == "incoming" else None)
    if contact_id is None:
        return "missing contact id (conversation.contact_inbox.contact_id or conversation.meta.sender.id)"
    message_id = as_id(payload.get("id"))
    common = {
        "event_id": f"chatwoot:message:{message_id}" if message_id else f"chatwoot:{delivery}",
        "contact_id": contact_id,
        "occurred_at": occurred_at(payload.get("created_at")),
        "channel_id": as_id(dig(payload, "inbox", "id")) or as_id(_conversation(payload).get("inbox_id")),
    }
    if kind == "incoming":
        return contract_event(event_type="message.received", source="contact", **common)
    source = SENDER_SOURCES.get((as_text(sender.get("type")) or "").lower(), "workflow")
    return contract_event(event_type="message.sent", source=source,
                          user_id=as_id(sender.get("id")) if source == "user" else None, **common)


def _status_changed(payload: dict, received_at_ms: int, delivery: str) -> dict | str:
    status = (as_text(payload.get("status")) or "").lower()
    if status not in ("resolved", "open"):
        return f"status {status or 'none'} does not open or close a conversation"
    contact_id = _contact_id(payload)
    if contact_id is None:
        return "missing contact id (contact_inbox.contact_id or meta.sender.id)"
    assignee = as_id(dig(payload, "meta", "assignee", "id"))
    common = {
        "event_id": f"chatwoot:{delivery}",
        "contact_id": contact_id,
        # the change is the conversation's last update; Chatwoot delivers at once otherwise
        "occurred_at": occurred_at(payload.get("updated_at")) or received_at_ms,
        "channel_id": as_id(payload.get("inbox_id")),
        "team_id": as_id(dig(payload, "meta", "team", "id")),
    }
    if status == "resolved":
        return contract_event(event_type="conversation.closed", source="user" if assignee else UNKNOWN_ACTOR_SOURCE,
                              user_id=assignee, **common)
    return contract_event(event_type="conversation.opened", source=UNKNOWN_ACTOR_SOURCE, **common)


def _changed(payload: dict, name: str):
    """changed_attributes as a list of {name: {previous_value, current_value}} or one dict."""
    changed = payload.get("changed_attributes")
    items = changed if isinstance(changed, list) else [changed]
    for item in items:
        if isinstance(item, dict) and name in item:
            return obj(item[name])
    return None


def _conversation_updated(payload: dict, received_at_ms: int, delivery: str) -> dict | str:
    change = _changed(payload, "assignee_id")
    if change is None:
        return "no assignee change"
    contact_id = _contact_id(payload)
    if contact_id is None:
        return "missing contact id (contact_inbox.contact_id or meta.sender.id)"
    assignee = as_id(change.get("current_value")) if "current_value" in change else as_id(dig(payload, "meta", "assignee", "id"))
    return contract_event(
        event_type="contact.assignee.updated", event_id=f"chatwoot:{delivery}", contact_id=contact_id,
        occurred_at=occurred_at(payload.get("updated_at")) or received_at_ms,
        source=UNKNOWN_ACTOR_SOURCE, assignee_id=assignee,
    )


_MAPPERS = {
    "message_created": _message_created,
    "conversation_status_changed": _status_changed,
    "conversation_updated": _conversation_updated,
}
