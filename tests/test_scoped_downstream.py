"""The workflows and conversations steps recompute only their change-journal scope, exactly.

A staging DuckDB file is built by the real pipeline steps over generated data. Then some
contacts' `events` rows change (as a new file would change them), those contacts are journaled
for the workflows and conversations steps (as the events step journals them), and the two steps
run scoped. A copy of the same file runs the same steps over everything; every output table
must have the same sha256 (all rows, all columns, in a total order).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from closeconv import changes
from closeconv.conversation_tables import CONVERSATION_STEP_TABLES
from closeconv.ingest import stage_landing_files
from closeconv.pipeline import build_conversation_tables, build_events, build_workflow_tables
from closeconv.reference import REFERENCE_TABLES
from closeconv.sample.generator import generate_sample
from closeconv.sample.reference import write_reference
from closeconv.workflows.tables import REPLAY_TABLES

REPO = Path(__file__).resolve().parents[1]
TZ = "Europe/Berlin"
OUTPUTS = (*REPLAY_TABLES, *CONVERSATION_STEP_TABLES, *REFERENCE_TABLES)


def _hashes(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    con.sql("SET TimeZone = 'UTC'")
    out = {}
    for table in OUTPUTS:
        rows = con.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        out[table] = hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()
    return out


def _workflows(folder: Path, sequential: bool) -> Path:
    folder.mkdir()
    shutil.copy(REPO / "workflows" / "templates" / "unassign-after-close.yaml", folder)
    if sequential:  # round robin and least open contacts carry state across contacts
        for name, team in (("round-robin-in-team.yaml", "t_support"), ("least-open-contacts.yaml", "t_tech")):
            text = (REPO / "workflows" / "templates" / name).read_text()
            text = text.replace("enabled: false", "enabled: true").replace("team_id: support", f"team_id: {team}")
            (folder / name).write_text(text)
    return folder


class Project:
    """A staging file built by the real steps, and what each step is given."""

    def __init__(self, root: Path, sequential: bool):
        self.root = root
        self.sequential = sequential
        self.staging = root / "staging.duckdb"
        self.workflows = _workflows(root / "workflows", sequential)
        self.reference = root / "reference"
        write_reference(self.reference)
        generate_sample(root / "landing", 160, seed=11, days=4, files=1, bad_rate=0.0)
        with duckdb.connect(str(self.staging)) as con:
            stage_landing_files(con, root / "landing")
            build_events(con)
            self.run_steps(con)
            assert changes.scope_of(con, changes.CONVERSATIONS).nothing
            changes.clear(con, changes.PUBLISH)  # as the publish step would

    def run_steps(self, con: duckdb.DuckDBPyConnection, tz: str = TZ) -> dict:
        replay = build_workflow_tables(con, self.workflows, self.reference)
        build_conversation_tables(con, tz, self.reference)
        return replay

    def copy(self, name: str) -> Path:
        path = self.root / name
        shutil.copy(self.staging, path)
        return path


def _change_and_compare(project: Project, change_sql: list[str], contacts_sql: str, tz: str = TZ) -> dict:
    """Apply ``change_sql`` to events, journal ``contacts_sql``'s contacts, run the steps scoped
    and over everything on copies of the same file; the outputs must be equal. Returns what the
    scoped run saw: its replay counts and the journal it left for publish."""
    with duckdb.connect(str(project.staging)) as con:
        changed = sorted(r[0] for r in con.sql(contacts_sql).fetchall())
        assert changed, "the test changes no contact"
        for sql in change_sql:
            con.sql(sql)
        changes.mark_contacts(con, [changes.WORKFLOWS, changes.CONVERSATIONS],
                              "SELECT unnest(?::VARCHAR[]) AS contact_id", [changed])
    full_path = project.copy("full.duckdb")
    with duckdb.connect(str(full_path)) as con:
        changes.mark_everything(con, [changes.WORKFLOWS, changes.CONVERSATIONS])
        project.run_steps(con, tz)
        want = _hashes(con)
    with duckdb.connect(str(project.staging)) as con:
        replay = build_workflow_tables(con, project.workflows, project.reference)
        conversations_scope = changes.scope_of(con, changes.CONVERSATIONS, outputs=CONVERSATION_STEP_TABLES)
        build_conversation_tables(con, tz, project.reference)
        got = _hashes(con)
        publish = changes.scope_of(con, changes.PUBLISH)
        publish_contacts = set() if publish.everything else {
            r[0] for r in con.sql(f"SELECT contact_id FROM {publish.table}").fetchall()}
        assert changes.scope_of(con, changes.WORKFLOWS).nothing and changes.scope_of(con, changes.CONVERSATIONS).nothing
    assert {t for t in want if got[t] != want[t]} == set()
    return {"changed": changed, "replay": replay, "conversations_scope": conversations_scope,
            "publish_everything": publish.everything, "publish_contacts": publish_contacts}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[bool, Path]:
    """A staging file per engine (vectorized, sequential), built once; each test works on a copy."""
    return {sequential: Project(tmp_path_factory.mktemp(f"seq{int(sequential)}"), sequential).root
            for sequential in (False, True)}


@pytest.fixture
def project(request, built, tmp_path) -> Project:
    sequential = request.param
    root = tmp_path / "p"
    shutil.copytree(built[sequential], root)
    p = Project.__new__(Project)
    p.root, p.staging, p.workflows, p.reference = root, root / "staging.duckdb", root / "workflows", root / "reference"
    p.sequential = sequential
    return p


# Some contacts with closed conversations, picked by a stable order.
CLOSED_CONTACTS = ("SELECT DISTINCT contact_id FROM conversations WHERE status = 'closed' "
                   "ORDER BY hash(contact_id) LIMIT {n} OFFSET {offset}")


@pytest.mark.parametrize("project", [False, True], ids=["unassign", "round_robin_least_open"], indirect=True)
def test_contacts_whose_conversations_disappear(project):
    gone = CLOSED_CONTACTS.format(n=3, offset=0)
    seen = _change_and_compare(
        project, [f"DELETE FROM events WHERE contact_id IN ({gone})"], gone)
    assert seen["replay"]["replayed_contacts"] == 3
    with duckdb.connect(str(project.staging)) as con:
        assert con.sql("SELECT count(*) FROM conversations WHERE contact_id IN (SELECT unnest(?::VARCHAR[]))",
                       params=[seen["changed"]]).fetchall()[0][0] == 0
    # publish gets the contacts (or everything when round robin moved a quarter of them or more)
    assert (project.sequential and seen["publish_everything"]) or set(seen["changed"]) <= seen["publish_contacts"]


@pytest.mark.parametrize("project", [False, True], ids=["unassign", "round_robin_least_open"], indirect=True)
def test_changed_closes_messages_and_assignee_updates(project):
    contacts = CLOSED_CONTACTS.format(n=6, offset=3)
    seen = _change_and_compare(project, [
        # another closing user and category, a message by another user, an assignee update removed
        f"UPDATE events SET user_id = 'u_mei', category = 'billing' WHERE event_type = 'conversation.closed' "
        f"AND contact_id IN ({contacts})",
        f"UPDATE events SET user_id = 'u_lucas' WHERE event_type = 'message.sent' AND source = 'user' "
        f"AND contact_id IN ({contacts})",
        f"DELETE FROM events WHERE event_type = 'contact.assignee.updated' AND contact_id IN ({contacts})",
    ], contacts)
    assert seen["replay"]["replayed_contacts"] == 6
    if project.sequential:
        # the sequential engine replays everyone; later steps get the contacts whose rows changed
        assert seen["conversations_scope"].contacts >= len(seen["changed"])
    else:
        assert seen["conversations_scope"].contacts == len(seen["changed"])


@pytest.mark.parametrize("project", [False], ids=["unassign"], indirect=True)
def test_a_day_whose_last_conversation_moves_to_another_day(project):
    # A closed conversation alone in its (local close day, category, channel, closed-by) row:
    # all its contact's events move two days later, so that row must disappear.
    with duckdb.connect(str(project.staging)) as con:
        contact, day = con.sql(
            f"""
            SELECT any_value(c.contact_id), d.day FROM daily_conversation_metrics d
            JOIN conversations c ON CAST(timezone('{TZ}', c.closed_at) AS DATE) = d.day
             AND c.category IS NOT DISTINCT FROM d.category AND c.channel_id IS NOT DISTINCT FROM d.channel_id
             AND c.closed_by_source IS NOT DISTINCT FROM d.closed_by_source
            WHERE d.conversations_closed = 1 GROUP BY d.day, d.category, d.channel_id, d.closed_by_source
            ORDER BY d.day DESC LIMIT 1
            """
        ).fetchall()[0]
    seen = _change_and_compare(
        project, [f"UPDATE events SET occurred_at = occurred_at + INTERVAL 2 DAY WHERE contact_id = '{contact}'"],
        f"SELECT '{contact}' AS contact_id")
    assert seen["changed"] == [contact]
    with duckdb.connect(str(project.staging)) as con:
        assert con.sql("SELECT max(day) FROM daily_conversation_metrics").fetchall()[0][0] > day


@pytest.mark.parametrize("project", [True], ids=["round_robin_least_open"], indirect=True)
def test_sequential_replay_marks_the_contacts_a_change_reaches(project):
    # An early conversation of one contact disappears: round robin's turn moves for later opens
    # of other contacts, whose assignments change although their events did not.
    first = "SELECT contact_id FROM conversations ORDER BY opened_at, conversation_id LIMIT 1"
    seen = _change_and_compare(project, [f"DELETE FROM events WHERE contact_id IN ({first})"], first)
    assert seen["conversations_scope"].contacts > 1
    # so many that the conversations step rebuilds everything (a quarter of them or more)
    assert seen["publish_everything"] or seen["publish_contacts"] >= set(seen["changed"])


@pytest.mark.parametrize("project", [False], ids=["unassign"], indirect=True)
def test_timezone_change_recomputes_everything(project):
    one = CLOSED_CONTACTS.format(n=1, offset=9)
    seen = _change_and_compare(project, [], one, tz="America/New_York")
    assert seen["publish_everything"]
    with duckdb.connect(str(project.staging)) as con:
        assert con.sql("SELECT DISTINCT timezone FROM daily_conversation_metrics").fetchall() == [("America/New_York",)]


@pytest.mark.parametrize("project", [False], ids=["unassign"], indirect=True)
def test_changed_workflow_file_replays_everything(project):
    (project.workflows / "unassign-after-close.yaml").write_text(
        (project.workflows / "unassign-after-close.yaml").read_text().replace("enabled: true", "enabled: false"))
    seen = _change_and_compare(project, [], CLOSED_CONTACTS.format(n=1, offset=0))
    assert seen["replay"]["replayed_contacts"] is None and seen["replay"]["workflow_runs"] == 0
    assert seen["publish_everything"]


@pytest.mark.parametrize("project", [False], ids=["unassign"], indirect=True)
def test_a_step_failing_halfway_keeps_its_scope_and_its_tables(project, monkeypatch):
    import closeconv.conversation_tables

    def explode(*args, **kwargs):
        raise RuntimeError("disk full while building user_closes")

    with duckdb.connect(str(project.staging)) as con:
        before = _hashes(con)
        gone = CLOSED_CONTACTS.format(n=2, offset=0)
        changes.mark_contacts(con, [changes.CONVERSATIONS], gone)
        con.sql(f"DELETE FROM events WHERE contact_id IN ({gone})")
        monkeypatch.setattr(closeconv.conversation_tables, "build_user_closes", explode)
        with pytest.raises(RuntimeError, match="disk full"):
            build_conversation_tables(con, TZ, project.reference)
        assert _hashes(con) == before
        assert changes.scope_of(con, changes.CONVERSATIONS).contacts == 2
