"""MCP through the real daemon: streamable HTTP at /mcp and the stdio bridge Claude Code launches.

Python's own ``mcp`` client is the client here (the Node clients are in test_inspector.py and
test_claude_code.py). Covers: both transports answer from the same store, the bridge starts a missing
daemon, a call made while the daemon restarts still gets its answer, oversized and cross-origin
requests are refused while the daemon keeps serving, and 10 clients x 200 mixed calls with OTLP
ingest running lose nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from conftest import api, launch_daemon, mcp_http
from golem_mcp.interfaces.client import call as daemon_call
from support.tables import by

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())


def _import(url: str) -> None:
    daemon_call(url, "/api/import", {"paths": [str(FIX)]})


def _stdio(extra_env: dict[str, str] | None = None, *extra_args: str) -> StdioServerParameters:
    env = {**os.environ, **(extra_env or {})}
    env.pop("GOLEM_URL", None)
    return StdioServerParameters(command=sys.executable, args=["-m", "golem_mcp", "stdio", *extra_args], env=env)


async def _cost(c: Client, wf: str) -> dict[str, Any]:
    r = await c.call_tool("query_workflow_cost", {"workflow_id": wf})
    assert not r.is_error, r.content[0].text
    return r.structured_content


def _check_truth(out: dict[str, Any], wf: str) -> None:
    got = {s: g["input_tokens"] for s, g in by(out["groups"], "stage").items()}
    assert got == {s: t["input"] for s, t in TRUTH[wf]["stages"].items()}


async def test_stdio_entry_lists_only_its_toolsets(daemon: str) -> None:
    """``golem-mcp stdio --toolsets reviewer``: the reviewer's session pays only for its one tool."""
    async with Client(_stdio(None, "--toolsets", "reviewer")) as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["report_review_findings"]
        r = await c.call_tool("query_sql", {"sql": "SELECT 1"})
        assert r.is_error and "not in this server entry's toolsets" in r.content[0].text
    async with Client(_stdio(None, "--toolsets", "reader,workflow")) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert "query_workflow_cost" in names and "record_workflow" in names
        assert "report_review_findings" not in names and "record_experiment" not in names


async def test_http_and_stdio_answer_from_one_store(daemon: str) -> None:
    _import(daemon)
    async with Client(mcp_http(daemon)) as http_client:
        names = {t.name for t in (await http_client.list_tools()).tools}
        assert {"query_workflow_cost", "record_workflow", "report_review_findings"} <= names
        _check_truth(await _cost(http_client, "wf-003"), "wf-003")
        async with Client(_stdio()) as stdio_client:
            assert names == {t.name for t in (await stdio_client.list_tools()).tools}
            _check_truth(await _cost(stdio_client, "wf-004"), "wf-004")
            # a write through one transport is visible through the other
            r = await stdio_client.call_tool("record_workflow", {"workflow_id": "wf-new", "path": "fast-track",
                                                                 "session_id": "s-1"})
            assert not r.is_error
        r = await http_client.call_tool("query_sql", {"sql": "SELECT workflow_path FROM workflow_summary "
                                                             "RIGHT JOIN workflows USING (workflow_id) "
                                                             "WHERE workflows.workflow_id = 'wf-new'"})
        assert r.structured_content["rows"] == [[None]] or r.structured_content["row_count"] == 1


