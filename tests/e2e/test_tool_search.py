"""Claude Code's tool search finds golem-mcp's tools by the words people use ("cost", "findings").

Claude Code 2.1.328 defers MCP tools behind its ``ToolSearch`` tool unless ``ENABLE_TOOL_SEARCH`` is
off: the model sees only the tool's name until a search loads it. Here the setting is left on; the
scripted model searches for "cost" and then for "findings", and the test checks what Claude Code's
own search answered and which golem tools it then offered to the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.claude_cli import ClaudeProject
from support.fake_anthropic import FakeMessagesAPI

from .node import bin_path

pytestmark = pytest.mark.e2e


def _search(query: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    props = ((schema or {}).get("input_schema") or {}).get("properties") or {"query": {}}
    args: dict[str, Any] = {"query": query}
    if "max_results" in props:
        args["max_results"] = 5
    return args


def test_tool_search_finds_cost_and_findings_tools(daemon: str, golem_home: Path, tmp_path: Path) -> None:
    claude = bin_path("claude")
    script: dict[str, Any] = {"roles": {"main": {"steps": [
        ["tool", "ToolSearch", _search("cost", None)],
        ["tool", "ToolSearch", _search("findings", None)],
        ["report", "## search"]], "usage": {"input": 500, "output": 50}}}}
    with FakeMessagesAPI(script) as api:
        p = ClaudeProject(tmp_path / "ts", claude, api.url, daemon, golem_home)
        env = p.env()
        env.pop("ENABLE_TOOL_SEARCH")
        p.env = lambda: env  # type: ignore[method-assign]  # tool search left as Claude Code ships it
        res = p.run("Which golem tools tell cost and findings?", ["ToolSearch", "mcp__golem"])
        served = list(api.served)
        schema = api.tool_schemas.get("ToolSearch")
    assert res["is_error"] is False, res
    assert schema is not None, f"Claude Code offered no ToolSearch tool: {sorted(api.tool_schemas)}"
    report = res["result"]
    lines = [ln for ln in report.splitlines()[1:] if ln.startswith("- ToolSearch")]
    assert len(lines) == 2, (report, json.dumps(schema)[:800])
    cost_answer, findings_answer = lines
    assert "mcp__golem__query_workflow_cost" in cost_answer, cost_answer
    assert "mcp__golem__report_review_findings" in findings_answer or \
        "mcp__golem__query_review_findings" in findings_answer, findings_answer
    # after the searches, the found tools are offered to the model in full
    offered = set(served[-1]["tools_offered"])
    assert "mcp__golem__query_workflow_cost" in offered, sorted(offered)
