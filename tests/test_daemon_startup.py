"""The daemon answers ``/healthz`` from the moment it listens, while its store still opens: requests
that need the store wait for it (or get 503 with Retry-After), the hook spools, the stdio bridge
retries, and a store that cannot open stops ``serve`` with its reason.

The in-process daemon here is the real one (uvicorn on loopback, the real app and guard, a real
DuckDB file); only the moment its store opens is held back by a gate the test releases.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import FIXTURES
from golem_mcp.config import Settings
from golem_mcp.interfaces.daemon import startup
from golem_mcp.interfaces.daemon.app import build_app
from golem_mcp.interfaces.daemon.guard import Guard
from golem_mcp.interfaces.daemon.startup import Opening
from golem_mcp.store import Store

TOKEN = "startup-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WAIT = 60  # seconds any wait here may take on a loaded machine (waits, not speed checks)


class GatedDaemon:
    """The daemon's app behind :class:`Opening`, served by uvicorn in a thread; its store opens
    only once ``gate`` is set."""

    def __init__(self, db: Path, spool: Path) -> None:
        self.gate = threading.Event()
        self.failure: BaseException | None = None

        def open_app() -> tuple[Any, Any]:
            assert self.gate.wait(WAIT), "the test never opened the gate"
            settings = Settings.load()
            store = Store(db, settings=settings)
            return build_app(store, settings, spool=spool, mount_mcp=True), store.close

        def failed(e: BaseException) -> None:
            self.failure = e

        self.opening = Opening(open_app, failed)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(Guard(self.opening, TOKEN, True), log_config=None, lifespan="on", http="h11",
                                ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def health(self) -> dict[str, Any]:
        r = httpx.get(self.url + "/healthz", timeout=WAIT)
        assert r.status_code == 200
        return r.json()

    def stop(self) -> None:
        self.gate.set()
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()


@pytest.fixture
def gated(golem_home: Path, tmp_path: Path) -> Iterator[GatedDaemon]:
    d = GatedDaemon(tmp_path / "gated.duckdb", golem_home / "spool")
    yield d
    d.stop()


def wait_for(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_healthz_answers_while_the_store_opens_and_store_requests_wait_for_it(gated: GatedDaemon,
                                                                             monkeypatch) -> None:
    monkeypatch.setattr(startup, "STORE_WAIT_S", WAIT)  # opening takes seconds on a loaded machine
    assert gated.health()["store"] == "opening"
    body = (FIXTURES / "otlp" / "00006_logs.json").read_bytes()
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(httpx.post(
        gated.url + "/v1/logs", content=body, headers={**AUTH, "content-type": "application/json"}, timeout=WAIT)))
    sender.start()
    time.sleep(0.5)
    assert not answers, "an OTLP post was answered before the store it is written to was open"
    gated.gate.set()
    sender.join(WAIT)
    assert answers and answers[0].status_code == 200, answers[0].text
    assert gated.health()["store"] == "ready"
    counts = httpx.get(gated.url + "/api/status", headers=AUTH, timeout=WAIT).json()
    assert counts["otel_events"] > 0  # a 200 means committed


def test_the_token_is_required_while_opening_too(gated: GatedDaemon) -> None:
    r = httpx.get(gated.url + "/api/status", timeout=WAIT)
    assert r.status_code == 401
    r = httpx.get(gated.url + "/healthz", headers={"host": "attacker.test"}, timeout=WAIT)
    assert r.status_code == 403


def test_a_request_that_waits_too_long_gets_503_with_retry_after(gated: GatedDaemon, monkeypatch) -> None:
    monkeypatch.setattr(startup, "STORE_WAIT_S", 0.2)
    r = httpx.get(gated.url + "/api/status", headers=AUTH, timeout=WAIT)
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert "still opening its store" in r.json()["error"]
    gated.gate.set()
    assert wait_for(lambda: gated.health()["store"] == "ready", "the store to open")
    assert httpx.get(gated.url + "/api/status", headers=AUTH, timeout=WAIT).status_code == 200


def test_the_hook_spools_at_once_while_opening_and_the_daemon_drains_it_once_open(
        gated: GatedDaemon, golem_home: Path) -> None:
    payload = next(json.loads(line) for line in (FIXTURES / "hooks.jsonl").read_text().splitlines()
                   if '"PreToolUse"' in line)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "golem_mcp", "hook"], input=json.dumps(payload).encode(),
                       capture_output=True, timeout=WAIT,
                       env={**os.environ, "GOLEM_HOME": str(golem_home), "GOLEM_URL": gated.url,
                            "GOLEM_TOKEN": TOKEN})
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    assert time.monotonic() - started < WAIT
    spooled = [line for f in (golem_home / "spool").iterdir() for line in f.read_text().splitlines() if line]
    assert len(spooled) == 1 and json.loads(spooled[0])["tool_use_id"] == payload["tool_use_id"]
    assert not (golem_home / "hook-errors.log").exists()  # a 503 while opening is no error
    gated.gate.set()
    counts = wait_for(lambda: (c := httpx.get(gated.url + "/api/status", headers=AUTH, timeout=WAIT).json())
                      ["hook_events"] and c, "the spool to be drained")
    assert counts["hook_events"] == 1  # stored once: the post was refused, not journaled as well


def test_the_stdio_bridge_retries_a_tool_call_until_the_store_is_open(gated: GatedDaemon, monkeypatch) -> None:
    from golem_mcp.interfaces import mcp_stdio

    monkeypatch.setattr(startup, "STORE_WAIT_S", 0.2)  # the daemon answers 503 until the gate opens
    monkeypatch.setattr(mcp_stdio, "RETRY_FOR_S", WAIT)
    monkeypatch.setenv("GOLEM_TOKEN", TOKEN)
    out = io.BytesIO()
    bridge = mcp_stdio.Bridge(out, gated.url, start_daemon=False)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "query_sql", "arguments": {"sql": "SELECT 42 AS answer"}}}
    t = threading.Thread(target=bridge.handle, args=(json.dumps(call).encode(),))
    t.start()
    time.sleep(1.0)
    assert out.getvalue() == b""  # still waiting, no error handed to the agent
    gated.gate.set()
    t.join(WAIT)
    reply = json.loads(out.getvalue())
    assert reply["id"] == 7 and not reply["result"].get("isError"), reply
    assert "42" in json.dumps(reply["result"])


def test_a_store_that_cannot_open_stops_serve_with_its_reason(golem_home: Path, tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    holder = Store(db)  # this process holds the file: the daemon's open fails
    try:
        r = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--db", str(db), "--no-watch"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "GOLEM_HOME": str(golem_home)})
    finally:
        holder.close()
    assert r.returncode != 0
    assert "held by another process" in r.stderr, r.stderr[-2000:]
    assert not (golem_home / "daemon.json").exists()


def test_detach_waits_for_the_store_and_says_why_it_cannot_open(golem_home: Path, tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    holder = Store(db)
    try:
        r = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--detach", "--port", "0", "--db", str(db),
                            "--no-watch"], capture_output=True, text=True, timeout=180,
                           env={**os.environ, "GOLEM_HOME": str(golem_home)})
    finally:
        holder.close()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "exited at start" in r.stderr and "held by another process" in r.stderr, r.stderr[-2000:]
