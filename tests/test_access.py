"""Who may reach the daemon: only this machine, by a literal loopback address or ``localhost``
(DNS rebinding), on every route of a real daemon over loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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
                             headers={"content-type": "application/json", **headers})

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
    counts = httpx.get(daemon + "/api/status", timeout=30).json()
    assert counts["hook_events"] == 1  # the same Stop payload four times is one event
