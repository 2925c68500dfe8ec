"""Finding and talking to the daemon. Stdlib only: the hook client imports this at start-up."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from ..config import state_file


def read_state() -> dict[str, Any] | None:
    try:
        with open(state_file()) as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


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
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout) as r:
            return url if r.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


def call(url: str, path: str, payload: dict | None = None, timeout: float = 600.0) -> Any:
    """POST (or GET when no payload) JSON to the daemon; raises GolemError with its message on 4xx/5xx."""
    from ..errors import GolemError

    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": "application/json", **_auth()})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", str(e))
        except (ValueError, AttributeError):
            msg = str(e)
        raise GolemError(msg) from e
    except (OSError, urllib.error.URLError) as e:
        raise GolemError(f"the daemon at {url} did not answer ({e}); is `golem-mcp serve` running?") from e


def _auth() -> dict[str, str]:
    tok = os.environ.get("GOLEM_TOKEN")
    if not tok:
        st = read_state()
        tok = st.get("token") if st else None
    return {"authorization": f"Bearer {tok}"} if tok else {}
