"""The sequential replay engine: any workflow, including assign to a user, round robin and
least open contacts.

Python work is done per *candidate* trigger event only (an event where some workflow's
conditions can hold); everything per event is precomputed in bulk:

* conditions: evaluated vectorized for the recorded assignee and for "no assignee"; when a
  replayed action has set another assignee, the ``assignee_id`` rules are looked up in a
  table evaluated vectorized over every user id an action can set;
* the recorded assignee before each trigger and the next recorded update (as-of joins);
* open-contact counts: per user, a step function of the *recorded* timeline (assignment
  intervals intersected with open-conversation spans, computed in DuckDB), corrected by the
  replayed actions: an action on contact C at trigger T overrides C's recorded assignee r0
  with b from T until C's next recorded update (or next action). While C has an open
  conversation inside that window, it counts for b instead of r0. These corrections are
  applied lazily from a heap as the replay advances in time.

Open contacts of a user at an event = contacts assigned to them (merged timeline) whose
conversation is open at that event; the event itself counts (a conversation opened by the
trigger is open, one closed by it is not).

Triggers are processed in the global event order, and membership and open counts compare
events of different contacts, so this engine numbers all events once in that order
(``global_order``: occurred_at, kind rank, event_id; ``events.event_order`` is only a position
within the contact). It is computed here, only when this engine runs: the vectorized engine
needs no global sort.

Round robin rotates per workflow step over the eligible users sorted by user_id, starting
after the user it chose last. Least open contacts picks the fewest open contacts, ties
broken by user_id. ``max_open_contacts: N`` keeps only users with fewer than N.
Membership: ``users`` reference data when given (static); otherwise a user belongs to the
teams seen with their ``user_id`` on events, from the first such event on; the workspace is
every user id seen on events (as actor or assignee), from its first appearance on.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict

import duckdb
import polars as pl

from closeconv.contract import EVENT_KIND_RANK_SQL
from closeconv.errors import ConfigError
from closeconv.workflows.conditions import combine, conditions_expr, rule_expr, split_conditions
from closeconv.workflows.models import STRATEGY_ACTIONS, AssignStep, Workflow
from closeconv.workflows.tables import (
    ACTIONS_SCHEMA,
    COMPLETED,
    RUNS_SCHEMA,
    SKIP_ALL_AT_CAP,
    SKIP_CHOSEN_IS_CURRENT,
    SKIP_NO_ASSIGNEE,
    SKIP_NO_TEAM_USERS,
    SKIP_NO_WORKSPACE_USERS,
    SKIP_ONCE,
    SKIP_SAME_USER,
    SKIPPED,
)
from closeconv.workflows.writers import FRAME, run_over_frame

_INF = float("inf")
_BIG = 9_223_372_036_854_775_807
# The events this engine reads, numbered in the global event order (dropped after the replay).
_TIMED_EVENTS = "_cc_events_in_time"
# Each conversation's span in the global order: its first event to its last close (null: still open).
_CONVERSATION_SPANS_SQL = f"""
    SELECT any_value(contact_id) AS contact_id, min(global_order) AS s,
           max(global_order) FILTER (WHERE event_type = 'conversation.closed') AS e
    FROM {_TIMED_EVENTS} WHERE conversation_id IS NOT NULL GROUP BY conversation_id
"""


def _number_events_in_time(con: duckdb.DuckDBPyConnection) -> None:
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE {_TIMED_EVENTS} AS
        SELECT contact_id, event_order, event_type, user_id, team_id, assignee_id, conversation_id,
               row_number() OVER (ORDER BY occurred_at, {EVENT_KIND_RANK_SQL}, event_id) AS global_order
        FROM events
        """
    )


