"""respond.io and Chatwoot payloads → contract events, with every reading intake.md marks [open];
then the mapped events through the real pipeline (contract v1.1)."""

from __future__ import annotations

import json

import pytest

from closeconv.intake.delivery import IGNORED, MALFORMED, MAPPED
from closeconv.intake.mapping import map_delivery

RECEIVED_AT = 1_772_445_600_123  # 2026-03-02T10:00:00.123Z
T0 = 1_772_442_000  # 2026-03-02T09:00:00Z


def rio(payload: dict, received_at: int = RECEIVED_AT):
    return map_delivery("respondio", json.dumps(payload).encode(), received_at)


def one(payload: dict) -> dict:
    d = rio(payload)
    assert d.outcome == MAPPED, d
    assert len(d.events) == 1
    return d.events[0]


def message_payload(event_type="message.received", ts=T0 * 1000, **top):
    traffic = "incoming" if event_type == "message.received" else "outgoing"
    return {"event_type": event_type, "event_id": "ev-1", "contact": {"id": 1001},
            "message": {"messageId": 555, "contactId": 1001, "channelId": 301, "traffic": traffic,
                        "timestamp": ts, "message": {"type": "text", "text": "hi"}},
            "channel": {"id": 301, "name": "WA", "source": "whatsapp"}, **top}


@pytest.mark.parametrize("ts", [T0 * 1000, T0, str(T0 * 1000), float(T0), "2026-03-02T09:00:00Z"])
def test_message_received_with_ms_or_s_timestamps(ts):
    e = one(message_payload(ts=ts))
    assert e == {"event_id": "ev-1", "event_type": "message.received", "occurred_at": T0 * 1000,
                 "contact_id": "1001", "channel_id": "301", "source": "contact"}


@pytest.mark.parametrize("contact_id", [1001, "1001", 1001.0, " 1001 "])
def test_ids_as_numbers_or_text_are_stored_as_text(contact_id):
    p = message_payload()
    p["contact"]["id"] = contact_id
    p["event_id"] = 42
    e = one(p)
    assert e["contact_id"] == "1001" and e["event_id"] == "42"


def test_message_dedupe_keys_include_the_message_id():
    d = rio(message_payload())
    assert d.dedupe_keys == ["respondio:event:ev-1", "respondio:message:555"]


def test_message_sent_by_a_user_takes_the_top_level_sender():
    e = one(message_payload("message.sent", sender={"source": "user", "userId": 7, "teamId": 2},
                            user={"id": 7, "firstName": "Ana"}))
    assert (e["source"], e["user_id"], e["team_id"]) == ("user", "7", "2")
    # userId missing on the sender: user.id stands in
    e = one(message_payload("message.sent", sender={"source": "user"}, user={"id": "8"}))
    assert (e["source"], e["user_id"]) == ("user", "8")
    # no sender at all but a user: a person sent it
    e = one(message_payload("message.sent", user={"id": 9}))
    assert (e["source"], e["user_id"]) == ("user", "9")


@pytest.mark.parametrize("source", ["workflow", "bot", "broadcast", "n8n", "ai_agent", "echo", "AI_AGENT"])
def test_message_sent_by_automation(source):
    e = one(message_payload("message.sent", sender={"source": source, "userId": None, "workflowId": 5}))
    assert e["source"] == source.lower() and "user_id" not in e


def test_conversation_opened():
    e = one({"event_type": "conversation.opened", "event_id": "o1", "contact": {"id": "1003", "assignee": None},
             "conversation": {"source": "growth_widget", "conversationOpenedAt": T0, "firstIncomingMessage": "hi",
                              "firstIncomingMessageChannelId": 301}, "somethingNew": {"x": 1}})
    assert e == {"event_id": "o1", "event_type": "conversation.opened", "occurred_at": T0 * 1000,
                 "contact_id": "1003", "channel_id": "301", "source": "growth_widget"}


def closed_payload(**conversation):
    base = {"category": "Delivery", "summary": "sent new ETA", "openedTime": T0, "openedBySource": "contact",
            "closedTime": T0 + 1500, "closedBy": {"id": 7, "firstName": "Ana"}, "closedBySource": "user",
            "firstResponseTime": 95, "resolutionTime": 1500, "incomingMessageCount": 3, "outgoingMessageCount": "2",
            "assigneeTeam": "Support EU", "lastAssignmentTime": T0 + 30}
    base.update(conversation)
    return {"event_type": "conversation.closed", "event_id": "c1", "contact": {"id": 1001}, "conversation": base}


