"""Seeds 003's and 004's SQL (tests/seed_sql/seed003.sql, seed004.sql) on golem-mcp's views: the read
queries through query_sql on the fixtures and on a synthetic history, the seed's writes to
telemetry_thresholds on a store no daemon holds, and what the bottleneck analysis makes of them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from golem_mcp.analysis import runs
from golem_mcp.analysis.bottlenecks import find_bottlenecks
from golem_mcp.analysis.sql_guard import run_read_only
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store
from synthetic import STAGES, generate

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())
SQL = Path(__file__).parent / "seed_sql"


def _queries(name: str) -> dict[str, tuple[str, str]]:
    """name -> (read|write, sql) from a seed file (seed 004's are all reads)."""
    out = {}
    for part in (SQL / name).read_text().split("-- name: ")[1:]:
        head, body = part.split("\n", 1)
        m = re.fullmatch(r"(\w+)(?: \((read|write)\))?", head.strip())
        assert m, head
        out[m[1]] = (m[2] or "read", body.strip())
    return out


SEED003 = _queries("seed003.sql")
SEED004 = _queries("seed004.sql")
READS = {**{k: v[1] for k, v in SEED003.items() if v[0] == "read"}, **{k: v[1] for k, v in SEED004.items()}}
WRITES = [v[1] for v in SEED003.values() if v[0] == "write"]


def rows(store: Store, name: str) -> list[dict]:
    res = run_read_only(store, READS[name], max_rows=1000, max_chars=1_000_000)
    assert not res["truncated"], name
    return [dict(zip(res["columns"], r, strict=True)) for r in res["rows"]]


@pytest.fixture(scope="module")
def fixtures_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GOLEM_HOME", str(home))
    store = Store(home / "g.duckdb")
    Importer(store).run([FIX])
    runs.run_analysis(store, now=datetime(2026, 11, 30), trigger="cli")
    yield store
    store.close()
    mp.undo()


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """28 days up to the real now (the seed's queries say NOW()), with spans of the tracing convention,
    a slow implementer and a planner phase waiting for a worker in the last week, a loop and a burst
    of timeouts; one analysis run on it."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GOLEM_HOME", str(home))
    store = Store(home / "g.duckdb")
    now = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    planted = generate(store, {"slow_stage", "loop", "error_burst", "traces", "queue_wait"}, now=now)
    run = runs.run_analysis(store, now=now, trigger="session_start")
    assert run.status == "succeeded", run.error_detail
    yield store, planted
    store.close()
    mp.undo()


def test_the_seed_files_hold_every_query():
    assert len(SEED003) == 12 and len(WRITES) == 8
    assert len(SEED004) == 15


@pytest.mark.parametrize("which", ["fixtures", "synthetic"])
def test_every_read_query_runs_through_query_sql(which, request):
    st = request.getfixturevalue(f"{which}_store")
    store = st if which == "fixtures" else st[0]
    for name in READS:
        rows(store, name)


def test_workflow_history_and_task_logs_hold_the_fixtures_numbers(fixtures_store):
    hist = {r["adw_id"]: r for r in rows_dict(fixtures_store, "SELECT * FROM workflow_history")}
    assert set(hist) == set(TRUTH)
    for wf, t in TRUTH.items():
        h = hist[wf]
        assert h["actual_cost_total"] == pytest.approx(t["total_cost_usd"])
        assert h["phase_count"] == len(t["stages"])
        assert h["input_tokens"] == sum(s["input"] for s in t["stages"].values())
        assert h["cache_hit_tokens"] == sum(s["cache_read"] for s in t["stages"].values())
        assert sum(json.loads(h["cost_breakdown"]).values()) == pytest.approx(t["total_cost_usd"], rel=1e-4)
        assert 0 <= h["hour_of_day"] <= 23 and 0 <= h["day_of_week"] <= 6
    phases = {(r["adw_id"], r["phase_name"]): r for r in rows_dict(fixtures_store, "SELECT * FROM task_logs")}
    for wf, t in TRUTH.items():
        for stage, s in t["stages"].items():
            assert phases[(wf, stage)]["tokens_used"] == s["input"] + s["output"] + s["cache_read"] + s["cache_write"]
            assert phases[(wf, stage)]["io_tokens"] == s["input"] + s["output"]
            assert phases[(wf, stage)]["phase_status"] == "completed"
    by_phase = {r["phase_name"]: r for r in rows(fixtures_store, "cost_breakdown_by_phase")}
    assert {k: r["count"] for k, r in by_phase.items()} == {s: 8 for s in ("main", "analyst", "planner",
                                                                             "implementer", "reviewer")}
    assert sum(r["total"] for r in by_phase.values()) == pytest.approx(sum(t["total_cost_usd"] for t in TRUTH.values()))
    summary = rows(fixtures_store, "mv_workflow_summary")
    assert sum(r["total_workflows"] for r in summary) == 8


def rows_dict(store: Store, sql: str) -> list[dict]:
    res = run_read_only(store, sql, max_rows=1000, max_chars=10**7)
    return [dict(zip(res["columns"], r, strict=True)) for r in res["rows"]]


def test_fixture_traces_and_runs(fixtures_store):
    # Claude Code's own spans are in the trace log; the fixtures are older than the runbook's 7 days
    kinds = {r["span_type"] for r in rows_dict(fixtures_store, "SELECT DISTINCT span_type FROM workflow_trace_log")}
    assert kinds and "llm_request" in kinds
    assert rows(fixtures_store, "view_recent_traces") == []
    last = rows(fixtures_store, "last_analysis_runs")
    assert [r["status"] for r in last] == ["SUCCEEDED"] and last[0]["reason_code"] == "cli"


def test_runbook_on_a_synthetic_history(synthetic_store):
    store, planted = synthetic_store
    recent = {(r["span_type"], r["span_name"]): r for r in rows(store, "view_recent_traces")}
    # the last 7 days: the handoff is the longest span, and the slow implementer's phase beats the others
    top = rows(store, "view_recent_traces")[0]
    assert (top["span_type"], top["span_name"]) == ("handoff", "LEAD->EXEC")
    assert recent[("phase", "IMPLEMENTER")]["avg_duration_ms"] > 2.5 * recent[("phase", "PLANNER")]["avg_duration_ms"]
    # three a day; NOW() is later today than the history's midnight end, so the window holds 6-7 days
    assert 6 * 3 <= recent[("phase", "PLANNER")]["count"] <= 7 * 3
    last = rows(store, "check_last_analysis_run")[0]
    assert last["status"] == "SUCCEEDED" and last["reason_code"] == "session_start"
    out = json.loads(last["output_ref"])
    assert out["items_created"] >= 1 and out["errors"] == []
    assert any("phase:PLANNER queue wait" in b for b in out["bottlenecks"])
    items = rows_dict(store, "SELECT dimension_type, dimension_key, item_type FROM continuous_improvements")
    assert ("phase", "PLANNER (queue wait)", "bottleneck") in {tuple(i.values()) for i in items}
    assert ("phase", "IMPLEMENTER", "bottleneck") in {tuple(i.values()) for i in items}
    assert rows(store, "active_thresholds") == []


def test_adw_analytics_on_a_synthetic_history(synthetic_store):
    store, planted = synthetic_store
    n = len(planted.workflows)
    assert sum(r["total_workflows"] for r in rows(store, "mv_workflow_summary")) == n
    assert rows(store, "bottleneck_phase_per_workflow") == [{"bottleneck_phase": "implementer", "workflows": n}]
    lat = {r["phase_name"]: r for r in rows(store, "latency_by_phase")}
    assert set(lat) == {s[0] for s in STAGES}
    assert lat["implementer"]["p99"] > lat["implementer"]["p50"] > lat["analyst"]["p99"]
    summary = rows(store, "latency_summary")[0]
    assert summary["p50"] <= summary["p95"] <= summary["p99"]
    cats = {r["error_category"] for r in rows(store, "error_patterns")}
    assert {"timeout", "shell_exit", "file_not_found"} <= cats
    assert {r["hour_of_day"] for r in rows(store, "time_patterns")} == {9, 12, 15}
    trend = rows(store, "cost_trend_7d_moving_average")
    assert len(trend) == 28 and trend[-1]["moving_average_7d"] > 0
    assert len(rows(store, "workflow_trends_30d")) == 28
    joined = rows(store, "history_with_phases")
    assert len(joined) == 50 and {r["phase_name"] for r in joined} == {s[0] for s in STAGES}
    # each phase span and the stage's Claude Code facts are one task_logs row
    assert len(rows_dict(store, "SELECT * FROM task_logs")) == n * len(STAGES)


def test_the_seeds_threshold_writes_run_on_a_store_no_daemon_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    path = tmp_path / "g.duckdb"
    now = datetime(2031, 3, 1)
    with Store(path) as store:
        generate(store, {"traces"}, now=now)
        assert find_bottlenecks(store, now=now).bottlenecks == []
    con = duckdb.connect(str(path))  # what the maintainer does with the seed's SQL
    for sql in WRITES:
        con.execute(sql)
    # and a baseline of their own, below what the analyst phase takes (~60 s)
    con.execute("INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier) "
                "VALUES ('phase', 'ANALYST', 20000, 2.0)")
    con.close()
    with Store(path) as store:
        active = {(r["dimension_type"], r["dimension_key"]): r for r in rows(store, "active_thresholds")}
        assert set(active) == {("phase", "LEAD"), ("gate", "GATE_PRD_REQUIRED"), ("subagent", "DESIGN"),
                               ("gate", "GATE_NEW_GATE_NAME"), ("gate", "GATE_NEW_GATE"), ("phase", "ANALYST")}
        assert active[("subagent", "DESIGN")]["multiplier"] == 3.0  # raise_subagent_multiplier
        found = find_bottlenecks(store, now=now).bottlenecks
        assert [(b.dimension, b.key, b.baseline_source) for b in found] == [("phase", "ANALYST", "configured")]
        assert found[0].severity == pytest.approx(3.0, rel=0.1)


def test_the_old_thresholds_table_moves_into_telemetry_thresholds(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    path = tmp_path / "g.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))  # back to a store written before migration 005
    con.execute("DROP TABLE telemetry_thresholds")
    con.execute("DELETE FROM schema_migrations WHERE version = 5")
    con.execute("CREATE TABLE thresholds (dimension VARCHAR, key VARCHAR, baseline_p50_ms DOUBLE, multiplier DOUBLE "
                "DEFAULT 2.0, active BOOLEAN DEFAULT true, updated_at TIMESTAMP, PRIMARY KEY (dimension, key))")
    con.execute("INSERT INTO thresholds VALUES ('stage', 'planner', 10000, 2.5, false, TIMESTAMP '2026-11-01')")
    con.close()
    with Store(path) as store:
        got = rows_dict(store, "SELECT dimension_type, dimension_key, baseline_p50_ms, multiplier, is_active "
                               "FROM telemetry_thresholds")
        assert got == [{"dimension_type": "stage", "dimension_key": "planner", "baseline_p50_ms": 10000.0,
                        "multiplier": 2.5, "is_active": False}]
        assert store.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'thresholds'") == 0
