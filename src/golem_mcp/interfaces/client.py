"""Finding and talking to the daemon: where it listens (:func:`find_daemon`), the token it wants
(:func:`auth_headers`, from ``golem_mcp.home``) and one HTTP exchange with it (:func:`http`).

Stdlib only, and only its cheap parts: the stdio bridge imports this at start-up, the hook on every
Claude Code event, and ``golem-mcp report`` answers through it in a few tens of milliseconds. So the
exchange is a raw socket: ``urllib.request`` alone costs ~20-30 ms of imports (``http.client``,
``email``, ``ssl``), more than the daemon takes to answer.
"""

from __future__ import annotations

import os
import socket
import time

from ..home import read_state, read_token

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a few ms on every CLI call)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Daemon", "auth_headers", "call", "daemon_url", "find_daemon", "http", "locate_daemon", "probe", "read_state",
           "read_token", "split_url"]


class Daemon:
    """A daemon found by :func:`locate_daemon`: where it listens and the state file beside it."""

    __slots__ = ("health", "shared", "state", "url")

    def __init__(self, url: str, state: dict[str, Any], shared: bool, health: bytes | None = None) -> None:
        self.url = url
        self.state = state  # this data folder's state file ({} when there is none)
        self.shared = shared  # found through that state file (not GOLEM_URL): it serves this data folder
        self.health = health  # the body of its /healthz answer (None: not asked)

    @property
    def token(self) -> str | None:
        return read_token(self.state)

    @property
    def opening(self) -> bool:
        """It answers, but its store is still opening (requests other than /healthz wait for it)."""
        return self.health is not None and b'"opening"' in self.health


def locate_daemon(timeout: float = 0.5, *, check: bool = True, env: bool = True) -> Daemon | None:
    """The one way every client (CLI, hook, stdio bridge, tracing, doctor, ``serve`` itself) finds
    the running daemon: ``GOLEM_URL`` (unless ``env`` is False), else the URL in this data folder's
    state file. With ``check``, only a daemon that answers ``/healthz`` within ``timeout`` is
    returned; the hook passes ``check=False`` (it posts at once, and spools when that fails).
    """
    url = os.environ.get("GOLEM_URL") if env else None
    shared = not url
    state = read_state() or {}
    url = url or state.get("url")
    if not url or not isinstance(url, str):
        return None
    url = url.rstrip("/")
    health = None
    if check:
        health = probe(url, timeout)
        if health is None:
            return None
    return Daemon(url, state, shared, health)


def daemon_url() -> str | None:
    """``GOLEM_URL`` or the URL in the state file, without checking that it answers."""
    found = locate_daemon(check=False)
    return found.url if found else None


def find_daemon(timeout: float = 0.5) -> str | None:
    """The daemon's URL if one answers its health check, else None (:func:`locate_daemon`)."""
    found = locate_daemon(timeout)
    return found.url if found else None


def probe(url: str, timeout: float = 0.5) -> bytes | None:
    """The body of the daemon's ``GET /healthz`` answer at ``url``, None when none answers 200. It
    answers from the moment it listens, with ``"store": "opening"`` until its store is open. Every
    CLI call starts with this check, so the body is not parsed here (``json`` is an import more)."""
    try:
        status, body = http(url, "GET", "/healthz", connect_timeout=timeout, timeout=max(timeout, 1.0))
    except OSError:
        return None
    return body if status == 200 else None


def split_url(url: str) -> tuple[str, int, str]:
    """``http://host:port/prefix`` -> (host, port, prefix); urllib.parse would cost its import."""
    rest = url.split("://", 1)[-1]
    hostport, _, prefix = rest.partition("/")
    prefix = "/" + prefix.rstrip("/") if prefix else ""
    if hostport.startswith("["):  # [::1]:4319
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return host, int(port) if port else 80, prefix


def http(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None,
         connect_timeout: float = 5.0, timeout: float = 600.0, content_type: str = "application/json",
         wait: bool = True) -> tuple[int, bytes]:
    """One request to the daemon at ``url`` over a raw socket: (status, response body).

    ``timeout`` bounds the whole exchange; ``wait=False`` sends and returns (0, b"") without reading
    the reply. Raises OSError when the daemon cannot be reached or its reply is not HTTP.
    """
    host, port, prefix = split_url(url)
    deadline = time.monotonic() + timeout
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"{method} {prefix}{path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    with socket.create_connection((_host(host), port), timeout=connect_timeout) as s:  # type: ignore[arg-type]
        s.settimeout(max(0.01, deadline - time.monotonic()))
        s.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
        if not wait:
            return 0, b""
        chunks = []
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(262144)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    status_line, _, rest = raw.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP reply: {status_line[:80]!r}")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        payload = _dechunk(payload)
    return int(parts[1]), payload


def _host(host: str) -> str | bytes:
    """``host`` as getaddrinfo takes it without loading the idna codec (~1-2 ms): ASCII names as bytes
    (which getaddrinfo accepts; typeshed says str only)."""
    return host.encode("ascii") if host.isascii() else host


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)


def call(url: str, path: str, payload: dict | None = None, timeout: float = 600.0) -> Any:
    """POST (or GET when no payload) JSON to the daemon; raises GolemError with its message on 4xx/5xx."""
    import json

    from ..errors import GolemError

    body = json.dumps(payload).encode() if payload is not None else None
    try:
        status, reply = http(url, "POST" if body is not None else "GET", path, body, read_token(), timeout=timeout)
    except OSError as e:
        raise GolemError(f"the daemon at {url} did not answer ({e}); is `golem-mcp serve` running?") from e
    if status >= 400:
        try:
            msg = json.loads(reply).get("error") or f"HTTP {status}"
        except (ValueError, AttributeError):
            msg = f"HTTP {status}: {reply[:200]!r}"
        if status == 401:
            msg = (f"the daemon at {url} refused this client's token: it was started with another one. Set "
                   "GOLEM_TOKEN to the token it was given, or restart it (`golem-mcp stop`, then any command)")
        raise GolemError(msg)
    return json.loads(reply or b"null")


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header every local client sends (empty when there is no token yet)."""
    tok = read_token()
    return {"authorization": f"Bearer {tok}"} if tok else {}
