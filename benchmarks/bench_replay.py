"""Benchmark: replay of the shipped "unassign after close" template over N synthetic closes.

    uv run python benchmarks/bench_replay.py                 # 1,000,000 closes
    uv run python benchmarks/bench_replay.py --closes 200000 --sequential

Builds an in-memory DuckDB ``events`` table (N/3 contacts with 3 conversations each: an
incoming message opens, a close by a user / workflow / api / auto_close ends it; a user
assigns someone before half of the conversations; the platform records a workflow
unassignment a few seconds after 30 % of the user closes), then times:

* ``replay_workflows`` (vectorized engine; all four output tables written), and optionally
  the sequential engine on the same data;
* a naive baseline: fetch the events in order and walk them one by one in Python, keeping
  the assignee per contact, evaluating the condition per close and building the runs,
  actions and assignment rows, then writing them (no reconciliation, no drift).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import duckdb
import polars as pl

from closeconv.contract import EVENT_KIND_RANK_SQL
from closeconv.workflows import load_workflows, replay_workflows

ROOT = Path(__file__).resolve().parents[1]


def build_events(con: duckdb.DuckDBPyConnection, closes: int) -> None:
    contacts = max(1, closes // 3)
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _conv AS
        SELECT i, 'c' || (i % {contacts}) AS contact_id, i // {contacts} AS k,
               TIMESTAMPTZ '2026-01-01 00:00:00+00'
                 + to_seconds((i // {contacts}) * 86400 + (hash(i) % 80000)) AS t0,
               hash(i * 7 + 1) % 100 AS r1, hash(i * 13 + 5) % 100 AS r2, hash(i * 31 + 9) % 5 AS agent
        FROM range({closes}) r(i)
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE _ev AS
        SELECT 'a' || i AS event_id, 'contact.assignee.updated' AS event_type, t0 - INTERVAL 60 SECOND AS occurred_at,
               contact_id, CAST(NULL AS VARCHAR) AS conversation_id, 'ch1' AS channel_id, 'user' AS source,
               'admin' AS user_id, 't1' AS team_id, 'u' || agent AS assignee_id,
               CAST(NULL AS VARCHAR) AS category, CAST(NULL AS VARCHAR) AS summary
        FROM _conv WHERE r1 < 50
        UNION ALL
        SELECT 'r' || i, 'message.received', t0, contact_id, 'conv' || i, 'ch1', 'contact', NULL, NULL, NULL, NULL, NULL
        FROM _conv
        UNION ALL
        SELECT 'x' || i, 'conversation.closed', t0 + to_seconds(600 + r2 * 30), contact_id, 'conv' || i, 'ch1',
               CASE WHEN r2 < 70 THEN 'user' WHEN r2 < 80 THEN 'workflow' WHEN r2 < 90 THEN 'api' ELSE 'auto_close' END,
               CASE WHEN r2 < 70 THEN 'u' || agent END, CASE WHEN r2 < 70 THEN 't1' END, NULL,
               CASE WHEN r2 % 3 = 0 THEN 'Billing' ELSE 'Sales' END, 'done'
        FROM _conv
        UNION ALL
        SELECT 'w' || i, 'contact.assignee.updated', t0 + to_seconds(600 + r2 * 30 + 3), contact_id, NULL, 'ch1',
               'workflow', NULL, NULL, NULL, NULL, NULL
        FROM _conv WHERE r2 < 70 AND r1 % 10 < 3
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE events AS
        SELECT *, row_number() OVER (PARTITION BY contact_id ORDER BY occurred_at, {EVENT_KIND_RANK_SQL}, event_id)
                  AS event_order,
               'bench' AS source_file, 0::BIGINT AS source_line
        FROM _ev
        """
    )
    con.sql("DROP TABLE _ev")
    con.sql("DROP TABLE _conv")


