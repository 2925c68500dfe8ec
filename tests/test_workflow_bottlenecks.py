"""Each workflow's bottleneck stage and the idle time between its stages (seed 004's bottleneck_phase and
idle_time_seconds), queue wait apart: exact values on phase spans written to a real store, and the
same numbers as workflow_history on the fixture corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from golem_mcp.analysis.bottlenecks import find_bottlenecks, longest_workflows, workflow_bottlenecks
from golem_mcp.errors import NotFound
from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
T0 = datetime(2026, 11, 20, 9, 0, 0)
NOW = datetime(2026, 11, 21)


def _phase(b: Batch, sid: str, wf: str, stage: str, start_s: float, dur_s: float, wait_ms: float | None) -> None:
    start = T0 + timedelta(seconds=start_s)
    b.add("spans", {"span_id": sid.ljust(16, "0"), "trace_id": wf.ljust(32, "0"), "parent_span_id": None,
                    "name": stage.upper(), "span_type": "phase", "start_time": start,
                    "end_time": start + timedelta(seconds=dur_s), "duration_ms": dur_s * 1000, "status_code": 1,
                    "queue_wait_ms": wait_ms, "attempt": 1, "workflow_id": wf, "stage": stage})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "wb.duckdb")
    b = Batch()
    # wf-a, 60 s: plan 0-10, implement 15-45 (waited 4 s), review 20-25 inside it, test 52-60;
    # no stage runs 10-15 and 45-52: 12 s idle in two gaps, the longer one before test
    _phase(b, "a1", "wf-a", "plan", 0, 10, 2000)
    _phase(b, "a2", "wf-a", "implement", 15, 30, 4000)
    _phase(b, "a3", "wf-a", "review", 20, 5, None)
    _phase(b, "a4", "wf-a", "test", 52, 8, 1000)
    # wf-b, one stage: no idle time, no waits reported
    _phase(b, "b1", "wf-b", "plan", 100, 20, None)
    # wf-old started before the window
    _phase(b, "c1", "wf-old", "plan", -3 * 86400, 5, None)
    # wf-straddle started before the window too, though a later stage ran inside it
    _phase(b, "d1", "wf-straddle", "plan", -3 * 86400, 5, None)
    _phase(b, "d2", "wf-straddle", "implement", 200, 5, None)
    s.write(b)
    yield s
    s.close()


def test_bottleneck_stage_idle_gaps_and_queue_wait_exactly(store):
    got = {w.workflow_id: w.model_dump() for w in workflow_bottlenecks(store, days=2, now=NOW)}
    assert list(got) == ["wf-a", "wf-b"]  # longest first; wf-old and wf-straddle started outside the window
    assert got["wf-a"] == {
        "workflow_id": "wf-a", "started_at": T0, "wall_ms": 60000.0, "stages": 4,
        "bottleneck_stage": "implement", "bottleneck_ms": 30000.0, "bottleneck_share": 0.5,
        "bottleneck_queue_wait_ms": 4000.0, "queue_wait_ms": 7000.0, "longest_wait_stage": "implement",
        "idle_ms": 12000.0, "idle_share": 0.2, "idle_gaps": 2, "largest_gap_ms": 7000.0, "largest_gap_before": "test"}
    assert got["wf-b"] == {
        "workflow_id": "wf-b", "started_at": T0 + timedelta(seconds=100), "wall_ms": 20000.0, "stages": 1,
        "bottleneck_stage": "plan", "bottleneck_ms": 20000.0, "bottleneck_share": 1.0,
        "bottleneck_queue_wait_ms": None, "queue_wait_ms": None, "longest_wait_stage": None,
        "idle_ms": 0.0, "idle_share": 0.0, "idle_gaps": 0, "largest_gap_ms": None, "largest_gap_before": None}
    assert [w.workflow_id for w in workflow_bottlenecks(store, days=5, now=NOW, workflow_id="wf-old")] == ["wf-old"]
    assert workflow_bottlenecks(store, days=2, now=NOW, workflow_id="wf-old") == []
    # the same numbers as seed 004's workflow_history, and through find_bottlenecks
    wh = store.query("SELECT bottleneck_phase, idle_time_seconds FROM workflow_history WHERE adw_id = 'wf-a'")[0]
    assert wh == {"bottleneck_phase": "implement", "idle_time_seconds": 12.0}
    rep = find_bottlenecks(store, days=2, now=NOW, per_workflow=True)
    assert [w.model_dump() for w in rep.workflows] == list(got.values())
    assert find_bottlenecks(store, days=2, now=NOW).workflows == []
    # the longest first ones only (what an answer shows), and how many there are: the same rows
    first = find_bottlenecks(store, days=2, now=NOW, per_workflow=True, workflow_limit=1)
    assert ([w.model_dump() for w in first.workflows], first.workflows_total) == ([got["wf-a"]], 2)
    assert longest_workflows(store, days=5, now=NOW, limit=2) == (workflow_bottlenecks(store, days=5, now=NOW)[:2], 4)
    assert longest_workflows(store, days=2, now=NOW, workflow_id="wf-old", limit=1) == ([], 0)



def test_slow_stages_answer_shows_the_longest_and_counts_the_rest(store, monkeypatch):
    from golem_mcp.analysis.answers import slow

    monkeypatch.setenv("GOLEM_CLOCK", NOW.isoformat())
    ans = slow(store, days=2, limit=1)
    wf = ans.workflows
    assert [r[wf.columns.index("workflow_id")] for r in wf.rows] == ["wf-a"]
    assert "workflows: 1 of 2 rows; raise limit or give workflow_id" in (ans.more or [])
    assert [r[0] for r in slow(store, days=2, limit=5).workflows.rows] == ["wf-a", "wf-b"]
    # wf-a is known from its phase spans alone (no request, link or record names it): a workflow id
    # to ask about, and a misspelt one still names it
    assert [r[0] for r in slow(store, days=2, workflow_id="wf-a").workflows.rows] == ["wf-a"]
    with pytest.raises(NotFound, match="closest: wf-a"):
        slow(store, days=2, workflow_id="wf-aa")


def test_fixture_corpus_agrees_with_workflow_history(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    store = Store(tmp_path / "fx.duckdb")
    try:
        Importer(store).run([FIX])
        got = workflow_bottlenecks(store, days=3650, now=datetime(2026, 12, 1))
        hist = {r["adw_id"]: r for r in store.query(
            "SELECT adw_id, idle_time_seconds, duration_seconds, phase_durations FROM workflow_history")}
        timed = {k for k, r in hist.items() if r["duration_seconds"] is not None}
        assert got and {w.workflow_id for w in got} == timed
        for w in got:
            h = hist[w.workflow_id]
            assert w.idle_ms == pytest.approx(h["idle_time_seconds"] * 1000, abs=1)
            assert w.wall_ms == pytest.approx(h["duration_seconds"] * 1000, abs=1)
            longest = max(v for v in json.loads(h["phase_durations"]).values() if v is not None)
            assert w.bottleneck_ms == pytest.approx(longest * 1000, abs=1)
            assert 0 < w.bottleneck_share <= 1 and 0 <= w.idle_share < 1
            assert w.wall_ms >= w.idle_ms + w.bottleneck_ms - 1
    finally:
        store.close()


def test_cli_prints_each_workflows_bottleneck_and_idle_time(store, tmp_path):
    path = store.path
    store.close()
    env = {**os.environ, "GOLEM_HOME": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("GOLEM_DB", None)
    base = [sys.executable, "-m", "golem_mcp", "analyze", "bottlenecks", "--db", str(path), "--now", "2026-11-21",
            "--days", "2"]
    r = subprocess.run([*base, "--workflow", "wf-a", "--format", "json"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    (wf,) = json.loads(r.stdout)["workflows"]
    assert (wf["workflow_id"], wf["bottleneck_stage"], wf["idle_ms"], wf["idle_gaps"]) == ("wf-a", "implement",
                                                                                          12000.0, 2)
    r = subprocess.run([*base, "--width", "200"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "idle time between stages" in r.stdout and "wf-a" in r.stdout and "wf-b" in r.stdout


def test_a_workflow_id_with_a_quote_is_taken_apart_like_any_other(tmp_path):
    """The longest workflows' ids go into the second statement as constants: quoted, not broken by them."""
    with Store(tmp_path / "q.duckdb") as s:
        b = Batch()
        _phase(b, "q1", "wf-o'brien", "plan", 0, 10, None)
        _phase(b, "q2", "wf-o'brien", "test", 12, 3, None)
        _phase(b, "q3", "wf-plain", "plan", 0, 5, None)
        s.write(b)
        got, total = longest_workflows(s, days=2, now=NOW, limit=1)
        assert total == 2 and [(w.workflow_id, w.wall_ms, w.bottleneck_stage, w.idle_ms) for w in got] == [
            ("wf-o'brien", 15000.0, "plan", 2000.0)]
