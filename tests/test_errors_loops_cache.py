"""The errors-and-loops answer over a window of every workflow reads from the analysis cache instead of
rows: the reviewer rework (an implementer pass starting after a reviewer finished) from the stage
summaries' latest agent start and earliest agent finish, the tool calls per stage from the per-day
stage counts, the error categories of the failed tool calls from their per-day groups, and the agents
that may have edit -> failing Bash cycles from their failures per day. All give what the rows give: before and after new facts arrive and the cache
refreshes, in windows of several lengths, and in a window that ends in the past (where a workflow's
latest implementer start may lie after the window)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from golem_mcp.analysis import snapshot as snapshot_module
from golem_mcp.analysis.error_patterns import error_categories
from golem_mcp.analysis.errors_loops import errors_and_loops
from golem_mcp.analysis.loops import find_loops
from golem_mcp.analysis.workflows import query_errors
from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import Store
from test_analysis_snapshot import _views, norm

NOW = datetime(2031, 3, 1, 12, 0)  # not midnight: a window's start cuts through a day
H = timedelta(hours=1)


def agent(b: Batch, wf: str, sid: str, aid: str | None, stage: str, start: datetime, end: datetime,
          fail_every: int = 0) -> None:
    """An agent's requests from start to end (three), and a tool call after each."""
    for i, ts in enumerate((start, start + (end - start) / 2, end)):
        rid = f"{wf}-{aid}-{stage}-{ts:%Y%m%d%H%M%S}-{i}"
        b.add("api_requests", {"request_id": rid, "session_id": sid, "agent_id": aid, "model": "claude-sonnet-test",
                               "timestamp": ts, "input_tokens": 100, "output_tokens": 10, "workflow_id": wf,
                               "stage": stage, "attempt": 1, "success": True})
        ok = not fail_every or bool(i % fail_every)
        b.add("tool_calls", {"tool_use_id": f"tu-{rid}", "session_id": sid, "agent_id": aid,
                             "tool_name": "Read" if i == 1 else "Bash", "timestamp": ts + timedelta(seconds=20),
                             "success": ok, "workflow_id": wf, "stage": stage,
                             "tool_parameters": f'{{"bash_command": "pytest {rid}"}}',
                             "error": None if ok else ERRORS[i], "error_type": None if ok or i else "timeout"})
        if fail_every:  # an API error before the failing pass, and the StopFailure hook's copy of it
            b.add("api_errors", {"error_key": f"e-{rid}", "session_id": sid, "agent_id": aid, "prompt_id": f"p-{rid}",
                                 "timestamp": ts, "status_code": 529 if i % 2 else 500, "error": "Overloaded",
                                 "workflow_id": wf, "stage": stage})
            b.add("api_errors", {"error_key": f"s-{rid}", "session_id": sid, "prompt_id": f"p-{rid}",
                                 "kind": "stop_failure", "timestamp": ts + timedelta(seconds=1), "error": "Overloaded",
                                 "workflow_id": wf, "stage": stage})


def cycles(b: Batch, wf: str, sid: str, aid: str, start: datetime, n: int) -> None:
    """n edit -> failing Bash cycles, 20 minutes apart."""
    for i in range(n):
        ts = start + timedelta(minutes=20 * i)
        for j, (tool, ok) in enumerate((("Edit", True), ("Bash", False))):
            b.add("tool_calls", {"tool_use_id": f"tc-{aid}-{i}-{j}", "session_id": sid, "agent_id": aid, "tool_name": tool,
                                 "timestamp": ts + timedelta(minutes=j), "success": ok, "workflow_id": wf,
                                 "stage": "implementer", "tool_parameters": f'{{"file_path": "f{i}.py"}}',
                                 "error": None if ok else "Exit code 2"})


ERRORS = ["Exit code 1", "No such file or directory: a.py", "Command timed out after 120s"]


