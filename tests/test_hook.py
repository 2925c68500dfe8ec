"""``golem-mcp hook``, the hot path run on every Claude Code hook event: it hands the payload to
the daemon, spools it when the daemon is down (the daemon drains the spool when it starts), never
fails or prints, and imports almost nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, api, launch_daemon
from golem_mcp.ingestion import spool
from golem_mcp.store import Store

PAYLOADS = [json.loads(line) for line in (FIXTURES / "hooks.jsonl").read_text().splitlines() if line.strip()]
SESSION_START = next(p for p in PAYLOADS if p["hook_event_name"] == "SessionStart")
PRE_TOOL = next(p for p in PAYLOADS if p["hook_event_name"] == "PreToolUse")
POST_TOOL = next(p for p in PAYLOADS if p["hook_event_name"] == "PostToolUse")
SCRIPT = Path(sys.executable).parent / "golem-mcp"


def run_hook(home: Path, stdin: bytes | str | dict, *, script: bool = False,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    data = json.dumps(stdin).encode() if isinstance(stdin, dict) else stdin
    data = data.encode() if isinstance(data, str) else data
    cmd = [str(SCRIPT), "hook"] if script else [sys.executable, "-m", "golem_mcp", "hook"]
    return subprocess.run(cmd, input=data, capture_output=True, timeout=30,
                          env={**os.environ, "GOLEM_HOME": str(home), **(env or {})})


def counts(url: str, headers: dict[str, str] | None = None, **want: int) -> dict[str, int]:
    """The store's table counts, after waiting (up to 10 s) until they reach ``want``: the hook
    gets its reply once the payload is journaled, and the daemon commits it moments later."""
    deadline = time.monotonic() + 10
    while True:
        c = api.get(url + "/api/status", timeout=10, headers=headers).json()
        if all(c.get(k, 0) >= v for k, v in want.items()) or time.monotonic() > deadline:
            return c
        time.sleep(0.05)


def spooled(home: Path) -> list[dict]:
    d = home / "spool"
    if not d.exists():
        return []
    return [json.loads(line) for f in sorted(d.iterdir()) for line in f.read_text().splitlines() if line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_up_the_event_is_stored_and_nothing_is_printed(golem_home, daemon):
    for i, payload in enumerate([PRE_TOOL, POST_TOOL]):
        r = run_hook(golem_home, payload, script=i == 1 and SCRIPT.exists())
        assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", r
    c = counts(daemon, hook_events=2)
    assert c["hook_events"] == 2 and c["tool_calls"] == 1


def test_session_start_prints_only_the_daemons_display_text(golem_home, daemon):
    r = run_hook(golem_home, SESSION_START)
    assert r.returncode == 0 and r.stderr == b""
    # SessionStart stdout becomes session context: it is the daemon's display text or nothing
    reply = api.post(daemon + "/hooks", json=SESSION_START).json()
    assert reply["ok"] is True
    if "display" not in reply:
        assert r.stdout == b""
    else:
        assert r.stdout.decode().strip()
    assert counts(daemon, sessions=1)["sessions"] == 1


@pytest.mark.parametrize("state", ["no state file", "stale state file"])
def test_daemon_down_the_payload_is_spooled_then_drained_when_it_starts(golem_home, start_daemon, state):
    if state == "stale state file":
        (golem_home / "daemon.json").write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "pid": 1}))
    before = time.time_ns() // 1000
    for payload in (SESSION_START, PRE_TOOL, POST_TOOL):
        r = run_hook(golem_home, payload)
        assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    lines = spooled(golem_home)
    assert [p["hook_event_name"] for p in lines] == ["SessionStart", "PreToolUse", "PostToolUse"]
    assert all(p["_golem_received_us"] >= before for p in lines)
    assert {k: v for k, v in lines[1].items() if k != "_golem_received_us"} == PRE_TOOL

    d = start_daemon()
    c = counts(d.url, hook_events=3)
    assert c["hook_events"] == 3 and c["sessions"] == 1 and c["tool_calls"] == 1
    assert list((golem_home / "spool").iterdir()) == []
    # the same payloads again, now through the daemon, add nothing
    for payload in (SESSION_START, PRE_TOOL, POST_TOOL):
        assert run_hook(golem_home, payload).returncode == 0
    deadline = time.monotonic() + 10
    while (golem_home / "spool").exists() and os.listdir(golem_home / "spool") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counts(d.url) == c


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One daemon for the garbage cases; hooks reach it through GOLEM_URL."""
    home = tmp_path_factory.mktemp("shared-home")
    d = launch_daemon(home, home / "golem.duckdb")
    yield d.url
    d.stop()


