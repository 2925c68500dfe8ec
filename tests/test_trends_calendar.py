"""Trends over calendar periods (seed 004's 7-day moving average and period-over-period change): on
intermittent use, empty days are points of their own and the average spans 7 calendar days."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.trends import query_trends
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

NOW = datetime(2026, 11, 30)



@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.duckdb")
    b = Batch()
    # $7 eleven days before the $14 day, nothing in between
    for i, (day, cost) in enumerate(((NOW - timedelta(days=13), 7.0), (NOW - timedelta(days=2), 14.0))):
        b.add("api_requests", {"request_id": f"r{i}", "session_id": "s1", "model": "claude-sonnet-4-5",
                               "timestamp": day + timedelta(hours=10), "input_tokens": 100, "output_tokens": 10,
                               "recorded_cost_usd": cost})
    s.write(b)
    yield s
    s.close()


def test_empty_days_are_points_and_averages_span_calendar_days(store):
    tr = query_trends(store, now=NOW, days=14)
    days = [p.period for p in tr.points]
    assert days == [str((NOW - timedelta(days=14 - k)).date()) for k in range(14)]
    by_day = {p.period: p for p in tr.points}
    busy = by_day[str((NOW - timedelta(days=2)).date())]
    assert busy.cost_usd == pytest.approx(14.0)
    # the window of 7 calendar days ending on the busy day holds only its $14: 14 / 7, not (7 + 14) / 2
    assert busy.cost_ma7 == pytest.approx(2.0)
    # the day before was empty ($0): no ratio to give
    assert busy.cost_change is None
    quiet = by_day[str((NOW - timedelta(days=5)).date())]
    assert quiet.requests == 0 and quiet.cost_usd == 0 and quiet.error_rate is None
    first = by_day[str((NOW - timedelta(days=13)).date())]
    assert first.cost_ma7 == pytest.approx(1.0)


def test_weeks_are_calendar_weeks(store):
    tr = query_trends(store, period="week", now=NOW, days=28)
    assert all(datetime.fromisoformat(p.period).weekday() == 0 for p in tr.points)
    assert sum(p.cost_usd for p in tr.points) == pytest.approx(21.0)