def test_conversation_closed_keeps_the_platform_figures():
    e = one(closed_payload())
    assert e == {"event_id": "c1", "event_type": "conversation.closed", "occurred_at": (T0 + 1500) * 1000,
                 "contact_id": "1001", "source": "user", "user_id": "7", "category": "Delivery",
                 "summary": "sent new ETA", "platform_first_response_time_s": 95.0,
                 "platform_resolution_time_s": 1500.0, "platform_incoming_message_count": 3,
                 "platform_outgoing_message_count": 2, "platform_opened_by_source": "contact",
                 "platform_assignee_team": "Support EU"}


def test_platform_times_as_instants_become_durations():
    # [open] firstResponseTime / resolutionTime may be instants: then they count from openedTime
    e = one(closed_payload(firstResponseTime=T0 + 95, resolutionTime=(T0 + 1500) * 1000))
    assert e["platform_first_response_time_s"] == 95.0
    assert e["platform_resolution_time_s"] == 1500.0


def test_auto_close_has_null_closer():
    e = one(closed_payload(closedBySource="auto_close", closedBy={"id": None, "firstName": None},
                           category=None, summary=None, firstResponseTime=None))
    assert e["source"] == "auto_close"
    assert "user_id" not in e and "category" not in e and "platform_first_response_time_s" not in e


@pytest.mark.parametrize("assignee", [{"id": 7, "firstName": "Ana"}, {"id": "7"}])
def test_assignee_updated_uses_the_receive_time(assignee):
    e = one({"event_type": "contact.assignee.updated", "event_id": "a1", "contact": {"id": 1001, "assignee": assignee}})
    assert e == {"event_id": "a1", "event_type": "contact.assignee.updated", "occurred_at": RECEIVED_AT,
                 "contact_id": "1001", "source": "api", "assignee_id": "7"}


@pytest.mark.parametrize("contact", [{"id": 1001, "assignee": None}, {"id": 1001, "assignee": {}}, {"id": 1001}])
def test_assignee_null_empty_or_absent_is_unassigned(contact):
    e = one({"event_type": "contact.assignee.updated", "event_id": "a2", "contact": contact})
    assert "assignee_id" in e and e["assignee_id"] is None