def _with_global_order(con: duckdb.DuckDBPyConnection, trig: pl.DataFrame) -> pl.DataFrame:
    """``trig`` with ``global_order`` (the trigger's) and ``nr_global_order`` (its next recorded
    update's), sorted by global_order."""
    keys = trig.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("k"), "contact_id", "event_order", "nr_order")
    g = run_over_frame(
        con, keys,
        f"""
        SELECT t.global_order, n.global_order AS nr_global_order
        FROM {FRAME} k
        JOIN {_TIMED_EVENTS} t ON t.contact_id = k.contact_id AND t.event_order = k.event_order
        LEFT JOIN {_TIMED_EVENTS} n ON n.contact_id = k.contact_id AND n.event_order = k.nr_order
        ORDER BY k.k
        """,
        rows=True,
    )
    if g.height != trig.height:
        raise RuntimeError("sequential replay: a trigger event is not in events")
    return pl.concat([trig, g], how="horizontal").sort("global_order")


class Membership:
    """Who can be chosen by round robin / least open contacts, as of a global order."""

    def __init__(self, con: duckdb.DuckDBPyConnection, users: pl.DataFrame | None):
        self.teams: dict[str, list[tuple[str, int]]] = {}
        self.workspace: list[tuple[str, int]] = []
        if users is not None:
            if "user_id" not in users.columns:
                raise ConfigError("users reference data has no 'user_id' column. Fix: give users.csv the columns user_id,name,email,team_id,role.")
            u = users.select(
                pl.col("user_id").cast(pl.String).str.strip_chars(),
                (pl.col("team_id").cast(pl.String).str.strip_chars().str.to_lowercase() if "team_id" in users.columns else pl.lit(None, pl.String)).alias("team"),
            ).filter(pl.col("user_id").is_not_null() & (pl.col("user_id") != ""))
            for uid, team in u.unique().iter_rows():
                if team:
                    self.teams.setdefault(team, []).append((uid, -1))
            self.workspace = [(uid, -1) for uid in sorted(set(u.get_column("user_id").to_list()))]
        else:
            rows = con.sql(
                f"""
                SELECT lower(trim(team_id)) AS team, user_id, min(global_order) AS first_order
                FROM {_TIMED_EVENTS} WHERE user_id IS NOT NULL AND nullif(trim(team_id), '') IS NOT NULL
                GROUP BY ALL
                """
            ).fetchall()
            for team, uid, first in rows:
                self.teams.setdefault(team, []).append((uid, first))
            rows = con.sql(
                f"""
                SELECT u, min(o) FROM (
                    SELECT user_id AS u, global_order AS o FROM {_TIMED_EVENTS} WHERE user_id IS NOT NULL
                    UNION ALL
                    SELECT nullif(trim(assignee_id), ''), global_order FROM {_TIMED_EVENTS}
                    WHERE event_type = 'contact.assignee.updated'
                ) WHERE u IS NOT NULL GROUP BY u
                """
            ).fetchall()
            self.workspace = [(u, o) for u, o in rows]
        for members in self.teams.values():
            members.sort()
        self.workspace.sort()

    def members(self, team_id: str | None, order: int) -> list[str]:
        pool = self.workspace if team_id is None else self.teams.get(team_id.strip().lower(), [])
        return [u for u, first in pool if first <= order]

    def all_user_ids(self) -> set[str]:
        ids = {u for u, _ in self.workspace}
        for members in self.teams.values():
            ids.update(u for u, _ in members)
        return ids


