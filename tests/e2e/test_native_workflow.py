"""End to end with the real Claude Code CLI: its native ``Workflow`` tool, seen by a golem daemon.

A headless ``claude -p`` session (OTLP, hooks and MCP wired to the daemon as ``golem-mcp install``
does) runs a workflow script of two ``agent()`` calls: a custom ``planner`` and Claude Code's generic
workflow subagent labelled ``reviewer``. What the OTLP export and the hooks delivered while it ran
already puts each agent's requests in the run; importing the transcripts afterwards names every stage.
Per stage, the tokens must be exactly what the stand-in served.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from golem_mcp.interfaces.client import call as daemon_call
from support.claude_cli import ClaudeProject
from support.fake_anthropic import FakeMessagesAPI

from .node import bin_path

pytestmark = pytest.mark.e2e

SCRIPT = (
    "export const meta = { name: 'e2e-native', description: 'Plan and review' }\n"
    "const plan = await agent('Plan the change. WF:{wf}', { label: 'plan', agentType: 'planner' })\n"
    "const review = await agent('ROLE:reviewer Review the plan. WF:{wf}', { label: 'reviewer' })\n"
    "return { plan, review }\n")
SCENARIO: dict[str, Any] = {"roles": {
    "main": {"steps": [["tool", "Workflow", {"script": SCRIPT}],
                       ["text", "The workflow is running."],
                       ["text", "The workflow is done."]],
             "usage": {"input": 2000, "output": 80, "cache_read": 9000, "cache_write": 400}},
    "planner": {"steps": [["tool", "Bash", {"command": "echo planned", "description": "plan"}], ["text", "Planned."]],
                "usage": {"input": 4000, "output": 500, "cache_read": 11000, "cache_write": 700}},
    "reviewer": {"steps": [["text", "Approved."]],
                 "usage": {"input": 3000, "output": 300, "cache_read": 7000, "cache_write": 500}},
}}
KEYS = {"requests": "requests", "input": "input_tokens", "output": "output_tokens",
        "cache_read": "cache_read_tokens", "cache_write": "cache_creation_tokens"}


def _per_stage(daemon: str, run_id: str) -> dict[str, dict[str, int]]:
    rows = daemon_call(daemon, "/api/report", {"by": ["workflow", "stage"]})
    return {r["stage"]: {k: r[col] for k, col in KEYS.items()} for r in rows if r["workflow"] == run_id}


def test_a_workflow_tool_run_is_a_workflow_with_its_agents_as_stages(daemon: str, golem_home: Path,
                                                                      tmp_path: Path) -> None:
    claude = bin_path("claude")
    with FakeMessagesAPI(SCENARIO) as api:
        p = ClaudeProject(tmp_path / "wf", claude, api.url, daemon, golem_home)
        p.add_agent("planner", model="haiku")
        res = p.run("Use a workflow to plan and review the change. WF:e2e-native", ["Workflow", "Bash"])
        served = list(api.served)
        truth = api.totals(session_id=res["session_id"])
    assert res["is_error"] is False and res["_returncode"] == 0, res
    run_id = next(s["run_id"] for s in reversed(served) if s["role"] == "main")
    assert run_id and run_id.startswith("wf_"), served
    assert set(truth) == {"main", "planner", "reviewer"}
    want = {stage: {"requests": t["requests"], **{k: t[k] for k in KEYS if k != "requests"}}
            for stage, t in truth.items() if stage != "main"}

    # while it ran, OTLP and hooks arrived: the run's requests are already the run's (the exporter
    # flushes every 0.5 s; a wait, not a speed check)
    total = sum(t["requests"] for t in want.values())
    deadline = time.monotonic() + 60
    got: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        got = _per_stage(daemon, run_id)
        if sum(g["requests"] for g in got.values()) >= total:
            break
        time.sleep(0.5)
    assert sum(g["requests"] for g in got.values()) == total, got
    # hooks named the custom agent (SubagentStart.agent_type); the generic one is still unnamed
    assert got["planner"] == want["planner"]

    # the transcripts name every stage, and nothing is counted twice
    daemon_call(daemon, "/api/import", {"paths": [str(p.projects_dir)]})
    assert _per_stage(daemon, run_id) == want
    rows = daemon_call(daemon, "/api/report", {"by": ["workflow"]})
    assert [r["requests"] for r in rows if r["workflow"] == run_id] == [total]
