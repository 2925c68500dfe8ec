"""Finding and talking to the daemon: where it listens (:func:`find_daemon`) and the token it wants
(:func:`auth_headers`, from ``golem_mcp.home``). Stdlib only: the stdio bridge imports this at
start-up."""

from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from ..home import read_state, read_token

__all__ = ["auth_headers", "call", "daemon_url", "find_daemon", "read_state", "read_token"]


def daemon_url() -> str | None:
    """``GOLEM_URL`` or the URL in the state file, without checking that it answers."""
    env = os.environ.get("GOLEM_URL")
    if env:
        return env.rstrip("/")
    st = read_state()
    return st.get("url") if st else None


def find_daemon(timeout: float = 0.5) -> str | None:
    """The daemon's URL if one answers its health check, else None."""
    url = daemon_url()
    if not url:
        return None
    # a raw socket: urllib costs ~30 ms of imports, and every CLI call starts with this check
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as s:
            s.sendall(f"GET /healthz HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return None
    return url if head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) else None


def call(url: str, path: str, payload: dict | None = None, timeout: float = 600.0) -> Any:
    """POST (or GET when no payload) JSON to the daemon; raises GolemError with its message on 4xx/5xx."""
    import urllib.error
    import urllib.request

    from ..errors import GolemError

    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": "application/json", **auth_headers()})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", str(e))
        except (ValueError, AttributeError):
            msg = str(e)
        if e.code == 401:
            msg = (f"the daemon at {url} refused this client's token: it was started with another one. Set "
                   "GOLEM_TOKEN to the token it was given, or restart it (`golem-mcp stop`, then any command)")
        raise GolemError(msg) from e
    except (OSError, urllib.error.URLError) as e:
        raise GolemError(f"the daemon at {url} did not answer ({e}); is `golem-mcp serve` running?") from e


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header every local client sends (empty when there is no token yet)."""
    tok = read_token()
    return {"authorization": f"Bearer {tok}"} if tok else {}
