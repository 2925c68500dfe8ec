"""Running the daemon as a process: ``serve`` (bind, open the store, write the state file, run),
``serve --detach`` and ``stop``."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import logging.handlers
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ... import __version__
from ...config import (
    DEFAULT_HOST,
    Settings,
    claude_projects_dir,
    data_dir,
    default_db_path,
    spool_dir,
    token_file,
)
from ...errors import GolemError
from ...home import read_state, remove_state, state_path, write_state
from ..client import locate_daemon, probe
from ..loopback import is_loopback_host
from .guard import Guard
from .startup import Opening

log = logging.getLogger("golem_mcp.daemon")

log = logging.getLogger("golem_mcp.daemon")

# how long `serve --detach` waits for the daemon to answer: 15 s was too short on a busy 2-core
# machine (start-ups of 15-16 s were measured under a load average of 18)
DETACH_WAIT_S = 30.0

def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # a zombie (exited, not yet reaped by its parent) still answers kill(0); it is gone for us
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- serve / stop --------------------------------------------------------------------------------

class _RedactingFormatter(logging.Formatter):
    """Log lines may quote what clients sent (a skipped line, a refused body, a request's query
    string, an exception's message): they are redacted like everything stored."""

    def format(self, record: logging.LogRecord) -> str:
        from ...redaction import redact

        return redact(super().format(record))


def _setup_logging() -> None:
    fmt = _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        data_dir().mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(data_dir() / "daemon.log", maxBytes=5_000_000,
                                                             backupCount=3))
    except OSError as e:
        print(f"golem-mcp: cannot write {data_dir() / 'daemon.log'} ({e}); logging to stderr only", file=sys.stderr)
    for name in ("golem_mcp", "uvicorn"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.INFO)
        lg.propagate = False
        for h in handlers:
            h.setFormatter(fmt)
            lg.addHandler(h)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: accepted sockets inherit the listener's proto, and asyncio turns
    # Nagle off (TCP_NODELAY) only on sockets whose proto says TCP. With Nagle on, a response written
    # as headers then body waited for the client's delayed ACK: ~40 ms on most MCP calls.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        holder = _port_holder(host, port)
        if holder and Path(str(holder.get("data_dir", ""))).resolve() == data_dir().resolve():
            raise AlreadyServing(f"golem-mcp: a daemon of this data folder already listens on {host}:{port} "
                                 f"(pid {holder.get('pid')})") from e
        who = (f"another golem-mcp daemon (pid {holder.get('pid')}, data folder {holder.get('data_dir', '?')}; "
               f"this one's is {data_dir()})" if holder else "another program")
        raise GolemError(f"cannot listen on {host}:{port}: {who} holds that port ({e.strerror}). Stop it, or "
                         f"choose another port for this daemon: `golem-mcp serve --port N` or GOLEM_PORT=N in the "
                         "environment (then `golem-mcp install --port N` so Claude Code's telemetry follows; "
                         "--port 0 takes any free port)") from e
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class AlreadyServing(GolemError):
    """This data folder's daemon already holds the port (its state file was gone, or two started at once)."""


def _port_holder(host: str, port: int) -> dict[str, Any] | None:
    """What /healthz at host:port says when a golem-mcp daemon answers there, else None."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host.strip("[]") == "::" else host)
    body = probe(f"http://{target}:{port}", 1.0)
    try:
        info = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(info, dict) and info.get("ok") is True and "pid" in info and "version" in info:
        return info
    return None


def _running() -> dict[str, Any] | None:
    """The state of this data folder's daemon when it answers its health check, else None."""
    found = locate_daemon(1.0, env=False)
    return found.state if found else None