@pytest.mark.parametrize("event_type", ["contact.created", "contact.tag.updated", "comment.created", "call.ended", "brand.new"])
def test_unused_event_types_are_ignored(event_type):
    d = rio({"event_type": event_type, "event_id": "x1", "contact": {"id": 1}})
    assert d.outcome == IGNORED and d.events == [] and d.event_type == event_type
    assert d.dedupe_keys == ["respondio:event:x1"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"event_id": "e"}', "no event_type"),
        (b'{"event_type": "message.received", "event_id": "e", "message": {"timestamp": 1}}', "contact.id is missing"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_bodies_say_why(body, reason):
    d = map_delivery("respondio", body, RECEIVED_AT)
    assert d.outcome == MALFORMED and reason in d.reason
    assert d.dedupe_keys  # a redelivery of the same bad body is still a duplicate


def test_missing_event_id_falls_back_to_the_body_hash():
    body = json.dumps({"event_type": "message.received", "contact": {"id": 1}, "message": {"timestamp": T0}}).encode()
    a, b = map_delivery("respondio", body, 1), map_delivery("respondio", body, 2)
    assert a.events[0]["event_id"] == b.events[0]["event_id"]
    assert a.events[0]["event_id"].startswith("respondio:body:")


def test_missing_time_is_left_for_the_pipeline_to_quarantine():
    e = one(closed_payload(closedTime=None))
    assert "occurred_at" not in e  # the pipeline quarantines it with "required field occurred_at"


# ------------------------------------------------------------------------------ Chatwoot

def cw(payload: dict, delivery: str | None = "d-1"):
    return map_delivery("chatwoot", json.dumps(payload).encode(), RECEIVED_AT, delivery)


def cw_message(message_type, sender, private=False, **extra):
    return {"event": "message_created", "id": 9001, "content": "hello", "created_at": "2026-03-02T09:00:05.000Z",
            "message_type": message_type, "private": private, "sender": sender, "inbox": {"id": 3},
            "conversation": {"id": 77, "inbox_id": 3, "contact_inbox": {"contact_id": 4}, "meta": {"sender": {"id": 4}}},
            **extra}


@pytest.mark.parametrize("message_type", ["incoming", 0])
def test_chatwoot_incoming_message(message_type):
    d = cw(cw_message(message_type, {"id": 4, "type": "contact"}))
    assert d.outcome == MAPPED
    assert d.events == [{"event_id": "chatwoot:message:9001", "event_type": "message.received",
                         "occurred_at": (T0 + 5) * 1000, "contact_id": "4", "channel_id": "3", "source": "contact"}]
    assert "chatwoot:delivery:d-1" in d.dedupe_keys and "chatwoot:message:9001" in d.dedupe_keys


@pytest.mark.parametrize(("sender", "source", "user"), [
    ({"id": 12, "type": "user"}, "user", "12"),
    ({"id": 1, "type": "agent_bot"}, "bot", None),
    ({"id": 1, "type": "captain_assistant"}, "ai_agent", None),
    (None, "workflow", None),
])
def test_chatwoot_outgoing_message_sources(sender, source, user):
    d = cw(cw_message("outgoing", sender))
    e = d.events[0]
    assert (e["event_type"], e["source"], e.get("user_id")) == ("message.sent", source, user)


@pytest.mark.parametrize("payload", [cw_message("outgoing", {"id": 12, "type": "user"}, private=True),
                                     cw_message("activity", None), cw_message(2, None),
                                     {"event": "conversation_created", "id": 77},
                                     {"event": "webwidget_triggered"}])
def test_chatwoot_notes_activities_and_unused_events_are_ignored(payload):
    assert cw(payload).outcome == IGNORED


def cw_status(status, assignee=None, **extra):
    meta = {"sender": {"id": 4}, "assignee": assignee, "team": {"id": 2, "name": "EU"}}
    return {"event": "conversation_status_changed", "id": 77, "inbox_id": 3, "status": status, "meta": meta,
            "updated_at": T0 + 600, "changed_attributes": [{"status": {"previous_value": "open", "current_value": status}}], **extra}


def test_chatwoot_resolved_is_a_close_credited_to_the_assignee():
    e = cw(cw_status("resolved", {"id": 12})).events[0]
    assert e == {"event_id": "chatwoot:d-1", "event_type": "conversation.closed", "occurred_at": (T0 + 600) * 1000,
                 "contact_id": "4", "channel_id": "3", "source": "user", "user_id": "12", "team_id": "2"}
    e = cw(cw_status("resolved", None)).events[0]
    assert e["source"] == "api" and "user_id" not in e


def test_chatwoot_open_is_an_open_and_pending_is_ignored():
    assert cw(cw_status("open")).events[0]["event_type"] == "conversation.opened"
    assert cw(cw_status("pending")).outcome == IGNORED
    assert cw(cw_status("snoozed")).outcome == IGNORED


@pytest.mark.parametrize("changed", [
    [{"assignee_id": {"previous_value": None, "current_value": 12}}],
    {"assignee_id": {"previous_value": 5, "current_value": 12}},
])
def test_chatwoot_assignee_change(changed):
    d = cw({"event": "conversation_updated", "id": 77, "meta": {"sender": {"id": 4}, "assignee": {"id": 12}},
            "updated_at": T0, "changed_attributes": changed})
    assert d.events == [{"event_id": "chatwoot:d-1", "event_type": "contact.assignee.updated", "occurred_at": T0 * 1000,
                         "contact_id": "4", "source": "api", "assignee_id": "12"}]
    unassigned = cw({"event": "conversation_updated", "meta": {"sender": {"id": 4}},
                     "changed_attributes": [{"assignee_id": {"previous_value": 12, "current_value": None}}]})
    assert unassigned.events[0]["assignee_id"] is None and unassigned.events[0]["occurred_at"] == RECEIVED_AT
    other = cw({"event": "conversation_updated", "meta": {"sender": {"id": 4}}, "changed_attributes": [{"labels": {}}]})
    assert other.outcome == IGNORED


# ------------------------------------------------------------------------------ through the pipeline

def test_mapped_events_pass_the_contract_and_platform_figures_reach_the_warehouse(closeconv_env):
    """Contract v1.1 end to end (no HTTP): growth_widget, ai_agent, n8n and the platform figures."""
    deliveries = [
        {"event_type": "conversation.opened", "event_id": "o", "contact": {"id": 1},
         "conversation": {"source": "growth_widget", "conversationOpenedAt": T0, "firstIncomingMessageChannelId": 301}},
        message_payload(ts=T0 * 1000) | {"event_id": "r", "contact": {"id": 1}},
        message_payload("message.sent", ts=(T0 + 5) * 1000, sender={"source": "ai_agent"}) | {"event_id": "s1", "contact": {"id": 1}},
        message_payload("message.sent", ts=(T0 + 10) * 1000, sender={"source": "n8n"}) | {"event_id": "s2", "contact": {"id": 1}},
        message_payload("message.sent", ts=(T0 + 95) * 1000, sender={"source": "user", "userId": 7}) | {"event_id": "s3", "contact": {"id": 1}},
        closed_payload(firstResponseTime=5, outgoingMessageCount=3, incomingMessageCount=1) | {"contact": {"id": 1}},
        {"event_type": "conversation.closed", "event_id": "bad", "contact": {"id": 2},
         "conversation": {"closedTime": T0, "closedBySource": "ai_agent", "firstResponseTime": "soon"}},
    ]
    events = [e for p in deliveries for e in rio(p).events]
    # a mapper emits numbers; a non-number figure from elsewhere is quarantined
    events[-1]["platform_first_response_time_s"] = "soon"
    closeconv_env.write_jsonl("intake.jsonl", events)
    wh = closeconv_env.run()
    conv = wh.rows("SELECT * FROM conversations")
    assert len(conv) == 1
    c = conv[0]
    assert c["opened_by_source"] == "growth_widget"
    # ai_agent and n8n are not human responses: the first response is the user's, at +95 s
    assert c["first_response_time_s"] == 95.0 and c["human_outgoing_message_count"] == 1
    assert c["platform_first_response_time_s"] == 5.0  # the platform counted the AI answer
    assert c["platform_resolution_time_s"] == 1500.0 and c["resolution_time_s"] == 1500.0
    assert c["platform_outgoing_message_count"] == 3 and c["outgoing_message_count"] == 3
    assert c["platform_assignee_team"] == "Support EU" and c["platform_opened_by_source"] == "contact"
    assert c["platform_metrics_differ"] is True
    closed = wh.rows("SELECT * FROM events WHERE event_type = 'conversation.closed'")
    assert closed[0]["platform_first_response_time_s"] == 5.0
    rejected = wh.rows("SELECT reason_code, reason FROM rejected_events")
    assert rejected == [{"reason_code": "wrong_type", "reason": "platform_first_response_time_s must be a number, not soon"}]


def test_platform_figures_that_agree_are_not_flagged(closeconv_env):
    deliveries = [
        {"event_type": "conversation.opened", "event_id": "o", "contact": {"id": 1},
         "conversation": {"source": "contact", "conversationOpenedAt": T0}},
        message_payload(ts=T0 * 1000) | {"event_id": "r", "contact": {"id": 1}},
        message_payload("message.sent", ts=(T0 + 95) * 1000, sender={"source": "user", "userId": 7}) | {"event_id": "s", "contact": {"id": 1}},
        closed_payload(incomingMessageCount=1, outgoingMessageCount=1) | {"contact": {"id": 1}},
        # a v1 close without platform figures in the same run: null, not "differs"
        {"event_type": "conversation.opened", "event_id": "o2", "contact": {"id": 2},
         "conversation": {"source": "user", "conversationOpenedAt": T0}},
        {"event_type": "conversation.closed", "event_id": "c2", "contact": {"id": 2},
         "conversation": {"closedTime": T0 + 60, "closedBySource": "workflow"}},
    ]
    closeconv_env.write_jsonl("intake.jsonl", [e for p in deliveries for e in rio(p).events])
    wh = closeconv_env.run()
    flags = dict(wh.frame("SELECT contact_id, platform_metrics_differ FROM conversations").iter_rows())
    assert flags == {"1": False, "2": None}