def base(store: Store) -> None:
    b = Batch()
    d5 = NOW - timedelta(days=5)
    # sent back: a second implementer after the reviewer finished (a reviewer request without an agent too)
    agent(b, "wf-rw1", "s1", "ag-1i", "implementer", d5, d5 + H, fail_every=2)
    agent(b, "wf-rw1", "s1", "ag-1r", "reviewer", d5 + 2 * H, d5 + 3 * H)
    agent(b, "wf-rw1", "s1", None, "reviewer", d5 + 2 * H, d5 + 2.5 * H)
    agent(b, "wf-rw1", "s1", "ag-1j", "implementer", d5 + 4 * H, d5 + 5 * H)
    # not sent back: the second implementer starts before the reviewer finished
    agent(b, "wf-rw2", "s2", "ag-2i", "implementer", d5, d5 + H)
    agent(b, "wf-rw2", "s2", "ag-2r", "reviewer", d5 + 2 * H, d5 + 6 * H)
    agent(b, "wf-rw2", "s2", "ag-2j", "implementer", d5 + 4 * H, d5 + 5 * H)
    # two reviewers: one finished before the second implementer started, one after
    agent(b, "wf-rw3", "s3", "ag-3i", "implementer", d5, d5 + H)
    agent(b, "wf-rw3", "s3", "ag-3r", "reviewer", d5 + H, d5 + 2 * H)
    agent(b, "wf-rw3", "s3", "ag-3s", "reviewer", d5 + H, d5 + 9 * H)
    agent(b, "wf-rw3", "s3", "ag-3j", "implementer", d5 + 3 * H, d5 + 4 * H, fail_every=1)
    # sent back 40 days ago: in a 45-day window, not in a 30-day one
    d40 = NOW - timedelta(days=40)
    agent(b, "wf-rw4", "s4", "ag-4r", "reviewer", d40, d40 + H)
    agent(b, "wf-rw4", "s4", "ag-4j", "implementer", d40 + 2 * H, d40 + 3 * H)
    # sent back 12 days ago, and an implementer again 1 day ago: the latest start is after a window
    # ending 3 days ago, whose answer has the workflow for the pass 12 days ago
    d12, d1 = NOW - timedelta(days=12), NOW - timedelta(days=1)
    agent(b, "wf-rw6", "s6", "ag-6r", "reviewer", d12, d12 + H)
    agent(b, "wf-rw6", "s6", "ag-6j", "implementer", d12 + 2 * H, d12 + 3 * H)
    agent(b, "wf-rw6", "s6", "ag-6k", "implementer", d1, d1 + H)
    # an implementer 12 days ago before its reviewer, and one after it 1 day ago: in the window ending
    # 3 days ago no pass came after a review (its latest start, after the window, did)
    agent(b, "wf-rw7", "s7", "ag-7i", "implementer", d12, d12 + H)
    agent(b, "wf-rw7", "s7", "ag-7r", "reviewer", d12 + 2 * H, d12 + 3 * H)
    agent(b, "wf-rw7", "s7", "ag-7k", "implementer", d1, d1 + H)
    # calls on the day a 30-day window's start cuts through, before and after its start
    d30 = NOW - timedelta(days=30)
    agent(b, "wf-edge", "s8", "ag-8i", "implementer", d30 - 2 * H, d30 + 2 * H, fail_every=2)
    # edit -> failing Bash cycles: 3 five days ago; 4 on the day the 30-day window starts, 1 of them in it
    cycles(b, "wf-rw1", "s1", "ag-1c", d5 + 4 * H, 3)
    cycles(b, "wf-edge", "s8", "ag-8c", d30 - 50 * timedelta(minutes=1), 4)
    # a tool call without a time: in no window
    b.add("tool_calls", {"tool_use_id": "tu-untimed", "session_id": "s8", "agent_id": "ag-8i", "tool_name": "Read",
                         "success": False, "workflow_id": "wf-edge", "stage": "implementer", "error": "No such file"})
    store.write(b)


def more(store: Store) -> None:
    """What arrives later: wf-rw2 gets a pass after its reviewer, a new workflow on the newest day, a call
    on an old day, another without a time."""
    b = Batch()
    d2 = NOW - timedelta(days=2)
    agent(b, "wf-rw2", "s2", "ag-2k", "implementer", d2, d2 + H)
    agent(b, "wf-new", "s9", "ag-9r", "reviewer", NOW - 5 * H, NOW - 4 * H, fail_every=2)
    agent(b, "wf-new", "s9", "ag-9j", "implementer", NOW - 3 * H, NOW - 2 * H)
    agent(b, "wf-old", "s10", "ag-10t", "tester", NOW - timedelta(days=20), NOW - timedelta(days=20) + H, fail_every=1)
    cycles(b, "wf-new", "s9", "ag-9c", NOW - 2 * H, 3)
    b.add("tool_calls", {"tool_use_id": "tu-untimed-2", "session_id": "s9", "agent_id": "ag-9j", "tool_name": "Read",
                         "success": True, "workflow_id": "wf-new", "stage": "implementer"})
    store.write(b)


WINDOWS = [(NOW, 1), (NOW, 7), (NOW, 30), (NOW, 45), (NOW - timedelta(days=3), 10)]
# error categories over windows of whole days, with ends inside days, and past ones
SPANS = [(NOW - timedelta(days=d), NOW) for d in (1, 7, 30, 45)] + [
    (datetime(2031, 2, 1), datetime(2031, 2, 27)), (NOW - timedelta(days=13, hours=5), NOW - timedelta(days=3)),
    (NOW - timedelta(days=40, hours=2), NOW - timedelta(days=39, hours=20))]


def loops_by(store: Store, rows: bool) -> dict[Any, Any]:
    with pytest.MonkeyPatch.context() as mp:
        if rows:  # the store itself: every part from the rows and the views over them
            mp.setattr(snapshot_module, "summaries", _views)
        return {(now, days): norm(find_loops(store, days=days, now=now)) for now, days in WINDOWS}


