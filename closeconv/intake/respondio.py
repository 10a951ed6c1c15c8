"""respond.io webhook payloads → contract events (intake.md §1). Plain functions, no web framework.

Tolerant of every reading intake.md marks [open]: ids as numbers or text, message times in
milliseconds or seconds, the assignee as an object, null, {} or absent, and unknown keys.
"""

from __future__ import annotations

from closeconv.contract import EVENT_TYPES
from closeconv.intake.delivery import IGNORED, MALFORMED, MAPPED, Delivery, body_key, contract_event, parse_object
from closeconv.intake.fields import as_count, as_id, as_text, dig, duration_s, epoch_ms, obj, occurred_at

# respond.io gives no actor for an assignee change; the contract needs a source (documented).
ASSIGNEE_SOURCE = "api"


def map_respondio(body: bytes, received_at_ms: int) -> Delivery:
    payload = parse_object("respondio", body)
    if isinstance(payload, Delivery):
        return payload
    event_type = (as_text(payload.get("event_type")) or "").lower()
    # No event_id: the body's hash still makes a redelivery of the same body a duplicate.
    event_id = as_id(payload.get("event_id"))
    keys = [f"respondio:event:{event_id}"] if event_id else [body_key("respondio", body)]
    event_id = event_id or keys[0]
    if not event_type:
        return Delivery(MALFORMED, dedupe_keys=keys, reason="no event_type in the body")
    if event_type not in EVENT_TYPES:
        return Delivery(IGNORED, event_type, dedupe_keys=keys, reason=f"event type {event_type} is not used by closeconv")
    contact = obj(payload.get("contact"))
    message = obj(payload.get("message"))
    contact_id = as_id(contact.get("id")) or as_id(message.get("contactId"))
    if event_type.startswith("message."):
        message_id = as_id(message.get("messageId"))
        if message_id:
            keys.append(f"respondio:message:{message_id}")
    if contact_id is None:
        return Delivery(MALFORMED, event_type, dedupe_keys=keys, reason="contact.id is missing")
    common = {"event_id": event_id, "event_type": event_type, "contact_id": contact_id}
    event = _MAPPERS[event_type](payload, common, received_at_ms)
    return Delivery(MAPPED, event_type, events=[event], dedupe_keys=keys)


def _message_received(payload: dict, common: dict, received_at_ms: int) -> dict:
    message = obj(payload.get("message"))
    return contract_event(
        **common,
        occurred_at=occurred_at(message.get("timestamp")),
        channel_id=as_id(message.get("channelId")) or as_id(dig(payload, "channel", "id")),
        source="contact",
    )


def _message_sent(payload: dict, common: dict, received_at_ms: int) -> dict:
    message = obj(payload.get("message"))
    # The sender is at the top level [consumer]; an older shape nests it in the message.
    sender = obj(payload.get("sender")) or obj(message.get("sender"))
    user = obj(payload.get("user"))
    user_id = as_id(sender.get("userId")) or as_id(user.get("id"))
    source = (as_text(sender.get("source")) or ("user" if user_id else "") or "").lower() or None
    return contract_event(
        **common,
        occurred_at=occurred_at(message.get("timestamp")),
        channel_id=as_id(message.get("channelId")) or as_id(dig(payload, "channel", "id")),
        source=source,
        user_id=user_id,
        team_id=as_id(sender.get("teamId")),
    )


def _conversation_opened(payload: dict, common: dict, received_at_ms: int) -> dict:
    conversation = obj(payload.get("conversation"))
    return contract_event(
        **common,
        occurred_at=occurred_at(conversation.get("conversationOpenedAt")),
        channel_id=as_id(conversation.get("firstIncomingMessageChannelId")),
        source=(as_text(conversation.get("source")) or "").lower() or None,
        user_id=as_id(dig(conversation, "openedBy", "id")),
    )


def _conversation_closed(payload: dict, common: dict, received_at_ms: int) -> dict:
    conversation = obj(payload.get("conversation"))
    opened_ms = epoch_ms(conversation.get("openedTime"))
    team = conversation.get("assigneeTeam")
    return contract_event(
        **common,
        occurred_at=occurred_at(conversation.get("closedTime")),
        source=(as_text(conversation.get("closedBySource")) or "").lower() or None,
        user_id=as_id(obj(conversation.get("closedBy")).get("id")),
        category=as_text(conversation.get("category")),
        summary=as_text(conversation.get("summary")),
        platform_first_response_time_s=duration_s(conversation.get("firstResponseTime"), opened_ms),
        platform_resolution_time_s=duration_s(conversation.get("resolutionTime"), opened_ms),
        platform_incoming_message_count=as_count(conversation.get("incomingMessageCount")),
        platform_outgoing_message_count=as_count(conversation.get("outgoingMessageCount")),
        platform_opened_by_source=(as_text(conversation.get("openedBySource")) or "").lower() or None,
        # a team *name*, not an id: kept beside team_id rather than in it
        platform_assignee_team=as_text(obj(team).get("name")) if isinstance(team, dict) else as_text(team),
    )


def _assignee_updated(payload: dict, common: dict, received_at_ms: int) -> dict:
    # null, {} or absent all mean unassigned; the event carries no time: the receive time is used.
    assignee = obj(obj(payload.get("contact")).get("assignee"))
    return contract_event(
        **common,
        occurred_at=received_at_ms,
        source=ASSIGNEE_SOURCE,
        assignee_id=as_id(assignee.get("id")),
    )


_MAPPERS = {
    "message.received": _message_received,
    "message.sent": _message_sent,
    "conversation.opened": _conversation_opened,
    "conversation.closed": _conversation_closed,
    "contact.assignee.updated": _assignee_updated,
}
