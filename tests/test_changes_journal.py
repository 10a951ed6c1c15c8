"""The change journal between pipeline steps (closeconv/changes.py), on a real DuckDB file."""

import duckdb
import pytest

from closeconv import changes


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "staging.duckdb"))
    yield c
    c.close()


def test_a_step_with_missing_outputs_recomputes_everything(con):
    scope = changes.scope_of(con, changes.CONVERSATIONS, outputs=["conversations"])
    assert scope.everything and scope.where() == "true"


def test_contacts_accumulate_until_the_step_clears_them(con):
    con.sql("CREATE TABLE conversations (contact_id VARCHAR)")
    changes.mark_contacts(con, [changes.WORKFLOWS, changes.CONVERSATIONS], "SELECT unnest(['a', 'b']) AS contact_id")
    changes.mark_contacts(con, [changes.CONVERSATIONS], "SELECT unnest(['b', 'c', NULL]) AS contact_id")
    scope = changes.scope_of(con, changes.CONVERSATIONS, outputs=["conversations"])
    assert not scope.everything and scope.contacts == 3
    assert sorted(r[0] for r in con.sql(f"SELECT contact_id FROM {scope.table}").fetchall()) == ["a", "b", "c"]
    assert con.sql(f"SELECT count(*) FROM (SELECT 'a' AS contact_id) WHERE {scope.where()}").fetchall()[0][0] == 1
    changes.clear(con, changes.CONVERSATIONS)
    assert changes.scope_of(con, changes.CONVERSATIONS, outputs=["conversations"]).nothing
    # the other step's scope is untouched
    assert changes.scope_of(con, changes.WORKFLOWS).contacts == 2


def test_everything_wins_over_contacts_until_cleared(con):
    changes.mark_contacts(con, [changes.PUBLISH], "SELECT 'a' AS contact_id")
    changes.mark_everything(con, [changes.PUBLISH])
    changes.mark_contacts(con, [changes.PUBLISH], "SELECT 'b' AS contact_id")
    assert changes.scope_of(con, changes.PUBLISH).everything
    changes.clear(con, changes.PUBLISH)
    assert changes.scope_of(con, changes.PUBLISH).nothing


def test_events_step_journals_event_ids_too(con):
    changes.mark_contacts(con, [changes.EVENTS],
                          "SELECT * FROM (VALUES ('a', 'e1'), (NULL, 'e2')) t(contact_id, event_id)")
    ids = sorted(r[0] for r in con.sql(changes.changed_event_ids(con, changes.EVENTS)).fetchall())
    assert ids == ["e1", "e2"]
    assert changes.scope_of(con, changes.EVENTS).contacts == 1


def test_settings_fingerprint(con):
    assert changes.settings_changed(con, changes.CONVERSATIONS, "tz=UTC")
    changes.record_settings(con, changes.CONVERSATIONS, "tz=UTC")
    assert not changes.settings_changed(con, changes.CONVERSATIONS, "tz=UTC")
    assert changes.settings_changed(con, changes.CONVERSATIONS, "tz=Europe/Paris")


def test_unknown_step_is_an_error(con):
    with pytest.raises(ValueError, match="unknown pipeline step"):
        changes.mark_everything(con, ["metrics"])