@pytest.mark.parametrize("stdin", [b"", b"   \n", b"{not json", b"[1, 2]", b'"just a string"', b"\xff\xfe\x00"])
@pytest.mark.parametrize("up", [False, True], ids=["daemon down", "daemon up"])
def test_garbage_stdin_exits_0_silently_and_spools_nothing(golem_home, request, stdin, up):
    url = request.getfixturevalue("shared_daemon") if up else None
    r = run_hook(golem_home, stdin, env={"GOLEM_URL": url} if url else None)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    assert spooled(golem_home) == []
    assert "hook-errors.log" in os.listdir(golem_home)
    if url:
        assert counts(url)["hook_events"] == 0


def test_hook_sends_the_token_from_the_state_file(golem_home, start_daemon):
    d = start_daemon("--token", "t0ken")
    r = run_hook(golem_home, PRE_TOOL)
    assert r.returncode == 0 and r.stdout == b""
    ok = counts(d.url, headers={"authorization": "Bearer t0ken"}, hook_events=1)
    assert ok["hook_events"] == 1
    deadline = time.monotonic() + 5   # the drainer deletes the spool file just after its commit
    while spooled(golem_home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spooled(golem_home) == []


def test_golem_url_overrides_the_state_file(golem_home, daemon):
    (golem_home / "daemon.json").unlink()
    r = run_hook(golem_home, PRE_TOOL, env={"GOLEM_URL": daemon})
    assert r.returncode == 0
    assert counts(daemon, hook_events=1)["hook_events"] == 1


def test_hook_start_up_imports_nothing_heavy(golem_home):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "golem_mcp", "hook"],
                       input=json.dumps(PRE_TOOL).encode(), capture_output=True, timeout=30,
                       env={**os.environ, "GOLEM_HOME": str(golem_home)})
    assert r.returncode == 0
    modules = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines() if "|" in line}
    assert "golem_mcp.interfaces.hook" in modules
    heavy = {"duckdb", "orjson", "pyarrow", "starlette", "pydantic", "anyio", "golem_mcp.config",
             "golem_mcp.interfaces.cli_main", "http.client", "urllib.request", "email", "asyncio", "dataclasses"}
    assert modules & heavy == set()
    assert len(spooled(golem_home)) == 1


def test_concurrent_appends_and_drains_lose_nothing(golem_home, tmp_path):
    """Writers append while the drainer renames, reads and deletes: every payload lands once."""
    store = Store(tmp_path / "s.duckdb")
    sdir = golem_home / "spool"
    writers, per_writer = 6, 150
    stop = threading.Event()
    drained = [0]

    def write(w: int) -> None:
        for i in range(per_writer):
            line = json.dumps({"hook_event_name": "Stop", "session_id": f"w{w}-{i}", "_golem_received_us": i})
            spool.append(str(sdir), (line + "\n").encode())

    def drain() -> None:
        while not stop.is_set():
            drained[0] += spool.drain(store, sdir).payloads

    drainer = threading.Thread(target=drain)
    drainer.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    drainer.join()
    drained[0] += spool.drain(store, sdir).payloads
    assert drained[0] == writers * per_writer
    assert store.scalar("SELECT count(*) FROM hook_events") == writers * per_writer
    assert os.listdir(sdir) == []
    store.close()


def test_a_failed_drain_keeps_the_file_for_the_next_one(golem_home, tmp_path):
    sdir = golem_home / "spool"
    spool.append(str(sdir), (json.dumps(PRE_TOOL) + "\n").encode())
    store = Store(tmp_path / "s.duckdb")
    store.close()  # a closed store fails every write
    res = spool.drain(store, sdir)
    assert res.files == 0 and len(res.failed) == 1
    assert [n.endswith(".draining") for n in os.listdir(sdir)] == [True]
    store = Store(tmp_path / "s.duckdb")
    res = spool.drain(store, sdir)
    assert res.files == 1 and res.payloads == 1 and os.listdir(sdir) == []
    assert store.scalar("SELECT count(*) FROM hook_events") == 1
    store.close()