class OpenCounts:
    """Open contacts per user at a global order, in the merged (recorded + replayed) timeline."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        steps = con.sql(
            f"""
            WITH rec AS (
                SELECT contact_id, nullif(trim(assignee_id), '') AS u, global_order AS f,
                       lead(global_order) OVER (PARTITION BY contact_id ORDER BY global_order) AS t
                FROM {_TIMED_EVENTS} WHERE event_type = 'contact.assignee.updated'
            ), spans AS ({_CONVERSATION_SPANS_SQL}), ov AS (
                SELECT r.u, greatest(r.f, sp.s) AS a,
                       least(coalesce(r.t, {_BIG}), coalesce(sp.e, {_BIG})) AS b
                FROM rec r JOIN spans sp ON sp.contact_id = r.contact_id
                WHERE r.u IS NOT NULL
                  AND greatest(r.f, sp.s) < least(coalesce(r.t, {_BIG}), coalesce(sp.e, {_BIG}))
            ), d AS (
                SELECT u, a AS o, 1 AS d FROM ov
                UNION ALL SELECT u, b, -1 FROM ov WHERE b < {_BIG}
            )
            SELECT u, o, sum(d) OVER (PARTITION BY u ORDER BY o ROWS UNBOUNDED PRECEDING) AS c
            FROM (SELECT u, o, sum(d) AS d FROM d GROUP BY u, o)
            ORDER BY u, o
            """
        ).pl()
        self.rec: dict[str, tuple[list[int], list[int]]] = {}
        for (u,), g in steps.group_by(["u"], maintain_order=True):
            self.rec[u] = (g.get_column("o").to_list(), g.get_column("c").cast(pl.Int64).to_list())
        spans = con.sql(
            f"""
            SELECT contact_id, list(s ORDER BY s) AS s, list(e ORDER BY s) AS e
            FROM ({_CONVERSATION_SPANS_SQL}) GROUP BY contact_id
            """
        ).pl()
        self.spans: dict[str, tuple[list[int], list[float]]] = {
            c: (s, [_INF if x is None else x for x in e])
            for c, s, e in spans.iter_rows()
        }
        self.adj: dict[str, int] = defaultdict(int)
        self.heap: list[tuple[float, int, int, str, int]] = []  # (at, tie, kind, contact, generation)
        self.gen: dict[str, int] = defaultdict(int)
        self.override: dict[str, tuple[str | None, str | None]] = {}  # contact -> (b, r0)
        self.applied: dict[str, tuple[str | None, str | None]] = {}
        self._tie = 0

    def _apply(self, c: str, sign: int) -> None:
        b, r0 = self.applied[c] if sign < 0 else self.override[c]
        if b is not None:
            self.adj[b] += sign
        if r0 is not None:
            self.adj[r0] -= sign
        if sign > 0:
            self.applied[c] = (b, r0)
        else:
            del self.applied[c]

    def advance(self, order: int) -> None:
        heap = self.heap
        while heap and heap[0][0] <= order:
            _, _, kind, c, gen = heapq.heappop(heap)
            if gen != self.gen[c]:
                continue
            if kind > 0 and c not in self.applied:
                self._apply(c, +1)
            elif kind < 0 and c in self.applied:
                self._apply(c, -1)

    def count(self, user: str, order: int) -> int:
        rec = self.rec.get(user)
        base = 0
        if rec is not None:
            i = bisect.bisect_right(rec[0], order) - 1
            if i >= 0:
                base = rec[1][i]
        return base + self.adj.get(user, 0)

    def set_override(self, c: str, order: int, end: float, b: str | None, r0: str | None) -> None:
        """From just after ``order`` until ``end`` (next recorded update), C is b instead of r0."""
        self.gen[c] += 1
        if c in self.applied:
            self._apply(c, -1)
        self.override.pop(c, None)
        if b == r0:
            return
        self.override[c] = (b, r0)
        start = order + 0.5
        starts, ends = self.spans.get(c, ([], []))
        i = bisect.bisect_right(ends, start)  # first span ending after start
        g = self.gen[c]
        while i < len(starts) and starts[i] < end:
            on = max(starts[i], start)
            off = min(ends[i], end)
            if on < off:
                self._tie += 1
                heapq.heappush(self.heap, (on, self._tie, +1, c, g))
                if off != _INF:
                    self._tie += 1
                    heapq.heappush(self.heap, (off, self._tie, -1, c, g))
            i += 1


def replay_sequential(
    con: duckdb.DuckDBPyConnection,
    trig: pl.DataFrame,
    wfs: list[Workflow],
    users: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Runs and actions for any workflows, named by the trigger's ``pos``. ``trig`` is
    triggers.trigger_frame(...): trigger columns plus ``r``, ``r_order``, ``nr_order``, ``contact_id``."""
    _number_events_in_time(con)
    try:
        return _replay(con, _with_global_order(con, trig), wfs, users)
    finally:
        con.sql(f"DROP TABLE IF EXISTS {_TIMED_EVENTS}")


