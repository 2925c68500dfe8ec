"""``golem-mcp stdio``: what Claude Code launches. Bridges MCP over stdio to the daemon's ``/mcp``.

Why a bridge and not a server: DuckDB lets one process own the database, and every Claude Code
session launches its own stdio server. So each bridge forwards JSON-RPC messages, one HTTP POST
each, to the one daemon (streamable HTTP, stateless, JSON responses) and starts the daemon when
none answers. Stateless means a daemon restart loses nothing: the next POST simply reaches the
new process.

Claude Code waits for ``initialize`` and ``tools/list`` before a session can use the tools, while
starting the daemon takes seconds (more on a busy machine). So when no daemon answers, the bridge
answers those (and the other list methods) at once from the snapshot the daemon wrote of its own
answers at its last start (``mcp-tools.json`` in the data folder, used only while it matches the
installed package), starts the daemon meanwhile, and makes only tool calls wait for it. A daemon
that cannot start (its port is held by another program, or by the daemon of another data folder)
turns each tool call into a tool error that says so and how to choose another port.

Only protocol messages go to stdout; everything else goes to stderr. Stdlib only, for a fast start.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from typing import IO, Any
from urllib.parse import urlsplit

from .. import __version__
from ..home import data_dir
from . import toolsets
from .client import auth_headers, find_daemon, locate_daemon, probe

START_TIMEOUT_S = 40.0  # above `serve --detach`'s own wait (daemon.process.DETACH_WAIT_S), which says why it failed
FAILED_START_TTL_S = 5.0  # a start that failed is not retried for every tool call of a burst
RETRY_FOR_S = 30.0  # how long a message waits for a restarting daemon before the agent gets an error
SESSION_ENV = ("CLAUDE_CODE_SESSION_ID", "CLAUDE_SESSION_ID")


class DaemonUnavailable(Exception):
    """No daemon answers and none could be started; the message says why and what to do."""


class Bridge:
    """Forwards each stdin message to the daemon; writes each answer to stdout under a lock."""

    def __init__(self, out: IO[bytes], url: str | None = None, start_daemon: bool = True,
                 tools: set[str] | None = None) -> None:
        self.out = out
        self.tools = tools  # None: every tool; else only these are listed and callable (--toolsets)
        self.url = url
        self.start_daemon = start_daemon
        self.protocol_version: str | None = None
        self.snapshot: dict[str, Any] | None = None  # the daemon's list answers, while it is not up
        self.opening = False  # the daemon answers but its store is still opening: list answers stay local
        self._out_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._failed: tuple[float, str] | None = None
        self.session_id = next((os.environ[k] for k in SESSION_ENV if os.environ.get(k)), None)

    # -- daemon ------------------------------------------------------------------------------------
    def daemon(self, force_check: bool = False) -> str:
        """The daemon's URL, starting it when none answers; DaemonUnavailable when it cannot start."""
        if self.url and not force_check:
            return self.url
        with self._start_lock:
            found = locate_daemon()
            if found:
                self.url = found.url
                self.opening = found.opening
                return found.url
            if not self.start_daemon:
                raise DaemonUnavailable("no golem-mcp daemon answers; start it with `golem-mcp serve --detach`")
            if self._failed and time.monotonic() - self._failed[0] < FAILED_START_TTL_S:
                raise DaemonUnavailable(self._failed[1])
            try:
                self.url = self._start()
            except DaemonUnavailable as e:
                self._failed = (time.monotonic(), str(e))
                raise
            self._failed = None
            self.opening = True  # asked again before the next list answer: it may still be opening
            return self.url

    def _start(self) -> str:
        """Run ``golem-mcp serve --detach`` (which returns once the daemon answers, or says why it
        cannot start: a held port fails at once) and return the daemon's URL."""
        _log("starting the golem-mcp daemon")
        try:
            p = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--detach"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=START_TIMEOUT_S, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise DaemonUnavailable(f"the golem-mcp daemon did not start within {START_TIMEOUT_S:.0f} s; run "
                                    "`golem-mcp serve` in a terminal to see why") from None
        if p.returncode != 0:
            why = (p.stderr or p.stdout).strip().removeprefix("golem-mcp: ")
            _log(why)
            raise DaemonUnavailable(f"the golem-mcp daemon cannot start: {why}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:  # started (or another bridge's start won): wait for it to answer
            url = find_daemon()
            if url:
                return url
            time.sleep(0.2)
        raise DaemonUnavailable(f"the golem-mcp daemon did not answer within {START_TIMEOUT_S:.0f} s of starting; "
                                "run `golem-mcp status`, or `golem-mcp serve` in a terminal to see why")

    def _warm(self) -> None:
        # a failure is logged; each tool call tries again and reports it to the agent
        with contextlib.suppress(DaemonUnavailable):
            self.daemon()

    def _still_opening(self) -> bool:
        """Whether the daemon found or started is still opening its store (asked until it is not)."""
        if self.opening and self.url is not None:
            health = probe(self.url, 0.3)
            self.opening = health is None or b'"opening"' in health
        return self.opening

    # -- answers without the daemon ------------------------------------------------------------------
    def local_answer(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The daemon's own answer to ``msg`` from the snapshot, while no daemon is up; else None."""
        if self.snapshot is None or (self.url is not None and not self._still_opening()):
            return None
        versions = self.snapshot["versions"]
        method, params = msg.get("method"), msg.get("params") or {}
        result = None
        if method == "initialize" and isinstance(params, dict):
            entry = versions.get(params.get("protocolVersion")) or versions.get("*")
            result = entry and entry.get("initialize")
            if result:
                self.protocol_version = result.get("protocolVersion")
        elif method == "ping":
            result = {}
        elif method in LIST_METHODS and isinstance(params, dict) and not params.get("cursor"):
            result = (versions.get(self.protocol_version or "") or {}).get(method)
            if result is not None and method == "tools/list" and self.tools is not None:
                result = {**result, "tools": [t for t in result.get("tools", [])
                                              if isinstance(t, dict) and t.get("name") in self.tools]}
        return None if result is None else {"jsonrpc": "2.0", "id": msg.get("id"), "result": result}

    # -- messages ----------------------------------------------------------------------------------
    def post(self, body: bytes) -> tuple[int, bytes, str]:
        parts = urlsplit(self.daemon() + "/mcp")
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   **auth_headers()}
        if self.protocol_version:
            headers["mcp-protocol-version"] = self.protocol_version
        if self.session_id:
            headers["x-golem-session-id"] = self.session_id
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read(), r.getheader("content-type") or ""
        finally:
            conn.close()

    def handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            self.write({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error: not JSON"}})
            return
        msg_id = msg.get("id") if isinstance(msg, dict) else None
        method = msg.get("method") if isinstance(msg, dict) else None
        if method == "tools/call" and self.tools is not None:
            name = (msg.get("params") or {}).get("name")
            if name not in self.tools:
                self.fail(msg_id, method, f"{name!r} is not in this server entry's toolsets; its tools: "
                          f"{', '.join(sorted(self.tools))}. Add the toolset to `golem-mcp stdio --toolsets`.")
                return
        if isinstance(msg, dict) and "id" in msg and (local := self.local_answer(msg)) is not None:
            self.write(local)
            return
        if msg_id is None and self.snapshot is not None and self.url is None:
            return  # a notification (initialized, cancelled) while no daemon is up: nothing to tell it
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                status, body, ctype = self.post(line)
            except DaemonUnavailable as e:
                self.fail(msg_id, method, str(e))
                return
            except OSError as e:
                # the daemon is restarting or gone: find (or start) it again and resend
                if time.monotonic() >= deadline:
                    self.fail(msg_id, method, f"the golem-mcp daemon is unavailable ({e}); try again, or run "
                              "`golem-mcp status`")
                    return
                time.sleep(0.3)
                try:
                    self.daemon(force_check=True)
                except DaemonUnavailable as ce:
                    self.fail(msg_id, method, str(ce))
                    return
                continue
            if status == 503 and time.monotonic() < deadline:
                # its store is still opening (a first start after an upgrade migrates): wait and resend
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
                continue
            break
        if status == 202 or msg_id is None:
            return
        if status == 413:
            self.fail(msg_id, method, "the request is too large for golem-mcp (over 4 MB); send less, e.g. only "
                      "the findings, or a narrower query")
            return
        for reply in _replies(body, ctype):
            if isinstance(reply, dict) and method == "initialize" and isinstance(reply.get("result"), dict):
                self.protocol_version = reply["result"].get("protocolVersion")
            if (isinstance(reply, dict) and method == "tools/list" and self.tools is not None
                    and isinstance(reply.get("result"), dict)):
                reply["result"]["tools"] = [t for t in reply["result"].get("tools", [])
                                            if isinstance(t, dict) and t.get("name") in self.tools]
            self.write(reply)
        if status >= 400 and not body.strip():
            self.fail(msg_id, method, f"the golem-mcp daemon answered HTTP {status}")

    def fail(self, msg_id: Any, method: str | None, text: str) -> None:
        if msg_id is None:
            return
        if method == "tools/call":
            # a tool error the agent reads and acts on, rather than a protocol failure
            self.write({"jsonrpc": "2.0", "id": msg_id,
                        "result": {"content": [{"type": "text", "text": text}], "isError": True}})
        else:
            self.write({"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": text}})

    def write(self, obj: Any) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        with self._out_lock:
            self.out.write(data)
            self.out.flush()

    def run(self, inp: IO[bytes]) -> None:
        if self.url is None and self.start_daemon:
            found = locate_daemon(0.3)
            if found:
                self.url = found.url
                self.opening = found.opening
                if found.opening:  # answer the list methods from the snapshot while its store opens
                    self.snapshot = load_snapshot()
            else:  # answer the list methods from the snapshot while the daemon starts
                self.snapshot = load_snapshot()
                threading.Thread(target=self._warm, name="golem-start", daemon=True).start()
        threads: list[threading.Thread] = []
        for line in inp:
            if not line.strip():
                continue
            # initialize must finish first: later requests carry the protocol version it negotiated
            t = threading.Thread(target=self.handle, args=(line,), daemon=True)
            t.start()
            if b'"initialize"' in line:
                t.join()
            threads = [x for x in threads if x.is_alive()] + [t]
        for t in threads:
            t.join(timeout=RETRY_FOR_S)


# -- the snapshot of the daemon's list answers ------------------------------------------------------

SNAPSHOT_FILE = "mcp-tools.json"
LIST_METHODS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")


def snapshot_path() -> str:
    return os.path.join(data_dir(), SNAPSHOT_FILE)


def fingerprint() -> str:
    """What the tool definitions depend on: the version and every file of the installed package
    (names, sizes, modification times), so an edited or upgraded package never gets an old list."""
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256(__version__.encode())
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(files):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_snapshot() -> dict[str, Any] | None:
    """The daemon's snapshot when it was made by this very package, else None."""
    try:
        with open(snapshot_path(), "rb") as fh:
            snap = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(snap, dict) or snap.get("fingerprint") != fingerprint() or not isinstance(snap.get("versions"), dict):
        return None
    return snap


async def record_snapshot(app: Any) -> None:
    """Ask the daemon's own MCP app (in process, over ASGI) what the bridge answers without it, for
    each handshake protocol version, and write it to the data folder (atomically, mode 0600)."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    versions: dict[str, dict[str, Any]] = {}
    for asked in (*HANDSHAKE_PROTOCOL_VERSIONS, "*"):
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": asked if asked != "*" else "0000-00-00", "capabilities": {},
            "clientInfo": {"name": "golem-mcp-snapshot", "version": __version__}}}
        reply = await _asgi_post(app, init, None)
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            continue
        entry: dict[str, Any] = {"initialize": result}
        for method in LIST_METHODS:
            reply = await _asgi_post(app, {"jsonrpc": "2.0", "id": 2, "method": method, "params": {}},
                                     result.get("protocolVersion"))
            if isinstance(reply, dict) and isinstance(reply.get("result"), dict):
                entry[method] = reply["result"]
        versions[asked] = entry
    path = snapshot_path()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps({"fingerprint": fingerprint(), "versions": versions}).encode())
    os.replace(tmp, path)


async def _asgi_post(app: Any, msg: dict[str, Any], protocol_version: str | None) -> Any:
    """POST ``msg`` to ``/mcp`` of the ASGI ``app`` and return the decoded JSON-RPC reply."""
    import anyio

    body = json.dumps(msg).encode()
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"accept", b"application/json, text/event-stream"), (b"content-length", str(len(body)).encode())]
    if protocol_version:
        headers.append((b"mcp-protocol-version", protocol_version.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "state": {}}
    done = anyio.Event()
    received = False
    chunks: list[bytes] = []
    ctype = ""

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the client "disconnects" only once the reply is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal ctype
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers") or []).get(b"content-type", b"").decode()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    with anyio.fail_after(30):
        await app(scope, receive, send)
    replies = _replies(b"".join(chunks), ctype)
    return replies[0] if replies else None


def _replies(body: bytes, ctype: str) -> list[Any]:
    if not body.strip():
        return []
    if "text/event-stream" in ctype:
        out = []
        for ln in body.decode().splitlines():
            if ln.startswith("data:"):
                try:
                    out.append(json.loads(ln[5:].strip()))
                except ValueError:
                    continue  # keep-alive or partial event: nothing to forward
        return out
    try:
        return [json.loads(body)]
    except ValueError:
        return []


def _log(text: str) -> None:
    print(f"golem-mcp stdio: {text}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace | None = None) -> int:
    # protocol bytes go to the real stdout; anything a library prints goes to stderr instead
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    url = os.environ.get("GOLEM_URL")
    spec = getattr(args, "toolsets", None)
    try:
        chosen = toolsets.parse(spec)
    except ValueError as e:
        _log(str(e))
        return 2
    bridge = Bridge(out, url.rstrip("/") if url else None,
                    tools=None if chosen == toolsets.ALL else toolsets.tools_of(chosen))
    try:
        bridge.run(sys.stdin.buffer)
    except KeyboardInterrupt:
        return 0
    return 0
