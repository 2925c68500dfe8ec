"""The daemon over real HTTP on loopback: OTLP and hooks from the real Claude Code fixtures give
truth.json's per-stage tokens, bad input is refused with a reason and loses nothing, the security
checks hold, the transcript watcher picks up new sessions, and start/stop behave."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from mcp import Client

from conftest import FIXTURES, api, launch_daemon, mcp_http, wait_healthy
from golem_mcp.interfaces.client import call

TRUTH = json.loads((FIXTURES / "truth.json").read_text())
TOKENS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
          "cache_write": "cache_creation_tokens"}
CTYPE = {".json": "application/json", ".pb": "application/x-protobuf"}


def otlp_bodies() -> list[tuple[str, str, bytes]]:
    """(signal, content type, body) of every captured OTLP request, in arrival order."""
    out = []
    for f in sorted((FIXTURES / "otlp").iterdir()):
        signal = f.stem.split("_", 1)[1]
        out.append((signal, CTYPE[f.suffix], f.read_bytes()))
    return out


def hook_payloads() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "hooks.jsonl").read_text().splitlines() if line.strip()]


def post_otlp(url: str, signal: str, ctype: str, body: bytes, gz: bool = False) -> httpx.Response:
    headers = {"content-type": ctype}
    if gz:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return api.post(f"{url}/v1/{signal}", content=body, headers=headers, timeout=30)


def post_everything(url: str, hooks_as_list: bool = False) -> None:
    """Every captured OTLP body, then every hook payload, from 8 connections at once (as several
    exporters and sessions would send them); every fifth OTLP body gzip-compressed."""

    def otlp(item: tuple[int, tuple[str, str, bytes]]) -> None:
        i, (signal, ctype, body) = item
        r = post_otlp(url, signal, ctype, body, gz=i % 5 == 0)
        assert r.status_code == 200, r.text
        if ctype == "application/json":
            assert r.headers["content-type"].startswith("application/json") and r.json() == {}
        else:
            assert r.headers["content-type"] == "application/x-protobuf" and r.content == b""

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(otlp, enumerate(otlp_bodies())))
    payloads = hook_payloads()
    if hooks_as_list:
        r = api.post(f"{url}/hooks", json=payloads, timeout=30)
        assert r.status_code == 200 and r.json()["stored"] == len(payloads), r.text
        return
    with api.client(url, timeout=30, limits=httpx.Limits(max_connections=8)) as c, ThreadPoolExecutor(8) as pool:
        for r in pool.map(lambda p: c.post(f"{url}/hooks", json=p), payloads):
            assert r.status_code == 200 and r.json()["ok"] is True, r.text


def per_stage(url: str) -> dict[tuple[str, str], dict[str, int]]:
    rows = api.post(f"{url}/api/report", json={"by": ["workflow", "stage"]}, timeout=30).json()
    return {(r["workflow"], r["stage"]): {k: r[col] for k, col in TOKENS.items()} | {"requests": r["requests"]}
            for r in rows}


def truth_per_stage() -> dict[tuple[str, str], dict[str, int]]:
    return {(wf, stage): {k: s[k] for k in (*TOKENS, "requests")}
            for wf, t in TRUTH.items() for stage, s in t["stages"].items()}


def status(url: str) -> dict[str, int]:
    r = api.get(f"{url}/api/status", timeout=10)
    assert r.status_code == 200
    return r.json()


def test_otlp_and_hooks_over_http_give_truth_per_workflow_and_stage_and_twice_adds_nothing(daemon):
    post_everything(daemon)
    assert per_stage(daemon) == truth_per_stage()
    counts = status(daemon)
    assert counts["api_requests"] == sum(s["requests"] for t in TRUTH.values() for s in t["stages"].values())
    post_everything(daemon, hooks_as_list=True)  # the same again, hooks as one JSON list this time
    assert status(daemon) == counts
    assert per_stage(daemon) == truth_per_stage()


@pytest.fixture(scope="module")
def small_daemon(tmp_path_factory):
    """One daemon for all bad-input cases: body limit 200 kB (settings.json), some data stored."""
    home = tmp_path_factory.mktemp("small-home")
    (home / "settings.json").write_text(json.dumps({"max_body_bytes": 200_000}))
    d = launch_daemon(home, home / "golem.duckdb")
    try:
        for name in ("00006_logs.json", "00001_metrics.pb", "00005_traces.pb"):
            f = FIXTURES / "otlp" / name
            assert post_otlp(d.url, f.stem.split("_")[1], CTYPE[f.suffix], f.read_bytes()).status_code == 200
        assert status(d.url)["api_requests"] > 0
        yield d.url
    finally:
        d.stop()


@pytest.mark.parametrize(("case", "path", "headers", "body", "code", "says"), [
    ("malformed JSON", "/v1/logs", {"content-type": "application/json"}, b'{"resourceLogs": [', 400, "does not decode"),
    ("JSON of the wrong shape", "/v1/logs", {"content-type": "application/json"}, b'{"resourceLogs": 7}', 400,
     "'resourceLogs' list"),
    ("malformed protobuf", "/v1/traces", {"content-type": "application/x-protobuf"}, b"\xff\xff\xff\x0f garbage",
     400, "does not decode"),
    ("wrong content type", "/v1/metrics", {"content-type": "text/plain"}, b"hello", 415, "application/x-protobuf"),
    ("no content type", "/v1/metrics", {}, b"{}", 415, "Content-Type"),
    ("unknown encoding", "/v1/logs", {"content-type": "application/json", "content-encoding": "br"}, b"{}", 415,
     "Content-Encoding"),
    ("broken gzip", "/v1/logs", {"content-type": "application/json", "content-encoding": "gzip"}, b"\x1f\x8bnope",
     400, "gzip"),
    ("oversized body", "/v1/logs", {"content-type": "application/json"}, b"[" + b" " * 300_000 + b"]", 413,
     "limit of 200000"),
    ("gzip bomb", "/v1/logs", {"content-type": "application/json", "content-encoding": "gzip"},
     gzip.compress(b" " * 5_000_000), 413, "decompressed"),
    ("hook payload not JSON", "/hooks", {"content-type": "application/json"}, b"{nope", 400, "not JSON"),
    ("not a hook payload", "/hooks", {"content-type": "application/json"}, b'{"a": 1}', 400, "hook_event_name"),
    ("unknown signal", "/v1/profiles", {"content-type": "application/json"}, b"{}", 404, "/v1/logs"),
])
def test_bad_input_is_refused_with_a_reason_and_loses_nothing(small_daemon, case, path, headers, body, code, says):
    before = status(small_daemon)
    r = api.post(small_daemon + path, content=body, headers=headers, timeout=30)
    assert r.status_code == code, (case, r.text)
    assert says in r.json()["error"], (case, r.json())
    assert status(small_daemon) == before
    assert api.get(small_daemon + "/healthz").status_code == 200


def test_oversized_body_without_content_length_is_cut_off(small_daemon):
    before = status(small_daemon)

    def chunks():
        for _ in range(40):
            yield b" " * 10_000

    r = api.post(small_daemon + "/v1/logs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert status(small_daemon) == before


def test_api_import_report_status_and_their_errors(daemon, tmp_path):
    r = api.post(daemon + "/api/import", json={"paths": [str(FIXTURES / "home")]}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["files_read"] > 0 and r.json()["skipped"] == []
    again = api.post(daemon + "/api/import", json={"paths": [str(FIXTURES / "home")]}, timeout=60).json()
    assert again["files_read"] == 0 and again["files_unchanged"] == r.json()["files_seen"]
    # transcripts carry stages but not workflow ids (those come from OTLP resource attributes)
    rows = api.post(daemon + "/api/report", json={"by": "stage", "filters": {"stage": "planner"}}).json()
    assert [row["stage"] for row in rows] == ["planner"]
    assert rows[0]["input_tokens"] == sum(t["stages"]["planner"]["input"] for t in TRUTH.values())
    for payload, says in [({"by": ["colour"]}, "unknown grouping"), ({"since": "last tuesday"}, "ISO"),
                          ({"limit": -1}, "positive"), ({"filters": {"planet": "x"}}, "unknown filter")]:
        bad = api.post(daemon + "/api/report", json=payload)
        assert bad.status_code == 400 and says in bad.json()["error"], bad.text
    bad = api.post(daemon + "/api/import", json={"paths": "nope"})
    assert bad.status_code == 400 and "paths" in bad.json()["error"]
    bad = api.post(daemon + "/api/import", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert status(daemon)["api_requests"] == sum(s["requests"] for t in TRUTH.values() for s in t["stages"].values())
    h = api.get(daemon + "/healthz").json()
    assert h["ok"] is True and h["version"]


def test_web_origins_and_foreign_host_names_are_refused(daemon):
    r = api.get(daemon + "/api/status", headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "origin" in r.json()["error"]
    r = api.post(daemon + "/hooks", json={"hook_event_name": "Stop", "session_id": "s"},
                   headers={"origin": "https://attacker.test:4319"})
    assert r.status_code == 403
    assert status(daemon)["hook_events"] == 0
    # DNS rebinding: a page on attacker.test resolved to 127.0.0.1 sends its own host name
    r = api.get(daemon + "/api/status", headers={"host": "attacker.test"})
    assert r.status_code == 403
    for ok_origin in ("http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080"):
        assert api.get(daemon + "/api/status", headers={"origin": ok_origin}).status_code == 200
    assert api.get(daemon.replace("127.0.0.1", "localhost") + "/healthz").status_code == 200


def test_a_token_chosen_with_the_token_option_is_the_one_required(start_daemon):
    d = start_daemon("--token", "s3cret")
    assert httpx.get(d.url + "/healthz").status_code == 200
    r = httpx.get(d.url + "/api/status")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert httpx.get(d.url + "/api/status", headers={"authorization": "Bearer wrong"}).status_code == 401
    signal, ctype, body = otlp_bodies()[0]
    assert httpx.post(f"{d.url}/v1/{signal}", content=body, headers={"content-type": ctype}).status_code == 401
    ok = httpx.get(d.url + "/api/status", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["api_requests"] == 0
    # the token sits in the state file, readable by the user only, so local clients find it
    state = d.home / "daemon.json"
    assert json.loads(state.read_text())["token"] == "s3cret"
    assert state.stat().st_mode & 0o077 == 0


async def test_mcp_tool_calls_add_no_line_each_to_the_daemons_output(start_daemon) -> None:
    """A tool call is no event: the SDK's INFO line for every stateless request ("Terminating
    session") stays out of the daemon's output and log (a line per call, ~1-2 CPU-ms each to render)."""
    d = start_daemon()
    async with Client(mcp_http(d.url)) as c:
        for _ in range(3):
            assert not (await c.call_tool("query_sql", {"sql": "SELECT 1 AS x"})).is_error
    d.stop()
    out = (d.home / "daemon.test.out").read_text()
    log = d.home / "daemon.log"
    assert "store open" in out  # the daemon's own lines are there
    assert "Terminating session" not in out + (log.read_text() if log.exists() else "")


