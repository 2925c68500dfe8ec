"""``golem-mcp stdio``: what Claude Code launches. Bridges MCP over stdio to the daemon's ``/mcp``.

Why a bridge and not a server: DuckDB lets one process own the database, and every Claude Code
session launches its own stdio server. So each bridge forwards JSON-RPC messages, one HTTP POST
each, to the one daemon (streamable HTTP, stateless, JSON responses) and starts the daemon when
none answers. Stateless means a daemon restart loses nothing: the next POST simply reaches the
new process.

Only protocol messages go to stdout; everything else goes to stderr. Stdlib only, for a fast start.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from typing import IO, Any
from urllib.parse import urlsplit

from . import toolsets
from .client import _auth, find_daemon

START_TIMEOUT_S = 20.0
RETRY_FOR_S = 30.0  # how long a message waits for a restarting daemon before the agent gets an error
SESSION_ENV = ("CLAUDE_CODE_SESSION_ID", "CLAUDE_SESSION_ID")


class Bridge:
    """Forwards each stdin message to the daemon; writes each answer to stdout under a lock."""

    def __init__(self, out: IO[bytes], url: str | None = None, start_daemon: bool = True,
                 tools: set[str] | None = None) -> None:
        self.out = out
        self.tools = tools  # None: every tool; else only these are listed and callable (--toolsets)
        self.url = url
        self.start_daemon = start_daemon
        self.protocol_version: str | None = None
        self._out_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self.session_id = next((os.environ[k] for k in SESSION_ENV if os.environ.get(k)), None)

    # -- daemon ------------------------------------------------------------------------------------
    def daemon(self, force_check: bool = False) -> str:
        """The daemon's URL, starting it when none answers."""
        if self.url and not force_check:
            return self.url
        with self._start_lock:
            url = find_daemon()
            if url:
                self.url = url
                return url
            if not self.start_daemon:
                raise ConnectionError("no golem-mcp daemon answers; start it with `golem-mcp serve --detach`")
            _log("starting the golem-mcp daemon")
            subprocess.Popen([sys.executable, "-m", "golem_mcp", "serve", "--detach"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=sys.stderr, start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                url = find_daemon()
                if url:
                    self.url = url
                    return url
                time.sleep(0.2)
            raise ConnectionError(f"the golem-mcp daemon did not start within {START_TIMEOUT_S:.0f} s; run "
                                  "`golem-mcp serve` in a terminal to see why")

    # -- messages ----------------------------------------------------------------------------------
    def post(self, body: bytes) -> tuple[int, bytes, str]:
        parts = urlsplit(self.daemon() + "/mcp")
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   **_auth()}
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
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                status, body, ctype = self.post(line)
                break
            except OSError as e:
                # the daemon is restarting or gone: find (or start) it again and resend
                if time.monotonic() >= deadline:
                    self.fail(msg_id, method, f"the golem-mcp daemon is unavailable ({e}); try again, or run "
                              "`golem-mcp status`")
                    return
                time.sleep(0.3)
                try:
                    self.daemon(force_check=True)
                except ConnectionError as ce:
                    self.fail(msg_id, method, str(ce))
                    return
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
