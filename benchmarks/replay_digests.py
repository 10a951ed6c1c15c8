"""Digests of the four replay tables, to check that a change to the replay keeps them identical.

    PYTHONPATH=$TREE nice .venv/bin/python $TREE/benchmarks/replay_digests.py [CLOSES] > $TREE.txt
    diff base.txt new.txt

For the synthetic closes of bench_replay.py (default 30,000) and several workflow sets (the
template on both engines, once-per-contact, assignee_id and conversation.opened conditions,
no workflow, round robin), three contact-scoped replays over a full one and a windowed
(what-if) replay, prints per table: its row count and sha256 prefixes of its column types,
of its rows (ORDER BY ALL) and of its rows in physical order. Run it once per checkout, each
first on PYTHONPATH (the venv's editable install otherwise imports this worktree's closeconv),
and diff the outputs.
"""

import hashlib
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb

import closeconv
from closeconv.workflows import load_workflows, replay_workflows

sys.path.insert(0, str(Path(closeconv.__file__).parents[1] / "benchmarks"))
from bench_replay import build_events  # noqa: E402  (the checkout's own benchmark data)

TEMPLATE = Path(closeconv.__file__).parents[1] / "workflows" / "unassign-after-close.yaml"
ONCE = """id: once-billing
name: once
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: all, rules: [{field: category, operator: is_equal_to, value: billing}]}
settings: {trigger_once_per_contact: true}
steps: [{id: un1, type: assign_to, action: unassign}]
"""
ASG = """id: asg-cond
name: asg
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: any, rules: [{field: assignee_id, operator: is_one_of, value: [u1, U2]}, {field: source, operator: is_equal_to, value: api}]}
settings: {trigger_once_per_contact: false}
steps: [{id: un2, type: assign_to, action: unassign}]
"""
OPENED = """id: a-opened
name: opened
enabled: true
trigger:
  type: conversation.opened
  conditions: {match: all, rules: [{field: assignee_id, operator: is_present}]}
settings: {trigger_once_per_contact: false}
steps: [{id: un3, type: assign_to, action: unassign}]
"""
RR = """id: rr
name: rr
enabled: true
trigger:
  type: conversation.opened
  conditions: {match: all, rules: [{field: assignee_id, operator: is_not_present}]}
settings: {trigger_once_per_contact: false}
steps: [{id: assign, type: assign_to, action: round_robin, team_id: t1}]
"""
ONCE_NOCOND = """id: zz-once
name: once2
enabled: true
trigger:
  type: conversation.closed
  conditions: {match: all, rules: []}
settings: {trigger_once_per_contact: true}
steps: [{id: un4, type: assign_to, action: unassign}]
"""
SETS = {
    "template": [TEMPLATE.read_text()],
    "template+once": [TEMPLATE.read_text(), ONCE],
    "template+asg": [TEMPLATE.read_text(), ASG],
    "template+opened": [TEMPLATE.read_text(), OPENED],
    "opened+asg+once2": [OPENED, ASG, ONCE_NOCOND],
    "none": [],
    "template+rr": [TEMPLATE.read_text(), RR],
}

def wfs(texts):
    d = tempfile.mkdtemp()
    for i, t in enumerate(texts):
        Path(d, f"w{i}.yaml").write_text(t)
    return load_workflows(Path(d))


TABLES = ("workflow_runs", "workflow_actions", "assignments", "workflow_drift")


def digest(con, label):
    for t in TABLES:
        types = con.sql(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{t}' ORDER BY ordinal_position").fetchall()
        phys = con.sql(f"SELECT * FROM {t}").fetchall()
        srt = con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        print(f"{label:32s} {t:17s} n={len(phys):7d} types={_sha(types)} rows={_sha(srt)} order={_sha(phys)}")


def _sha(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def main() -> None:
    print("closeconv from", closeconv.__file__, file=sys.stderr)
    closes = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
    con = duckdb.connect()
    con.sql("SET TimeZone='UTC'")
    build_events(con, closes)
    for name, texts in SETS.items():
        engines = ["auto", "sequential"] if name in ("template", "template+once") else ["auto"]
        for eng in engines:
            st = replay_workflows(con, wfs(texts), engine=eng)
            digest(con, f"{name}/{eng}/{st.engine}")
    # contact-scoped: full replay of one set, then a scoped replay of another set over some contacts
    scope = "contact_id IN (SELECT 'c' || i FROM range(0, 20000, 7) r(i))"
    for full, part in (("template", "template+once"), ("template+opened", "opened+asg+once2"), ("none", "template+asg")):
        replay_workflows(con, wfs(SETS[full]))
        replay_workflows(con, wfs(SETS[part]), contacts=scope)
        digest(con, f"scoped {full}->{part}")
    # windowed (what-if style)
    day = datetime(2026, 1, 2, tzinfo=timezone.utc)
    replay_workflows(con, wfs(SETS["template+opened"]), triggers_from=day, triggers_to=day.replace(day=3))
    digest(con, "windowed template+opened")


if __name__ == "__main__":
    main()