def test_non_loopback_host_without_token_is_refused(golem_home, tmp_path):
    r = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--host", "0.0.0.0", "--port", "0",
                        "--db", str(tmp_path / "x.duckdb"), "--no-watch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "without a token" in r.stderr
    assert not (golem_home / "daemon.json").exists()


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy without the fixtures' read-only modes (so tmp_path can be cleaned up)."""
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(Path(root) / f, target / f)


def test_watcher_picks_up_a_new_session_folder_within_seconds(start_daemon, tmp_path):
    watched = tmp_path / "projects"
    watched.mkdir()
    d = start_daemon("--watch", str(watched))
    assert status(d.url)["api_requests"] == 0
    _copy_tree(FIXTURES / "home" / ".claude" / "projects" / "-home-dev-work-wf-002", watched / "-home-dev-work-wf-002")
    want = sum(s["requests"] for s in TRUTH["wf-002"]["stages"].values())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and status(d.url)["api_requests"] < want:
        time.sleep(0.2)
    assert status(d.url)["api_requests"] == want
    rows = api.post(d.url + "/api/report", json={"by": ["stage"]}).json()
    assert {r["stage"]: r["input_tokens"] for r in rows} == {
        stage: s["input"] for stage, s in TRUTH["wf-002"]["stages"].items()}


