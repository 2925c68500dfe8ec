"""The analysis tools through the real MCP client, in process, on the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_mcp.ingestion.importer import Importer
from golem_mcp.store.db import Store

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"

TOOLS = {"find_bottlenecks", "detect_anomalies", "find_loops", "query_error_patterns", "query_trends",
         "query_quality", "budget_status", "list_findings", "predict_cost"}


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
        res = await client.call_tool("find_loops", {"days": 3650})
        assert not res.is_error
        assert res.structured_content["workflows_with_loops"] == ["wf-006", "wf-007"]
        assert res.structured_content["retries"][0]["workflow_id"] == "wf-008"
        res = await client.call_tool("budget_status", {"workflow_id": "wf-006"})
        assert res.structured_content["workflow"]["limit_usd"] == 5.0
        res = await client.call_tool("list_findings", {})
        assert res.structured_content["items"] == [] and "golem-mcp analyze" in res.structured_content["note"]
        res = await client.call_tool("find_bottlenecks", {"dimension": "nope"})
        assert res.is_error and "choose from" in res.content[0].text
    store.close()
