"""The dashboard's filter parsing, presets and periods (DST-correct), and the display formats.

Pure functions: no warehouse needed. The queries under these filters are tested on a real
warehouse in test_reports_queries.py.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeconv.reports.filters import (
    MULTI_PARAMS,
    PRESETS,
    Filters,
    parse_query_params,
    previous_period,
    resolve_period,
    to_query_params,
)
from closeconv.reports.format import format_count, format_duration, format_percent, source_label

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


# --- parsing --------------------------------------------------------------------------------

def test_parse_reads_every_parameter_and_repeats():
    f, notices = parse_query_params({
        "from": "2026-03-02", "to": ["2026-03-08"], "category": ["Billing", "Sales", "Billing"],
        "closed_by_source": "user", "closed_by_user": ["u1"], "team": ["t1", "t2"], "assignee": ["u2"],
        "channel": ["ch1"], "opened_source": ["contact"], "q": " c_000001 ",
    })
    assert notices == []
    assert f == Filters(date_from=date(2026, 3, 2), date_to=date(2026, 3, 8), category=("Billing", "Sales"),
                        closed_by_source=("user",), closed_by_user=("u1",), team=("t1", "t2"), assignee=("u2",),
                        channel=("ch1",), opened_source=("contact",), q="c_000001")


def test_from_and_to_win_over_preset_with_a_notice():
    f, notices = parse_query_params({"preset": "last_7_days", "from": "2026-03-01"})
    assert f.preset is None and f.date_from == date(2026, 3, 1)
    assert any("preset" in n for n in notices)


def test_malformed_values_give_notices_not_errors():
    f, notices = parse_query_params({"from": "2026-13-45", "to": "yesterday", "preset": "last_year",
                                     "frt_bucket": "3-5 days", "nonsense": "1"})
    assert f.date_from is None and f.date_to is None and f.preset is None
    joined = " ".join(notices)
    for word in ("from", "to", "preset", "frt_bucket", "nonsense"):
        assert word in joined
    assert f.frt_bucket == ("3-5 days",)  # kept: it matches nothing rather than everything


def test_from_after_to_is_swapped_with_a_notice():
    f, notices = parse_query_params({"from": "2026-03-09", "to": "2026-03-02"})
    assert (f.date_from, f.date_to) == (date(2026, 3, 2), date(2026, 3, 9))
    assert notices


def test_app_parameters_are_left_alone():
    f, notices = parse_query_params({"conversation": "cv_1", "page": "2", "preset": "today"})
    assert notices == [] and f.preset == "today"


def test_frt_bucket_with_a_plain_hyphen_means_the_en_dash_label():
    f, notices = parse_query_params({"frt_bucket": ["30s-2m", "2-5M", ">1h"]})
    assert f.frt_bucket == ("30s–2m", "2–5m", ">1h") and notices == []


def test_hostile_values_are_kept_as_plain_values():
    long = "x" * 3000
    f, _ = parse_query_params({"category": ["' OR 1=1 --", "%", long], "q": "'; DROP TABLE conversations; --"})
    assert f.category == ("' OR 1=1 --", "%", long)
    assert f.q == "'; DROP TABLE conversations; --"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=50), st.lists(st.text(max_size=50), max_size=5)),
                       max_size=8))
def test_parse_never_raises(params):
    f, notices = parse_query_params(params)
    assert isinstance(f, Filters) and isinstance(notices, list)


def test_parse_survives_a_broken_mapping():
    class Broken(dict):
        def get(self, *_):
            raise RuntimeError("boom")

    f, notices = parse_query_params(Broken(a=1))
    assert f == Filters() and notices


def test_to_query_params_round_trips():
    f = Filters(date_from=date(2026, 3, 2), date_to=date(2026, 3, 8), category=("Billing", "Sales"),
                closed_by_source=("user",), team=("t1",), q="c1", frt_bucket=("2–5m",))
    params = to_query_params(f)
    assert params["category"] == ["Billing", "Sales"] and params["from"] == ["2026-03-02"]
    assert "preset" not in params and "assignee" not in params
    assert parse_query_params(params) == (f, [])
    assert parse_query_params(to_query_params(Filters(preset="last_month")))[0] == Filters(preset="last_month")
    assert set(MULTI_PARAMS) <= {fl for fl in Filters.__dataclass_fields__}


# --- presets and periods --------------------------------------------------------------------

@pytest.mark.parametrize("preset,today,first,last", [
    ("today", date(2026, 3, 8), date(2026, 3, 8), date(2026, 3, 8)),
    ("yesterday", date(2026, 3, 8), date(2026, 3, 7), date(2026, 3, 7)),
    ("last_7_days", date(2026, 3, 8), date(2026, 3, 2), date(2026, 3, 8)),
    ("last_14_days", date(2026, 3, 8), date(2026, 2, 23), date(2026, 3, 8)),
    ("last_30_days", date(2026, 3, 8), date(2026, 2, 7), date(2026, 3, 8)),
    ("this_month", date(2026, 3, 8), date(2026, 3, 1), date(2026, 3, 8)),
    ("last_month", date(2026, 3, 8), date(2026, 2, 1), date(2026, 2, 28)),
    ("last_month", date(2026, 1, 15), date(2025, 12, 1), date(2025, 12, 31)),
])
def test_presets_are_the_local_days_respond_io_means(preset, today, first, last):
    p = resolve_period(Filters(preset=preset), NY, today)
    assert (p.first_day, p.last_day) == (first, last)
    assert set(PRESETS) >= {preset}


def test_a_day_runs_local_midnight_to_local_midnight_across_dst():
    # DST began in New York on 2026-03-08 at 02:00 local: that day has 23 hours.
    p = resolve_period(Filters(preset="today"), NY, date(2026, 3, 8))
    assert p.start_utc == utc("2026-03-08T05:00:00") and p.end_utc_exclusive == utc("2026-03-09T04:00:00")
    before = resolve_period(Filters(preset="yesterday"), NY, date(2026, 3, 8))
    assert before.start_utc == utc("2026-03-07T05:00:00") and before.end_utc_exclusive == utc("2026-03-08T05:00:00")
    # Berlin's autumn change (2026-10-25): a 25-hour day.
    autumn = resolve_period(Filters(date_from=date(2026, 10, 25), date_to=date(2026, 10, 25)), BERLIN, date(2026, 11, 1))
    assert (autumn.end_utc_exclusive - autumn.start_utc).total_seconds() == 25 * 3600
    # A12: 04:30Z on 03-08 is still 03-07 in New York; 03:30Z on 03-09 is 03-08.
    assert before.start_utc <= utc("2026-03-08T04:30:00") < before.end_utc_exclusive
    assert p.start_utc <= utc("2026-03-09T03:30:00") < p.end_utc_exclusive


def test_from_to_and_open_ended_periods():
    assert resolve_period(Filters(), NY, date(2026, 3, 8)) is None
    only_from = resolve_period(Filters(date_from=date(2026, 3, 8)), NY, date(2026, 3, 9))
    assert only_from.start_utc == utc("2026-03-08T05:00:00") and only_from.end_utc_exclusive is None
    assert previous_period(only_from, NY) is None
    only_to = resolve_period(Filters(date_to=date(2026, 3, 7)), NY, date(2026, 3, 9))
    assert only_to.start_utc is None and only_to.end_utc_exclusive == utc("2026-03-08T05:00:00")


def test_previous_period_has_the_same_number_of_days_just_before():
    p = resolve_period(Filters(date_from=date(2026, 3, 8), date_to=date(2026, 3, 14)), NY, date(2026, 3, 20))
    prev = previous_period(p, NY)
    assert (prev.first_day, prev.last_day) == (date(2026, 3, 1), date(2026, 3, 7))
    assert prev.end_utc_exclusive == p.start_utc
    month = previous_period(resolve_period(Filters(preset="last_month"), NY, date(2026, 3, 8)), NY)
    assert (month.first_day, month.last_day) == (date(2026, 1, 4), date(2026, 1, 31))


# --- formats --------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds,shown", [
    (None, "—"), (float("nan"), "—"), (0, "0s"), (0.4, "0s"), (45, "45s"), (45.9, "45s"), (59.99, "59s"),
    (60, "1m 00s"), (250, "4m 10s"), (305, "5m 05s"), (3599, "59m 59s"), (3600, "1h 00m"),
    (7380, "2h 03m"), (86399, "23h 59m"), (86400, "1d 0h"), (3 * 86400 + 4 * 3600 + 59, "3d 4h"), (-45, "-45s"),
])
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_format_count_percent_and_sources():
    assert format_count(1234) == "1,234" and format_count(0) == "0" and format_count(None) == "—"
    assert format_percent(87.54) == "87.5%" and format_percent(None) == "—"
    assert source_label("auto_close") == "Auto-close" and source_label("api") == "API"
    assert source_label("new_thing") == "New thing" and source_label(None) == "—"
