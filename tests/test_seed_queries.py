"""Seed 000's SQL (sections 1-5 and the appendix) runs on the views and returns the fixtures' numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())
QUERIES = dict(re.findall(r"-- name: (\w+)\n(.*?);\s*$", (Path(__file__).parent / "seed_sql" / "seed000.sql").read_text(), re.S | re.M))


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GOLEM_HOME", str(home))
    path = home / "g.duckdb"
    store = Store(path)
    Importer(store).run([FIX])
    # a reviewer's .claude-metrics v1 report (seed 000's example shape), linked to wf-001
    b = Batch()
    b.add("review_reports", {"report_id": "r1", "v": 1, "ts": 1795301161000000, "task": "wf-001.4",
                             "parent": "wf-001", "workflow_id": "wf-001", "critical": 0, "major": 1, "minor": 2})
    for i, (sev, cat, f) in enumerate([("major", "testing", "src.py"), ("minor", "documentation", "README.md"),
                                       ("minor", "documentation", "src.py")]):
        b.add("review_issues", {"report_id": "r1", "idx": i, "severity": sev, "category": cat, "file": f,
                                "line": i + 1, "summary": "s"})
    store.write(b)
    store.close()
    # the maintainer opens the file read-only while no daemon holds it
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()
    mp.undo()


def run(con, name):
    cur = con.execute(QUERIES[name])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_every_seed_query_is_present_and_runs(db):
    assert len(QUERIES) == 26
    for name in QUERIES:
        run(db, name)


def test_cost_queries(db):
    totals = {r["workflow_id"]: r["total_cost"] for r in run(db, "total_cost_per_workflow")}
    assert totals == {wf: pytest.approx(t["total_cost_usd"]) for wf, t in TRUTH.items()}
    top = run(db, "top10_expensive_workflows")
    assert [r["workflow_id"] for r in top[:2]] == ["wf-007", "wf-006"]
    assert {r["workflow_id"]: r["api_requests"] for r in top} == {
        wf: sum(s["requests"] for s in t["stages"].values()) for wf, t in TRUTH.items()}
    per_stage = {r["stage"]: r for r in run(db, "cost_per_stage_avg")}
    assert set(per_stage) == {"main", "analyst", "planner", "implementer", "reviewer"}
    assert all(r["workflow_count"] == 8 for r in per_stage.values())
    daily = run(db, "daily_cost_trend")
    assert len(daily) == 1 and daily[0]["workflows_run"] == 8


def test_loop_queries_flag_the_runaway_implementers(db):
    high = run(db, "high_api_request_count")
    assert {(r["workflow_id"], r["stage"], r["api_requests"]) for r in high} == {
        ("wf-006", "implementer", 13), ("wf-007", "implementer", 13)}
    bash = run(db, "failed_bash_commands")
    # 9 failures in each looping workflow plus one per other workflow's test run
    assert bash == [{"command": "exit 1", "error": "Exit code 1", "occurrences": 24}]


def test_error_queries(db):
    assert {r["tool_name"] for r in run(db, "failed_tools_by_type")} == {"Bash", "Read"}
    rates = {r["stage"]: r["error_rate_pct"] for r in run(db, "error_rate_by_stage")}
    assert rates["main"] == 0 and rates["implementer"] > 0
    worst = run(db, "workflows_with_most_errors")
    assert [r["workflow_id"] for r in worst[:2]] == ["wf-007", "wf-006"] or \
        [r["workflow_id"] for r in worst[:2]] == ["wf-006", "wf-007"]
    hot = run(db, "error_hotspots")
    assert hot[0]["stage"] == "implementer" and hot[0]["tool_name"] == "Bash"


def test_experiment_queries(db):
    hyp = {r["experiment_id"]: r for r in run(db, "hypothesis_compare")}
    assert hyp["baseline"]["avg_input_tokens"] == 54000
    assert hyp["analyst-file-limit-v2"]["avg_input_tokens"] == 24000
    groups = {r["experiment_id"]: r for r in run(db, "compare_experiment_groups")}
    assert groups["baseline"]["workflows"] == 4 and groups["analyst-file-limit-v2"]["workflows"] == 4


def test_quality_queries(db):
    trend = run(db, "quality_trend")
    assert [(r["critical_issues"], r["major_issues"], r["minor_issues"]) for r in trend] == [(0, 1, 2)]
    cats = run(db, "common_issue_categories")
    assert cats[0]["category"] == "documentation" and cats[0]["occurrences"] == 2
    files = {r["file"]: r["issue_count"] for r in run(db, "repeat_offender_files")}
    assert files == {"src.py": 2, "README.md": 1}
    assert run(db, "cleanest_reviews") == [{"workflow_id": "wf-001", "total_issues": 3}]
    over_time = {r["category"]: r["total_issues"] for r in run(db, "problem_categories_over_time")}
    assert over_time == {"documentation": 2, "testing": 1}


def test_workflow_summary_queries(db):
    paths = run(db, "cost_by_workflow_path")
    assert sum(r["workflow_count"] for r in paths) == 8
    assert run(db, "success_rate_by_path")
    assert run(db, "complexity_accuracy")
