"""End to end with the real Claude Code CLI: a workflow whose agents call golem-mcp's tools.

Two headless ``claude -p`` sessions run at the same time against one daemon and one scripted
Messages-API stand-in. In each, the master calls ``record_workflow`` and spawns two custom subagents:
``reviewer`` posts findings with ``report_review_findings`` (naming no workflow: the server must find
it from the calling session), ``costwatch`` asks ``query_workflow_cost``. Claude Code emits real
transcripts, OTLP and hook calls; afterwards every request of each session and its subagents must be
attributed to that session's workflow and the right stage, with exactly the tokens the stand-in
served, and the findings must be linked to the workflow and the reviewer agent.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from conftest import mcp_http
from golem_mcp.interfaces.client import call as daemon_call
from support.claude_cli import ClaudeProject
from support.fake_anthropic import FakeMessagesAPI
from support.tables import by

from .node import bin_path

pytestmark = pytest.mark.e2e

FINDINGS = {"v": 1, "task": "{wf}.review", "severity": {"critical": 0, "major": 1, "minor": 1},
            "categories": {"tests": 1, "style": 1},
            "issues": [{"severity": "major", "category": "tests", "file": "src.py", "line": 1,
                        "summary": "no test for the empty case"},
                       {"severity": "minor", "category": "style", "file": "src.py", "line": 2, "summary": "naming"}]}

SCRIPT: dict[str, Any] = {"roles": {
    "main": {"steps": [
        ["tool", "mcp__golem__record_workflow", {"workflow_id": "{wf}", "path": "full", "complexity": "complex",
                                                 "experiment_id": "e2e-arm", "task_id": "{wf}.task"}],
        ["tool", "Agent", {"subagent_type": "reviewer", "description": "review", "prompt": "Review the change. WF:{wf}"}],
        ["tool", "Agent", {"subagent_type": "costwatch", "description": "cost check",
                           "prompt": "What has this workflow cost so far? WF:{wf}"}],
        ["text", "Workflow complete."]],
        "usage": {"input": 3000, "output": 120, "cache_read": 12000, "cache_write": 800}},
    "reviewer": {"steps": [
        ["tool", "mcp__golem__report_review_findings", {"findings_json": FINDINGS}],
        ["text", "Review posted."]],
        "usage": {"input": 6000, "output": 700, "cache_read": 25000, "cache_write": 1200}},
    "costwatch": {"steps": [
        ["tool", "mcp__golem__query_workflow_cost", {"workflow_id": "{wf}"}],
        ["text", "Cost reported."]],
        "usage": {"input": 1500, "output": 90, "cache_read": 4000, "cache_write": 300}},
}}
ALLOWED = ["mcp__golem__record_workflow", "mcp__golem__report_review_findings", "mcp__golem__query_workflow_cost",
           "Agent"]
KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
        "cache_write": "cache_creation_tokens"}


async def _sql(c: Client, sql: str) -> list[list[Any]]:
    r = await c.call_tool("query_sql", {"sql": sql, "max_rows": 200})
    assert not r.is_error, r.content[0].text
    return r.structured_content["rows"]


def test_two_concurrent_workflows_are_attributed_to_workflow_and_stage(daemon: str, golem_home: Path,
                                                                       tmp_path: Path) -> None:
    claude = bin_path("claude")
    runs: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []
    with FakeMessagesAPI(SCRIPT) as api:
        projects = {}
        for wf in ("wf-e2e-1", "wf-e2e-2"):
            p = ClaudeProject(tmp_path / wf, claude, api.url, daemon, golem_home)
            p.add_agent("reviewer", model="sonnet")
            p.add_agent("costwatch", model="haiku")
            projects[wf] = p

        def run(wf: str) -> None:
            try:
                runs[wf] = projects[wf].run(f"Run the workflow. WF:{wf}", ALLOWED)
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(wf,)) for wf in projects]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        served = list(api.served)

    for res in runs.values():
        assert res["is_error"] is False and res["_returncode"] == 0, res
    # Claude Code's own OTLP exporter got through: it sent the token the settings gave it
    assert daemon_call(daemon, "/api/status")["otel_events"] > 0
    # transcripts are the complete record; OTLP and hooks arrived while the sessions ran
    daemon_call(daemon, "/api/import", {"paths": [str(p.projects_dir) for p in projects.values()]})

    async def check() -> None:
        async with Client(mcp_http(daemon)) as c:
            for wf, res in runs.items():
                sid = res["session_id"]
                truth = api.totals(session_id=sid)
                assert set(truth) == {"main", "reviewer", "costwatch"}, served
                # every request of the session and its subagents belongs to this workflow
                rows = await _sql(c, "SELECT count(*), count(*) FILTER (WHERE workflow_id IS DISTINCT FROM "
                                     f"'{wf}') FROM requests WHERE session_id = '{sid}'")
                assert rows == [[sum(t["requests"] for t in truth.values()), 0]]
                # ... at the right stage, with exactly the tokens the stand-in served
                r = await c.call_tool("query_workflow_cost", {"workflow_id": wf})
                assert not r.is_error, r.content[0].text
                got = by(r.structured_content["groups"], "stage")
                assert set(got) == set(truth)
                for stage, t in truth.items():
                    assert got[stage]["requests"] == t["requests"], (wf, stage)
                    for k, col in KEYS.items():
                        assert got[stage][col] == t[k], (wf, stage, k)
                # the workflow's context came from the master's record_workflow call
                rows = await _sql(c, "SELECT workflow_path, complexity_assessment, experiment_id, task_id "
                                     f"FROM workflow_summary WHERE workflow_id = '{wf}'")
                assert rows == [["full", "complex", "e2e-arm", f"{wf}.task"]]
                # the reviewer's findings named no workflow: linked through the calling session and agent
                reviewer_agent = next(s["agent_id"] for s in served if s["session_id"] == sid and s["role"] == "reviewer")
                rows = await _sql(c, "SELECT task, workflow_id, session_id, agent_id, severity.major, "
                                     f"severity.minor, len(issues) FROM claude_metrics WHERE workflow_id = '{wf}'")
                assert rows == [[f"{wf}.review", wf, sid, reviewer_agent, 1, 1, 2]]
                # the three MCP calls succeeded, each seen by the hooks with its caller
                expected = [["mcp__golem__query_workflow_cost", "costwatch", True],
                            ["mcp__golem__record_workflow", "main", True],
                            ["mcp__golem__report_review_findings", "reviewer", True]]
                for _ in range(50):
                    # a hook that timed out is spooled and drained by the daemon every few seconds
                    rows = await _sql(c, "SELECT tool_name, stage, success FROM tools WHERE session_id = "
                                         f"'{sid}' AND tool_name LIKE 'mcp__golem__%' ORDER BY tool_name")
                    if rows == expected:
                        break
                    await anyio.sleep(0.2)
                assert rows == expected
            # the two sessions did not bleed into each other
            rows = await _sql(c, "SELECT workflow_id, count(DISTINCT session_id) FROM requests "
                                 "WHERE workflow_id LIKE 'wf-e2e-%' GROUP BY 1 ORDER BY 1")
            assert rows == [["wf-e2e-1", 1], ["wf-e2e-2", 1]]

    anyio.run(check)
    # what the costwatch agent was told came from the store while the workflow ran
    for wf, p in projects.items():
        answers = []
        for f in p.projects_dir.rglob("agent-*.jsonl"):
            for line in f.read_text().splitlines():
                for block in (json.loads(line).get("message") or {}).get("content") or []:
                    if isinstance(block, dict) and block.get("type") == "tool_result" and "scope" in str(block):
                        answers.append(json.loads(block["content"]))
        assert [a["scope"] for a in answers] == [{"workflow_id": wf}], f"{wf}: costwatch got no cost answer"
        # ... and current: the daemon read the sessions' transcripts before answering (Claude Code's
        # OTLP export comes every 2 s; this whole workflow can take less). The master's requests up to
        # the reviewer's spawn and the reviewer's first one were on disk for a good while by then.
        so_far = by(answers[0]["groups"], "stage")
        assert so_far["main"]["requests"] >= 2 and so_far["reviewer"]["requests"] >= 1, answers[0]
    assert json.dumps(served)  # the stand-in's log stays serialisable for debugging
