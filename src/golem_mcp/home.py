"""The data folder and what the daemon keeps there for its clients: the state file (where it
listens) and the token (what every request but ``/healthz`` must carry).

One definition for every client: the CLI, the stdio bridge, the dashboard link, ``install`` (which
puts the token into Claude Code's OTLP headers) and the hook. The hook runs on every Claude Code
hook event and must start in milliseconds, so this module imports ``os`` and nothing else at load
time (``json`` and ``secrets`` only when needed); ``config`` wraps these paths in ``pathlib``.

The token: ``--token``/``GOLEM_TOKEN`` when given, else the one in ``<data folder>/token``, made
(random, mode 0600) the first time the daemon or ``install`` needs it. Clients read it with
:func:`read_token`: ``GOLEM_TOKEN``, else the running daemon's (its state file, mode 0600, names the
token it was started with), else the token file. It is never put on a command line, where every
local user could read it in ``ps``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the hook's start-up)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PORT = 4319  # one above OTLP/HTTP's 4318, so a local collector can coexist
DEFAULT_HOST = "127.0.0.1"
TOKEN_FILE = "token"
STATE_FILE = "daemon.json"
# what a token may hold: it travels in an HTTP header and in OTEL_EXPORTER_OTLP_HEADERS
# ("k=v,k2=v2"), so no spaces, commas or quotes
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def data_dir() -> str:
    """``$GOLEM_HOME``, else ``$XDG_DATA_HOME/golem-mcp``, else ``~/.local/share/golem-mcp``."""
    home = os.environ.get("GOLEM_HOME")
    if home:
        return os.path.expanduser(home)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "golem-mcp")


def state_path() -> str:
    return os.path.join(data_dir(), STATE_FILE)


def token_path() -> str:
    return os.path.join(data_dir(), TOKEN_FILE)


def read_state() -> dict[str, Any] | None:
    """The running (or last) daemon's state file: url, pid, db, token."""
    import json

    try:
        with open(state_path(), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(state: dict[str, Any]) -> None:
    """Write the daemon's state file atomically (write + rename), readable by the user only: it
    holds the token."""
    import json

    path = state_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{STATE_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(state, indent=2))
    os.replace(tmp, path)


def remove_state(pid: int) -> None:
    """Remove the state file if it still names ``pid`` (a newer daemon may have replaced it)."""
    st = read_state()
    if st and st.get("pid") == pid:
        try:  # noqa: SIM105 - this module imports os alone (the hook loads it on every event)
            os.unlink(state_path())
        except FileNotFoundError:
            pass  # already gone: what was asked


def read_token(state: dict[str, Any] | None = None) -> str | None:
    """The token a client sends: ``GOLEM_TOKEN``, else the running daemon's (``state``, read from
    the state file when not given), else the token file's; None when there is none yet."""
    env = os.environ.get("GOLEM_TOKEN")
    if env:
        return env
    st = read_state() if state is None else state
    tok = st.get("token") if st else None
    if isinstance(tok, str) and tok:
        return tok
    try:
        with open(token_path()) as fh:
            return fh.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def check_token(token: str) -> str:
    """``token`` if it can travel in the headers it must travel in, else ValueError saying why."""
    if not token or not set(token) <= TOKEN_CHARS:
        raise ValueError("a token may hold letters, digits and - . _ ~ + / = only (no spaces or commas)")
    return token


def ensure_token() -> str:
    """The token file's token, made first (32 random bytes, URL-safe, mode 0600) when there is none.
    A token file readable by others is made private again."""
    path = token_path()
    empty = False
    try:
        with open(path) as fh:
            tok = fh.read().strip()
        if tok:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
            return check_token(tok)
        empty = True  # emptied by hand: a fresh one replaces it
    except FileNotFoundError:
        pass
    import secrets

    os.makedirs(data_dir(), exist_ok=True)
    tok = secrets.token_urlsafe(32)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(tok + "\n")
    try:
        if empty:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another process made one meanwhile: theirs wins, for everyone
    except FileExistsError:
        with open(path) as fh:
            tok = fh.read().strip()
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return check_token(tok)


# -- the machine ---------------------------------------------------------------------------------
# Every fact carries the machine it was observed on (issue 11): an id made at the first start and
# kept in the data folder, so it stays the same across restarts and upgrades; the host name is its
# label. ``GOLEM_MACHINE`` overrides both (a CI runner or container that should keep one name).
# The id starts with the host name, so shard files and `report --by machine` read as the machine.
MACHINE_FILE = "machine"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def machine_path() -> str:
    return os.path.join(data_dir(), MACHINE_FILE)


def _slug(text: str, limit: int = 40) -> str:
    """``text`` as a machine id may hold it: lower-case letters, digits and single dashes (it names files)."""
    out = "".join(c if c in _ID_CHARS else "-" for c in text.strip().lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:limit].strip("-")


def host_label() -> str:
    import socket

    return socket.gethostname() or "localhost"


def machine() -> tuple[str, str]:
    """This machine's (id, label): ``GOLEM_MACHINE`` when set; else the id in the data folder (made at
    the first call: ``<host>-<8 hex>``) and the host name."""
    override = os.environ.get("GOLEM_MACHINE", "").strip()
    if override:
        return _slug(override) or "machine", override
    label = host_label()
    path = machine_path()
    try:
        with open(path) as fh:
            mid = _slug(fh.read())
        if mid:
            return mid, label
    except (OSError, UnicodeDecodeError):
        pass
    import secrets

    mid = f"{_slug(label, 24) or 'machine'}-{secrets.token_hex(4)}"
    try:
        os.makedirs(data_dir(), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(mid + "\n")
        try:
            os.link(tmp, path)  # fails if another process made one meanwhile: theirs wins, for everyone
        except FileExistsError:
            with open(path) as fh:
                mid = _slug(fh.read()) or mid
        finally:
            os.unlink(tmp)
    except OSError:
        # a data folder that cannot be written: the host name alone, the same on every start
        return _slug(label, 24) or "machine", label
    return mid, label
