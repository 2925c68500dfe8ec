"""Analysis runs: lifecycle, dedupe and rate limit of improvement items, the session-start trigger and
display, budget alerts to the log and to a real loopback webhook."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import api
from golem_mcp.analysis import budgets, findings_store, runs
from golem_mcp.analysis.common import utcnow
from golem_mcp.store.db import Store
from synthetic import EFFECTS, generate


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    monkeypatch.delenv(budgets.WEBHOOK_ENV, raising=False)
    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()


def test_run_twice_creates_no_duplicates(store):
    p = generate(store, set(EFFECTS))
    first = runs.run_analysis(store, now=p.now)
    assert first.status == "succeeded" and first.produced["items_created"] > 0
    items = findings_store.list_findings(store, limit=100)
    second = runs.run_analysis(store, now=p.now)
    assert second.produced["items_created"] == 0
    assert second.produced["items_skipped_dedupe"] == first.produced["items_created"]
    again = findings_store.list_findings(store, limit=100)
    assert [i.item_id for i in again] == [i.item_id for i in items] and all(i.times_seen == 2 for i in again)
    kinds = {(i.kind, i.dimension) for i in items}
    assert ("bottleneck", "stage") in kinds and ("loop", "implementer") in kinds and ("token_leak", "stage") in kinds
    assert ("model_advice", "stage") in kinds


def test_at_most_three_items_per_dimension_per_run(store):
    cands = [findings_store.Candidate(kind="bottleneck", dimension="tool", key=f"T{i}", title=f"t{i}", severity=i,
                                      recommendation="x") for i in range(5)]
    res = findings_store.save_items(store, None, cands)
    assert (res.created, res.skipped_rate_limit) == (3, 2)
    assert [i.key for i in findings_store.list_findings(store)] == ["T4", "T3", "T2"]   # worst first
    res = findings_store.save_items(store, None, cands)
    assert (res.created, res.refreshed_duplicates, res.skipped_rate_limit) == (2, 3, 0)


def test_session_start_enqueues_and_displays(store):
    assert runs.session_start_display(store) is None
    assert runs.maybe_enqueue(store) is True
    assert runs.maybe_enqueue(store) is False          # already queued
    generate(store, {"slow_stage", "loop"}, now=utcnow().replace(microsecond=0))
    done = runs.run_pending(store)
    assert [r.status for r in done] == ["succeeded"] and done[0].trigger == "session_start"
    assert runs.maybe_enqueue(store) is False          # fresh
    assert runs.maybe_enqueue(store, now=utcnow() + timedelta(days=8)) is True
    # its speed (it runs in every SessionStart hook) is measured in bench/, not asserted here: a
    # wall-clock bound in a test fails on a loaded machine
    text = runs.session_start_display(store)
    assert text and "Last analysis" in text and "(today)" in text
    assert "x stage:implementer (p50=" in text and "loop: Bash `pytest -x" in text


def test_failed_and_timed_out_runs_are_recorded(store):
    generate(store, days=3)
    r = runs.run_analysis(store, timeout_s=0)
    assert r.status == "timed_out" and "stopped before" in (r.error_detail or "")
    store.con.execute("DROP VIEW workflow_stage_summary")     # break the store under the analysis
    r = runs.run_analysis(store)
    assert r.status == "failed" and "workflow_stage_summary" in (r.error_detail or "")
    assert [x.status for x in runs.list_runs(store)] == ["failed", "timed_out"]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):  # keep test output quiet
        pass


def test_budget_alerts_go_to_log_and_webhook_once(store, tmp_path):
    p = generate(store, days=2)
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        budgets.set_webhook(store, f"http://127.0.0.1:{server.server_port}/alerts")
        wf = p.workflows[-1]
        budgets.set_budget(store, "workflow", 0.5, key=wf)
        new = budgets.evaluate_alerts(store, now=p.now)
        assert [(a.kind, a.key, a.level) for a in new] == [("budget", wf, 80)]
        assert new[0].delivered["webhook"].startswith("ok")
        ctype, body = _Hook.received[-1]
        assert ctype == "application/json" and body["version"] == "4" and body["status"] == "firing"
        assert body["alerts"][0]["labels"] | {"workflow_id": wf} == body["alerts"][0]["labels"]
        assert wf in (tmp_path / "alerts.log").read_text()
        assert budgets.evaluate_alerts(store, now=p.now) == []      # one alert per crossing
        assert budgets.recent_alerts(store)[0].delivered["webhook"].startswith("ok")
    finally:
        server.shutdown()
    # an unreachable webhook keeps the alert (log + table)
    budgets.set_budget(store, "day", 0.1)
    new = budgets.evaluate_alerts(store, now=p.now)
    assert new and all(a.delivered["webhook"].startswith("error") for a in new)


def test_budget_alerts_see_the_write_before_them(store):
    """The daemon checks budgets after every write; per workflow and stage it reads the analysis
    cache (the views' sums took seconds at 10M requests), so the check must see the write that came
    just before it, as the views did: a stage that crosses its budget by that write raises its alert."""
    from golem_mcp.store.batch import Batch

    now = utcnow().replace(microsecond=0)
    p = generate(store, days=2, now=now)
    wf = p.workflows[-1]
    spent = {r["stage"]: r["c"] for r in store.query(
        "SELECT stage, sum(cost_usd) AS c FROM requests WHERE workflow_id = ? GROUP BY stage", [wf])}
    stage = max(spent, key=spent.__getitem__)
    budgets.set_budget(store, "stage", spent[stage] * 2.5, key=f"{wf}/{stage}")
    assert budgets.evaluate_alerts(store, now=now, send=False) == []     # 40%: under every level
    sid, aid, last = store.query("SELECT session_id, agent_id, \"timestamp\" FROM requests WHERE workflow_id = ? "
                                 "AND stage = ? AND agent_id IS NOT NULL ORDER BY \"timestamp\" DESC LIMIT 1",
                                 [wf, stage])[0].values()
    b = Batch()
    b.add("api_requests", {"request_id": "late-big", "session_id": sid, "agent_id": aid, "model": "claude-opus-4-1",
                           "timestamp": last - timedelta(seconds=1), "recorded_cost_usd": spent[stage] * 1.0,
                           "input_tokens": 10, "output_tokens": 10, "workflow_id": wf, "stage": stage})
    store.write(b)
    new = budgets.evaluate_alerts(store, now=now, send=False)
    assert [(a.kind, a.scope, a.key, a.level) for a in new] == [("budget", "stage", f"{wf}/{stage}", 80)]
    assert new[0].value == pytest.approx(spent[stage] * 2.0, rel=1e-3)


def test_session_start_shows_alerts_raised_on_ingest_since_the_last_run(store):
    now = utcnow().replace(microsecond=0)
    p = generate(store, days=2, now=now)
    wf = p.workflows[-1]
    budgets.set_budget(store, "workflow", 0.5, key=wf)
    budgets.evaluate_alerts(store, now=now, send=False)        # what the daemon does on ingest
    text = runs.session_start_display(store, now=now)
    assert text == f"golem-mcp telemetry\n  no analysis yet\n  alert: {budgets.recent_alerts(store)[0].message}"
    run = runs.run_analysis(store, now=now, alert=False)
    assert run.status == "succeeded"
    assert "alert:" not in (runs.session_start_display(store, now=now) or "")   # seen before that run
    budgets.set_budget(store, "day", 0.01)
    later = utcnow() + timedelta(seconds=1)
    new = budgets.evaluate_alerts(store, now=later, send=False)
    assert new
    text = runs.session_start_display(store, now=later)
    assert text and "Last analysis" in text and f"alert: {new[0].message}" in text


def test_budget_status_projection(store):
    p = generate(store, days=2)
    st = budgets.budget_status(store, workflow_id=p.workflows[-1], stage="reviewer", now=p.now - timedelta(hours=9))
    assert st.workflow and st.stage and st.workflow.limit_usd == 5.0 and st.stage.limit_usd == 2.0
    assert st.today.limit_usd == 150.0 and st.projected_today_usd >= st.today.spent_usd
    assert st.advice == "within budget"
    # each figure is the requests' own sum: today up to `now` (9 hours before the data's end), the
    # last three hours' burn, the workflow and its stage over all of it
    now = p.now - timedelta(hours=9)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    want = store.query(
        'SELECT sum(cost_usd) FILTER (WHERE "timestamp" >= ? AND "timestamp" < ?) AS today, '
        'sum(cost_usd) FILTER (WHERE "timestamp" >= ? AND "timestamp" < ?) AS last3, '
        "sum(cost_usd) FILTER (WHERE workflow_id = ?) AS wf, "
        "sum(cost_usd) FILTER (WHERE workflow_id = ? AND stage = 'reviewer') AS st FROM requests",
        [day, now, now - timedelta(hours=3), now, p.workflows[-1], p.workflows[-1]])[0]
    assert want["today"] and want["last3"] and want["st"]
    assert st.today.spent_usd == pytest.approx(round(want["today"], 4), abs=1e-9)
    assert st.burn_rate_usd_per_hour == pytest.approx(round(want["last3"] / 3, 4), abs=1e-9)
    assert (st.workflow.spent_usd, st.stage.spent_usd) == pytest.approx((round(want["wf"], 4), round(want["st"], 4)), abs=1e-9)
    budgets.set_budget(store, "workflow", st.workflow.spent_usd / 0.9, key=p.workflows[-1])
    st = budgets.budget_status(store, workflow_id=p.workflows[-1], now=p.now - timedelta(hours=9))
    assert st.workflow.level_reached == 80 and "cheaper model" in st.advice


def _daemon_runs(url: str) -> list[dict]:
    r = api.post(url + "/api/cli", json={"argv": ["analyze", "--runs", "--json"]}, timeout=30)
    assert r.status_code == 200 and r.json()["exit"] == 0, r.text
    return json.loads(r.json()["stdout"])


def _session_start(url: str, sid: str) -> dict:
    r = api.post(url + "/hooks", json={"session_id": sid, "hook_event_name": "SessionStart", "source": "startup",
                                         "cwd": "/tmp", "transcript_path": f"/tmp/{sid}.jsonl"}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def test_daemon_runs_the_analysis_a_session_start_queues(golem_home, start_daemon, tmp_path):
    """Seed 003's auto-trigger in the daemon: a SessionStart shows the last analysis at once and, the
    last successful run being over a week old, queues a run that the daemon's own thread carries out;
    a run a stopped daemon left 'running' is marked failed when the next one starts."""
    db = tmp_path / "golem.duckdb"
    now = utcnow().replace(microsecond=0)
    with Store(db) as st:
        generate(st, {"slow_stage", "loop"}, now=now)
        old = runs.run_analysis(st, now=now - timedelta(days=10))
        assert old.status == "succeeded"
        st.con.execute("UPDATE analysis_runs SET finished_at = ? WHERE run_id = ?", [now - timedelta(days=10), old.run_id])
        crashed = runs.enqueue(st, "cli", now=now)
        st.con.execute("UPDATE analysis_runs SET status = 'running' WHERE run_id = ?", [crashed])
    d = start_daemon(db=db)

    # the reply shows the last analysis as it was: the run this SessionStart queues is not waited for
    # (how long the hook's round trip takes is bench/hook_latency.py's to measure, not a test's: a
    # wall-clock bound here failed on a loaded machine)
    reply = _session_start(d.url, "sess-auto-1")
    assert "Last analysis" in reply["display"] and "10 days ago" in reply["display"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = _daemon_runs(d.url)
        auto = [r for r in listed if r["trigger"] == "session_start"]
        if auto and auto[0]["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert [r["status"] for r in auto] == ["succeeded"], listed
    by_id = {r["run_id"]: r for r in listed}
    assert by_id[crashed]["status"] == "failed" and "interrupted" in by_id[crashed]["error_detail"]
    assert auto[0]["produced"]["loops"] >= 1                   # it analysed the store's current week
    # the next session sees the fresh run; the analysis is not queued again
    assert "(today)" in _session_start(d.url, "sess-auto-2")["display"]


def test_auto_trigger_can_be_turned_off(golem_home, start_daemon, tmp_path):
    d = start_daemon(env={"GOLEM_ANALYSIS_MAX_AGE_DAYS": "0"})
    _session_start(d.url, "sess-off")
    # the analysis thread looks at once when woken (with the setting on, a run is queued within
    # milliseconds and listed below); a manual run meanwhile gives it time to look
    r = api.post(d.url + "/api/cli", json={"argv": ["analyze", "--json"]}, timeout=60)
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    assert [x["trigger"] for x in _daemon_runs(d.url)] == ["cli"]


def test_daemon_keeps_the_analysis_cache_warm(golem_home, start_daemon, tmp_path):
    """The daemon builds the per-day aggregate cache when it starts, so the first run a user or a
    session start asks for re-aggregates nothing (building it costs ~4 s of a 10M-request run)."""
    db = tmp_path / "golem.duckdb"
    with Store(db) as st:
        p = generate(st, {"slow_stage"}, now=utcnow().replace(microsecond=0))
        assert not st.query("SELECT * FROM analysis_cache_state")
    d = start_daemon(db=db)
    log = golem_home / "daemon.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "analysis cache: built" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    assert "analysis cache: built" in log.read_text()
    r = api.post(d.url + "/api/cli", json={"argv": ["analyze", "--json", "--now", p.now.isoformat()]}, timeout=120)
    assert r.status_code == 200 and r.json()["exit"] == 0, r.text
    run = json.loads(r.json()["stdout"])
    assert run["status"] == "succeeded" and run["scanned"]["seconds"]["snapshot.cache_days"] == 0, run["scanned"]