def test_http_refuses_foreign_origin_and_huge_bodies(daemon: str) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    r = api.post(daemon + "/mcp", json=init, headers={**headers, "origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403
    big = dict(init, params=dict(init["params"], padding="x" * (10 * 1024 * 1024)))
    r = api.post(daemon + "/mcp", content=json.dumps(big), headers=headers, timeout=30)
    assert r.status_code == 413
    r = api.post(daemon + "/mcp", json=init, headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "golem"


async def test_stdio_bridge_turns_a_huge_argument_into_a_tool_error(daemon: str) -> None:
    _import(daemon)
    # Claude Code starts its MCP servers with CLAUDE_CODE_SESSION_ID; the bridge passes it on
    sid = TRUTH["wf-001"]["session_id"]
    async with Client(_stdio({"CLAUDE_CODE_SESSION_ID": sid})) as c:
        r = await c.call_tool("query_sql", {"sql": "SELECT 1 -- " + "x" * (10 * 1024 * 1024)})
        assert r.is_error and "too large" in r.content[0].text
        _check_truth(await _cost(c, "wf-001"), "wf-001")
        r = await c.call_tool("record_workflow", {"workflow_id": "wf-001", "status": "done"})
        assert r.structured_content["linked_by"] == "mcp_client" and r.structured_content["session_id"] == sid


@pytest.mark.e2e  # starts a detached daemon: ~10 s
async def test_stdio_starts_the_daemon_when_absent(golem_home: Path, tmp_path: Path) -> None:
    env = {"GOLEM_PORT": "0", "GOLEM_DB": str(tmp_path / "auto.duckdb"),
           "CLAUDE_CONFIG_DIR": str(tmp_path / "no-claude")}  # the daemon must not read the real transcripts
    try:
        async with Client(_stdio(env)) as c:
            r = await c.call_tool("record_workflow", {"workflow_id": "wf-auto", "session_id": "s-auto"})
            assert not r.is_error and r.structured_content["linked"] is True
        state = json.loads((golem_home / "daemon.json").read_text())
        assert api.get(state["url"] + "/healthz", timeout=5).status_code == 200
    finally:
        subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env={**os.environ, **env}, timeout=30,
                       capture_output=True)


@pytest.mark.e2e  # stops and restarts the daemon: ~20 s
async def test_a_call_while_the_daemon_is_down_restarts_it(start_daemon: Callable[..., Any], tmp_path: Path) -> None:
    d = start_daemon()
    _import(d.url)
    env = {"GOLEM_PORT": "0", "GOLEM_DB": str(d.db), "CLAUDE_CONFIG_DIR": str(tmp_path / "no-claude")}
    try:
        async with Client(_stdio(env)) as c:
            _check_truth(await _cost(c, "wf-005"), "wf-005")
            d.stop()
            # sent while no daemon runs: the bridge starts one on the same store and resends
            _check_truth(await _cost(c, "wf-005"), "wf-005")
            r = await c.call_tool("record_workflow", {"workflow_id": "wf-after", "session_id": "s-2"})
            assert not r.is_error
    finally:
        subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env={**os.environ, **env}, timeout=30,
                       capture_output=True)


@pytest.mark.e2e  # a load test: 2,000 calls take minutes on 2 cores (the views cost 25-100 ms a query)
async def test_ten_clients_200_mixed_calls_with_otlp_ingest(daemon: str) -> None:
    _import(daemon)
    stop = threading.Event()
    otlp_errors: list[str] = []
    bodies = sorted((FIX / "otlp").glob("*_logs.json"))[:40]

    def ingest() -> None:
        # OTLP keeps arriving (the same bodies again: idempotent) while the tools run
        with api.client(daemon, timeout=30) as h:
            while not stop.is_set():
                for b in bodies:
                    if stop.is_set():
                        break
                    r = h.post(daemon + "/v1/logs", content=b.read_bytes(), headers={"content-type": "application/json"})
                    if r.status_code != 200:
                        otlp_errors.append(f"{r.status_code} {r.text[:200]}")

    t = threading.Thread(target=ingest)
    t.start()
    errors: list[str] = []
    calls_per_client = 200

    async def one_client(i: int) -> None:
        # half the clients are stdio bridges (as Claude Code sessions are), half talk HTTP directly
        async with Client(_stdio() if i % 2 else mcp_http(daemon)) as c:
            for k in range(calls_per_client):
                kind = k % 5
                if kind == 0:
                    name, args = "record_stage_usage", {"workflow_id": f"wf-c{i}", "stage": f"s{k}",
                                                        "input_tokens": k, "session_id": f"sess-{i}"}
                elif kind == 1:
                    name, args = "query_workflow_cost", {"workflow_id": "wf-00" + str(1 + k % 8)}
                elif kind == 2:
                    name, args = "report_review_findings", {"findings_json": {
                        "v": 1, "task": f"t-{i}-{k}", "parent": f"wf-c{i}",
                        "severity": {"critical": 0, "major": 0, "minor": 1},
                        "issues": [{"severity": "minor", "summary": f"issue {i} {k}"}]}}
                elif kind == 3:
                    name, args = "query_errors_and_loops", {"workflow_id": "wf-006", "limit": 3}
                else:
                    name, args = "query_sql", {"sql": "SELECT count(*) FROM requests", "max_rows": 1}
                r = await c.call_tool(name, args)
                if r.is_error:
                    errors.append(f"{name}: {r.content[0].text[:300]}")

    try:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one_client, i)
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert otlp_errors == []
    async with Client(mcp_http(daemon)) as c:
        r = await c.call_tool("query_sql", {"sql": "SELECT count(*) AS n, count(DISTINCT workflow_id) AS w, "
                                                   "sum(input_tokens) AS t FROM stage_records"})
        n, w, tokens = r.structured_content["rows"][0]
        per_client = calls_per_client // 5
        assert (n, w) == (10 * per_client, 10)
        assert tokens == 10 * sum(range(0, calls_per_client, 5))
        r = await c.call_tool("query_sql", {"sql": "SELECT count(*) FROM review_reports WHERE workflow_id LIKE 'wf-c%'"})
        assert r.structured_content["rows"] == [[10 * per_client]]
        _check_truth(await _cost(c, "wf-007"), "wf-007")


