"""The analysis tools through the real MCP client, in process, on the fixtures."""

from __future__ import annotations

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
