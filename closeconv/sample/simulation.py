"""The simulation: one conversation at a time, with its events and bad records."""

from __future__ import annotations

import array
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from closeconv.sample.derived import (
    ASSIGN,
    CLOSED,
    HOUR_MS,
    OPENED,
    RECEIVED,
    SENT,
    _AGENT_FRT_MU,
    _CATEGORY_NAMES,
    _CHANNEL_CUM,
    _CHANNEL_IDS,
    _SUMMARY_BY_CATEGORY,
    _TEAM_AGENTS,
    _TEAM_AGENT_CUM,
    _TEAM_MANAGER,
    _THANKS_SUMMARY,
    _TOPIC_CUM,
    _is_working,
    _next_working_start,
)
from closeconv.sample.workspace import UNLISTED_CATEGORY, _TOPICS

# How a conversation opens: kind, share.
_OPEN_KINDS: tuple[tuple[str, float], ...] = (
    ("contact", 0.80),
    ("ctc_ads", 0.06),
    ("user", 0.06),
    ("workflow", 0.03),
    ("api", 0.03),
    ("zapier", 0.01),
    ("make", 0.01),
)
_OPEN_CUM = list(accumulate(w for _, w in _OPEN_KINDS))
# How an answered conversation closes: source, share.
_HUMAN_CLOSE: tuple[tuple[str, float], ...] = (
    ("user", 0.885),
    ("auto_close", 0.03),
    ("api", 0.035),
    ("workflow", 0.03),
    ("zapier", 0.01),
    ("make", 0.01),
)
_HUMAN_CLOSE_CUM = list(accumulate(w for _, w in _HUMAN_CLOSE))

_AUTO_CLOSE_MS = 4 * HOUR_MS  # the workspace's auto-close timer (inactivity)
_P_GREETING = 0.6  # workflow auto-reply on a contact-opened conversation
_P_BOT = 0.13  # a bot answers first
_P_BOT_RESOLVES = 0.45  # ... and closes it with no human
_P_UNANSWERED = 0.07  # no human ever answers
_P_STALE = 0.025  # a human answers but nobody closes it
_P_ALREADY_ASSIGNED = 0.12  # still assigned from an earlier conversation: no assignment event
_P_REASSIGN = 0.05
_P_UNASSIGN = 0.02
_P_UNASSIGN_WORKFLOW_AFTER_CLOSE = 0.5  # a recorded workflow unassign right after a user close
_P_REOPEN = 0.12  # "ok thank you" after the close
_CONTACTS_PER_CONVERSATION = 0.8


_NORMAL_TABLE_SIZE = 8192
_NORMAL: list[float] = []


def _make_ln(rand):
    """Log-normal durations in ms: exp(N(mu, sigma)) from a quantile table of the standard
    normal (8192 points, |z| <= 3.8): 3-4x faster than random.gauss, plenty for sample data."""
    if not _NORMAL:
        from statistics import NormalDist

        inv = NormalDist().inv_cdf
        _NORMAL.extend(inv((i + 0.5) / _NORMAL_TABLE_SIZE) for i in range(_NORMAL_TABLE_SIZE))
    norm, exp, size = _NORMAL, math.exp, float(_NORMAL_TABLE_SIZE)

    def ln(mu: float, sigma: float) -> int:
        return int(exp(mu + sigma * norm[int(rand() * size)])) + 1

    return ln


_MU = {k: math.log(v * 1000) for k, v in {
    "burst": 15, "agent_gap": 20, "reply": 70, "contact_reply": 90, "close_user": 180,
    "close_api": 600, "close_workflow": 1800, "outreach_reply": 900, "outreach_msg": 25,
    "offhours_oncall": 1200, "morning_backlog": 900, "bot_turn": 40, "reopen": 240,
    "reopen_reply": 90, "reopen_close": 120, "unanswered_more": 300, "api_assign": 20,
}.items()}


@dataclass
class GenerateResult:
    files: list[Path]
    events_written: int  # every record written, valid and bad
    bad_records: dict[str, int]
    conversations: int  # conversations in the data (including the short reopened ones)
    seconds: float
    valid_events: int = 0
    reopened_conversations: int = 0
    open_conversations: int = 0  # still open at the end of the window
    contacts: int = 0  # contacts with at least one conversation
    broadcasts: int = 0  # broadcast message.sent events (no conversation)
    events_by_type: dict[str, int] = field(default_factory=dict)  # valid events


