"""Seed 004's hour-of-day / day-of-week patterns and recovery time: planted effects are found, a
control history shows none."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.error_patterns import query_error_patterns
from golem_mcp.analysis.time_patterns import time_patterns
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

NOW = datetime(2026, 11, 30)



def _history(store: Store, spike_hour: int | None) -> None:
    """14 days, every hour: 2 requests and 3 Bash calls; 5 % of calls fail at random, 2 in 3 at spike_hour."""
    rng = random.Random(7)
    b = Batch()
    n = 0
    for d in range(14):
        for h in range(24):
            t0 = NOW - timedelta(days=14 - d) + timedelta(hours=h, minutes=5)
            for k in range(2):
                n += 1
                b.add("api_requests", {"request_id": f"r{n}", "session_id": f"s{d}", "model": "claude-sonnet-4-5",
                                       "timestamp": t0 + timedelta(seconds=k), "input_tokens": 1000,
                                       "output_tokens": 100, "recorded_cost_usd": 0.01})
            for k in range(3):
                n += 1
                fail = (h == spike_hour and k < 2) or rng.random() < 0.05
                b.add("tool_calls", {"tool_use_id": f"tu{n}", "session_id": f"s{d}", "tool_name": "Bash",
                                     "timestamp": t0 + timedelta(seconds=10 + k), "success": not fail,
                                     "error": "Exit code 1" if fail else None})
    store.write(b)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "p.duckdb")
    yield s
    s.close()


def test_an_hour_of_day_spike_is_found(store):
    _history(store, spike_hour=14)
    rep = time_patterns(store, now=NOW, days=14)
    assert [(s.kind, s.slot, s.metric) for s in rep.spikes] == [("hour", "14", "error_rate")]
    assert len(rep.hours) == 24 and len(rep.weekdays) == 7
    assert next(h for h in rep.hours if h.slot == "14").error_rate > 0.4   # 2 of 3 calls, 0 of 2 requests
    # the same history seen from UTC+2: the spike is at 16:00 local time
    shifted = time_patterns(store, now=NOW, days=14, utc_offset_hours=2)
    assert [s.slot for s in shifted.spikes] == ["16"]


def test_a_control_history_has_no_spikes(store):
    _history(store, spike_hour=None)
    rep = time_patterns(store, now=NOW, days=14)
    assert rep.spikes == [] and rep.note is None


def test_recovery_time_per_stage(store):
    b = Batch()
    b.add("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "implementer"})
    t = NOW - timedelta(days=1)
    # main: recovers in 30 s and 90 s; implementer: in 2 s
    calls = [(None, 0, False), (None, 30, True), (None, 100, False), (None, 190, True),
             ("a1", 0, False), ("a1", 2, True)]
    for i, (agent, sec, ok) in enumerate(calls):
        b.add("tool_calls", {"tool_use_id": f"t{i}", "session_id": "s1", "agent_id": agent, "tool_name": "Bash",
                             "timestamp": t + timedelta(seconds=sec), "success": ok,
                             "error": None if ok else "Exit code 1"})
    store.write(b)
    by = {s.stage: s for s in query_error_patterns(store, now=NOW).by_stage}
    assert by["main"].recovery_p50_s == pytest.approx(60.0) and by["main"].recovery_p95_s == pytest.approx(87.0)
    assert by["implementer"].recovery_p50_s == pytest.approx(2.0)