def naive_baseline(con: duckdb.DuckDBPyConnection, workflow) -> tuple[float, float, int]:
    """The approach the vectorized replay replaces: walk every event in Python.

    Keeps the assignee per contact, evaluates the template's condition per close, builds the
    run, action and assignment rows (ids hashed in Python), then writes the three tables.
    No reconciliation and no drift (so it does less than the replay).
    Returns (seconds for the loop alone, seconds including writing, number of actions).
    """
    started = time.perf_counter()
    version = workflow.version
    cur = con.execute(
        "SELECT event_id, event_type, occurred_at, contact_id, conversation_id, lower(source), assignee_id "
        "FROM events WHERE event_type IN ('conversation.closed', 'contact.assignee.updated') "
        f"ORDER BY occurred_at, {EVENT_KIND_RANK_SQL}, event_id"  # the global order (event_order is per contact)
    )
    assignee: dict[str, str | None] = {}
    runs, actions, timeline = [], [], []
    while True:
        batch = cur.fetchmany(100_000)
        if not batch:
            break
        for event_id, etype, at, contact, conv, source, new in batch:
            if etype == "contact.assignee.updated":
                assignee[contact] = new or None
                timeline.append((contact, new or None, at, "event"))
            elif source == "user":
                run_id = hashlib.md5(f"{workflow.id}|{version}|{event_id}".encode()).hexdigest()[:20]
                current = assignee.get(contact)
                if current is None:
                    runs.append((run_id, event_id, contact, conv, at, "skipped", "contact has no assignee"))
                else:
                    runs.append((run_id, event_id, contact, conv, at, "completed", None))
                    action_id = hashlib.md5(f"{run_id}|unassign".encode()).hexdigest()[:20]
                    actions.append((action_id, run_id, contact, current, at))
                    timeline.append((contact, None, at, "workflow"))
                    assignee[contact] = None
    loop_s = time.perf_counter() - started
    frames = {
        "naive_runs": pl.DataFrame(runs, schema=["run_id", "trigger_event_id", "contact_id", "conversation_id",
                                                 "triggered_at", "outcome", "skip_reason"], orient="row"),
        "naive_actions": pl.DataFrame(actions, schema=["action_id", "run_id", "contact_id", "from_assignee_id",
                                                       "effective_at"], orient="row"),
        "naive_assignments": pl.DataFrame(timeline, schema=["contact_id", "assignee_id", "valid_from", "cause"],
                                          orient="row"),
    }
    for name, frame in frames.items():
        con.register("_naive", frame.to_arrow())
        con.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _naive")
        con.unregister("_naive")
    return loop_s, time.perf_counter() - started, len(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--closes", type=int, default=1_000_000)
    parser.add_argument("--sequential", action="store_true", help="also time the sequential engine")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    con = duckdb.connect()
    con.sql("SET TimeZone='UTC'")
    t = time.perf_counter()
    build_events(con, args.closes)
    n_events = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    print(f"built {n_events:,} events ({args.closes:,} closes) in {time.perf_counter() - t:.1f}s")

    workflows = load_workflows(ROOT / "workflows")
    # Timed around the call, so the figure covers everything the replay does: reading the
    # events, the engine and creating the four tables. CPU seconds (all threads of this
    # process) are printed too: on a shared machine they vary less than wall time.
    wall, cpu = time.perf_counter(), time.process_time()
    stats = replay_workflows(con, workflows)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"replay ({stats.engine}): {wall:.2f}s (cpu {cpu:.2f}s)  runs={stats.runs:,} actions={stats.actions:,} "
        f"skipped={stats.skipped:,} reconciled={stats.reconciled:,} drift={stats.drift:,}"
    )
    print(f"  = {args.closes / wall:,.0f} closes/s")
    if args.sequential:
        seq = replay_workflows(con, workflows, engine="sequential")
        print(f"replay (sequential): {seq.seconds:.2f}s  actions={seq.actions:,}")
    if not args.no_baseline:
        loop_s, total_s, actions = naive_baseline(con, workflows[0])
        print(f"naive per-event Python loop: {total_s:.2f}s ({loop_s:.2f}s walking the events, "
              f"the rest writing 3 tables)  actions={actions:,}")
        assert actions == stats.actions, "the baseline and the replay disagree"
        print(f"speed-up vs the naive loop: {total_s / wall:.1f}x (vs its loop alone: {loop_s / wall:.1f}x)")


if __name__ == "__main__":
    main()
