"""Who may reach the daemon, on every route of a real daemon over loopback: only this machine, by a
literal loopback address or ``localhost`` (DNS rebinding), and only with the install's token, which
every local client finds by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import api, auth
from golem_mcp.interfaces.daemon import create_app
from golem_mcp.interfaces.loopback import is_loopback_host, is_loopback_origin
from golem_mcp.store import Store

LOOPBACK = ["127.0.0.1", "127.0.0.1:4319", "127.0.0.2:4319", "127.255.255.254", "[::1]", "[::1]:4319", "::1",
            "localhost", "localhost:4319", "LocalHost:80", "[::ffff:127.0.0.1]:4319"]
FOREIGN = ["127.evil.example", "127.evil.example:4319", "127.0.0.1.evil.example", "127.0.0.1.evil.example:4319",
           "localhost.evil.example", "evil.localhost", "localhost.", "ip6-localhost", "127.1", "2130706433",
           "0.0.0.0", "[::]", "10.0.0.1", "[::1", "[::1]x", "[127.0.0.1]", "127.0.0.1:x", "127.0.0.1:", "", " "]


@pytest.mark.parametrize("host", LOOPBACK)
def test_literal_loopback_addresses_and_localhost_are_loopback(host: str) -> None:
    assert is_loopback_host(host)
    # in a URL an IPv6 address is written in brackets
    assert is_loopback_origin(f"http://{host}") is (host != "::1")


@pytest.mark.parametrize("host", FOREIGN)
def test_names_that_merely_look_local_are_not(host: str) -> None:
    assert not is_loopback_host(host)
    assert not is_loopback_origin(f"http://{host}")


@pytest.mark.parametrize("origin", ["null", "file://", "http://127.0.0.1@evil.example", "http://evil.example#@127.0.0.1",
                                    "ftp://127.0.0.1", "http://localhost/", "127.0.0.1", "http://127.0.0.1/x"])
def test_origins_other_than_a_loopback_page_are_not(origin: str) -> None:
    assert not is_loopback_origin(origin)


def _routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every route the daemon's app serves, read from the app itself so that a
    route added later is covered too."""
    store = Store(tmp_path / "routes.duckdb")
    try:
        app = create_app(store)
        out = []
        for r in app.app.routes:  # type: ignore[attr-defined]
            methods = sorted(getattr(r, "methods", None) or {"POST"})
            method = "GET" if "GET" in methods else methods[0]
            paths = [r.path.replace("{signal}", s) for s in ("logs", "metrics", "traces")] if "{" in r.path else [r.path]
            out += [(method, p) for p in paths]
        return out
    finally:
        store.close()