def _replay(
    con: duckdb.DuckDBPyConnection,
    trig: pl.DataFrame,
    wfs: list[Workflow],
    users: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``replay_sequential`` over ``trig`` sorted by ``global_order``."""
    none = pl.lit(None, dtype=pl.String)
    needs_members = any(s.action in STRATEGY_ACTIONS for w in wfs for s in w.steps)
    needs_counts = any(
        s.action == "least_open_contacts" or s.max_open_contacts is not None for w in wfs for s in w.steps
    )
    members = Membership(con, users) if needs_members else None
    counts = OpenCounts(con) if needs_counts else None

    # Every value an action can give the assignee (for assignee_id conditions).
    domain = {s.user_id for w in wfs for s in w.steps if s.user_id}
    if members is not None:
        domain |= members.all_user_ids()

    # ---- vectorized condition evaluation
    exprs, cand_cols = [], []
    lookups: list[dict | None] = []
    for i, w in enumerate(wfs):
        type_ok = pl.col("trigger_type") == w.trigger.type
        cond = w.trigger.conditions
        exprs.append((type_ok & conditions_expr(cond, pl.col("r"))).alias(f"mr{i}"))
        if w.uses_assignee_condition:
            exprs.append((type_ok & conditions_expr(cond, none)).alias(f"mn{i}"))
            static, arules = split_conditions(cond)
            exprs.append((static if static is not None else pl.lit(cond.match == "all")).alias(f"s{i}"))
            if cond.match == "all" and static is not None:
                exprs.append((type_ok & static).alias(f"c{i}"))
            else:
                exprs.append(type_ok.alias(f"c{i}"))
            vals = sorted(domain)
            table = pl.DataFrame({"v": vals}, schema={"v": pl.String}).with_columns(
                combine([rule_expr(r, pl.col("v")) for r in arules], cond.match).alias("ok")
            )
            lookups.append(dict(zip(table.get_column("v").to_list(), table.get_column("ok").to_list())))
            cand_cols.append(f"c{i}")
        else:
            lookups.append(None)
            cand_cols.append(f"mr{i}")
    t = trig.with_row_index("j").with_columns(exprs)
    cand = t.filter(pl.any_horizontal([pl.col(c) for c in cand_cols])) if wfs else t.head(0)

    cols = {name: cand.get_column(name).to_list()
            for name in ("j", "contact_id", "event_order", "global_order", "r", "r_order", "nr_global_order", "trigger_type")}
    mr = [cand.get_column(f"mr{i}").to_list() for i in range(len(wfs))]
    mn = [cand.get_column(f"mn{i}").to_list() if w.uses_assignee_condition else mr[i] for i, w in enumerate(wfs)]
    st = [cand.get_column(f"s{i}").to_list() if w.uses_assignee_condition else None for i, w in enumerate(wfs)]
    cc = [cand.get_column(c).to_list() for c in cand_cols]
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(wfs):
        by_type[w.trigger.type].append(i)

    override: dict[str, tuple[int, str | None]] = {}
    fired: list[set[str]] = [set() for _ in wfs]
    rr_last: dict[tuple[int, int], str] = {}
    run_rows: list[tuple] = []
    action_rows: list[tuple] = []

    def matches(i: int, k: int, value: str | None, r: str | None) -> bool:
        if value == r or lookups[i] is None:
            return bool(mr[i][k])
        if value is None:
            return bool(mn[i][k])
        if not cc[i][k]:
            return False
        table = lookups[i]
        ok = table.get(value) if table is not None else None
        if ok is None:  # an id outside the precomputed domain (should not happen)
            arules = split_conditions(wfs[i].trigger.conditions)[1]
            ok = pl.select(
                combine([rule_expr(r_, pl.lit(value, dtype=pl.String)) for r_ in arules], wfs[i].trigger.conditions.match)
            ).item()
        static = st[i][k]
        return bool(static and ok) if wfs[i].trigger.conditions.match == "all" else bool(static or ok)

    def choose(i: int, si: int, step: AssignStep, order: int) -> tuple[str | None, str | None]:
        pool = members.members(step.team_id, order) if members is not None else []
        if not pool:
            return None, SKIP_NO_TEAM_USERS.format(team=step.team_id) if step.team_id else SKIP_NO_WORKSPACE_USERS
        if step.action == "least_open_contacts" or step.max_open_contacts is not None:
            counts.advance(order)
            loads = {u: counts.count(u, order) for u in pool}
            if step.max_open_contacts is not None:
                pool = [u for u in pool if loads[u] < step.max_open_contacts]
                if not pool:
                    return None, SKIP_ALL_AT_CAP
        if step.action == "least_open_contacts":
            return min(pool, key=lambda u: (loads[u], u)), None
        last = rr_last.get((i, si))
        chosen = pool[0]
        if last is not None:
            k = bisect.bisect_right(pool, last)
            chosen = pool[k] if k < len(pool) else pool[0]
        rr_last[(i, si)] = chosen
        return chosen, None

    contact_l, order_l, g_l, r_l, ro_l, nrg_l, type_l, j_l = (
        cols["contact_id"], cols["event_order"], cols["global_order"], cols["r"], cols["r_order"],
        cols["nr_global_order"], cols["trigger_type"], cols["j"],
    )
    # ``override`` compares orders within one contact (event_order); membership and open
    # counts compare across contacts (global order ``g``).
    for k in range(len(j_l)):
        c = contact_l[k]
        o = order_l[k]
        g = g_l[k]
        r = r_l[k]
        ro = ro_l[k] if ro_l[k] is not None else -1
        ov = override.get(c)
        pre = ov[1] if (ov is not None and ov[0] > ro) else r
        cur = pre
        acted = False
        for i in by_type[type_l[k]]:
            if not matches(i, k, pre, r):
                continue
            w = wfs[i]
            if w.settings.trigger_once_per_contact:
                if c in fired[i]:
                    run_rows.append((j_l[k], i, SKIPPED, SKIP_ONCE, 0))
                    continue
                fired[i].add(c)
            n_act, reason = 0, None
            for si, step in enumerate(w.steps):
                if step.action == "unassign":
                    new, why = (None, SKIP_NO_ASSIGNEE) if cur is None else (None, None)
                elif step.action == "user":
                    new, why = (step.user_id, SKIP_SAME_USER if cur == step.user_id else None)
                else:
                    new, why = choose(i, si, step, g)
                    if why is None and new == cur:
                        why = SKIP_CHOSEN_IS_CURRENT
                if why is not None:
                    reason = reason or why
                    continue
                action_rows.append(
                    (j_l[k], i, si, step.id, "unassign" if new is None else "assign", step.action, cur, new)
                )
                cur = new
                n_act += 1
            if n_act:
                acted = True
                run_rows.append((j_l[k], i, COMPLETED, None, n_act))
            else:
                run_rows.append((j_l[k], i, SKIPPED, reason, 0))
        if acted:
            override[c] = (o, cur)
            if counts is not None:
                nrg = nrg_l[k]
                counts.set_override(c, g, _INF if nrg is None else nrg, cur, r)

    positions = t.get_column("pos")
    runs = pl.DataFrame(
        run_rows,
        schema={"j": pl.UInt32, **{k: v for k, v in RUNS_SCHEMA.items() if k != "pos"}},
        orient="row",
    )
    runs = runs.with_columns(positions.gather(runs.get_column("j")).alias("pos")).drop("j")
    actions = pl.DataFrame(
        action_rows,
        # Reconciliation fills reconciled_pos later, in replay.reconcile.
        schema={"j": pl.UInt32, **{k: v for k, v in ACTIONS_SCHEMA.items()
                                   if k not in ("pos", "reconciled_pos")}},
        orient="row",
    )
    actions = actions.with_columns(positions.gather(actions.get_column("j")).alias("pos")).drop("j")
    return runs, actions
