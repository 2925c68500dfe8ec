"""Seed 002's timeout risk: a tool that runs close to its limit is flagged with its evidence; a
control history is not; request sizes and models are told apart."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.timeout_risk import timeout_risk
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

NOW = datetime(2026, 11, 30)



def _history(store: Store, slow_bash: bool) -> None:
    b = Batch()
    t = NOW - timedelta(days=1)
    for i in range(40):
        # Bash: 40 calls, default 2-minute limit; planted: every third runs 110 s, one times out
        dur = 110_000.0 if slow_bash and i % 3 == 0 else 4_000.0
        timed_out = slow_bash and i == 39
        b.add("tool_calls", {"tool_use_id": f"b{i}", "session_id": "s1", "tool_name": "Bash",
                             "timestamp": t + timedelta(minutes=i), "duration_ms": dur, "success": not timed_out,
                             "error": "Command timed out after 2m 0.0s" if timed_out else None,
                             "tool_parameters": '{"bash_command": "pytest"}'})
        # a Bash call with its own 10-minute timeout at 110 s is far from it
        b.add("tool_calls", {"tool_use_id": f"l{i}", "session_id": "s1", "tool_name": "Bash",
                             "timestamp": t + timedelta(minutes=i, seconds=30), "duration_ms": 110_000.0,
                             "success": True, "tool_parameters": '{"bash_command": "make", "timeout": 600000}'})
        b.add("api_requests", {"request_id": f"r{i}", "session_id": "s1", "model": "claude-opus-4-5",
                               "timestamp": t + timedelta(minutes=i, seconds=40), "input_tokens": 200_000,
                               "output_tokens": 1000, "duration_ms": 30_000.0})
    store.write(b)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()


def test_a_timeout_prone_tool_is_flagged(store):
    _history(store, slow_bash=True)
    rep = timeout_risk(store, now=NOW)
    risky = [r for r in rep.rows if r.at_risk]
    assert [(r.kind, r.name) for r in risky] == [("tool", "Bash")]
    bash = risky[0]
    assert bash.calls == 80 and bash.near_limit == 14 and bash.timed_out == 1
    req = next(r for r in rep.rows if r.kind == "request")
    assert (req.name, req.size, req.at_risk) == ("claude-opus-4-5", ">150k", False)
    assert req.p95_share_of_limit == pytest.approx(0.05)


def test_a_control_history_has_no_risk(store):
    _history(store, slow_bash=False)
    rep = timeout_risk(store, now=NOW)
    assert rep.rows and not any(r.at_risk for r in rep.rows)
