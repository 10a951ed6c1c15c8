"""The Users report (spec §8) on a small timeline worked out by hand, through the real pipeline.

All on 2026-03-02 UTC (workspace UTC), with the "Unassign After Conversation Closes" template:

c1 (conv A): assign(u1) 09:00 · recv 09:01 · sent(u1) 09:03 · assign(u2) 09:10 · sent(u2) 09:12 ·
             closed(user, u2) 09:30                → assigned u1, u2; closed by u2; FRT 120 by u1; res 1740
c2 (conv B): recv 10:00 · assign(u1) 10:05 · sent(u1) 10:10 · closed(user, u1) 11:00
                                                    → assigned u1; closed by u1; FRT 600 by u1; res 3600
             (the template unassigns u1 at 11:00)
c2 (conv C): recv 12:00 · sent(u2) 12:01 · closed(user, u2) 12:30
                                                    → nobody assigned; closed by u2; FRT 60 by u2; res 1800
c3 (conv D): recv 13:00 · closed(auto_close) 14:00  → no user figure
c4:          sent(u1) 15:00 with no conversation open (a message still sent by u1)
c4:          sent(u1) 2026-03-03 09:00              (outside a 03-02 period)
u3 is in users.csv and did nothing.

By hand, for the period 2026-03-02:
| user | assigned | closed | unique contacts | messages | FRT avg | FRT median | res avg | res max |
| u1   | 2 (A, B) | 1 (B)  | 1               | 3        | 360     | 360        | 3600    | 3600    |
| u2   | 1 (A)    | 2 (A,C)| 2               | 2        | 60      | 60         | 1770    | 1800    |
| u3   | 0        | 0      | 0               | 0        | —       | —          | —       | —       |
"""

from __future__ import annotations

import csv
from datetime import date

import pytest

from closeconv.reports.access import Warehouse
from closeconv.reports.filters import Filters
from closeconv.reports.users import USER_SORT_COLUMNS, export_users_csv, users_report
from tests.conftest import ClosecovEnv, assign, closed, recv, sent

DAY = Filters(date_from=date(2026, 3, 2), date_to=date(2026, 3, 2))
TODAY = date(2026, 3, 10)
FIGURES = ("assigned_conversations", "closed_conversations", "unique_contacts_closed", "messages_sent",
           "frt_avg_s", "frt_median_s", "resolution_avg_s", "resolution_max_s")


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Warehouse:
    env = ClosecovEnv(tmp_path_factory.mktemp("users"))
    env.use_unassign_template()
    env.write_jsonl("events.jsonl", [
        assign("09:00", "u1", contact="c1"), recv("09:01", contact="c1"), sent("09:03", user="u1", contact="c1"),
        assign("09:10", "u2", contact="c1"), sent("09:12", user="u2", contact="c1"),
        closed("09:30", user="u2", contact="c1"),
        recv("10:00", contact="c2"), assign("10:05", "u1", contact="c2"), sent("10:10", user="u1", contact="c2"),
        closed("11:00", user="u1", contact="c2"),
        recv("12:00", contact="c2"), sent("12:01", user="u2", contact="c2"), closed("12:30", user="u2", contact="c2"),
        recv("13:00", contact="c3"), closed("14:00", source="auto_close", contact="c3"),
        sent("15:00", user="u1", contact="c4"),
        sent("2026-03-03T09:00:00Z", user="u1", contact="c4"),
    ])
    (env.reference / "users.csv").write_text(
        "user_id,name,email,team_id,role\nu1,Ann Lee,,t1,agent\nu2,Bob Stone,,t1,agent\nu3,Cy Idle,,t2,agent\n")
    (env.reference / "teams.csv").write_text("team_id,name\nt1,Support\nt2,Sales\n")
    env.run()
    return Warehouse(env.warehouse_path)


def by_user(frame) -> dict[str, tuple]:
    return {r["user_id"]: tuple(r[c] for c in FIGURES) for r in frame.iter_rows(named=True)}


def test_users_report_matches_the_hand_worked_figures(wh):
    frame = users_report(wh, DAY, TODAY)
    assert by_user(frame) == {
        "u1": (2, 1, 1, 3, 360, 360, 3600, 3600),
        "u2": (1, 2, 2, 2, 60, 60, 1770, 1800),
        "u3": (0, 0, 0, 0, None, None, None, None),
    }
    names = dict(zip(frame["user_id"], frame["name"]))
    assert names == {"u1": "Ann Lee", "u2": "Bob Stone", "u3": "Cy Idle"}
    assert dict(zip(frame["user_id"], frame["team_name"]))["u3"] == "Sales"
    assert frame["user_id"].to_list() == ["u2", "u1", "u3"]  # default: most closed first


def test_messages_sent_follow_the_period_only(wh):
    all_time = by_user(users_report(wh, Filters(), TODAY))
    assert all_time["u1"][3] == 4  # the 03-03 message counts too
    next_day = by_user(users_report(wh, Filters(date_from=date(2026, 3, 3), date_to=date(2026, 3, 3)), TODAY))
    assert next_day["u1"] == (0, 0, 0, 1, None, None, None, None)
    assert next_day["u2"] == (0, 0, 0, 0, None, None, None, None)


def test_other_filters_narrow_the_conversations(wh):
    only_u2 = by_user(users_report(wh, Filters(date_from=date(2026, 3, 2), date_to=date(2026, 3, 2),
                                               closed_by_user=("u2",)), TODAY))
    # conversations A and C: u1 was assigned in A and answered it first (120)
    assert only_u2["u1"] == (1, 0, 0, 3, 120, 120, None, None)
    assert only_u2["u2"] == (1, 2, 2, 2, 60, 60, 1770, 1800)


def test_sorting(wh):
    for column in USER_SORT_COLUMNS:
        frame = users_report(wh, DAY, TODAY, sort=column, descending=False)
        values = [v for v in frame[column].to_list() if v is not None]
        assert values == sorted(values), column
        assert frame[column].to_list()[len(values):] == [None] * (frame.height - len(values))
    assert users_report(wh, DAY, TODAY, sort="frt_avg_s")["user_id"].to_list() == ["u1", "u2", "u3"]
    with pytest.raises(ValueError):
        users_report(wh, DAY, TODAY, sort="name; DROP TABLE users")


def test_users_csv(wh, tmp_path):
    dest = tmp_path / "users.csv"
    assert export_users_csv(wh, DAY, TODAY, dest) == 3
    with open(dest, newline="") as fh:
        rows = {r["user_id"]: r for r in csv.DictReader(fh)}
    assert rows["u1"]["assigned_conversations"] == "2" and float(rows["u2"]["resolution_avg_s"]) == 1770
    assert rows["u3"]["frt_avg_s"] == ""