def test_second_serve_says_already_running_and_stop_removes_the_state(start_daemon, golem_home, tmp_path):
    d = start_daemon()
    env = {**os.environ, "GOLEM_HOME": str(golem_home)}
    cmd = [sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--no-watch"]
    same = subprocess.run([*cmd, "--db", str(d.db)], capture_output=True, text=True, env=env, timeout=60)
    assert same.returncode == 0 and "already running" in same.stdout
    other = subprocess.run([*cmd, "--db", str(tmp_path / "other.duckdb")], capture_output=True, text=True, env=env,
                           timeout=60)
    assert other.returncode == 1 and "another database" in other.stderr
    stop = subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
    assert d.proc.wait(10) == 0
    assert not (golem_home / "daemon.json").exists()
    again = subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert again.returncode == 0 and "no daemon" in again.stdout


def test_detach_starts_a_background_daemon_that_stop_ends(golem_home, tmp_path):
    env = {**os.environ, "GOLEM_HOME": str(golem_home)}
    r = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--detach", "--port", "0", "--no-watch",
                        "--db", str(tmp_path / "d.duckdb")], capture_output=True, text=True, env=env, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        url = r.stdout.strip().splitlines()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert api.get(url + "/healthz").status_code == 200
    finally:
        stop = subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], capture_output=True, text=True, env=env,
                              timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    with pytest.raises(httpx.HTTPError):
        api.get(url + "/healthz", timeout=1)


