"""What today's Claude Code (2.1.328 and 2.1.332) emits beyond the first schema, typed: attribution of a request (skill,
plugin, MCP server), effort, cost in micro-dollars, compactions, refusals, retries exhausted,
and the hooks PostToolBatch, StopFailure, Pre/PostCompact, TaskCreated, PermissionDenied.

The data is a real capture per CLI version (``tests/fixtures/cc-<version>-today``, each made by
``tests/fixtures/capture_cc_today.py`` with that version of the real CLI against the scripted
stand-in); every test that reads one runs on each. It is sent to a real daemon over its HTTP routes,
then read back from its DuckDB file. Expectations are read off the captured bodies, not written down
by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import api, launch_daemon
from golem_mcp.ingestion.hooks import hook_to_batch
from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import Store

CAPTURES = sorted((Path(__file__).parent / "fixtures").glob("cc-*-today"))
assert len(CAPTURES) >= 2, "the captures of Claude Code 2.1.328 and later are missing"


def otel_events(cap: Path) -> list[dict[str, Any]]:
    """Every captured OTel log event's attributes, as plain values."""
    out = []
    for f in sorted((cap / "otlp").glob("*_logs.json")):
        for rl in json.loads(f.read_text())["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for lr in sl["logRecords"]:
                    out.append({a["key"]: next(iter(a["value"].values())) for a in lr["attributes"]})
    return out


def hook_payloads(cap: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (cap / "hooks.jsonl").read_text().splitlines() if line.strip()]


def events(cap: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in otel_events(cap) if e["event.name"] == name]


@pytest.fixture(scope="module", params=CAPTURES, ids=lambda p: p.name)
def cap(request: pytest.FixtureRequest) -> Path:
    """One version's capture folder."""
    return Path(request.param)


@pytest.fixture(scope="module")
def captured(cap: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The capture sent to a real daemon (OTLP bodies to /v1/logs and /v1/metrics, hook payloads to
    /hooks), its cost report by skill and MCP server, then its DuckDB file opened read-only."""


    home = tmp_path_factory.mktemp("cc-today-home")
    db = home / "golem.duckdb"
    d = launch_daemon(home, db)
    try:
        for f in sorted((cap / "otlp").iterdir()):
            r = api.post(f"{d.url}/v1/{f.stem.split('_')[1]}", content=f.read_bytes(),
                         headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
        r = api.post(f"{d.url}/hooks", json=hook_payloads(cap))
        assert r.status_code == 200 and r.json()["stored"] == len(hook_payloads(cap)), r.text
        reports = {by: api.post(f"{d.url}/api/report", json={"by": [by]}).json()
                   for by in ("skill", "mcp_server", "plugin")}
    finally:
        assert d.stop() == 0
    store = Store(db, read_only=True)
    yield store, reports
    store.close()


def test_requests_carry_attribution_effort_and_exact_cost(cap: Path, captured: Any) -> None:
    store, _ = captured
    sent = {e["request_id"]: e for e in events(cap, "api_request")}
    served = json.loads((cap / "served.json").read_text())
    assert len(sent) == len(served)  # one api_request event per response the stand-in served
    rows = {r["request_id"]: r for r in store.query(
        "SELECT request_id, skill_name, plugin_name, mcp_server_name, mcp_tool_name, effort, query_source, "
        "cost_usd_micros, recorded_cost_usd, cost_usd, cost_source FROM requests")}
    assert set(rows) == set(sent)
    for rid, e in sent.items():
        r = rows[rid]
        assert r["skill_name"] == e.get("skill.name")
        assert r["mcp_server_name"] == e.get("mcp_server.name")
        assert r["plugin_name"] == e.get("plugin.name")
        assert (r["effort"], r["query_source"]) == (e["effort"], e["query_source"])
        # the micro-dollars are kept as sent; the recorded cost is cost_usd, unrounded, as Claude Code sums it
        assert r["cost_usd_micros"] == e["cost_usd_micros"] == round(e["cost_usd"] * 1e6)
        assert r["recorded_cost_usd"] == e["cost_usd"] == r["cost_usd"]
        assert r["cost_source"] == "claude_code"
    assert any(r["skill_name"] == "cost-check" for r in rows.values())
    assert any(r["mcp_server_name"] == "demo" for r in rows.values())


def test_cost_by_skill_and_mcp_server_over_http(cap: Path, captured: Any) -> None:
    _, reports = captured
    for by, attr in (("skill", "skill.name"), ("mcp_server", "mcp_server.name"), ("plugin", "plugin.name")):
        want: dict[Any, list[int]] = {}
        for e in events(cap, "api_request"):
            want.setdefault(e.get(attr), []).append(e["cost_usd"])
        got = {r[by]: r for r in reports[by]}
        assert set(got) == set(want), by
        for key, costs in want.items():
            assert got[key]["requests"] == len(costs)
            assert got[key]["cost_usd"] == pytest.approx(sum(costs), rel=1e-12)


def test_mcp_tool_calls_named_with_server_and_tool_and_batches(cap: Path, captured: Any) -> None:
    store, _ = captured
    mcp_results = [e for e in events(cap, "tool_result") if e.get("tool_source") == "mcp" or e["tool_name"] == "mcp_tool"]
    assert mcp_results, "the capture has an MCP tool call"
    for e in mcp_results:
        params = json.loads(e["tool_parameters"])
        row = store.query("SELECT tool_name, mcp_server_name, mcp_tool_name, duration_ms, success, batch_size "
                          "FROM tools WHERE tool_use_id = ?", [e["tool_use_id"]])[0]
        # the hook's real name beats OTel's placeholder; server and tool as Claude Code reported them
        assert row["tool_name"] == f"mcp__{params['mcp_server_name']}__{params['mcp_tool_name']}"
        assert (row["mcp_server_name"], row["mcp_tool_name"]) == (params["mcp_server_name"], params["mcp_tool_name"])
        assert row["success"] is True
    batches = [p for p in hook_payloads(cap) if p["hook_event_name"] == "PostToolBatch"]
    for p in batches:
        for c in p["tool_calls"]:
            got = store.query("SELECT batch_size FROM tool_calls WHERE tool_use_id = ?", [c["tool_use_id"]])
            assert got == [{"batch_size": len(p["tool_calls"])}]
    # PostToolUse's duration_ms is the tool's execution time
    for p in hook_payloads(cap):
        if p["hook_event_name"] == "PostToolUse":
            got = store.query("SELECT duration_ms FROM tool_calls WHERE tool_use_id = ?", [p["tool_use_id"]])
            assert got == [{"duration_ms": float(p["duration_ms"])}]


def test_refusals_and_exhausted_retries_are_failures_counted_once(cap: Path, captured: Any) -> None:
    store, _ = captured
    refusals = events(cap, "api_refusal")
    exhausted = events(cap, "api_retries_exhausted")
    api_errors = events(cap, "api_error")
    assert refusals and exhausted and api_errors
    rows = store.query("SELECT kind, request_id, attempt, retries_exhausted, total_retry_duration_ms, prompt_id "
                       "FROM errors ORDER BY kind, request_id")
    # every StopFailure hook repeats an error OTel reported for the same prompt: none is counted again
    assert [r["kind"] for r in rows].count("stop_failure") == 0
    assert sorted(r["request_id"] for r in rows if r["kind"] == "refusal") == sorted(e["request_id"] for e in refusals)
    gave_up = [r for r in rows if r["kind"] == "api_error"]
    assert len(gave_up) == len(api_errors) == len(exhausted)  # the exhausted event merged into its error
    assert gave_up[0]["retries_exhausted"] is True
    assert gave_up[0]["attempt"] == exhausted[0]["total_attempts"]
    assert gave_up[0]["total_retry_duration_ms"] == exhausted[0]["total_retry_duration_ms"]
    cats = {r["category"]: r["n"] for r in store.query(
        "SELECT category, count(*) AS n FROM failure_events WHERE tool_name IS NULL GROUP BY 1")}
    assert cats.get("refusal") == len(refusals)
    # the raw StopFailure payloads are still stored, typed
    assert len(store.query("SELECT 1 FROM api_errors WHERE kind = 'stop_failure'")) == sum(
        1 for p in hook_payloads(cap) if p["hook_event_name"] == "StopFailure")


def test_compaction_counted_once_with_its_token_savings(cap: Path, captured: Any) -> None:
    store, _ = captured
    sent = events(cap, "compaction")
    assert len(sent) == 1
    rows = store.query("SELECT source, \"trigger\", pre_tokens, post_tokens, tokens_saved, success, workflow_id "
                       "FROM compactions")
    e = sent[0]
    # the Pre/PostCompact hooks of the same compaction add nothing
    assert rows == [{"source": "otel", "trigger": e["trigger"], "pre_tokens": int(e["pre_tokens"]),
                     "post_tokens": int(e["post_tokens"]),
                     "tokens_saved": int(e["pre_tokens"]) - int(e["post_tokens"]), "success": True,
                     "workflow_id": "wf-today"}]


def test_tasks_prompt_ids_and_subagent_totals(cap: Path, captured: Any) -> None:
    store, _ = captured
    created = [p for p in hook_payloads(cap) if p["hook_event_name"] == "TaskCreated"]
    tasks = store.query("SELECT session_id, cc_task_id, subject, created_at FROM agent_tasks")
    assert [(t["session_id"], t["cc_task_id"]) for t in tasks] == [(p["session_id"], p["task_id"]) for p in created]
    assert tasks[0]["subject"] is None and tasks[0]["created_at"] is not None  # no model text unless asked
    with_prompt = sum(1 for p in hook_payloads(cap) if p.get("prompt_id"))
    assert store.scalar("SELECT count(*) FROM hook_events WHERE prompt_id IS NOT NULL") == with_prompt


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "t.duckdb")


def _base(event: str, **kw: Any) -> dict[str, Any]:
    # the fields every hook payload has (the CLI bundle's hook input schema), then the event's own
    return {"session_id": "s-1", "transcript_path": "/tmp/t.jsonl", "cwd": "/tmp", "prompt_id": "p-1",
            "hook_event_name": event, **kw}


def test_hooks_alone_give_failures_compactions_and_denials(tmp_path: Path) -> None:
    """Without OTel (no exporter configured), the hooks still say a turn failed, a compaction ran
    and a permission was denied."""
    b = Batch()
    payloads = [
        _base("StopFailure", error="rate_limit", last_assistant_message="API Error: Rate limited"),
        _base("PreCompact", trigger="auto", custom_instructions=None),
        _base("PostCompact", trigger="auto", compact_summary="a summary of the conversation"),
        _base("PermissionDenied", tool_name="Bash", tool_input={"command": "rm -rf build"},
              tool_use_id="toolu_1", reason="Auto mode denied the command"),
        _base("TaskCompleted", task_id="3", task_subject="Run the tests"),
    ]
    for i, p in enumerate(payloads):
        assert hook_to_batch(p, b, received_us=1_780_000_000_000_000 + i)
    with _store(tmp_path) as s:
        s.write(b)
        errs = s.query("SELECT kind, error_type, error FROM errors")
        assert errs == [{"kind": "stop_failure", "error_type": "rate_limit", "error": "API Error: Rate limited"}]
        assert s.query("SELECT category FROM failure_events WHERE tool_name IS NULL") == [{"category": "rate_limit"}]
        comp = s.query("SELECT source, \"trigger\", tokens_saved FROM compactions")
        assert comp == [{"source": "hook", "trigger": "auto", "tokens_saved": None}]
        denied = s.query("SELECT success, decision, error FROM tools WHERE tool_use_id = 'toolu_1'")
        assert denied == [{"success": False, "decision": "denied",
                           "error": "permission denied: Auto mode denied the command"}]
        assert s.query("SELECT category FROM failure_events WHERE tool_name = 'Bash'") == [{"category": "permission"}]
        assert s.query("SELECT completed_at IS NOT NULL AS done, subject FROM agent_tasks") == [
            {"done": True, "subject": None}]
        # the summary of the conversation is text: not kept
        assert "compact_summary" not in (s.scalar("SELECT payload FROM hook_events WHERE event_name = 'PostCompact'")
                                         or "")


def test_refusals_retries_and_compactions_show_in_the_analyses(cap: Path, captured: Any, tmp_path: Path) -> None:
    """The errors answer splits API failures by kind and counts exhausted retries; the cost answer
    names the compactions of its scope and the tokens they saved."""
    import shutil

    from golem_mcp.analysis.errors_loops import errors_and_loops
    from golem_mcp.analysis.workflows import query_workflow_cost

    store, _ = captured
    copy = tmp_path / "copy.duckdb"
    shutil.copy(store.path, copy)
    with Store(copy) as s:
        out = errors_and_loops(s, days=3650, sections=["api_errors"], limit=10)
        assert out.api_errors is not None
        rows = [dict(zip(out.api_errors.columns, r, strict=True)) for r in out.api_errors.rows]
        by_kind = {r["kind"]: r for r in rows}
        assert by_kind["refusal"]["errors"] == len(events(cap, "api_refusal"))
        assert by_kind["api_error"]["retries_exhausted"] == len(events(cap, "api_retries_exhausted"))
        cost = query_workflow_cost(s, workflow_id="wf-today")
        e = events(cap, "compaction")[0]
        saved = int(e["pre_tokens"]) - int(e["post_tokens"])
        assert cost.compactions == f"1 context compaction(s) (0 auto), {saved:,} tokens saved"
        by_skill = query_workflow_cost(s, workflow_id="wf-today", group_by=["skill"])
        skills = {r[0]: r[1] for r in by_skill.groups.rows}
        assert skills["cost-check"] == sum(1 for ev in events(cap, "api_request") if ev.get("skill.name") == "cost-check")


def test_transcripts_swept_by_claude_code_stay_answered(tmp_path: Path) -> None:
    """Claude Code deletes transcripts older than cleanupPeriodDays; what was read from them stays:
    a later scan of the emptied folder changes nothing."""
    import shutil

    from conftest import FIXTURES
    from golem_mcp.ingestion.importer import Importer

    projects = tmp_path / "projects"
    shutil.copytree(FIXTURES / "home" / ".claude" / "projects", projects)
    with _store(tmp_path) as s:
        Importer(s).run([projects])
        before = s.query("SELECT workflow_id, stage, count(*) AS n, sum(output_tokens) AS out FROM requests "
                         "GROUP BY ALL ORDER BY ALL")
        assert before
        for session in projects.glob("*/*.jsonl"):  # the sweep: session files and their subagents' go
            session.unlink()
            shutil.rmtree(session.with_suffix(""), ignore_errors=True)
        Importer(s).run([projects])
        assert s.query("SELECT workflow_id, stage, count(*) AS n, sum(output_tokens) AS out FROM requests "
                       "GROUP BY ALL ORDER BY ALL") == before


def test_new_views_and_columns_are_described(tmp_path: Path) -> None:
    """describe_schema names the new views and says what the new columns mean."""
    from golem_mcp.analysis.schema_doc import describe

    with _store(tmp_path) as s:
        views = {v["name"]: v for v in describe(s)["views"]}
        assert {"compactions", "agent_tasks"} <= set(views)
        for view, cols in (("requests", ("skill_name", "plugin_name", "mcp_server_name", "effort", "cost_usd_micros")),
                           ("errors", ("kind", "retries_exhausted")), ("compactions", ("tokens_saved",))):
            described = {c["name"]: c["description"] for c in describe(s, view)["columns"]}
            for c in cols:
                assert described[c], (view, c)


def test_compactions_and_tasks_travel_in_shards(cap: Path, tmp_path: Path, golem_home: Path) -> None:
    """An exported shard folder carries the compactions and tasks, with the machine that saw them."""
    from golem_mcp.ingestion import otlp
    from golem_mcp.ingestion.hooks import parse_hook_lines
    from golem_mcp.store.shards import export, import_shards

    b = Batch()
    for f in sorted((cap / "otlp").iterdir()):
        signal = f.stem.split("_")[1]
        otlp.to_batch(signal, otlp.decode(signal, f.read_bytes(), "application/json"), b)
    parse_hook_lines((cap / "hooks.jsonl").read_bytes(), "hooks.jsonl", b)
    query = ("SELECT (SELECT list(tokens_saved) FROM compactions) AS saved, "
             "(SELECT list(cc_task_id) FROM agent_tasks) AS tasks, "
             "(SELECT count(*) FROM compaction_events) AS events")
    with Store(tmp_path / "a.duckdb") as a:
        a.write(b)
        want = a.query(query)
        machine = a.machine_id
        export(a, tmp_path / "shards")
    with Store(tmp_path / "b.duckdb") as other:
        import_shards(other, [tmp_path / "shards"])
        assert other.query(query) == want and want[0]["saved"] and want[0]["tasks"]
        assert other.query("SELECT DISTINCT machine_id FROM compaction_events UNION "
                           "SELECT DISTINCT machine_id FROM agent_tasks") == [{"machine_id": machine}]