class _Simulator:
    """State that spans conversations: contacts and their busy-until times."""

    def __init__(self, seed: int, conversations: int, start_ms: int, end_ms: int) -> None:
        self.rng = random.Random(f"closeconv-generate-{seed}")
        self.ln = _make_ln(self.rng.random)
        self.start_ms, self.end_ms = start_ms, end_ms
        pool = max(1, int(conversations * _CONTACTS_PER_CONVERSATION))
        self.pool = pool
        r = self.rng.random
        cum, n = _CHANNEL_CUM, len(_CHANNEL_IDS) - 1
        self.contact_channel = bytearray(min(bisect_right(cum, r() * cum[-1]), n) for _ in range(pool))
        # Time of the contact's last event, -1 if none yet, _INF while a conversation stays open.
        self.busy = array.array("q", [-1]) * pool
        self.used = bytearray(pool)

    # -- helpers ---------------------------------------------------------------------------

    def contact_id(self, idx: int) -> str:
        return f"c_{idx + 1:06d}"

    def channel_of(self, idx: int) -> str:
        return _CHANNEL_IDS[self.contact_channel[idx]]

    def pick_contact(self, t: int) -> int:
        """A contact with no open conversation and no event after t - 1 s; frequent returners first."""
        r, busy, pool = self.rng.random, self.busy, self.pool
        limit = t - 1000
        for _ in range(12):
            i = int(pool * r() ** 1.4)
            if busy[i] < limit:
                return i
        # Everyone we tried is busy: a new contact.
        i = len(self.busy)
        self.busy.append(-1)
        self.used.append(0)
        self.contact_channel.append(min(bisect_right(_CHANNEL_CUM, r() * _CHANNEL_CUM[-1]), len(_CHANNEL_IDS) - 1))
        return i  # (later draws keep using the original pool)

    def pick_agent(self, team: str) -> int:
        cum, agents = _TEAM_AGENT_CUM[team], _TEAM_AGENTS[team]
        return agents[min(bisect_right(cum, self.rng.random() * cum[-1]), len(agents) - 1)]

    def note(self, topic: str, p_category: float, p_summary: float) -> tuple:
        """A closing note (category | None, summary index | -1, number for the summary)."""
        r = self.rng.random
        cat = None
        if r() < p_category:
            u = r()
            if u < 0.01:
                cat = UNLISTED_CATEGORY
            elif u < 0.93:
                cat = topic
            else:
                cat = _CATEGORY_NAMES[int(r() * len(_CATEGORY_NAMES))]
        si = -1
        if r() < p_summary:
            choices = _SUMMARY_BY_CATEGORY[cat or topic]
            si = choices[int(r() * len(choices))]
        if cat is None and si < 0:
            return (None, -1, 0)
        return (cat, si, 1000 + int(r() * 90000))

    # -- one conversation (and its reopen) -------------------------------------------------

    def conversation(self, o: int) -> tuple[list[tuple], list[tuple[int, int | None]]]:
        """Events of one conversation opened at o (plus a possible reopen), and its segments
        as (opened_at, closed_at | None). Not yet cut at the end of the window."""
        rng = self.rng
        r, ln = rng.random, self.ln
        mu = _MU
        evs: list[tuple] = []
        add = evs.append

        topic, team, _ = _TOPICS[min(bisect_right(_TOPIC_CUM, r() * _TOPIC_CUM[-1]), len(_TOPICS) - 1)]
        agent = self.pick_agent(team)
        assignee = -1  # current assignee as far as this conversation is concerned
        kind = _OPEN_KINDS[min(bisect_right(_OPEN_CUM, r() * _OPEN_CUM[-1]), len(_OPEN_KINDS) - 1)][0]
        t = o
        incoming_at: int | None = None  # first incoming message
        by_contact = kind in ("contact", "ctc_ads")

        if kind == "contact":
            add((t, RECEIVED, "contact", -1, -1, None))
            incoming_at = t
        elif kind == "ctc_ads":
            add((t, RECEIVED, "contact", -1, -1, None))
            # The ad's open event lands just before or within seconds after the message.
            to = t - 1 - int(r() * 500) if r() < 0.4 else t + int(r() * 2000)
            add((max(self.start_ms, to), OPENED, "ctc_ads", -1, -1, None))
            incoming_at = t
        elif kind == "user":
            add((t, OPENED, "user", agent, -1, None))
            add((t, ASSIGN, "user", agent, agent, None))
            assignee = agent
            t += ln(mu["outreach_msg"], 0.8)
            add((t, SENT, "user", agent, -1, None))
        else:  # workflow / api / zapier / make: a template message goes out
            add((t, OPENED, kind, -1, -1, None))
            t += 300 + int(r() * 3700)
            add((t, SENT, kind, -1, -1, None))

        if incoming_at is None:
            if r() < (0.75 if kind == "user" else 0.55):
                t += ln(mu["outreach_reply"], 1.3)
                add((t, RECEIVED, "contact", -1, -1, None))
                incoming_at = t
            else:
                # No reply: closed later by the user or the timer, or left open.
                u = r()
                closer = agent if kind == "user" else self.pick_agent(team)
                if u < 0.45:
                    t += ln(math.log(6 * HOUR_MS), 0.8)
                    add((t, CLOSED, "user", closer, -1, self.note(topic, 0.5, 0.3)))
                    return self._after_close(evs, o, t, topic, team, closer, "user")
                if u < 0.85:
                    t += _AUTO_CLOSE_MS + int(r() * 60_000)
                    add((t, CLOSED, "auto_close", -1, -1, None))
                    return self._after_close(evs, o, t, topic, team, closer, "auto_close")
                return evs, [(o, None)]

        # A contact message is in: maybe more of it, then a greeting.
        last = t
        for _ in range(int(r() * r() * 3)):
            last += ln(mu["burst"], 0.8)
            add((last, RECEIVED, "contact", -1, -1, None))
        if by_contact and r() < _P_GREETING:
            add((incoming_at + 800 + int(r() * 2700), SENT, "workflow", -1, -1, None))

        mode = r()
        if by_contact and mode < _P_BOT:
            # A bot answers first.
            bt = incoming_at + 1000 + int(r() * 3000)
            bt = max(bt, last + 500)
            add((bt, SENT, "bot", -1, -1, None))
            for _ in range(1 + int(r() * 3)):
                bt += ln(mu["bot_turn"], 0.9)
                add((bt, RECEIVED, "contact", -1, -1, None))
                bt += 1000 + int(r() * 3000)
                add((bt, SENT, "bot", -1, -1, None))
            last = bt
            if r() < _P_BOT_RESOLVES:
                t = last + 2000 + int(r() * 20_000)
                add((t, CLOSED, "bot", -1, -1, self.note(topic, 0.1, 0.0) if r() < 0.3 else None))
                return self._after_close(evs, o, t, topic, team, -1, "bot")
            # Handover to a human.
            last += 500 + int(r() * 2000)
            add((last, ASSIGN, "bot", -1, agent, None))
            assignee = agent
        elif mode < _P_BOT + _P_UNANSWERED:
            # Nobody answers: the contact may insist, then the timer or a workflow closes it.
            if r() < 0.4:
                last += ln(mu["unanswered_more"], 1.2)
                add((last, RECEIVED, "contact", -1, -1, None))
            u = r()
            if u < 0.6:
                t = last + _AUTO_CLOSE_MS + int(r() * 60_000)
                add((t, CLOSED, "auto_close", -1, -1, None))
            elif u < 0.8:
                t = last + ln(mu["close_workflow"], 0.8)
                add((t, CLOSED, "workflow", -1, -1, None))
            else:
                return evs, [(o, None)]
            return self._after_close(evs, o, t, topic, team, -1, "auto_close")

        # A human answers. First response time from the first incoming message.
        if _is_working(incoming_at) or r() < 0.35:
            frt = ln(_AGENT_FRT_MU[agent], 1.1)
            if not _is_working(incoming_at):
                frt = ln(mu["offhours_oncall"], 1.1)
        else:
            frt = _next_working_start(incoming_at) - incoming_at + ln(mu["morning_backlog"], 1.0)
        reply_at = max(incoming_at + frt, last + 1000)

        if assignee < 0 and r() >= _P_ALREADY_ASSIGNED:
            u = r()
            if u < 0.6:
                at, src, actor = incoming_at + 500 + int(r() * 4500), "workflow", -1
            elif u < 0.9:
                at, src = reply_at - 2000 - int(r() * 28_000), "user"
                actor = agent if r() < 0.7 else _TEAM_MANAGER[team]
            else:
                at, src, actor = incoming_at + ln(mu["api_assign"], 0.8), "api", -1
            at = min(max(at, incoming_at + 1), reply_at - 1)
            add((at, ASSIGN, src, actor, agent, None))
            assignee = agent

        t = reply_at
        rounds = 1
        while rounds < 12 and r() < 0.55:
            rounds += 1
        for k in range(rounds):
            if k:
                # The contact writes again; the agent replies.
                t += ln(mu["contact_reply"], 1.2)
                add((t, RECEIVED, "contact", -1, -1, None))
                for _ in range(int(r() * r() * 3)):
                    t += ln(mu["burst"], 0.8)
                    add((t, RECEIVED, "contact", -1, -1, None))
                if r() < _P_REASSIGN:
                    other = self.pick_agent(team)
                    if other != agent:
                        t += 1000 + int(r() * 30_000)
                        add((t, ASSIGN, "user", _TEAM_MANAGER[team], other, None))
                        agent = assignee = other
                t += ln(mu["reply"], 1.0)
            add((t, SENT, "user", agent, -1, None))
            u = r()
            for _ in range(1 if u < 0.7 else 2 if u < 0.95 else 3):
                t += ln(mu["agent_gap"], 0.7)
                if r() < 0.96:
                    add((t, SENT, "user", agent, -1, None))
                else:  # sent from the phone's own app: an echo, no user attached
                    add((t, SENT, "echo", -1, -1, None))
        if r() < 0.03:
            t += 1000 + int(r() * 60_000)
            add((t, SENT, "api", -1, -1, None))  # e.g. a CSAT survey sent by an integration
        if r() < _P_UNASSIGN:
            t += 1000 + int(r() * 60_000)
            src = "user" if r() < 0.6 else "api"
            add((t, ASSIGN, src, _TEAM_MANAGER[team] if src == "user" else -1, -1, None))
            assignee = -1

        if r() < _P_STALE:
            return evs, [(o, None)]
        src = _HUMAN_CLOSE[min(bisect_right(_HUMAN_CLOSE_CUM, r() * _HUMAN_CLOSE_CUM[-1]), len(_HUMAN_CLOSE) - 1)][0]
        if src == "user":
            t += ln(mu["close_user"], 1.0)
            closer = (assignee if assignee >= 0 else agent) if r() < 0.92 else self.pick_agent(team)
            add((t, CLOSED, "user", closer, -1, self.note(topic, 0.86, 0.76)))
            return self._after_close(evs, o, t, topic, team, closer, "user")
        if src == "auto_close":
            t += _AUTO_CLOSE_MS + int(r() * 60_000)
            note = None
        elif src == "workflow":
            t += ln(mu["close_workflow"], 0.8)
            note = None
        else:
            t += ln(mu["close_api"], 1.2)
            note = self.note(topic, 0.5, 0.25)
        add((t, CLOSED, src, -1, -1, note))
        return self._after_close(evs, o, t, topic, team, assignee if assignee >= 0 else agent, src)

    def _after_close(self, evs, o, tc, topic, team, user, close_src) -> tuple[list[tuple], list]:
        """The recorded workflow unassign after a user close, and the "ok thank you" reopen."""
        r, ln = self.rng.random, self.ln
        add = evs.append
        segments: list[tuple[int, int | None]] = [(o, tc)]
        if close_src == "user" and r() < _P_UNASSIGN_WORKFLOW_AFTER_CLOSE:
            add((tc + 200 + int(r() * 2800), ASSIGN, "workflow", -1, -1, None))
        if r() >= _P_REOPEN:
            return evs, segments
        t = tc + max(20_000, ln(_MU["reopen"], 0.9))
        ro = t
        add((t, RECEIVED, "contact", -1, -1, None))
        if r() < 0.5:
            add((t + 800 + int(r() * 2700), SENT, "workflow", -1, -1, None))
            t += 3600
        agent = user if user >= 0 else self.pick_agent(team)
        if r() < 0.35:
            t += ln(_MU["reopen_reply"], 1.0)
            add((t, SENT, "user", agent, -1, None))
        u = r()
        if u < 0.6:
            t += ln(_MU["reopen_close"], 1.0)
            note = (topic if r() < 0.3 else None, _THANKS_SUMMARY if r() < 0.3 else -1, 0)
            add((t, CLOSED, "user", agent, -1, note))
        elif u < 0.95:
            t += _AUTO_CLOSE_MS + int(r() * 60_000)
            add((t, CLOSED, "auto_close", -1, -1, None))
        else:
            t += 2000 + int(r() * 10_000)
            add((t, CLOSED, "bot", -1, -1, None))
        segments.append((ro, t))
        return evs, segments
