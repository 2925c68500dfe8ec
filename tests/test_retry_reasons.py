"""Retry reasons (seed 004's retry_reasons): each retried API request with the failure just before it in
the same session and agent (an API error before a tool's failure), its category and HTTP status; exact
values on facts written to a real store, through find_loops and query_errors_and_loops' answer."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.errors_loops import errors_and_loops
from golem_mcp.analysis.loops import find_loops
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

T0 = datetime(2026, 11, 20, 9, 0, 0)
NOW = datetime(2026, 11, 21)


def _at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _req(b: Batch, rid: str, session: str, at: float, attempt: int, agent: str | None = None) -> None:
    b.add("api_requests", {"request_id": rid, "session_id": session, "agent_id": agent, "model": "claude-sonnet-4-5",
                           "timestamp": _at(at), "input_tokens": 10, "output_tokens": 1, "attempt": attempt,
                           "success": True, "workflow_id": "wf-r", "stage": "implementer"})


def _api_error(b: Batch, key: str, session: str, at: float, status: int, error: str, agent: str | None = None) -> None:
    b.add("api_errors", {"error_key": key, "session_id": session, "agent_id": agent, "timestamp": _at(at),
                         "status_code": status, "error": error, "attempt": 1, "workflow_id": "wf-r",
                         "stage": "implementer"})


def _tool_failure(b: Batch, tid: str, session: str, at: float, error: str) -> None:
    b.add("tool_calls", {"tool_use_id": tid, "session_id": session, "tool_name": "Bash", "timestamp": _at(at),
                         "success": False, "error": error, "workflow_id": "wf-r", "stage": "implementer"})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "rr.duckdb")
    b = Batch()
    _api_error(b, "e1", "s1", 0, 529, "Overloaded")
    _req(b, "r1", "s1", 5, 2)                        # after the 529
    _tool_failure(b, "t1", "s1", 100, "Connection refused")
    _req(b, "r2", "s1", 110, 2)                      # an API error in the lookback wins over the tool's failure
    _api_error(b, "e2", "s2", 0, 429, "rate limit exceeded", agent="ag1")
    _req(b, "r3", "s2", 2, 3, agent="ag1")
    _req(b, "r4", "s2", 3, 2)                        # the main thread: ag1's error is not its reason
    _api_error(b, "e3", "s3", 0, 500, "Internal server error")
    _tool_failure(b, "t2", "s3", 1140, "ModuleNotFoundError: No module named 'yaml'")
    _req(b, "r5", "s3", 1200, 2)                     # the 500 is 20 min old: the tool's failure is the reason
    _req(b, "r6", "s3", 1300, 1)                     # not a retry
    s.write(b)
    yield s
    s.close()


def test_each_retry_has_the_failure_before_it(store):
    got = {r.request_id: (r.attempt, r.reason_category, r.reason_status_code, r.reason)
           for r in find_loops(store, days=2, now=NOW).retries}
    assert got == {
        "r1": (2, "overload", 529, "api_error: Overloaded"),
        "r2": (2, "overload", 529, "api_error: Overloaded"),
        "r3": (3, "rate_limit", 429, "api_error: rate limit exceeded"),
        "r4": (2, None, None, None),
        "r5": (2, "import", None, "tool Bash: ModuleNotFoundError: No module named 'yaml'"),
    }
    short = {r.request_id: r.reason for r in find_loops(store, days=2, now=NOW, retry_lookback_s=30).retries}
    assert short["r2"] == "tool Bash: Connection refused" and short["r5"] is None


def test_the_errors_answer_shows_the_reasons(store):
    ans = errors_and_loops(store, days=3650, sections=["retries"], limit=10)
    assert ans.retries is not None
    rows = [dict(zip(ans.retries.columns, r, strict=True)) for r in ans.retries.rows]
    assert {r["request_id"]: r["reason_category"] for r in rows} == {
        "r1": "overload", "r2": "overload", "r3": "rate_limit", "r4": None, "r5": "import"}
    assert next(r for r in rows if r["request_id"] == "r3")["reason_status_code"] == 429


@pytest.mark.parametrize("shown", [1, 2, 3, 5])
def test_an_answer_showing_a_few_retries_has_their_reasons_and_counts_them_all(store, shown):
    """The answer looks the reasons up for the retries it shows only (the first `limit`, in time order):
    the same rows and reasons as all of them, and the count of all in the summary and the cut note."""
    every = find_loops(store, days=2, now=NOW).retries
    few = find_loops(store, days=2, now=NOW, retry_reasons=shown)
    assert few.retries == every[:shown] and few.retried_requests == len(every) == 5
    ans = errors_and_loops(store, days=3650, sections=["retries"], limit=shown)
    assert ans.retries is not None
    assert [r[2] for r in ans.retries.rows] == [r.request_id for r in every[:shown]]
    assert [r[5] for r in ans.retries.rows] == [r.reason_category for r in every[:shown]]
    assert "5 retried request(s)" in ans.summary
    assert (ans.more or []) == ([f"retries: {shown} of 5 rows; raise limit (max 50) or narrow by workflow_id/stage"]
                                if shown < 5 else [])


@pytest.mark.parametrize("since", [None, T0 + timedelta(seconds=4), T0.replace(hour=0), T0 + timedelta(days=1)])
def test_requests_and_retries_per_stage_are_the_request_rows(store, since):
    """query_errors counts requests and retries per stage from the rollups (whole days) and the request
    rows (the part of a day a `since` cuts): the same as counting the rows."""
    from golem_mcp.analysis.workflows import query_errors

    store.write(_second_day())
    for wf, stage in ((None, None), ("wf-r", None), ("wf-r", "implementer"), (None, "reviewer")):
        got = query_errors(store, wf, stage, since.isoformat() if since else None, limit=100)
        cond = "(? IS NULL OR workflow_id = ?) AND (? IS NULL OR stage = ?) AND (? IS NULL OR \"timestamp\" >= ?)"
        args = [wf, wf, stage, stage, since, since]
        want = store.query(f"SELECT count(*) FILTER (WHERE attempt > 1) AS retried_requests, sum(attempt - 1) AS retries "
                           f"FROM requests WHERE {cond}", args)[0]
        assert got["retries"] == want, (wf, stage, since)
        per_stage = {r["stage"]: (r["requests"], r["retries"]) for r in store.query(
            f"SELECT stage, count(*) AS requests, sum(attempt - 1) AS retries FROM requests WHERE {cond} GROUP BY 1",
            args)}
        assert {r["stage"]: (r["requests"], r["retries"]) for r in got["by_stage"]} == per_stage, (wf, stage, since)


def _second_day() -> Batch:
    b = Batch()
    _req(b, "r7", "s4", 86400 + 60, 3)
    b.add("api_requests", {"request_id": "r8", "session_id": "s4", "model": "claude-sonnet-4-5",
                           "timestamp": _at(86400 + 90), "input_tokens": 5, "output_tokens": 1, "attempt": None,
                           "workflow_id": "wf-q", "stage": "reviewer"})
    return b
