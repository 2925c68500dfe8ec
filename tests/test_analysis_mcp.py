"""The analysis tools through the real MCP client, in process, on the fixtures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from golem_mcp.ingestion.importer import Importer
from golem_mcp.store.db import Store

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"

TOOLS = {"find_slow_stages", "find_token_leaks", "query_errors_and_loops", "query_review_findings", "budget_status",
         "list_improvements", "predict_cost"}


@pytest.mark.asyncio
async def test_tools_listed_and_answer(tmp_path, monkeypatch):
    pytest.importorskip("golem_mcp.interfaces.mcp_server")
    from mcp.client.client import Client

    from golem_mcp.interfaces.mcp_server import build_server

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    store = Store(tmp_path / "t.duckdb")
    Importer(store, False).run([FIXTURES])
    server = build_server(lambda: store)
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) >= TOOLS
        assert all(tools[n].annotations and tools[n].annotations.read_only_hint for n in TOOLS)
        res = await client.call_tool("query_errors_and_loops", {"days": 3650})
        assert not res.is_error
        assert res.structured_content["workflows_with_loops"] == ["wf-006", "wf-007"]
        retries = res.structured_content["retries"]
        assert retries["rows"][0][retries["columns"].index("workflow_id")] == "wf-008"
        res = await client.call_tool("budget_status", {"workflow_id": "wf-006"})
        assert res.structured_content["workflow"]["limit_usd"] == 5.0
        res = await client.call_tool("budget_status", {"workflow_id": "wf-999"})
        assert res.is_error and "no workflow 'wf-999'" in res.content[0].text
        # improvement items: the analysis runs when none ran in the last day, so the first ask answers
        res = await client.call_tool("list_improvements", {})
        assert not res.is_error and res.structured_content["analysed_at"]
        assert res.structured_content["items"]["rows"], res.structured_content
        res = await client.call_tool("find_slow_stages", {"dimension": "nope"})
        assert res.is_error and "dimension: must be one of" in res.content[0].text
        # every dimension's p50/p95/p99 with the baseline used or why there is none
        res = await client.call_tool("find_slow_stages", {"dimension": "stage", "days": 3650, "limit": 50})
        durations = res.structured_content["durations"]
        assert {"p50_ms", "p95_ms", "p99_ms", "baseline"} <= set(durations["columns"])
        keys = {r[durations["columns"].index("key")] for r in durations["rows"]}
        assert {"analyst", "planner", "implementer", "reviewer"} <= keys
        assert all(r[durations["columns"].index("baseline")] for r in durations["rows"])
    store.close()


@pytest.mark.asyncio
async def test_clock_setting_moves_the_tools_windows(tmp_path, monkeypatch):
    """GOLEM_CLOCK (benches and tests on stores dated elsewhere): the tools' windows end at that time,
    the newest request's when it is earlier; a clock that is not a time is a clear error."""
    pytest.importorskip("golem_mcp.interfaces.mcp_server")
    from mcp.client.client import Client

    from golem_mcp.interfaces.mcp_server import build_server

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    store = Store(tmp_path / "t.duckdb")
    Importer(store, False).run([FIXTURES])
    newest = store.scalar('SELECT max("timestamp") FROM api_requests')
    server = build_server(lambda: store)
    async with Client(server) as client:
        monkeypatch.setenv("GOLEM_CLOCK", "2020-01-02T03:04:00")
        res = await client.call_tool("find_token_leaks", {"days": 1})
        assert res.structured_content["window"].startswith("2020-01-01 03:04 to 2020-01-02 03:04 UTC")
        monkeypatch.setenv("GOLEM_CLOCK", "2099-01-01T00:00:00+00:00")
        res = await client.call_tool("find_token_leaks", {"days": 1})
        assert res.structured_content["window"].split(" UTC")[0].endswith(f"{newest + timedelta(seconds=1):%Y-%m-%d %H:%M}")
        monkeypatch.setenv("GOLEM_CLOCK", "tomorrow")
        res = await client.call_tool("find_token_leaks", {})
        assert res.is_error and "GOLEM_CLOCK='tomorrow' is not an ISO time" in res.content[0].text
    store.close()
