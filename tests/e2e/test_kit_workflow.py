"""End to end: the kit as a maintainer uses it, with the real Claude Code CLI.

A fresh temp project gets nothing but ``golem-mcp install --project`` (run as the CLI a user runs).
Then ``claude -p --agent master "<task>"`` runs the kit's own agent files: the master records the
workflow, hands the task to analyst -> planner -> implementer -> reviewer with the ``Agent`` tool and
records each stage; the reviewer posts findings with ``report_review_findings``. The scripted
Messages-API stand-in keys its answers to the ``ROLE:<name>`` markers inside the kit's agent files,
so the only thing scripted is what the model says; prompts, tools, permissions, hooks, the MCP
entry and the ``OTEL_*`` settings are the kit's.

Afterwards ``query_workflow_cost`` must give every stage with exactly the tokens the stand-in served,
the findings must be stored and linked to the workflow and the reviewer agent, ``/analyze`` (the
kit's command, run the same way) must answer from golem-mcp tool calls about that workflow, and
``/experiment define`` must store its hypothesis through ``record_experiment``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client

from conftest import mcp_http
from golem_mcp.interfaces.client import call as daemon_call
from support.fake_anthropic import FakeMessagesAPI
from support.tables import by

from .node import bin_path

pytestmark = pytest.mark.e2e

WF = "wf-kit-greeting"
TASK = "KIT-7"
FINDINGS = {"v": 1, "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "task": TASK, "parent": WF,
            "severity": {"critical": 0, "major": 1, "minor": 1}, "categories": {"testing": 1, "documentation": 1},
            "rework": False,
            "issues": [{"severity": "major", "category": "testing", "file": "greet.py", "line": 1,
                        "summary": "greet() has no test for an empty name"},
                       {"severity": "minor", "category": "documentation", "file": "README.md", "line": 1,
                        "summary": "greet() is not documented"}]}


def _stage(stage: str) -> list[list[Any]]:
    """The master's two steps per stage: hand it over, then record it (no usage numbers: the server's)."""
    return [["tool", "Agent", {"subagent_type": stage, "description": f"{stage} stage", "run_in_background": False,
                               "prompt": f"Workflow {{wf}} (WF:{{wf}}), task {TASK}: add greet(name) to greet.py."}],
            ["tool", "mcp__golem__record_stage_usage", {"workflow_id": "{wf}", "stage": stage, "task_id": TASK,
                                                        "status": "succeeded"}]]


SCRIPT: dict[str, Any] = {"roles": {
    "master": {"steps": [
        ["tool", "mcp__golem__record_workflow", {"workflow_id": "{wf}", "task_id": TASK, "path": "full",
                                                 "complexity": "complex", "spec_completeness": "complete",
                                                 "experiment_id": "baseline", "status": "running"}],
        *_stage("analyst"), *_stage("planner"), *_stage("implementer"), *_stage("reviewer"),
        ["tool", "mcp__golem__record_workflow", {"workflow_id": "{wf}", "status": "completed"}],
        ["text", f"Done: full path, greet.py added, review 1 major / 1 minor. Workflow {WF}."]],
        "usage": {"input": 2100, "output": 150, "cache_read": 9000, "cache_write": 700}},
    "analyst": {"steps": [["tool", "Read", {"file_path": "{cwd}/README.md"}],
                          ["text", "README.md only; no greet function yet."]],
                "usage": {"input": 1200, "output": 300, "cache_read": 4000, "cache_write": 500}},
    "planner": {"steps": [["text", "1. Write greet.py with greet(name). Check: greet('a') == 'Hello, a!'."]],
                "usage": {"input": 900, "output": 250, "cache_read": 3000, "cache_write": 400}},
    "implementer": {"steps": [["tool", "Write", {"file_path": "{cwd}/greet.py",
                                                 "content": "def greet(name):\n    return f'Hello, {name}!'\n"}],
                              ["text", "Changed: greet.py."]],
                    "usage": {"input": 3300, "output": 800, "cache_read": 15000, "cache_write": 1100}},
    "reviewer": {"steps": [["tool", "mcp__golem__report_review_findings", FINDINGS],
                           ["text", "Review posted: 1 major, 1 minor."]],
                 "usage": {"input": 2500, "output": 600, "cache_read": 11000, "cache_write": 900}},
    # /analyze runs in the default main thread (no marker): it asks golem-mcp, then reports what it got
    "main": {"steps": [
        ["tool", "mcp__golem__query_workflow_cost", {"workflow_id": "{wf}", "group_by": ["stage"]}],
        ["tool", "mcp__golem__query_errors_and_loops", {"workflow_id": "{wf}"}],
        ["tool", "mcp__golem__query_review_findings", {}],
        ["tool", "mcp__golem__find_token_leaks", {"workflow_id": "{wf}"}],
        ["tool", "mcp__golem__find_slow_stages", {}],
        ["report", "## Golem analysis"]],
        "usage": {"input": 1800, "output": 400, "cache_read": 7000, "cache_write": 600}},
}}
KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
        "cache_write": "cache_creation_tokens"}
ANALYZE_TOOLS = ["query_workflow_cost", "query_errors_and_loops", "query_review_findings", "find_token_leaks",
                 "find_slow_stages"]


def _fill_cwd(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, dict):
        return {k: _fill_cwd(v, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_cwd(v, cwd) for v in value]
    return value


class Machine:
    """A user's machine in a temp folder: HOME, Claude Code's config dir, one project folder."""

    def __init__(self, root: Path, golem_home: Path, api_url: str) -> None:
        self.home = root / "home"
        self.config_dir = self.home / ".claude"
        self.project = root / "greeter"
        for d in (self.config_dir, self.project):
            d.mkdir(parents=True)
        (self.project / "README.md").write_text("# greeter\n\nA tiny project.\n")
        # The user has opened Claude Code in this folder before and accepted its trust dialog (Claude
        # Code's own per-user state, not something install writes): until then Claude Code ignores the
        # permissions of a project's shared settings, whoever wrote them.
        (self.config_dir / ".claude.json").write_text(json.dumps(
            {"projects": {str(self.project.resolve()): {"hasTrustDialogAccepted": True}}}))
        self.golem_home = golem_home
        self.api_url = api_url

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        return {**keep, "HOME": str(self.home), "CLAUDE_CONFIG_DIR": str(self.config_dir),
                # where the daemon of this test keeps its state file (how hooks and the MCP bridge find it)
                "GOLEM_HOME": str(self.golem_home),
                "ANTHROPIC_BASE_URL": self.api_url, "ANTHROPIC_API_KEY": "sk-test-not-a-real-key",
                # Claude Code 2.1.328 defers MCP tools behind ToolSearch unless told otherwise
                "ENABLE_TOOL_SEARCH": "false", "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_ERROR_REPORTING": "1",
                "MCP_TIMEOUT": "60000", "MCP_TOOL_TIMEOUT": "120000"}

    def golem(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("golem-mcp")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "golem_mcp"]
        return subprocess.run([*cmd, *args], cwd=self.project, env=self.env(), capture_output=True, text=True,
                              timeout=120)

    def claude(self, *args: str, timeout: float = 400, env: dict[str, str] | None = None) -> dict[str, Any]:
        p = subprocess.run([str(bin_path("claude")), "-p", *args, "--output-format", "json"], cwd=self.project,
                           env={**self.env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)
        try:
            result = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(f"claude exited {p.returncode} without a JSON result:\nstdout: {p.stdout[-3000:]}"
                                 f"\nstderr: {p.stderr[-3000:]}") from None
        assert p.returncode == 0 and result.get("is_error") is False, (result, p.stderr[-3000:])
        return result


async def _sql(c: Client, sql: str) -> list[list[Any]]:
    r = await c.call_tool("query_sql", {"sql": sql, "max_rows": 200})
    assert not r.is_error, r.content[0].text
    return r.structured_content["rows"]


def test_master_runs_the_kit_workflow_and_analyze_reports_it(daemon: str, golem_home: Path, tmp_path: Path) -> None:
    with FakeMessagesAPI({"roles": {}}) as api:
        m = Machine(tmp_path, golem_home, api.url)
        api.script = _fill_cwd(SCRIPT, str(m.project.resolve()))

        # the one setup step: install the kit into the project, pointed at this daemon's port
        r = m.golem("install", "--project", str(m.project), "--port", str(urlsplit(daemon).port))
        assert r.returncode == 0, r.stderr
        for name in ("master", "analyst", "planner", "implementer", "reviewer"):
            assert (m.project / ".claude" / "agents" / f"{name}.md").is_file()
        assert (m.project / ".claude" / "commands" / "analyze.md").is_file()

        # the master as the main thread; edits are accepted as in any unattended run
        res = m.claude("--agent", "master", "--permission-mode", "acceptEdits",
                       f"Add a greet(name) function. Use workflow id {WF} (WF:{WF}), task {TASK}.")
        sid = res["session_id"]
        served = [s for s in api.served if s["wf"] == WF]
        assert [s["role"] for s in served if s["step"] == 0 and s["role"] != "master"] == \
            ["analyst", "planner", "implementer", "reviewer"], served
        # the stages did real work in the project
        assert (m.project / "greet.py").read_text().startswith("def greet(name):")
        truth = api.totals(session_id=sid)
        assert set(truth) == {"master", "analyst", "planner", "implementer", "reviewer"}, truth
        # the main thread of a session is stage "main", whichever agent runs it
        truth["main"] = truth.pop("master")

        # transcripts are the complete record; OTLP and hooks arrived while the session ran
        daemon_call(daemon, "/api/import", {"paths": [str(m.config_dir / "projects")]})

        async def check_workflow() -> None:
            async with Client(mcp_http(daemon)) as c:
                # the workflow id reached every request of the session and its subagents
                rows = await _sql(c, "SELECT count(*), count(*) FILTER (WHERE workflow_id IS DISTINCT FROM "
                                     f"'{WF}') FROM requests WHERE session_id = '{sid}'")
                assert rows == [[sum(t["requests"] for t in truth.values()), 0]]
                # ... and so did every tool call, as seed 000's tool view shows them
                rows = await _sql(c, "SELECT count(*) > 0, count(*) FILTER (WHERE workflow_id IS DISTINCT FROM "
                                     f"'{WF}') FROM otel_tool_result_events WHERE session_id = '{sid}'")
                assert rows == [[True, 0]]
                # the telemetry env install wrote reached Claude Code's exporter: OTLP saw every request
                rows = await _sql(c, "SELECT count(DISTINCT request_id) FROM otel_events WHERE event_name = "
                                     f"'api_request' AND session_id = '{sid}'")
                assert rows == [[sum(t["requests"] for t in truth.values())]]
                r = await c.call_tool("query_workflow_cost", {"workflow_id": WF})
                assert not r.is_error, r.content[0].text
                got = by(r.structured_content["groups"], "stage")
                assert set(got) == set(truth)
                for stage, t in truth.items():
                    assert got[stage]["requests"] == t["requests"], (stage, got[stage], t)
                    for k, col in KEYS.items():
                        assert got[stage][col] == t[k], (stage, k, got[stage], t)
                # the master's records: the workflow's context and each stage, with observed usage
                rows = await _sql(c, "SELECT workflow_path, complexity_assessment, experiment_id, task_id "
                                     f"FROM workflow_summary WHERE workflow_id = '{WF}'")
                assert rows == [["full", "complex", "baseline", TASK]]
                rows = await _sql(c, "SELECT stage, status FROM stage_records WHERE workflow_id = "
                                     f"'{WF}' ORDER BY stage")
                assert rows == [[s, "succeeded"] for s in ("analyst", "implementer", "planner", "reviewer")]
                # the reviewer's findings: stored, linked to the workflow, the session and the reviewer agent
                reviewer_agent = next(s["agent_id"] for s in served if s["role"] == "reviewer")
                rows = await _sql(c, "SELECT task, workflow_id, session_id, agent_id, severity.major, severity.minor, "
                                     f"len(issues) FROM claude_metrics WHERE workflow_id = '{WF}'")
                assert rows == [[TASK, WF, sid, reviewer_agent, 1, 1, 2]]
                rows = await _sql(c, "SELECT file, line, severity, category FROM review_issue_rows "
                                     f"WHERE workflow_id = '{WF}' ORDER BY severity")
                assert rows == [["greet.py", 1, "major", "testing"], ["README.md", 1, "minor", "documentation"]]

        anyio.run(check_workflow)

        # /analyze, the kit's command, run the same way: no --allowedTools, the command's own list
        n_before = len(api.served)
        res = m.claude(f"/analyze {WF} (WF:{WF})")
        analysis = [s for s in api.served[n_before:] if s["role"] == "main"]
        called = [s["tool"] for s in analysis if s["tool"]]
        assert called == [f"mcp__golem__{t}" for t in ANALYZE_TOOLS], analysis
        report = res["result"]
        assert report.startswith("## Golem analysis"), report
        lines = {ln.split(":", 1)[0][2:]: ln.split(":", 1)[1] for ln in report.splitlines()[1:]}
        assert list(lines) == [f"mcp__golem__{t}" for t in ANALYZE_TOOLS], report
        # every tool answered (no permission denial, no tool error) with data about this workflow
        for name, text in lines.items():
            assert "permission" not in text.lower() and "error executing" not in text.lower(), (name, text)
        cost = json.loads(lines["mcp__golem__query_workflow_cost"])
        assert cost["scope"] == {"workflow_id": WF}
        assert cost["total"]["requests"] == sum(t["requests"] for t in truth.values())
        assert {r[0] for r in cost["groups"]["rows"]} == set(truth) and cost["groups"]["columns"][0] == "stage"
        quality = json.loads(lines["mcp__golem__query_review_findings"])
        assert json.dumps(quality).count("greet.py") >= 1, quality

        # /experiment, the kit's command: the hypothesis is validated and stored through golem-mcp
        definition = {"v": 1, "experiment_id": "kit-terse-analyst", "hypothesis": "A terser analyst brief cuts "
                      "analyst input tokens by 20%", "arms": ["baseline", "kit-terse-analyst"],
                      "metric": "input_tokens", "stage": "analyst", "expected_change_pct": -20, "min_runs_per_arm": 10}
        api.script["roles"]["main"] = {"steps": [
            ["tool", "mcp__golem__record_experiment", {"definition_json": definition}],
            ["report", "## Experiment defined"]], "usage": {"input": 900, "output": 200}}
        res = m.claude(f"/experiment define kit-terse-analyst A terser analyst brief (WF:{WF})")
        report = res["result"]
        assert report.startswith("## Experiment defined"), report
        stored = json.loads(report.splitlines()[1].split(":", 1)[1])
        assert stored["experiment_id"] == "kit-terse-analyst" and stored["status"] == "defined"
        assert "kit-terse-analyst" in stored["warnings"][0]      # no run tagged with the new arm yet


def test_a_process_per_stage_is_one_workflow_through_otel_resource_attributes(daemon: str, golem_home: Path,
                                                                             tmp_path: Path) -> None:
    """Seed 000's launcher: each stage its own ``claude -p --agent <stage>``, the workflow named only in
    ``OTEL_RESOURCE_ATTRIBUTES``. Nothing is recorded by an agent, yet every request of every stage
    process lands in the workflow, at its stage, with the tokens served."""
    wf = "wf-kit-per-stage"
    stages = ("analyst", "planner", "implementer", "reviewer")
    with FakeMessagesAPI({"roles": {}}) as api:
        m = Machine(tmp_path, golem_home, api.url)
        api.script = _fill_cwd(SCRIPT, str(m.project.resolve()))
        r = m.golem("install", "--project", str(m.project), "--port", str(urlsplit(daemon).port))
        assert r.returncode == 0, r.stderr
        sessions = {}
        for stage in stages:
            attrs = f"workflow_id={wf},stage={stage},task_id={TASK},experiment_id=per-stage"
            res = m.claude("--agent", stage, "--permission-mode", "acceptEdits",
                           f"Task {TASK}: add greet(name) to greet.py. WF:{wf}",
                           env={"OTEL_RESOURCE_ATTRIBUTES": attrs})
            sessions[stage] = res["session_id"]
        truth = {stage: api.totals(session_id=sid)[stage] for stage, sid in sessions.items()}
        assert all(set(api.totals(session_id=sid)) == {stage} for stage, sid in sessions.items())
        daemon_call(daemon, "/api/import", {"paths": [str(m.config_dir / "projects")]})

        async def check() -> None:
            async with Client(mcp_http(daemon)) as c:
                ids = ", ".join(f"'{s}'" for s in sessions.values())
                rows = await _sql(c, "SELECT count(*), count(*) FILTER (WHERE workflow_id IS DISTINCT FROM "
                                     f"'{wf}') FROM requests WHERE session_id IN ({ids})")
                assert rows == [[sum(t["requests"] for t in truth.values()), 0]]
                r = await c.call_tool("query_workflow_cost", {"workflow_id": wf})
                assert not r.is_error, r.content[0].text
                got = by(r.structured_content["groups"], "stage")
                assert set(got) == set(stages)
                for stage, t in truth.items():
                    assert got[stage]["requests"] == t["requests"], (stage, got[stage], t)
                    for k, col in KEYS.items():
                        assert got[stage][col] == t[k], (stage, k, got[stage], t)
                rows = await _sql(c, "SELECT experiment_id, task_id FROM workflow_summary "
                                     f"WHERE workflow_id = '{wf}'")
                assert rows == [["per-stage", TASK]]

        anyio.run(check)
