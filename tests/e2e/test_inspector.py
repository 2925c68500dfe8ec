"""The official MCP Inspector (CLI mode) as an external client, over HTTP and over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import auth
from golem_mcp.interfaces.client import call as daemon_call
from golem_mcp.interfaces.mcp_server import _drop_none
from support.tables import by

from .node import bin_path

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())

pytestmark = pytest.mark.e2e


def inspector(tmp_path: Path, *args: str, expect_rc: int = 0) -> Any:
    env = {**os.environ, "HOME": str(tmp_path / "inspector-home"),
           "MCP_CATALOG_PATH": str(tmp_path / "inspector-catalog.json")}
    (tmp_path / "inspector-home").mkdir(exist_ok=True)
    p = subprocess.run([str(bin_path("mcp-inspector")), "--cli", *args], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == expect_rc, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(p.stdout)


def _stages(result: dict[str, Any]) -> dict[str, int]:
    assert not result.get("isError"), result
    answer = result["structuredContent"]
    # one copy of the data: structured content, and a one-line summary as the text
    assert answer == _drop_none(answer) and result["content"][0]["text"] == answer["summary"]
    return {s: g["input_tokens"] for s, g in by(answer["groups"], "stage").items()}



@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_inspector_lists_tools_and_calls_query_workflow_cost(daemon: str, tmp_path: Path, transport: str) -> None:
    daemon_call(daemon, "/api/import", {"paths": [str(FIX)]})
    if transport == "http":
        target = [f"{daemon}/mcp", "--transport", "http", "--header", f"Authorization: {auth(daemon)['authorization']}"]
    else:
        target = [sys.executable, "-m", "golem_mcp", "stdio", "-e", f"GOLEM_HOME={os.environ['GOLEM_HOME']}"]
    listed = inspector(tmp_path, *target, "--method", "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}
    assert {"record_workflow", "record_stage_usage", "query_workflow_cost", "compare_experiments",
            "report_review_findings", "query_errors_and_loops", "query_sql", "describe_schema"} <= set(tools)
    assert tools["query_workflow_cost"]["annotations"]["readOnlyHint"] is True
    out = inspector(tmp_path, *target, "--method", "tools/call", "--tool-name", "query_workflow_cost",
                    "--tool-arg", "workflow_id=wf-006")
    assert _stages(out) == {s: t["input"] for s, t in TRUTH["wf-006"]["stages"].items()}
    bad = inspector(tmp_path, *target, "--method", "tools/call", "--tool-name", "query_workflow_cost",
                    "--tool-arg", "workflow_id=wf-9", expect_rc=5)  # the Inspector's exit code for isError
    assert bad["isError"] is True and "closest: wf-0" in bad["content"][0]["text"]
