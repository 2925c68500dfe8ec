"""``golem-mcp doctor``: check each piece of the path from Claude Code to the store, and say how to
fix the first thing that is wrong.

The path: Claude Code reads ``.mcp.json`` / settings -> runs ``golem-mcp hook`` on every hook event
and exports OTLP to the endpoint in settings ``env`` -> the daemon receives both and owns the store;
transcripts under ``~/.claude/projects`` are read as a third source. Each check is a plain function
returning a ``Check``; ``run_checks`` runs them in that order.

Example::

    for c in run_checks(Path.cwd()):
        print(c.line())
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import DEFAULT_HOST, DEFAULT_PORT, claude_projects_dir, spool_dir
from .install import (
    CORE_HOOK_EVENTS,
    HOOK_EVENTS,
    NEWER_HOOK_EVENTS,
    SERVER_NAME,
    claude_config_dir,
    claude_user_json,
    hook_events_with_golem,
    project_trusted,
)

OK, FAIL, WARN = "ok", "FAIL", "warn"


@dataclass
class Check:
    name: str
    status: str          # ok, FAIL, warn
    detail: str
    fix: str | None = None

    def line(self) -> str:
        s = f"  {self.status:<5} {self.name:<18} {self.detail}"
        if self.fix and self.status != OK:
            s += f"\n  {'':<5} {'':<18} fix: {self.fix}"
        return s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(p: Path) -> dict | None:
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def settings_layers(project: Path | None) -> list[tuple[Path, dict]]:
    """The settings files Claude Code reads, lowest precedence first (user, project, local)."""
    paths = [claude_config_dir() / "settings.json"]
    if project:
        paths += [project / ".claude" / "settings.json", project / ".claude" / "settings.local.json"]
    out = []
    for p in paths:
        obj = _json(p)
        if obj is not None:
            out.append((p, obj))
    return out


def effective_env(layers: list[tuple[Path, dict]]) -> dict[str, tuple[str, Path]]:
    env: dict[str, tuple[str, Path]] = {}
    for p, obj in layers:
        e = obj.get("env")
        if isinstance(e, dict):
            for k, v in e.items():
                env[k] = (str(v), p)
    return env


def _norm_url(u: str) -> str:
    u = u.strip().rstrip("/")
    return u.replace("://localhost:", "://127.0.0.1:").replace("://[::1]:", "://127.0.0.1:")


# -- the checks ----------------------------------------------------------------------------------

def check_versions(claude: str | None = None) -> Check:
    exe = claude or shutil.which("claude")
    parts = [f"golem-mcp {__version__}", f"Python {platform.python_version()}"]
    if not exe:
        return Check("versions", WARN, ", ".join(parts) + "; Claude Code CLI not found on PATH",
                     "install it (npm install -g @anthropic-ai/claude-code) or put `claude` on PATH")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return Check("versions", WARN, ", ".join(parts) + f"; `{exe} --version` failed ({e})",
                     "check the Claude Code installation")
    parts.append(f"Claude Code {out.split()[0] if out else '?'}")
    return Check("versions", OK, ", ".join(parts))


def check_mcp_entry(project: Path | None) -> Check:
    places: list[Path] = []
    if project:
        places.append(project / ".mcp.json")
    places.append(claude_user_json())
    for p in places:
        obj = _json(p) or {}
        servers = obj.get("mcpServers")
        entry = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
        if entry is None and p == claude_user_json() and project:
            # claude mcp add --scope local stores a project's servers inside ~/.claude.json
            proj = (obj.get("projects") or {}).get(str(project)) or {}
            entry = (proj.get("mcpServers") or {}).get(SERVER_NAME)
        if not isinstance(entry, dict):
            continue
        cmd = entry.get("command")
        if entry.get("type") in ("http", "sse") or entry.get("url"):
            return Check("mcp server", OK, f"{SERVER_NAME!r} in {p} -> {entry.get('url')}")
        if not cmd or not (shutil.which(cmd) or Path(cmd).is_file()):
            return Check("mcp server", FAIL, f"{SERVER_NAME!r} in {p} runs {cmd!r}, which is not found",
                         "run `golem-mcp install` again from the environment where golem-mcp is installed")
        return Check("mcp server", OK, f"{SERVER_NAME!r} in {p}: {cmd} {' '.join(entry.get('args') or [])}")
    return Check("mcp server", FAIL, f"no MCP server {SERVER_NAME!r} in " + " or ".join(str(p) for p in places),
                 _install_fix(project))


def _install_fix(project: Path | None) -> str:
    return f"golem-mcp install --project {shlex.quote(str(project))}" if project else "golem-mcp install --user"


def check_hooks_installed(project: Path | None) -> Check:
    layers = settings_layers(project)
    present: set[str] = set()
    where: list[str] = []
    for p, obj in layers:
        found = hook_events_with_golem(obj)
        if found:
            where.append(str(p))
        present |= found
    missing = [e for e in HOOK_EVENTS if e not in present]
    if not missing:
        return Check("hooks installed", OK, f"`golem-mcp hook` on all {len(HOOK_EVENTS)} events ({', '.join(where)})")
    if not present:
        return Check("hooks installed", FAIL, "no `golem-mcp hook` in any settings file "
                     f"({', '.join(str(p) for p, _ in layers) or 'none found'}); stages of custom agents "
                     "will not be named", _install_fix(project))
    core = [e for e in missing if e in CORE_HOOK_EVENTS]
    if core:
        return Check("hooks installed", FAIL, f"`golem-mcp hook` missing for: {', '.join(missing)}",
                     _install_fix(project))
    # an install from before Claude Code 2.1's events: everything works, these add information
    adds = sorted({NEWER_HOOK_EVENTS[e] for e in missing})
    return Check("hooks installed", WARN, f"`golem-mcp hook` missing for: {', '.join(missing)} "
                 f"(they add: {'; '.join(adds)})", _install_fix(project))


def exporter_env() -> dict[str, tuple[str, Path | str]]:
    """What Claude Code's OpenTelemetry exporter sees: its environment, overridden by the user settings'
    ``env`` (Claude Code 2.1 applies a project's ``env`` to tools and hooks, not to the exporter)."""
    env: dict[str, tuple[str, Path | str]] = {k: (v, "the environment") for k, v in os.environ.items()
                                              if k.startswith(("OTEL_", "CLAUDE_CODE_ENABLE_TELEMETRY"))}
    env.update(effective_env(settings_layers(None)))
    return env


def check_otel_settings(project: Path | None, daemon_url: str | None) -> Check:
    env = exporter_env()
    expected = _norm_url(daemon_url or f"http://{DEFAULT_HOST}:{int(os.environ.get('GOLEM_PORT') or DEFAULT_PORT)}")
    problems = []
    if env.get("CLAUDE_CODE_ENABLE_TELEMETRY", ("",))[0] not in ("1", "true"):
        problems.append("CLAUDE_CODE_ENABLE_TELEMETRY is not 1")
    for k in ("OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER"):
        if "otlp" not in env.get(k, ("",))[0].split(","):
            problems.append(f"{k} does not include otlp")
    ep = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    fix = _install_fix(project)
    if ep is None:
        problems.append("OTEL_EXPORTER_OTLP_ENDPOINT is not set")
    elif _norm_url(ep[0]) != expected:
        return Check("otlp endpoint", FAIL, f"OTLP is sent to {ep[0]} (set in {ep[1]}), not to the daemon at {expected}",
                     f"set OTEL_EXPORTER_OTLP_ENDPOINT={expected} in {ep[1]} (or `{fix} --force`)")
    for k in ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        if k in env and not _norm_url(env[k][0]).startswith(expected):
            return Check("otlp endpoint", FAIL, f"{k}={env[k][0]} (in {env[k][1]}) overrides the daemon's endpoint",
                         f"remove {k} from {env[k][1]}")
    proto = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", ("",))[0]
    if proto == "grpc":
        problems.append("OTEL_EXPORTER_OTLP_PROTOCOL is grpc; the daemon speaks http/protobuf and http/json")
    if problems:
        ignored = [str(p) for p, obj in settings_layers(project)[1:]
                   if isinstance(obj.get("env"), dict) and "OTEL_EXPORTER_OTLP_ENDPOINT" in obj["env"]]
        if ignored:
            problems.append(f"the OTEL_* env in {', '.join(ignored)} does not reach Claude Code's exporter, "
                            f"which reads only {claude_config_dir() / 'settings.json'} and its environment")
        return Check("otlp endpoint", FAIL, "; ".join(problems), fix)
    return Check("otlp endpoint", OK, f"telemetry exported to {ep[0] if ep else expected} ({proto or 'default protocol'})")


def _bearer(headers: str) -> str | None:
    """The bearer token in an ``OTEL_EXPORTER_OTLP_HEADERS`` value (``k=v,k2=v2``, values may be
    percent-encoded), else None."""
    from urllib.parse import unquote

    for item in headers.split(","):
        key, _, value = item.partition("=")
        value = unquote(value.strip())
        if key.strip().lower() == "authorization" and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return None


def check_otlp_token(project: Path | None) -> Check:
    """Claude Code's exporter must send the daemon's token, or every OTLP export is answered 401."""
    import hmac

    from ..home import read_token

    want = read_token()
    fix = _install_fix(project)
    if not want:
        return Check("otlp token", WARN, "the daemon has not made its token yet (it does at its first start)",
                     f"start the daemon (`golem-mcp serve --detach`), then run `{fix}` again")
    have = exporter_env().get("OTEL_EXPORTER_OTLP_HEADERS")
    sent = _bearer(have[0]) if have else None
    if sent is None:
        return Check("otlp token", FAIL, "Claude Code's OTLP export carries no token"
                     + (f" (OTEL_EXPORTER_OTLP_HEADERS in {have[1]} has no Authorization)" if have else "")
                     + ": the daemon refuses it (401) and that telemetry is lost", fix)
    if not hmac.compare_digest(sent.encode(), want.encode()):
        return Check("otlp token", FAIL, f"the token in OTEL_EXPORTER_OTLP_HEADERS (set in {have[1] if have else '?'}) "
                     "is not the daemon's (a new token, or a daemon started with --token?): OTLP is refused (401)",
                     f"{fix} (it writes the current token; add --force if the header was set by hand)")
    return Check("otlp token", OK, "Claude Code's OTLP export carries the daemon's token")


def _allows_golem(obj: dict) -> bool:
    allow = (obj.get("permissions") or {}).get("allow") if isinstance(obj.get("permissions"), dict) else None
    return isinstance(allow, list) and any(
        isinstance(r, str) and (r == f"mcp__{SERVER_NAME}" or r.startswith(f"mcp__{SERVER_NAME}__")) for r in allow)


def check_tool_permissions(project: Path | None) -> Check:
    """The agents call golem's tools unattended: they must be allowed where Claude Code applies it."""
    layers = settings_layers(project)
    where = [p for p, obj in layers if _allows_golem(obj)]
    if not where:
        return Check("tool permissions", WARN, f"no settings file allows mcp__{SERVER_NAME}: every golem tool call "
                     "asks first, and `claude -p` denies it", _install_fix(project))
    shared = project / ".claude" / "settings.json" if project else None
    if project and where == [shared] and not project_trusted(project):
        # Claude Code ignores a project's shared permissions until its trust dialog is accepted,
        # so that a cloned repository cannot grant itself tools
        return Check("tool permissions", WARN, f"mcp__{SERVER_NAME} is allowed only in {shared}, which Claude Code "
                     "applies once this folder is trusted; until then golem's tools are denied in `claude -p`",
                     f"run `claude` in {project} once and accept the trust dialog, or add \"mcp__{SERVER_NAME}\" "
                     f"to permissions.allow in {project / '.claude' / 'settings.local.json'}")
    return Check("tool permissions", OK, f"mcp__{SERVER_NAME} allowed in {', '.join(str(p) for p in where)}")


def check_daemon(url: str | None, expected: str | None = None) -> Check:
    if url:
        return Check("daemon", OK, f"reachable at {url}")
    where = expected or f"http://{DEFAULT_HOST}:{int(os.environ.get('GOLEM_PORT') or DEFAULT_PORT)}"
    return Check("daemon", FAIL, f"not reachable (expected at {where}); hooks are spooled and OTLP is lost meanwhile",
                 "start it: `golem-mcp serve --detach` (Claude Code also starts it through `golem-mcp stdio`)")


def _spooled() -> int:
    try:
        return sum(1 for p in spool_dir().iterdir() if p.is_file() and p.stat().st_size > 0)
    except OSError:
        return 0


def _count(status: dict, *names: str) -> int | None:
    """A row count from the daemon's /api/status answer, whatever nesting it uses."""
    for holder in (status, status.get("tables") or {}, status.get("store") or {}, status.get("counts") or {}):
        if not isinstance(holder, dict):
            continue
        for n in names:
            v = holder.get(n)
            if isinstance(v, int | float):
                return int(v)
    return None


def check_hooks_firing(status: dict | None) -> Check:
    spooled = _spooled()
    if status is None:
        if spooled:
            return Check("hooks firing", WARN, f"hooks fire ({spooled} spooled payload files wait for the daemon)",
                         "start the daemon; it ingests the spool")
        return Check("hooks firing", WARN, "cannot tell while the daemon is down", "start the daemon, then run doctor again")
    n = _count(status, "hook_events")
    if n is None:
        return Check("hooks firing", WARN, "the daemon's status does not report hook events", None)
    if n == 0:
        return Check("hooks firing", FAIL, "no hook event has reached the daemon yet",
                     "start a Claude Code session in the project (hooks load at session start); "
                     "if it still says 0, run `echo '{}' | golem-mcp hook` and read hook-errors.log in the data folder")
    return Check("hooks firing", OK, f"{n} hook events stored" + (f", {spooled} spooled" if spooled else ""))


def check_otlp_arriving(status: dict | None) -> Check:
    if status is None:
        return Check("otlp arriving", WARN, "cannot tell while the daemon is down", "start the daemon, then run doctor again")
    n = _count(status, "otel_events")
    m = _count(status, "metric_points")
    s = _count(status, "spans")
    if n is None and m is None:
        return Check("otlp arriving", WARN, "the daemon's status does not report OTLP counts", None)
    if not (n or m or s):
        return Check("otlp arriving", FAIL, "no OTLP log event, metric or span has reached the daemon yet",
                     "check the `otlp endpoint` line above, then run a Claude Code session (logs export every 2 s)")
    return Check("otlp arriving", OK, f"{n or 0} events, {m or 0} metric points, {s or 0} spans stored")


def check_quarantine() -> Check:
    """Hook payloads the spool drain could not store: kept, with why, in one file of the data folder."""
    from ..ingestion.spool import quarantine_path, quarantined

    path = quarantine_path(spool_dir())
    n = quarantined(path)
    if not n:
        return Check("quarantine", OK, "no hook payload was refused")
    return Check("quarantine", WARN, f"{n} hook payload(s) could not be stored and are kept in {path}",
                 f"read why on each line of {path} (a wrongly typed or oversized field, most likely from a "
                 "hook script or an old Claude Code); the payloads beside them were stored. Delete the file "
                 "once read")


def inbox_summary(state: dict | None, running: bool) -> str | None:
    """What the store's write inbox holds, in a line, or None when it holds nothing (see
    :meth:`golem_mcp.store.db.Store.inbox_state`); ``golem-mcp status`` and ``doctor`` say it."""
    if not isinstance(state, dict):
        return None
    kept, backlog = int(state.get("batches_kept") or 0), int(state.get("rows_not_written") or 0)
    parts = []
    if backlog:
        parts.append(f"{backlog} OTLP rows answered and being written")
    if kept and running:
        parts.append(f"{kept} batches accepted before a stop could not be written; they are kept in the store "
                     "and tried again at each start (the daemon's log says why)")
    elif kept:
        parts.append(f"{kept} batches accepted before the daemon stopped wait in the store; "
                     "the next start of the daemon (or any command that writes) writes them")
    return "; ".join(parts) if parts else None


class LocalStore:
    """The store itself, opened read-only at most once for the checks that read it when no daemon
    holds it (``write inbox``, ``resolved facts``), not once per check. ``store`` is None when there
    is none yet (``missing``) or it could not be opened (``error``, raised to each check that asks)."""

    def __init__(self) -> None:
        from ..config import default_db_path

        self.store: Any = None
        self.error: Exception | None = None
        self.path = default_db_path()
        self.missing = not self.path.exists()
        self._opened = False

    def get(self) -> Any:
        if not self._opened and not self.missing:
            self._opened = True
            try:
                from ..store import Store

                self.store = Store(self.path, read_only=True)
            except Exception as e:  # noqa: BLE001 - any failure here is itself the finding
                self.error = e
        if self.error is not None:
            raise self.error
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def check_write_inbox(status: dict | None, local: LocalStore | None = None) -> Check:
    """OTLP batches answered and not yet written, and any a start could not write (kept in the store)."""
    name = "write inbox"
    running = status is not None
    state = status.get("write_inbox") if status else None
    if state is None and not running:
        local = local or LocalStore()
        if local.missing:
            return Check(name, OK, "no store yet")
        try:
            state = local.get().inbox_state()
        except Exception as e:  # noqa: BLE001 - any failure here is itself the finding
            return Check(name, WARN, f"could not read the store: {e}", None)
    if not isinstance(state, dict):
        return Check(name, WARN, "the daemon's status does not report its write inbox", None)
    said = inbox_summary(state, running)
    if int(state.get("batches_kept") or 0) and running:
        return Check(name, FAIL, said or "", "read the daemon's log for the first error of the write inbox; restarting "
                     "the daemon tries them again, and nothing else waits for them")
    if int(state.get("batches_kept") or 0):
        return Check(name, WARN, said or "", "start the daemon: `golem-mcp serve --detach`")
    return Check(name, OK, said or "every accepted OTLP batch is written")


def transcript_dir(project: Path) -> Path:
    """Claude Code's transcript folder for a project: the path with every non-alphanumeric made '-'."""
    return claude_projects_dir() / re.sub(r"[^A-Za-z0-9]", "-", str(project))


def check_transcripts(project: Path | None) -> Check:
    base = claude_projects_dir()
    if not base.exists():
        return Check("transcripts", WARN, f"{base} does not exist yet (no Claude Code session has run as this user)",
                     "run Claude Code once; or set CLAUDE_CONFIG_DIR as Claude Code sees it")
    if not os.access(base, os.R_OK | os.X_OK):
        return Check("transcripts", FAIL, f"{base} is not readable", f"fix the permissions of {base}")
    if project:
        d = transcript_dir(project)
        if d.is_dir():
            files = list(d.glob("*.jsonl"))
            unreadable = [f for f in files if not os.access(f, os.R_OK)]
            if unreadable:
                return Check("transcripts", FAIL, f"{len(unreadable)} transcripts in {d} are not readable",
                             f"fix the permissions in {d}")
            return Check("transcripts", OK, f"{len(files)} session transcripts in {d}")
        return Check("transcripts", WARN, f"no transcripts for this project yet ({d})",
                     "run a Claude Code session in the project")
    return Check("transcripts", OK, f"{sum(1 for _ in base.glob('*/*.jsonl'))} session transcripts in {base}")


def check_resolution(url: str | None, verify: bool = False, local: LocalStore | None = None) -> Check:
    """Stored resolved facts equal a from-scratch resolution (of the recent rows; every row with
    ``verify``): asked of the daemon, or read from the store itself when no daemon holds it."""
    from ..interfaces.client import call

    name = "resolved facts"
    try:
        if url:
            got = call(url, "/api/resolution" + ("?full=1" if verify else ""), timeout=3600 if verify else 60)
        else:
            local = local or LocalStore()
            if local.missing:
                return Check(name, OK, "no store yet")
            got = local.get().check_resolution(full=verify)
    except Exception as e:  # noqa: BLE001 - any failure here is itself the finding
        return Check(name, WARN, f"could not check: {e}", "run `golem-mcp doctor --verify` again once the daemon answers")
    what = "every fact resolves" if got.get("checked") == "all" else "the most recent facts resolve"
    bad = got.get("mismatches") or {}
    if not bad:
        return Check(name, OK, f"{what} as from scratch" + ("" if verify else " (--verify: all of them)"))
    parts = []
    for table, m in bad.items():
        first = "; ".join(f"{f['key']}: {f['column']} is {f['stored']!r}, expected {f['expected']!r}" for f in m["first"][:3])
        parts.append(f"{table}: {m['rows']} rows differ ({first})")
    return Check(name, FAIL, "; ".join(parts),
                 "report it with these lines; restarting the daemon does not fix it (the facts are re-resolved when "
                 "their context changes)")


def run_checks(project: Path | None, claude: str | None = None, verify: bool = False) -> list[Check]:
    from ..interfaces.client import call, daemon_url, find_daemon

    url = find_daemon()
    checks = [check_versions(claude), check_mcp_entry(project), check_hooks_installed(project),
              check_tool_permissions(project), check_otel_settings(project, url), check_otlp_token(project), check_daemon(url, daemon_url())]
    status = None
    if url:
        try:
            got = call(url, "/api/status", timeout=10)
            status = got if isinstance(got, dict) else None
        except Exception as e:  # noqa: BLE001 - any failure here is itself the finding
            checks.append(Check("daemon status", FAIL, f"/api/status failed: {e}", "see the daemon's log; restart it"))
    local = LocalStore()  # opened at its first use only: with a daemon running, never
    try:
        checks += [check_hooks_firing(status), check_quarantine(), check_otlp_arriving(status),
                   check_write_inbox(status, local), check_transcripts(project), check_resolution(url, verify, local)]
    finally:
        local.close()
    return checks