def errors_by(store: Store, rows: bool) -> dict[Any, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLEM_CLOCK", NOW.isoformat())
        if rows:
            mp.setattr(snapshot_module, "summaries", _views)
            mp.setattr(snapshot_module, "cache_current_in", lambda cur: False)  # query_errors: calls from rows
        out: dict[Any, Any] = {}
        for days in (1, 7, 30, 45):
            for stage in (None, "implementer"):
                since = (NOW - timedelta(days=days)).isoformat()
                out["qe", days, stage] = norm(query_errors(store, None, stage, since, limit=100))
                out["el", days, stage] = norm(errors_and_loops(store, stage=stage, days=days, limit=50))
        for start, end in SPANS:
            out["cat", start, end] = norm(error_categories(store, start, end))
        return out


def rework_of(loops: dict[Any, Any]) -> dict[Any, list[str]]:
    return {k: sorted(r["workflow_id"] for r in v["rework"]) for k, v in loops.items()}


def test_rework_and_stage_calls_from_the_cache_are_the_rows(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(tmp_path / "s.duckdb") as st:
        base(st)
        cached, rows = loops_by(st, rows=False), loops_by(st, rows=True)
        assert snapshot_module.cache_current(st)  # the cached answer read a current cache
        assert cached == rows
        past = NOW - timedelta(days=3)
        recent = ["wf-rw1", "wf-rw3", "wf-rw6", "wf-rw7"]
        assert rework_of(rows) == {(NOW, 1): ["wf-rw6", "wf-rw7"], (NOW, 7): recent, (NOW, 30): recent,
                                   (NOW, 45): sorted([*recent, "wf-rw4"]), (past, 10): ["wf-rw1", "wf-rw3", "wf-rw6"]}
        assert {k: sorted((c["workflow_id"], c["cycles"]) for c in v["edit_fail_cycles"]) for k, v in rows.items()
                if k[1] == 30} == {(NOW, 30): [("wf-rw1", 3)]}
        e_cached, e_rows = errors_by(st, rows=False), errors_by(st, rows=True)
        assert e_cached == e_rows
        by_stage = {r["stage"]: r["tool_calls"] for r in e_cached["qe", 30, None]["by_stage"]}
        assert by_stage == {r["stage"]: r["n"] for r in st.query(
            'SELECT stage, count(*) AS n FROM tools WHERE "timestamp" >= ? GROUP BY stage',
            [NOW - timedelta(days=30)])}
        # five workflows' two passes, wf-edge's calls after the start, the cycles' calls in the window
        assert by_stage["implementer"] == 5 * 6 + 2 + 3 * 2 + 2
        # three failure texts in three categories, the API errors counted once each (the hook's copy is not)
        cats = {c["category"]: c["count"] for c in e_cached["cat", NOW - timedelta(days=30), NOW]}
        assert cats == {"overload": 8, "timeout": 3, "shell_exit": 2 + 3 + 1, "file_not_found": 1}, cats

        more(st)
        assert not snapshot_module.cache_current(st)
        cached2, rows2 = loops_by(st, rows=False), loops_by(st, rows=True)
        assert cached2 == rows2
        assert sorted((c["workflow_id"], c["cycles"]) for c in rows2[NOW, 1]["edit_fail_cycles"]) == [("wf-new", 3)]
        assert rework_of(rows2)[NOW, 7] == ["wf-new", "wf-rw1", "wf-rw2", "wf-rw3", "wf-rw6", "wf-rw7"]
        e_cached2 = errors_by(st, rows=False)
        assert snapshot_module.cache_current(st)
        assert e_cached2 == errors_by(st, rows=True)
        assert e_cached2 != e_cached
        assert st.query("SELECT * FROM analysis_agent_failure_days ORDER BY ALL") == st.query(
            'SELECT CAST(COALESCE("timestamp", TIMESTAMP \'2262-01-01\') AS DATE) AS day, session_id, agent_id, '
            "tool_name, count(*) AS n FROM tool_failure_events GROUP BY ALL ORDER BY ALL")
        assert st.query("SELECT * FROM analysis_failure_days ORDER BY ALL") == st.query(
            'SELECT CAST(COALESCE("timestamp", TIMESTAMP \'2262-01-01\') AS DATE) AS day, stage, tool_name, msg, etype, '
            "count(*) AS n FROM tool_failure_events GROUP BY ALL ORDER BY ALL")
        assert st.query("SELECT * FROM analysis_tool_stage_days ORDER BY ALL") == st.query(
            "SELECT day, stage, CAST(sum(n) AS BIGINT) AS n, CAST(sum(fails) AS BIGINT) AS fails "
            "FROM analysis_tool_days GROUP BY ALL ORDER BY ALL")