def test_foreign_host_and_origin_are_refused_on_every_route(daemon: str, tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    assert {p for _, p in routes} >= {"/mcp", "/hooks", "/v1/logs", "/v1/metrics", "/v1/traces", "/", "/dashboard",
                                      "/api/status", "/api/import", "/api/report", "/api/cli", "/healthz"}
    hook = b'{"hook_event_name": "Stop", "session_id": "rebound"}'
    with httpx.Client(timeout=30) as c:
        def send(method: str, path: str, headers: dict[str, str]) -> httpx.Response:
            return c.request(method, daemon + path, content=hook if method == "POST" else None,
                             headers={"content-type": "application/json", **auth(daemon), **headers})

        for method, path in routes:
            for host in ("127.evil.example", "127.evil.example:4319", "127.0.0.1.evil.example",
                         "localhost.evil.example:4319", "evil.localhost", "attacker.test"):
                r = send(method, path, {"host": host})
                assert r.status_code == 403 and "loopback" in r.json()["error"], (method, path, host, r.text)
            for origin in ("http://127.evil.example", "http://127.evil.example:4319", "https://127.0.0.1.evil.example",
                           "http://localhost.evil.example", "http://evil.example", "null"):
                r = send(method, path, {"origin": origin})
                assert r.status_code == 403 and "origin" in r.json()["error"], (method, path, origin, r.text)
            port = daemon.rsplit(":", 1)[1]
            for host in (f"[::1]:{port}", f"127.0.0.2:{port}", f"localhost:{port}", "127.0.0.1"):
                r = send(method, path, {"host": host, "origin": f"http://{host}"})
                assert r.status_code != 403, (method, path, host, r.text)
    # nothing a refused request carried was stored; the accepted ones (hooks) were
    counts = api.get(daemon + "/api/status").json()
    assert counts["hook_events"] == 1  # the same Stop payload four times is one event


# -- the token ------------------------------------------------------------------------------------

def test_first_start_makes_a_private_random_token_that_every_route_but_healthz_requires(
        start_daemon, golem_home: Path, tmp_path: Path) -> None:
    d = start_daemon()
    tok = (golem_home / "token").read_text().strip()
    assert (golem_home / "token").stat().st_mode & 0o777 == 0o600 and len(tok) >= 40
    state = golem_home / "daemon.json"
    assert json.loads(state.read_text())["token"] == tok and state.stat().st_mode & 0o077 == 0
    for method, path in _routes(tmp_path):
        bare = httpx.request(method, d.url + path, timeout=30)
        wrong = httpx.request(method, d.url + path, headers={"authorization": f"Bearer {tok[:-1]}x"}, timeout=30)
        right = httpx.request(method, d.url + path, headers={"authorization": f"Bearer {tok}"}, timeout=30)
        if path == "/healthz":
            assert bare.status_code == wrong.status_code == right.status_code == 200
            continue
        assert bare.status_code == wrong.status_code == 401, (method, path, bare.text, wrong.text)
        assert right.status_code != 401, (method, path, right.text)
    # a restart keeps it: Claude Code's settings carry it
    d.stop()
    again = start_daemon()
    assert (golem_home / "token").read_text().strip() == tok
    assert httpx.get(again.url + "/api/status", headers={"authorization": f"Bearer {tok}"}).status_code == 200


def test_the_dashboard_link_trades_its_token_for_a_page_cookie(daemon: str, golem_home: Path) -> None:
    tok = (golem_home / "token").read_text().strip()
    port = daemon.rsplit(":", 1)[1]
    with httpx.Client(timeout=60) as browser:
        assert browser.get(daemon + "/").status_code == 401
        assert browser.get(daemon + "/?token=nope&days=7").status_code == 401
        r = browser.get(daemon + f"/?days=7&token={tok}")
        assert r.status_code == 303 and r.headers["location"] == "/?days=7"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"golem_token_{port}={tok};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get(daemon + "/?days=7").status_code == 200
        assert browser.get(daemon + "/dashboard").status_code == 200
        # the cookie opens the pages only: no API, ingestion or MCP route takes it
        assert browser.get(daemon + "/api/status").status_code == 401
        assert browser.post(daemon + "/hooks", json={"hook_event_name": "Stop", "session_id": "c"}).status_code == 401
        assert browser.post(daemon + "/mcp", json={}).status_code == 401


def test_local_clients_use_the_token_without_being_told(daemon: str, golem_home: Path) -> None:
    env = {**os.environ, "GOLEM_HOME": str(golem_home)}
    out = subprocess.run([sys.executable, "-m", "golem_mcp", "status", "--json"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    tok = (golem_home / "token").read_text().strip()
    assert info["daemon"] == daemon and "hook_events" in info["store"] and tok not in out.stdout
    hook = subprocess.run([sys.executable, "-m", "golem_mcp", "hook"], input=b'{"hook_event_name": "SessionStart", '
                          b'"session_id": "tok-1", "source": "startup"}', capture_output=True, env=env, timeout=60)
    assert hook.returncode == 0 and not (golem_home / "hook-errors.log").exists()
    deadline = time.monotonic() + 15  # the hook's payload is journaled, then committed moments later
    while api.get(daemon + "/api/status").json()["sessions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.get(daemon + "/api/status").json()["sessions"] == 1


def test_a_hook_refused_for_its_token_spools_and_says_so(start_daemon, golem_home: Path) -> None:
    d = start_daemon("--token", "the-right-one")
    env = {**os.environ, "GOLEM_HOME": str(golem_home), "GOLEM_URL": d.url, "GOLEM_TOKEN": "a-wrong-one"}
    payload = b'{"hook_event_name": "SessionStart", "session_id": "tok-2", "source": "startup"}'
    r = subprocess.run([sys.executable, "-m", "golem_mcp", "hook"], input=payload, capture_output=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    assert "refused the token (401" in (golem_home / "hook-errors.log").read_text()
    # never lost: the daemon of this data folder drains the spool itself
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        c = httpx.get(d.url + "/api/status", headers={"authorization": "Bearer the-right-one"}).json()
        if c["sessions"] == 1:
            break
        time.sleep(0.1)
    assert c["sessions"] == 1


def test_a_detached_daemon_never_shows_its_token_in_ps(golem_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "GOLEM_HOME": str(golem_home), "GOLEM_TOKEN": "not-for-ps-eyes", "GOLEM_PORT": "0"}
    try:
        out = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--detach", "--no-watch", "--db",
                              str(tmp_path / "d.duckdb")], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        pid = json.loads((golem_home / "daemon.json").read_text())["pid"]
        assert b"not-for-ps-eyes" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        url = out.stdout.strip()
        assert httpx.get(url + "/api/status", headers={"authorization": "Bearer not-for-ps-eyes"}).status_code == 200
    finally:
        subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env=env, capture_output=True, timeout=60)
