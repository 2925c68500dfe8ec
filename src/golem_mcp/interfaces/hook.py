"""``golem-mcp hook``: one Claude Code hook payload on stdin, handed to the daemon or spooled.

This runs on every hook event Claude Code fires, so it must never slow Claude Code down or break it:
- it always exits 0 and prints nothing, except the ``display`` text the daemon returns for a
  SessionStart (Claude Code adds a SessionStart hook's stdout to the session's context);
- it imports almost nothing: no ``golem_mcp.config`` (it pulls pathlib and dataclasses), no
  http.client or urllib (tens of milliseconds), just a raw socket (``client.http``);
- a SessionStart (whose display text the daemon returns) and a daemon named by ``GOLEM_URL`` (whose
  data folder may be another) get the payload over HTTP: 0.2 s to accept, 1 s to answer;
- every other event, with the daemon found through the state file in the shared data folder, is
  appended to the spool by the hook itself and the daemon is only nudged (``POST /api/wake``, reply
  not awaited) to drain it now: a hook's time is then Python's start-up plus one file append, and
  never waits on a busy daemon;
- when the daemon is down, fails, or is still opening its store (503), the payload is appended to
  the spool with its receive time, and the daemon ingests it when it next runs (or once open).
"""

from __future__ import annotations

import os
import sys
import time

from ..home import data_dir as _data_dir
from .client import http, locate_daemon

CONNECT_TIMEOUT = 0.2
TOTAL_TIMEOUT = 1.0
# a SessionEnd export (export_on_session_end) reads the session's transcript and writes shards: it
# is waited for, since the session's container may be gone right after (Claude Code gives a hook 60 s)
EXPORT_TIMEOUT = 50.0


