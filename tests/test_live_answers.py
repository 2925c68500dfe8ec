"""A "so far" answer is current: an agent asking what its workflow cost a moment after it started
is told of every request its sessions' transcripts hold by then, without waiting for Claude Code's
next OTLP export (every few seconds) or the folder watch. The daemon reads the new part of the
transcripts the hooks named for the workflow's sessions before answering (``catch_up`` in
``interfaces/daemon/app.py``). A real session of the corpus, written out as it would grow."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from conftest import FIXTURES, Daemon, mcp_http
from golem_mcp.interfaces.client import call as daemon_call
from support.tables import by
from test_hook import counts, run_hook

WF = "wf-003"
TRUTH = json.loads((FIXTURES / "truth.json").read_text())[WF]
SESSION = TRUTH["session_id"]
KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
        "cache_write": "cache_creation_tokens"}


def _ask(url: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Client(mcp_http(url)) as c:
            r = await c.call_tool(tool, args)
            assert not r.is_error, r.content[0].text
            return r.structured_content

    return anyio.run(go)


def _stages(answer: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {s: {"requests": r["requests"], **{k: r[c] for k, c in KEYS.items()}}
            for s, r in by(answer["groups"], "stage").items()}


def test_the_cost_so_far_counts_what_the_transcripts_hold_now(start_daemon: Callable[..., Daemon],
                                                               golem_home: Path, tmp_path: Path) -> None:
    src = FIXTURES / "home" / ".claude" / "projects" / f"-home-dev-work-{WF}"
    lines = (src / f"{SESSION}.jsonl").read_text().splitlines(keepends=True)
    live = tmp_path / "projects" / "-repo"
    live.mkdir(parents=True)
    transcript = live / f"{SESSION}.jsonl"
    # the session so far: the master's first 40 lines, no subagent started yet
    transcript.write_text("".join(lines[:40]))
    so_far = [json.loads(x) for x in lines[:40]]
    asked = {d["requestId"]: d["message"]["usage"] for d in so_far if d.get("type") == "assistant"}
    assert 0 < len(asked) < TRUTH["stages"]["main"]["requests"]

    d = start_daemon()  # no folder watch: only the hooks tell the daemon where the transcript is
    # (the SessionStart hook names it; the reply comes once it is journaled, so wait for the row)
    hook = {"session_id": SESSION, "transcript_path": str(transcript), "cwd": str(tmp_path),
            "hook_event_name": "SessionStart", "source": "startup"}
    r = run_hook(golem_home, hook)
    assert r.returncode == 0, r.stderr
    counts(d.url, sessions=1)
    _ask(d.url, "record_workflow", {"workflow_id": "wf-live", "session_id": SESSION})

    got = _stages(_ask(d.url, "query_workflow_cost", {"workflow_id": "wf-live"}))
    assert got == {"main": {"requests": len(asked), **{k: sum(u[c] for u in asked.values()) for k, c in
                                                          {"input": "input_tokens", "output": "output_tokens",
                                                           "cache_read": "cache_read_input_tokens",
                                                           "cache_write": "cache_creation_input_tokens"}.items()}}}

    # the session runs on: the rest of the master's transcript and its subagents' appear
    with open(transcript, "a") as fh:
        fh.write("".join(lines[40:]))
    shutil.copytree(src / SESSION, live / SESSION)
    budget = _ask(d.url, "budget_status", {"workflow_id": "wf-live"})
    assert json.dumps(budget).count("wf-live")
    got = _stages(_ask(d.url, "query_workflow_cost", {"workflow_id": "wf-live"}))
    assert got == {s: {k: v[k] for k in ("requests", *KEYS)} for s, v in TRUTH["stages"].items()}
    # read once: the second catch-up took only what the file gained
    assert daemon_call(d.url, "/api/status")["api_requests"] == sum(v["requests"] for v in TRUTH["stages"].values())


def test_a_workflow_whose_transcripts_are_elsewhere_is_answered_from_the_store(
        start_daemon: Callable[..., Daemon], golem_home: Path, tmp_path: Path) -> None:
    # a session that ran on another machine (a remote runner): its transcript path does not exist here
    d = start_daemon()
    hook = {"session_id": SESSION, "transcript_path": str(tmp_path / "elsewhere" / f"{SESSION}.jsonl"),
            "cwd": str(tmp_path), "hook_event_name": "SessionStart", "source": "startup"}
    assert run_hook(golem_home, hook).returncode == 0
    counts(d.url, sessions=1)
    _ask(d.url, "record_workflow", {"workflow_id": "wf-remote", "session_id": SESSION})
    answer = _ask(d.url, "query_workflow_cost", {"workflow_id": "wf-remote"})
    assert answer["total"]["requests"] == 0
    assert "Traceback" not in (golem_home / "daemon.test.out").read_text()