def _token(chosen: str | None) -> str:
    """The token this daemon requires: the one chosen (--token, GOLEM_TOKEN), else the data folder's."""
    from ...home import check_token, ensure_token

    try:
        return check_token(chosen) if chosen else ensure_token()
    except ValueError as e:
        where = "--token/GOLEM_TOKEN" if chosen else str(token_file())
        raise GolemError(f"the token in {where} cannot be used: {e}. Choose another"
                         + ("" if chosen else " (or delete the file: a new one is made)")) from e
    except OSError as e:
        raise GolemError(f"cannot read or create the token file {token_file()} ({e}); check the data folder's "
                         "permissions, or choose a token with --token/GOLEM_TOKEN") from e


def serve(args: argparse.Namespace) -> int:
    """``golem-mcp serve``: run the daemon in the foreground (or ``--detach``)."""
    host = getattr(args, "host", None) or DEFAULT_HOST
    chosen = getattr(args, "token", None) or None
    if not is_loopback_host(host) and not chosen:
        raise GolemError(f"refusing to listen on {host} without a token: anyone on that network could read "
                         "your usage. Use the default 127.0.0.1, or pass --token (or GOLEM_TOKEN)")
    token = _token(chosen)
    db = Path(args.db).expanduser().resolve() if getattr(args, "db", None) else default_db_path().resolve()
    running = _running()
    if running:
        same = Path(str(running.get("db", ""))).expanduser().resolve() == db
        if same:
            print(f"golem-mcp daemon already running at {running['url']} (pid {running.get('pid')}, db {db})")
            return 0
        print(f"golem-mcp: a daemon already runs at {running['url']} with another database "
              f"({running.get('db')}); stop it first (`golem-mcp stop`) or use another GOLEM_HOME", file=sys.stderr)
        return 1
    if getattr(args, "detach", False):
        if int(args.port):  # a held port is said here, at once, not after the child's start-up
            try:
                _bind(host, int(args.port)).close()
            except AlreadyServing as e:
                print(e)
                return 0
        return _detach(args, host, db, chosen)

    import uvicorn

    try:
        # a held port fails at once, saying who holds it
        sock = _bind(host, int(args.port))
    except AlreadyServing as e:
        print(e)
        return 0
    _setup_logging()
    team = bool(getattr(args, "team", False))
    port = sock.getsockname()[1]
    url_host = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{url_host}:{port}"
    watch = [] if getattr(args, "no_watch", False) or team else [
        Path(w).expanduser() for w in (getattr(args, "watch", None) or [str(claude_projects_dir())])]
    server: uvicorn.Server | None = None

    def open_app() -> tuple[Any, Callable[[], None]]:
        # in a thread, while /healthz already answers: the heavy imports, the store and the app
        from ...store.db import Store
        from ...store.team import start_pusher
        from .app import build_app
        from .decoding import default_workers

        settings = Settings.load()
        if team:  # every tool, the dashboard and the API answer from the team store
            from ...store.team import open_team_store, refresh_interval

            team_store = open_team_store(settings)
            team_store.start_refreshing(refresh_interval())  # what machines push is read as it lands
            store: Store = team_store
        else:
            store = Store(db, settings=settings)
        try:
            app = build_app(store, settings, watch=watch, spool=spool_dir(), mcp_snapshot=True,
                            decode_workers=default_workers())
            pusher = None if team else start_pusher(store, settings)  # a team store configured: push to it
        except BaseException:
            store.close()
            raise

        def close() -> None:
            if pusher is not None:
                pusher.stop()
            store.close()

        return app, close

    def failed(e: BaseException) -> None:
        log.error("cannot open the store %s: %s", db, e)
        if server is not None:
            server.should_exit = True

    opening = Opening(open_app, failed)
    config = uvicorn.Config(Guard(opening, token, is_loopback_host(host)), log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5, server_header=False, http="h11",
                            ws="none")
    # An OTLP body of 500 records becomes ~50,000 short-lived dicts that reference counting frees.
    # At the default threshold (700 allocations) the cycle collector ran dozens of times a body and
    # its passes walked every live object (bodies in flight, queued batches): half the ingest CPU.
    gc.set_threshold(100_000, 50, 100)
    server = uvicorn.Server(config)
    pid = os.getpid()
    state: dict[str, Any] = {"url": url, "pid": pid, "port": port, "host": host, "db": str(db),
                             "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                             "version": __version__, "token": token}
    if team:  # `report --team` and the other reads with --team go through this daemon (cli_main._daemon_for)
        from ...store.team import TeamUnavailable, team_config

        with contextlib.suppress(TeamUnavailable):  # said when the store opens, with what to do
            cfg = team_config(Settings.load())
            state["team"] = cfg.destination if cfg else None
    write_state(state)
    log.info("golem-mcp %s serving %s on %s (watching %s); dashboard at %s/", __version__, db, url,
             ", ".join(map(str, watch)) or "nothing", url)
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default SIGTERM
    # action that would kill us before the state file is removed, so let those signals be no-ops
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        remove_state(pid)
        sock.close()
        log.info("golem-mcp daemon stopped")
    if opening.error is not None:
        raise opening.error
    return 0


def _detach(args: argparse.Namespace, host: str, db: Path, token: str | None) -> int:
    cmd = [sys.executable, "-m", "golem_mcp", "serve", "--host", host, "--port", str(args.port), "--db", str(db)]
    if getattr(args, "no_watch", False):
        cmd.append("--no-watch")
    if getattr(args, "team", False):
        cmd.append("--team")
    for w in getattr(args, "watch", None) or []:
        cmd += ["--watch", str(Path(w).expanduser().resolve())]
    env = dict(os.environ)
    if token:
        env["GOLEM_TOKEN"] = token  # not on the command line, where every local user could read it
    data_dir().mkdir(parents=True, exist_ok=True)
    out_path = data_dir() / "daemon.out"
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + DETACH_WAIT_S
    answered = False
    while time.monotonic() < deadline:
        code = proc.poll()
        if code == 0:  # another start won the race for the port: wait for that daemon instead
            running = _running()
            if running:
                print(running["url"])
                return 0
            time.sleep(0.1)
            continue
        if code is not None:
            print(f"golem-mcp: the daemon exited at start (code {code}):\n{_tail(out_path)}", file=sys.stderr)
            return 1
        found = locate_daemon(0.5, env=False)
        answered = answered or (found is not None and found.state.get("pid") == proc.pid)
        # it answers before its store is open: wait for the store too, so that a store that cannot
        # open (held, newer schema, an unreachable team catalog) is said here with the reason
        if answered and found is not None and not found.opening:
            print(found.url)
            return 0
        time.sleep(0.1)
    if answered:  # alive, still opening its store (a long migration): requests wait for it
        st = read_state() or {}
        print(f"golem-mcp: the daemon (pid {proc.pid}) answers but is still opening its store; requests wait "
              f"for it (see {data_dir() / 'daemon.log'})", file=sys.stderr)
        print(st.get("url", ""))
        return 0
    print(f"golem-mcp: the daemon (pid {proc.pid}) did not answer within {DETACH_WAIT_S:.0f} s; see {out_path} and "
          f"{data_dir() / 'daemon.log'}", file=sys.stderr)
    return 1


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _is_golem(pid: int) -> bool:
    """Guard against a stale state file whose pid now belongs to some other program."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the state file
    return b"golem" in cmdline


def stop() -> int:
    """``golem-mcp stop``: SIGTERM the daemon named in the state file and wait for it to exit."""
    st = read_state()
    if not st:
        print("golem-mcp: no daemon running (no state file)")
        return 0
    pid = st.get("pid")
    if not _pid_alive(pid) or not isinstance(pid, int) or not _is_golem(pid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_path())
        print(f"golem-mcp: no daemon running (removed a stale state file for pid {pid})")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child (tests)
        time.sleep(0.05)
    else:
        print(f"golem-mcp: the daemon (pid {pid}) did not stop within 15 s; it may be finishing a long "
              f"import. Try again, or `kill {pid}`", file=sys.stderr)
        return 1
    remove_state(pid)
    print(f"golem-mcp: stopped the daemon (pid {pid}, {st.get('url')})")
    return 0
