"""Every dashboard page under Streamlit's AppTest on a warehouse built by the real pipeline,
each with one interaction that changes a count (checked against SQL on the same file)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from dashboard_support import DASHBOARD_ENV, REPO, build_warehouse, closed_count, local_day, local_today, scalar

APP = str(REPO / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("dash-app"))


@pytest.fixture
def app(warehouse, monkeypatch):
    for name in DASHBOARD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOSECONV_WAREHOUSE", str(warehouse))

    def make(page: str | None = None, **params) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        for name, value in params.items():
            at.query_params[name] = value
        if page:
            at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
        return at
    return make


def match_count(at: AppTest) -> str:
    lines = [m.value for m in at.markdown if m.value.endswith(" conversations") or m.value.endswith(" users")]
    assert len(lines) == 1, [m.value for m in at.markdown]
    return lines[0].lstrip("# ")


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_conversation_list_url_filters_and_a_filter_change(app, warehouse):
    billing = closed_count(warehouse, "category = 'Billing'")
    assert 0 < billing < closed_count(warehouse)
    at = app(category=["Billing"])
    assert match_count(at) == f"{billing:,} conversations"
    table = at.dataframe[0].value
    assert len(table) == min(25, billing)
    assert set(table["category"]) == {"Billing"}
    newest = scalar(warehouse, "SELECT conversation_id FROM conversations WHERE status = 'closed' AND category = 'Billing' "
                               "ORDER BY closed_at DESC, conversation_id DESC LIMIT 1")
    assert table["conversation_id"][0] == newest

    at.multiselect(key="category").set_value(["Billing", "Sales"]).run()
    both = closed_count(warehouse, "category IN ('Billing', 'Sales')")
    assert match_count(at) == f"{both:,} conversations"


def test_conversation_list_hostile_and_unknown_values_give_empty_results(app):
    at = app(category=["No such category"], q="' OR 1=1 --" + "x" * 3000)
    assert match_count(at) == "0 conversations"
    assert any("No closed conversation matches" in i.value for i in at.info)
    at = app(**{"from": "not-a-day"})
    assert any("not a day" in w.value for w in at.warning)


def test_conversation_drilldown_from_the_url(app, warehouse):
    conversation = scalar(warehouse, "SELECT conversation_id FROM conversations WHERE status = 'closed' "
                                     "AND first_response_time_s IS NOT NULL ORDER BY closed_at LIMIT 1")
    at = app(conversation=conversation)
    texts = " ".join(e.value for e in [*at.subheader, *at.markdown, *at.info])
    assert conversation in texts
    assert "the clock starts" in texts or "clock started" in texts
    assert len(at.dataframe) >= 2  # the list and the timeline


def test_reports_kpis_follow_a_filter(app, warehouse):
    at = app("views/reports.py")
    assert metric(at, "Closed") == f"{closed_count(warehouse):,}"
    labels = {m.label for m in at.metric}
    assert {"Opened", "FRT · median", "FRT · p90", "Resolution · average", "Answered", "Reopened < 24 h"} <= labels
    at.multiselect(key="closed_by_source").set_value(["user"]).run()
    user_closed = closed_count(warehouse, "closed_by_source = 'user'")
    assert metric(at, "Closed") == f"{user_closed:,}"


def test_reports_with_nothing_closed_read_dash_not_zero(app):
    at = app("views/reports.py", category=["No such category"])
    assert metric(at, "Closed") == "0"
    assert metric(at, "FRT · average") == "—"
    assert metric(at, "Resolution · median") == "—"


def test_users_report_follows_the_period(app, warehouse):
    at = app("views/users.py")
    users = at.dataframe[0].value
    by_user = closed_count(warehouse, "closed_by_user_id IS NOT NULL")
    assert users["closed_conversations"].sum() == by_user
    week_start = date.today() - timedelta(days=6)
    at.date_input(key="from").set_value(week_start).run()
    recent = closed_count(warehouse, f"closed_by_user_id IS NOT NULL AND {local_day('closed_at')} >= ?", [week_start])
    assert 0 < recent < by_user
    assert at.dataframe[0].value["closed_conversations"].sum() == recent


def test_workflows_page_counts_runs_in_the_period(app, warehouse):
    at = app("views/workflows.py")
    runs = scalar(warehouse, "SELECT count(*) FROM workflow_runs")
    assert runs > 0
    assert f"{runs:,} workflow runs" in " ".join(m.value for m in at.markdown)
    at.selectbox(key="workflows_period").set_value("yesterday").run()
    yesterday = local_today() - timedelta(days=1)  # the preset's day, in the warehouse's timezone
    in_day = scalar(warehouse, f"SELECT count(*) FROM workflow_runs WHERE {local_day('triggered_at')} = ?", [yesterday])
    text = " ".join(m.value for m in at.markdown) + " ".join(i.value for i in at.info)
    assert (f"{in_day:,} workflow runs" in text) if in_day else ("No workflow ran" in text)


def test_health_page_shows_the_last_run_and_rejections(app, warehouse):
    at = app("views/health.py")
    rejected = scalar(warehouse, "SELECT count(*) FROM rejected_events")
    assert metric(at, "Rejected") == f"{rejected:,}"
    assert rejected > 0
    assert len(at.expander) == scalar(warehouse, "SELECT count(DISTINCT reason_code) FROM rejected_events")


def test_missing_warehouse_says_how_to_build_one(app, monkeypatch, tmp_path):
    monkeypatch.setenv("CLOSECONV_WAREHOUSE", str(tmp_path / "nothing.duckdb"))
    for page in (None, "views/reports.py", "views/users.py", "views/workflows.py", "views/health.py"):
        at = app(page)
        text = " ".join(i.value for i in at.info)
        assert "There is no warehouse" in text and "closeconv run" in text and "dev.py demo" in text


def test_redact_summaries_hides_them_on_screen_and_in_exports(app, warehouse, monkeypatch, tmp_path):
    import csv

    from dashboard.drilldown import REDACTED
    from dashboard.exports import _write_export

    with_summary = scalar(warehouse, "SELECT conversation_id FROM conversations WHERE status = 'closed' "
                                     "AND summary IS NOT NULL ORDER BY closed_at DESC LIMIT 1")
    summary = scalar(warehouse, "SELECT summary FROM conversations WHERE conversation_id = ?", [with_summary])
    at = app(conversation=with_summary)
    assert summary in " ".join(m.value for m in at.markdown)  # shown by default
    monkeypatch.setenv("CLOSECONV_DASHBOARD_REDACT", "1")
    at = app(conversation=with_summary)
    table = at.dataframe[0].value
    assert "summary" not in table.columns or table["summary"].isna().all()
    text = " ".join(m.value for m in at.markdown)
    assert summary not in text and REDACTED in text
    rows = _write_export("conversations", "", tmp_path / "all.csv")
    exported = list(csv.DictReader(open(tmp_path / "all.csv")))
    assert rows == len(exported) == closed_count(warehouse)
    assert not any(r["summary"] for r in exported)