@pytest.mark.parametrize("bad", [b"not json\n", b'{"jsonrpc":"2.0","id":7,"method":"no/such"}\n'])
def test_bridge_answers_garbage_with_protocol_errors(daemon: str, bad: bytes) -> None:
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
    p = subprocess.run([sys.executable, "-m", "golem_mcp", "stdio"], input=init + b"\n" + bad, capture_output=True,
                       timeout=60, env={**os.environ})
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert lines[0]["id"] == 1 and "result" in lines[0]
    assert len(lines) == 2 and "error" in lines[1]


def _wait_for_snapshot(home: Path) -> Path:
    """The daemon writes its list answers for the bridge just after it starts."""
    snap = home / "mcp-tools.json"
    deadline = time.monotonic() + 30
    while not snap.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert snap.exists() and snap.stat().st_mode & 0o077 == 0
    return snap


def _hold_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


async def test_bridge_answers_the_lists_at_once_and_names_a_port_another_program_holds(
        start_daemon: Callable[..., Any], golem_home: Path, tmp_path: Path) -> None:
    d = start_daemon()
    _wait_for_snapshot(golem_home)
    async with Client(mcp_http(d.url)) as c:
        served = sorted((await c.list_tools()).tools, key=lambda t: t.name)
        prompts = (await c.list_prompts()).prompts
    d.stop()
    with _hold_port() as held:
        env = {"GOLEM_PORT": str(held.getsockname()[1]), "GOLEM_DB": str(d.db),
               "CLAUDE_CONFIG_DIR": str(tmp_path / "no-claude")}
        # no daemon can start on that port, yet the session gets its tools: the daemon's own answers
        async with Client(_stdio(env)) as c:
            assert sorted((await c.list_tools()).tools, key=lambda t: t.name) == served
            assert (await c.list_prompts()).prompts == prompts
            # only a tool call needs the daemon: it is told why there is none, and what to do
            r = await c.call_tool("query_workflow_cost", {"workflow_id": "wf-001"})
            text = r.content[0].text
            assert r.is_error and "another program holds that port" in text and str(held.getsockname()[1]) in text
            assert "--port" in text and "GOLEM_PORT" in text and "did not start within" not in text
    assert not (golem_home / "daemon.json").exists()


async def test_a_port_held_by_the_daemon_of_another_data_folder_is_named(golem_home: Path, tmp_path: Path) -> None:
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    other = launch_daemon(other_home, tmp_path / "other.duckdb")
    try:
        port = str(other.url.rsplit(":", 1)[1])
        # the CLI says who holds the port, at once
        r = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--port", port, "--no-watch", "--db",
                            str(tmp_path / "mine.duckdb")], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "GOLEM_HOME": str(golem_home)})
        assert r.returncode == 1
        assert "another golem-mcp daemon" in r.stderr and str(other_home) in r.stderr and str(golem_home) in r.stderr
        assert "--port" in r.stderr and "GOLEM_PORT" in r.stderr
        # and so does the bridge of this data folder, to the agent (the lists come from a snapshot of
        # the same package, here the other daemon's)
        shutil.copy(_wait_for_snapshot(other_home), golem_home / "mcp-tools.json")
        env = {"GOLEM_PORT": port, "GOLEM_DB": str(tmp_path / "mine.duckdb"), "CLAUDE_CONFIG_DIR": str(tmp_path / "x")}
        async with Client(_stdio(env)) as c:
            assert {"query_workflow_cost", "query_sql"} <= {t.name for t in (await c.list_tools()).tools}
            r2 = await c.call_tool("query_sql", {"sql": "SELECT 1"})
            assert r2.is_error and "another golem-mcp daemon" in r2.content[0].text
            assert str(other_home) in r2.content[0].text and "GOLEM_PORT" in r2.content[0].text
        # the other daemon was not disturbed
        assert api.get(other.url + "/api/status").status_code == 200
    finally:
        other.stop()
