"""A remote run, end to end (issue 11, seed 001: "must work in remote execution, git-based
persistence OK"): the real Claude Code CLI runs a workflow in a fresh git repository on a "remote"
machine whose SessionEnd hook exports into ``.golem/telemetry/``; the repository is committed and
cloned elsewhere, where ``golem-mcp import`` gives back the run's stages, tokens and cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon
from golem_mcp.store import Store
from support.claude_cli import ClaudeProject
from support.fake_anthropic import FakeMessagesAPI

from .node import bin_path

pytestmark = pytest.mark.e2e

WF = "wf-remote-1"
SCRIPT: dict[str, Any] = {"roles": {
    "main": {"steps": [
        ["tool", "Agent", {"subagent_type": "analyst", "description": "analyse", "prompt": "Analyse the task. WF:{wf}"}],
        ["tool", "Agent", {"subagent_type": "implementer", "description": "implement",
                           "prompt": "Implement it. WF:{wf}"}],
        ["text", "Workflow complete."]],
        "usage": {"input": 3000, "output": 120, "cache_read": 12000, "cache_write": 800}},
    "analyst": {"steps": [["text", "Analysis done."]],
                "usage": {"input": 7000, "output": 400, "cache_read": 20000, "cache_write": 1500}},
    "implementer": {"steps": [["text", "Implemented."]],
                    "usage": {"input": 5000, "output": 900, "cache_read": 30000, "cache_write": 1000}},
}}
KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
        "cache_write": "cache_creation_tokens"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=runner", "-c", "user.email=runner@example.invalid", *args],
                          cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_remote_runs_telemetry_travels_in_its_git_repository(golem_home: Path, tmp_path: Path,
                                                              start_daemon: Callable[..., Daemon]) -> None:
    claude = bin_path("claude")
    # the remote machine: its own data folder and a daemon (as the bridge starts one)
    daemon = start_daemon(env={"GOLEM_MACHINE": "remote-runner"})
    with FakeMessagesAPI(SCRIPT) as api:
        p = ClaudeProject(tmp_path / "remote", claude, api.url, daemon.url, golem_home)
        p.add_agent("analyst", model="haiku")
        p.add_agent("implementer", model="sonnet")
        # the SessionEnd export is on in the repository itself: its committed Claude Code settings
        settings = p.workdir / ".claude" / "settings.json"
        settings.write_text(json.dumps({**json.loads(settings.read_text()),
                                        "env": {"GOLEM_EXPORT_ON_SESSION_END": ".golem/telemetry"}}, indent=1))
        _git(p.workdir, "init", "-q")
        _git(p.workdir, "add", "-A")
        _git(p.workdir, "commit", "-qm", "start")
        base_env = p.env

        def env() -> dict[str, str]:  # the launcher tags the run, as a Golem master would
            return {**base_env(), "GOLEM_MACHINE": "remote-runner", "OTEL_RESOURCE_ATTRIBUTES": f"workflow_id={WF}"}

        p.env = env  # type: ignore[method-assign]
        res = p.run(f"Run the workflow. WF:{WF}", ["Agent"])
        truth = api.totals(session_id=res["session_id"])
    assert res["is_error"] is False and res["_returncode"] == 0, res
    assert set(truth) == {"main", "analyst", "implementer"}
    telemetry = p.workdir / ".golem" / "telemetry"
    files = sorted(f.name for f in telemetry.iterdir()) if telemetry.exists() else []
    log = (golem_home / "hook-errors.log").read_text() if (golem_home / "hook-errors.log").exists() else ""
    assert any(f.endswith("-api_requests.parquet") for f in files), (files, log)
    assert all(f.startswith("remote-runner-") for f in files), files
    daemon.stop()  # the container is gone

    # what the run did is committed with its work, and cloned elsewhere
    _git(p.workdir, "add", "-A")
    _git(p.workdir, "commit", "-qm", "the work, with its telemetry")
    clone = tmp_path / "laptop" / "clone"
    _git(tmp_path, "clone", "-q", str(p.workdir), str(clone))
    home = tmp_path / "laptop" / "golem-home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GOLEM_")}, "GOLEM_HOME": str(home),
           "GOLEM_MACHINE": "laptop"}
    db = home / "golem.duckdb"
    r = subprocess.run([sys.executable, "-m", "golem_mcp", "import", str(clone / ".golem" / "telemetry"),
                        "--db", str(db), "--create"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"merged {len(files)} shard files" in r.stdout, (r.stdout, r.stderr)

    with Store(db, read_only=True) as store:
        got = {row["stage"]: row for row in store.query(
            "SELECT stage, count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
            "sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens, "
            "sum(cost_usd) AS cost, list(DISTINCT machine_id) AS machines FROM requests WHERE workflow_id = ? "
            "GROUP BY 1", [WF])}
    assert set(got) == set(truth)
    for stage, t in truth.items():
        assert got[stage]["requests"] == t["requests"], stage
        for k, col in KEYS.items():
            assert got[stage][col] == t[k], (stage, k)
        assert got[stage]["machines"] == ["remote-runner"]
    assert sum(g["cost"] for g in got.values()) == pytest.approx(res["total_cost_usd"], rel=1e-6)
