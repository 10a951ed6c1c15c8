"""Replay workflows over the recorded events: runs, actions, the merged assignment timeline, drift.

Plain code (no Dagster). :func:`replay_workflows` reads the table ``events`` of a DuckDB
connection and (re)creates ``workflow_runs``, ``workflow_actions``, ``assignments`` and
``workflow_drift`` on the same connection with ``CREATE OR REPLACE TABLE``. It does not open
or commit a transaction: the caller wraps it in one.

How a replay works
------------------
1. Trigger events. ``conversation.closed``: every close. ``conversation.opened``: the
   *opening event of every conversation* (its first event: an explicit
   ``conversation.opened`` or the ``message.received`` that opened it implicitly; for an
   implicit open, the source/user/team of a redundant ``conversation.opened`` arriving within
   60 s fill the fields, as in sessionization; otherwise ``source = contact``).
2. The assignee at a trigger is the contact's assignee just before the trigger event in the
   merged timeline (recorded ``contact.assignee.updated`` events plus earlier replayed
   actions), ordered by ``event_order`` (the event's position within its contact): a recorded
   update at the same timestamp as a close comes before it; the close's own workflows come
   after it. Inside the engines a trigger or recorded update is named by ``pos``, its row in
   the timeline sorted by contact then event_order (unique across contacts; the vectorized
   engine needs no other order). The sequential engine, which compares events of different
   contacts, numbers events in the global order (occurred_at, kind rank, event_id) itself.
3. Conditions are compiled to Polars expressions and evaluated over all trigger events at
   once (``conditions.py``).
4. Enabled workflows of one trigger event run in workflow-id order. Every workflow at an
   event sees the same ``assignee_id`` in its conditions (the one before the event's own
   workflows); steps act on the running assignee (after earlier workflows/steps of the event).
5. Actions by workflows never trigger workflows (no loops). Disabled workflows are ignored.
6. Engines: when every enabled workflow only unassigns (the common case, e.g. the template)
   the replay is fully vectorized: within a stretch of one recorded assignee, the first
   event where a workflow fires unassigns, and later events see "no assignee" until the next
   recorded update. Otherwise a sequential engine (``sequential.py``) does Python work only
   per *candidate* trigger (an event where some workflow's static conditions can hold), with
   all lookups precomputed. Both give the same tables (tested).

Reconciliation
--------------
A recorded update with source ``workflow`` is *the same change* as a replayed action when it
is the first recorded update on that contact after the trigger (for a trigger with several
actions: the first recorded updates, matched in order), has the same new assignee (null =
null), comes at most 60 s after the trigger and before the contact's next trigger that
produced actions. It then appears once in ``assignments`` (as the ``workflow`` row, with the
recorded ``event_id``) and its id is in ``workflow_actions.reconciled_event_id``. Recorded
updates stamped at the very same millisecond as the close sort *before* it (rule 2) and are
therefore not reconciled.

Drift
-----
``workflow_drift`` lists unassignments that have no reconciled recorded update while the
recorded timeline shows the contact still assigned 60 s after the trigger. Only an
unassignment that is the last action of its trigger counts (an "unassign, then assign to X"
run expects the contact to be assigned, not unassigned).

Using ``assignments`` for per-conversation assignees
----------------------------------------------------
``assignments`` has one row per change, per contact, ordered by ``seq`` (1, 2, ...). Its
``event_order`` (like ``events.event_order``, a position within the contact: compare it only
within one contact) is the recorded event's ``event_order`` for ``cause = 'event'`` rows, and the
*trigger event's* ``event_order`` for ``cause = 'workflow'`` rows (several actions of one
trigger share it and are ordered by ``seq``). So, for an event E of contact C:

* the assignee **just before E, before E's own workflows** = ``assignee_id`` of the row of C
  with the greatest ``seq`` among rows with ``event_order < E.event_order`` (null if none).
  Rows caused by E's own workflows have ``event_order = E.event_order`` and
  ``trigger_event_id = E.event_id``, and are excluded by the strict ``<``;
* equivalently, with ``timeline_order`` (DOUBLE, unique per contact: ``event_order`` for
  recorded rows, trigger ``event_order + 0.5`` (+ 0.001 per earlier action of the same
  trigger) for workflow rows): the last row with ``timeline_order < E.event_order``, which
  an ``ASOF JOIN`` finds directly;
* ``assignee_at_close`` = that value for the close event;
* ``first_assignee_id`` of a conversation = the assignee just before its first event if not
  null (already assigned at open), else the first non-null ``assignee_id`` (lowest ``seq``)
  among rows with ``open_order <= event_order < close_order`` (a conversation still open has
  no upper bound).

:data:`closeconv.workflows.assignees.CONVERSATION_ASSIGNEES_SQL` implements exactly this over ``events``
and ``assignments``; ``conversations`` uses it. Modules: ``tables`` (contracts), ``triggers``,
``vectorized``, ``sequential``, ``reconcile``, ``writers``, ``drift``; this one orchestrates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from closeconv.workflows.drift import drift_count
from closeconv.workflows.models import Workflow
from closeconv.workflows.reconcile import reconcile
from closeconv.workflows.sequential import replay_sequential
from closeconv.workflows.tables import ACTIONS_SCHEMA, COMPLETED, CONDITION_COLUMNS, RUNS_SCHEMA, SKIPPED
from closeconv.workflows.triggers import load_timeline, recorded_frame, trigger_frame
from closeconv.workflows.vectorized import replay_vectorized, vectorizable
from closeconv.workflows.writers import write_tables

@dataclass
class ReplayStats:
    workflows: int = 0  # enabled workflows replayed
    trigger_events: int = 0  # events of a trigger type some enabled workflow listens to
    runs: int = 0
    completed: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    actions: int = 0
    actions_by_type: dict[str, int] = field(default_factory=dict)
    contacts_affected: int = 0
    reconciled: int = 0  # actions matched by a recorded workflow update
    drift: int = 0  # rows of workflow_drift
    engine: str = "none"  # vectorized | sequential | none
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)



def replays_per_contact(workflows: list[Workflow]) -> bool:
    """True when each contact's replay depends on its own events only (the vectorized engine:
    unassign-only workflows), so a replay of some contacts gives exactly their rows."""
    return vectorizable([w for w in workflows if w.enabled])


def replay_workflows(
    con: duckdb.DuckDBPyConnection,
    workflows: list[Workflow],
    users: pl.DataFrame | None = None,
    *,
    triggers_from: datetime | None = None,
    triggers_to: datetime | None = None,
    engine: str = "auto",
    contacts: str | None = None,
) -> ReplayStats:
    """Replay the enabled ``workflows`` over the table ``events`` of ``con``.

    (Re)creates ``workflow_runs``, ``workflow_actions``, ``assignments`` and
    ``workflow_drift`` (see the module docstring and the ``*_COLUMNS`` schemas). With no
    enabled workflow, ``assignments`` is the recorded timeline and the other tables are empty.
    Opens no transaction: wrap the call in one.

    ``users``: optional reference data (columns ``user_id``, ``team_id``; others ignored)
    giving team membership for round robin / least open contacts; without it, membership
    comes from the ``team_id`` seen with each ``user_id`` in events.
    ``triggers_from`` / ``triggers_to``: only trigger events in [from, to) may fire (what-if
    runs); the assignment state still comes from all history.
    ``engine``: "auto" (vectorized when possible), "vectorized" or "sequential".
    ``contacts``: a SQL predicate on ``contact_id``: replay only those contacts and replace only
    their rows in the four tables (which must exist). Exact only when every contact replays on
    its own, i.e. with the vectorized engine (:func:`replays_per_contact`); the trigger, run and
    action counts in the returned stats are then the scope's (drift and reconciled counts read
    the whole tables).
    """
    started = time.perf_counter()
    active = sorted((w for w in workflows if w.enabled), key=lambda w: w.id)
    seen: set[str] = set()
    for w in active:
        if w.id in seen:
            raise ValueError(f"two enabled workflows share the id {w.id!r}")
        seen.add(w.id)
    if engine not in ("auto", "vectorized", "sequential"):
        raise ValueError(f"unknown engine {engine!r}")

    stats = ReplayStats(workflows=len(active))
    runs = pl.DataFrame(schema=RUNS_SCHEMA)
    actions = pl.DataFrame(schema=ACTIONS_SCHEMA)
    types = sorted({w.trigger.type for w in active})
    use_vector = vectorizable(active) and engine != "sequential"
    if engine == "vectorized" and not use_vector:
        raise ValueError("the vectorized engine only handles unassign-only workflows")
    if contacts is not None and not use_vector:
        raise ValueError("only the vectorized engine replays some contacts alone (the sequential one carries state across contacts)")
    # The vectorized engine reads only the condition fields its workflows use.
    fields = tuple({r.field for w in active for r in w.trigger.conditions.rules} & set(CONDITION_COLUMNS))
    timeline = load_timeline(con, types, triggers_from, triggers_to, columns=fields if use_vector else CONDITION_COLUMNS,
                             contacts=contacts)
    recorded = recorded_frame(timeline)
    trig = trigger_frame(timeline, fields if use_vector else CONDITION_COLUMNS)
    del timeline
    if active:
        if use_vector:
            stats.engine = "vectorized"
            runs, actions = replay_vectorized(trig, active)
        else:
            stats.engine = "sequential"
            runs, actions = replay_sequential(con, trig, active, users)
            actions = reconcile(actions, trig, recorded)
        stats.trigger_events = trig.height

    write_tables(con, runs, actions, active, trig, recorded, contacts)

    stats.runs = runs.height
    if runs.height:
        outcomes = runs.get_column("outcome").value_counts()
        counts = dict(outcomes.iter_rows())
        stats.completed = int(counts.get(COMPLETED, 0))
        stats.skipped = int(counts.get(SKIPPED, 0))
        reasons = runs.filter(pl.col("outcome") == SKIPPED).get_column("skip_reason").value_counts(sort=True)
        stats.skipped_by_reason = {r: int(n) for r, n in reasons.iter_rows()}
    stats.actions = actions.height
    if actions.height:
        stats.actions_by_type = {a: int(n) for a, n in actions.get_column("action").value_counts(sort=True).iter_rows()}
        stats.contacts_affected, stats.reconciled = (
            int(x) for x in con.sql(
                "SELECT count(DISTINCT contact_id), count(reconciled_event_id) FROM workflow_actions"
            ).fetchall()[0]
        )
    stats.drift = drift_count(con)
    stats.seconds = round(time.perf_counter() - started, 3)
    return stats