def _log_error(message: str) -> None:
    """Problems go to a log file: stdout is Claude Code's, and stderr would show up in its UI.
    A message may quote what the hook was given: it is redacted, then cut to 500 characters."""
    try:
        from ..redaction import redact

        d = _data_dir()
        os.makedirs(d, exist_ok=True)
        fd = os.open(os.path.join(d, "hook-errors.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}: {redact(message)[:500]}\n")
    except OSError:
        pass  # nowhere left to report to; the hook must still exit 0


def _target() -> tuple[tuple[str, str | None] | None, bool]:
    """((url, token) of the daemon or None, whether it shares our data folder). Not health-checked:
    a hook posts at once and spools when that fails."""
    found = locate_daemon(check=False)
    if found is None:
        return None, False
    return (found.url, found.token), found.shared


def post(body: bytes, target: tuple[str, str | None]) -> tuple[int, bytes]:
    """POST ``body`` to the daemon's /hooks; (status, response body)."""
    # ack=spooled: the daemon replies once the payload is journaled, not after a database commit
    return http(target[0], "POST", "/hooks?ack=spooled", body, target[1], connect_timeout=CONNECT_TIMEOUT,
                timeout=TOTAL_TIMEOUT)


def poke(target: tuple[str, str | None]) -> None:
    """Ask the daemon to drain the spool now; the reply is not awaited (the drainer's own round
    comes within seconds anyway, so a lost nudge only delays ingestion)."""
    http(target[0], "POST", "/api/wake", b"", target[1], connect_timeout=CONNECT_TIMEOUT,
         timeout=TOTAL_TIMEOUT, wait=False)


def spool(body: bytes, received_us: int) -> bool:
    """Append the payload (or each payload of a list), stamped with its receive time, to the spool;
    False when there was nothing valid to append (the reason is logged)."""
    import json

    from ..redaction import redact_value

    try:
        payload = json.loads(body)
    except ValueError as e:
        _log_error(f"stdin is not JSON ({e}); nothing spooled: {body[:2000]!r}")
        return False
    items = payload if isinstance(payload, list) else [payload]
    lines = []
    for p in items:
        if not isinstance(p, dict):
            _log_error(f"hook payload is not a JSON object; nothing spooled: {str(p)[:2000]}")
            continue
        p.setdefault("_golem_received_us", received_us)
        lines.append(json.dumps(redact_value(p), separators=(",", ":")))  # the spool holds no secret
    if not lines:
        return False
    from ..ingestion.spool import append

    append(os.path.join(_data_dir(), "spool"), ("\n".join(lines) + "\n").encode())
    return True


def main(argv: list[str] | None = None) -> int:
    """Read stdin, pass it on; returns 0 whatever happens."""
    received_us = time.time_ns() // 1000
    try:
        body = sys.stdin.buffer.read()
    except (OSError, ValueError) as e:
        _log_error(f"cannot read stdin: {e}")
        return 0
    if not body.strip():
        _log_error("empty stdin; nothing to record")
        return 0
    try:
        _pass_on(body, received_us)
    except Exception as e:  # noqa: BLE001 - a hook must never fail Claude Code; log and exit 0
        _log_error(f"{type(e).__name__}: {e}")
    if b'"SessionEnd"' in body:
        try:
            _session_end(body)
        except Exception as e:  # noqa: BLE001 - as above: logged, never in Claude Code's way
            _log_error(f"SessionEnd export failed: {type(e).__name__}: {e}")
    return 0


def _pass_on(body: bytes, received_us: int) -> None:
    """Hand the payload to the daemon, or spool it."""
    target, shared = _target()
    if target is not None and shared and b'"SessionStart"' not in body:
        if spool(body, received_us):
            try:  # noqa: SIM105 - contextlib would be one more import on every hook
                poke(target)
            except OSError:
                pass  # down after all: the spooled payload waits for its next start
        return
    if target is not None:
        try:
            status, reply = post(body, target)
        except (OSError, ValueError) as e:
            status, reply = 0, str(e).encode()
        if 200 <= status < 300:
            _show_display(reply)
            return
        if status == 400:
            # the daemon read it and said why it is not a hook payload: spooling would not help
            _log_error(f"daemon refused the payload: {reply[:2000]!r}")
            return
        if status == 401:
            # a daemon started with another token: the payload waits in the spool, which the
            # daemon of this data folder drains itself (no token needed for that)
            _log_error("daemon refused the token (401: started with another --token/GOLEM_TOKEN?); "
                       "the payload is spooled, nothing is lost")
        elif status and status != 503:  # 503: its store is still opening; it drains the spool once open
            _log_error(f"daemon answered {status}: {reply[:2000]!r}; spooled")
    spool(body, received_us)


def _session_end(body: bytes) -> None:
    """With ``export_on_session_end`` set, export the ended session's project into that folder of it
    (see ``session_export``): by the daemon when one answers, else here, on the store itself."""
    import json

    from ..config import Settings

    settings = Settings.load()
    if not settings.export_on_session_end:
        return
    items = json.loads(body)
    for payload in items if isinstance(items, list) else [items]:
        if not isinstance(payload, dict) or payload.get("hook_event_name") != "SessionEnd":
            continue
        found = locate_daemon(check=False)
        url = found.url if found else None
        if url:
            from ..errors import GolemError
            from .client import call

            try:
                call(url, "/api/export", {"session_end": payload, "folder": settings.export_on_session_end},
                     timeout=EXPORT_TIMEOUT)
                continue
            except GolemError as e:
                if not isinstance(e.__cause__, OSError):  # the daemon answered: it holds the store, say why
                    _log_error(f"SessionEnd export by the daemon failed: {e}")
                    continue
                _log_error(f"SessionEnd export: no daemon answered ({e}); exporting here")
        from ..config import default_db_path, spool_dir
        from ..store.db import Store
        from .session_export import session_end_export

        with Store(default_db_path(), settings=settings) as store:
            from ..ingestion.spool import drain

            session_end_export(store, settings, payload, lambda: drain(store, spool_dir(), settings.store_prompts))


def _show_display(reply: bytes) -> None:
    if b'"display"' not in reply:
        return  # the common case: no need to parse the reply at all
    import json

    try:
        text = json.loads(reply).get("display")
    except (ValueError, AttributeError):
        return
    if isinstance(text, str) and text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