def test_alerts_are_evaluated_on_ingest_and_posted_to_the_webhook(golem_home: Path, tmp_path: Path) -> None:
    """A workflow's OTLP crosses its budget: the daemon raises the alert by itself, once, to the
    alert log and to a real loopback webhook, without anyone asking."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from golem_mcp.analysis import budgets
    from golem_mcp.store.db import Store

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = tmp_path / "golem.duckdb"
    with Store(db) as store:   # configured before the daemon owns the file
        budgets.set_webhook(store, f"http://127.0.0.1:{server.server_port}/alerts")
        budgets.set_budget(store, "workflow", 0.05, key="wf-002")
    # one real OTLP logs body of wf-002, its events moved to now (budgets look at the last days)
    body = json.loads(next(p for p in sorted((FIXTURES / "otlp").glob("*_logs.json"))
                           if "wf-002" in p.read_text()).read_text())
    now_ns = time.time_ns()
    for rl in body["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for rec in sl["logRecords"]:
                rec["timeUnixNano"] = rec["observedTimeUnixNano"] = str(now_ns)
                for a in rec["attributes"]:
                    if a["key"] == "event.timestamp":
                        a["value"] = {"stringValue": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    d = launch_daemon(golem_home, db, env={"GOLEM_ALERT_INTERVAL": "0.3"})
    try:
        r = api.post(d.url + "/v1/logs", json=body, timeout=10)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, (golem_home / "daemon.test.out").read_text()[-2000:]
        alerts = received[0]["alerts"]  # Alertmanager's webhook format
        assert {(a["labels"]["kind"], a["labels"]["scope"], a["labels"]["workflow_id"]) for a in alerts} \
            == {("budget", "workflow", "wf-002")}
        assert "wf-002" in (golem_home / "alerts.log").read_text()
        # the same data again: nothing new to say
        api.post(d.url + "/v1/logs", json=body, timeout=10)
        time.sleep(1.5)
        assert len(received) == 1
    finally:
        d.stop()
        server.shutdown()


def _accepted_sockets(port: int) -> list[socket.socket]:
    """This process's connected TCP sockets whose local port is ``port`` (what a server accepted),
    as duplicates the caller closes."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(fd)))
        except OSError:  # closed meanwhile (the listing's own fd, a connection just ended)
            continue
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6) and s.getsockname()[1] == port:
                s.getpeername()  # the listener has no peer
                found.append(s)
                continue
        except OSError:
            pass
        s.close()
    return found


async def test_the_daemons_connections_send_each_write_at_once(golem_home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Nagle is off on every connection the daemon's listening socket accepts (TCP_NODELAY). With it
    on, uvicorn's response, written as headers then body, waited for the client's delayed ACK: ~40 ms
    of most MCP tool calls on loopback, more than the whole call's work on a small store.

    Served as ``serve`` serves: the listening socket from ``process._bind``, uvicorn over the real
    app, the SDK's client calling a tool."""
    import threading

    import uvicorn

    from golem_mcp.interfaces.daemon.app import create_app
    from golem_mcp.interfaces.daemon.process import _bind
    from golem_mcp.store import Store

    store = Store(tmp_path / "nodelay.duckdb")
    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("GOLEM_TOKEN", "nodelay-token")  # what the tests' client sends
    server = uvicorn.Server(uvicorn.Config(create_app(store, token="nodelay-token"), log_config=None,
                                           lifespan="on", http="h11", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_healthy(url, 60)
        async with Client(mcp_http(url)) as c:
            assert not (await c.call_tool("budget_status", {})).is_error
            accepted = _accepted_sockets(port)  # the client's connection, kept alive for the session
            try:
                assert accepted, "no connection accepted by the daemon found"
                assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)
            finally:
                for s in accepted:
                    s.close()
    finally:
        server.should_exit = True
        thread.join(60)
        store.close()


def _mapped(pid: int, library: str) -> bool:
    """Whether process ``pid`` has a shared object of ``library`` mapped (it was imported there)."""
    return f"/{library}/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
async def test_the_daemon_loads_scipy_only_for_the_questions_that_need_it(start_daemon) -> None:
    """scipy.stats is ~60 MB of a daemon's memory: what an idle daemon and the everyday tools do must
    not load it; comparing experiment arms does (the check sees it when it is there)."""
    d = start_daemon()
    res = call(d.url, "/api/import", {"paths": [str(FIXTURES)]})
    assert res["rows"] > 0
    async with Client(mcp_http(d.url)) as c:
        for tool, args in (("budget_status", {}), ("query_workflow_cost", {"workflow_id": next(iter(TRUTH))}),
                           ("query_errors_and_loops", {})):
            assert not (await c.call_tool(tool, args)).is_error, tool
        assert not _mapped(d.proc.pid, "scipy")
        assert not (await c.call_tool("compare_experiments", {"stage": "analyst"})).is_error
    assert _mapped(d.proc.pid, "scipy")
