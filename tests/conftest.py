"""Shared fixtures: an isolated data directory, the fixture folder, and a real daemon on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# the tests' one name for the shared fixture, re-exported
from support.fixture_data import FIXTURES as FIXTURES

DAEMON_START_WAIT_S = 120

_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)
    if os.environ.get("GOLEM_TEST_THREADS"):  # which threads outlive the tests (see pytest_unconfigure)
        import threading

        alive = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
        print(f"\nthreads alive at the end: {len(alive)}: {', '.join(alive)}", file=sys.stderr)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with the tests' verdict, past the interpreter's shutdown. Python ends daemon threads
    that try to run after it began finalising by unwinding their stacks, and one inside a DuckDB
    call then aborts the whole process ("terminate called without an active exception",
    duckdb/duckdb#13904, open). Tests leave threads behind (a clean run once ended with nine
    memory-limit timers of stores dropped without close(), which such a store now cancels, and the SQL
    tool's watchdog alive), and whether one is inside DuckDB at that moment depends on the order the
    tests ran in: a run whose every test passed was once reported as aborted. Every result, report and
    cache is written by now; ``GOLEM_TEST_FINALIZE=1`` finalises as usual."""
    if _exit_status is not None and not os.environ.get("GOLEM_TEST_FINALIZE"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)


@pytest.fixture
def golem_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GOLEM_HOME (data dir: state file, spool, settings.json, logs) in a fresh tmp dir."""
    home = tmp_path / "golem-home"
    home.mkdir()
    monkeypatch.setenv("GOLEM_HOME", str(home))
    for var in ("GOLEM_URL", "GOLEM_TOKEN", "GOLEM_DB"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty store in a temporary folder (its data folder there too), closed after the test. A
    test module with a store of its own (the fixture imported, say) defines ``store`` itself."""
    from golem_mcp.store import Store

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()


class Daemon:
    """A ``golem-mcp serve`` subprocess: its URL, process, db and data dir."""

    def __init__(self, url: str, proc: subprocess.Popen, db: Path, home: Path) -> None:
        self.url = url
        self.proc = proc
        self.db = db
        self.home = home

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_healthy(url: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/healthz", timeout=1)
            # it answers at once, while its store still opens: wait for the store too
            if r.status_code == 200 and r.json().get("store", "ready") == "ready":
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


# the token of every daemon the tests started, by URL: what its local clients read from its data folder
TOKENS: dict[str, str] = {}


def auth(url: str) -> dict[str, str]:
    """The ``Authorization`` header for the daemon at ``url`` (one the tests started, else the one
    the product's own reader finds through $GOLEM_HOME/GOLEM_TOKEN)."""
    from golem_mcp.home import read_token

    tok = next((t for u, t in TOKENS.items() if url.startswith(u)), None) or read_token()
    return {"authorization": f"Bearer {tok}"} if tok else {}


class _Api:
    """``httpx.get/post/request`` with the daemon's token added, as a local client sends it;
    ``headers`` given by the caller win (a test of a wrong token sets its own)."""

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        kw["headers"] = {**auth(url), **(kw.get("headers") or {})}
        kw.setdefault("timeout", 30)
        return httpx.request(method, url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def client(self, url: str, **kw: Any) -> httpx.Client:
        return httpx.Client(headers=auth(url), **kw)


api = _Api()


def mcp_http(url: str) -> Any:
    """An MCP client transport for the daemon's ``/mcp`` at ``url`` (the daemon's base URL), with its token."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    return streamable_http_client(url + "/mcp", http_client=create_mcp_http_client(headers=auth(url)))


def launch_daemon(home: Path, db: Path, *extra: str, env: dict[str, str] | None = None,
                  wait_s: float = DAEMON_START_WAIT_S) -> Daemon:
    """Run ``python -m golem_mcp serve --port 0 --db DB --no-watch`` (no ``--no-watch`` when
    ``--watch`` is among ``extra``) with GOLEM_HOME=home, and wait up to ``wait_s`` for /healthz to
    say its store is ready. Usable from fixtures of any scope (and benches: a large store takes
    longer to open); the caller stops it."""
    args = [sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--db", str(db), *extra]
    if "--watch" not in extra:
        args.append("--no-watch")
    state = home / "daemon.json"
    state.unlink(missing_ok=True)
    out = home / "daemon.test.out"
    with open(out, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log,
                                env={**os.environ, "GOLEM_HOME": str(home), **(env or {})})
    # a wait, not a speed check (bench/ measures start-up): a loaded machine can take a minute
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{out.read_text()}")
        try:
            url = json.loads(state.read_text())["url"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
            continue
        if wait_healthy(url, max(0.1, deadline - time.monotonic())):
            TOKENS[url] = json.loads(state.read_text())["token"]
            return Daemon(url, proc, db, home)
    proc.kill()
    raise RuntimeError(f"daemon's store was not ready within {wait_s} s:\n{out.read_text()}")


@pytest.fixture
def start_daemon(golem_home: Path, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: ``start_daemon(*extra_args, env=None, db=None)`` -> a running :class:`Daemon` in
    ``golem_home`` (see :func:`launch_daemon`). Every daemon started is stopped at teardown."""
    started: list[Daemon] = []

    def start(*extra: str, env: dict[str, str] | None = None, db: Path | None = None) -> Daemon:
        d = launch_daemon(golem_home, db or tmp_path / "golem.duckdb", *extra, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def daemon(start_daemon: Callable[..., Daemon]) -> Iterator[str]:
    """The URL of a fresh daemon (its own GOLEM_HOME and DuckDB file in tmp_path)."""
    yield start_daemon().url
