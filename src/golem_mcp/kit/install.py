"""Wire a Claude Code project (or the user scope) to golem-mcp, and unwire it exactly.

``install`` adds: the MCP server entry (``.mcp.json`` or ``~/.claude.json``), one ``golem-mcp hook``
command per hook event and the ``OTEL_*`` variables in ``.claude/settings.json``, and copies of the
kit's agents and commands into ``.claude/agents`` and ``.claude/commands``. Everything it changed
is written to a manifest (``.claude/golem-install.json``) so ``uninstall`` removes exactly that:

- a settings file nobody touched since install is restored byte for byte from the manifest;
- one edited since is edited back structurally: only golem's hook groups, env values and list
  items are taken out, whatever the user added stays;
- a copied agent or command is deleted only while it is still the file install wrote.

The user's own hooks and env are never replaced. A variable the user already set to another value
(say ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at their collector) is left alone with a warning
unless ``force`` is given, because telemetry can go to only one endpoint.

Example::

    result = install(Target.project(Path("~/work/app").expanduser()))
    print(result.summary())
    uninstall(Target.project(Path("~/work/app").expanduser()))
"""

from __future__ import annotations

import base64
import contextlib
import copy
import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import DEFAULT_HOST, DEFAULT_PORT
from ..errors import GolemError, InvalidInput
from .bundle import kit_files

MANIFEST_NAME = "golem-install.json"
SERVER_NAME = "golem"

# Every hook event golem-mcp ingests. Tool events take a matcher; "*" matches every tool.
CORE_HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure",
                    "SubagentStart", "SubagentStop", "Stop", "SessionEnd")
# The events Claude Code 2.1 added that tell golem-mcp something the others do not, and what.
NEWER_HOOK_EVENTS: dict[str, str] = {
    "PostToolBatch": "which tool calls ran together",
    "PermissionDenied": "tool calls refused by a permission rule",
    "StopFailure": "turns that ended on an API error (without OTel)",
    "PreCompact": "context compactions (without OTel)",
    "PostCompact": "context compactions (without OTel)",
    "TaskCreated": "Claude Code's own task list",
    "TaskCompleted": "Claude Code's own task list",
}
HOOK_EVENTS = CORE_HOOK_EVENTS + tuple(NEWER_HOOK_EVENTS)
TOOL_EVENTS = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionDenied"})


def claude_config_dir() -> Path:
    """Claude Code's user folder: ``$CLAUDE_CONFIG_DIR`` or ``~/.claude``."""
    cfg = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(cfg).expanduser() if cfg else Path.home() / ".claude"


def claude_user_json() -> Path:
    """The user-scope MCP server list (``~/.claude.json``; inside ``$CLAUDE_CONFIG_DIR`` when set)."""
    cfg = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(cfg).expanduser() / ".claude.json" if cfg else Path.home() / ".claude.json"


ENV_LEDGER = "golem-env.json"


def user_settings_file() -> Path:
    return claude_config_dir() / "settings.json"


def env_ledger_file() -> Path:
    """Beside the user settings: the telemetry env project installs put there, and which projects use it."""
    return claude_config_dir() / ENV_LEDGER


def _load_ledger(p: Path, data: bytes | None) -> dict | None:
    if data is None:
        return None
    try:
        led = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"{p} is damaged ({e}); remove the OTEL_* entries golem-mcp added to "
                           f"{user_settings_file()} by hand and delete {p}") from e
    if not isinstance(led, dict) or led.get("ledger") != 1:
        raise InvalidInput(f"{p} is not a golem-mcp env ledger (version 1)")
    return led


def project_trusted(project: Path) -> bool:
    """Whether the user accepted Claude Code's trust dialog for this very folder (Claude Code 2.1's
    `-p` does not count a trusted parent folder, so neither does this)."""
    projects = (_load_json_quiet(claude_user_json())).get("projects")
    if not isinstance(projects, dict):
        return False
    entry = projects.get(str(project.expanduser().resolve()))
    return isinstance(entry, dict) and bool(entry.get("hasTrustDialogAccepted"))


def _load_json_quiet(p: Path) -> dict:
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


@dataclass(frozen=True)
class Target:
    """Where to install: the files of one scope."""

    scope: str                 # "project" or "user"
    root: Path                 # the project folder, or Claude Code's user folder
    mcp_file: Path             # .mcp.json or ~/.claude.json
    settings_file: Path
    agents_dir: Path
    commands_dir: Path
    manifest: Path

    @classmethod
    def project(cls, directory: Path) -> Target:
        d = directory.expanduser().resolve()
        if not d.is_dir():
            raise InvalidInput(f"project folder {d} does not exist; create it or pass an existing --project DIR")
        claude = d / ".claude"
        return cls("project", d, d / ".mcp.json", claude / "settings.json", claude / "agents",
                   claude / "commands", claude / MANIFEST_NAME)

    @classmethod
    def user(cls) -> Target:
        c = claude_config_dir()
        return cls("user", c, claude_user_json(), c / "settings.json", c / "agents", c / "commands",
                   c / MANIFEST_NAME)

    def rel(self, p: Path) -> str:
        """A path as the manifest stores it: relative to the scope's root where possible."""
        return os.path.relpath(p, self.root)

    def abs(self, rel: str) -> Path:
        return Path(os.path.normpath(self.root / rel))


@dataclass
class Options:
    """What install puts in; the defaults are what a maintainer wants."""

    port: int = int(os.environ.get("GOLEM_PORT") or DEFAULT_PORT)
    host: str = DEFAULT_HOST
    traces: bool = True          # spans (CLAUDE_CODE_ENHANCED_TELEMETRY_BETA): retries, queue waits
    copy_kit: bool = True        # agents and commands
    force: bool = False          # replace conflicting env values and files (originals kept for uninstall)
    command: list[str] | None = None   # how to run golem-mcp; default: found on PATH or this executable
    token: str | None = None     # the daemon's token for the OTLP headers; default: the one clients read

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Change:
    path: Path
    action: str                  # create, update, delete, restore, unchanged, skip
    note: str = ""
    before: bytes | None = None
    after: bytes | None = None

    def diff(self) -> str:
        """A unified diff of the change (text files)."""
        a = (self.before or b"").decode("utf-8", "replace").splitlines(keepends=True)
        b = (self.after or b"").decode("utf-8", "replace").splitlines(keepends=True)
        name = str(self.path)
        # a diff is for reading on screen: the daemon's token is not shown
        a = [_TOKEN_IN_TEXT.sub(r"\1[token]", line) for line in a]
        b = [_TOKEN_IN_TEXT.sub(r"\1[token]", line) for line in b]
        out = "".join(difflib.unified_diff(a, b, "/dev/null" if self.before is None else name,
                                           "/dev/null" if self.after is None else name))
        return out if out.endswith("\n") or not out else out + "\n"


@dataclass
class Result:
    target: Target
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    dirs_to_remove: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action not in ("unchanged", "skip")]

    def summary(self) -> str:
        verb = "would " if self.dry_run else ""
        lines = []
        for c in self.changes:
            if c.action == "unchanged":
                continue
            lines.append(f"  {verb}{c.action:<8} {c.path}" + (f"  ({c.note})" if c.note else ""))
        if not lines:
            lines.append("  nothing to change")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------------------

def golem_command() -> list[str]:
    """How Claude Code should start golem-mcp: by name when it is on PATH, else by absolute path."""
    if shutil.which("golem-mcp"):
        return ["golem-mcp"]
    argv0 = Path(sys.argv[0])
    if argv0.name == "golem-mcp" and argv0.exists():
        return [str(argv0.resolve())]
    beside = Path(sys.executable).parent / "golem-mcp"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "golem_mcp"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def _unb64(s: str | None) -> bytes | None:
    return base64.b64decode(s) if s is not None else None


def _read(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None


def _load_json(p: Path, data: bytes | None) -> dict:
    if data is None or not data.strip():
        return {}
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"{p} is not valid JSON ({e}); fix or move it, then run the command again. "
                           "Nothing was changed.") from e
    if not isinstance(obj, dict):
        raise InvalidInput(f"{p} does not hold a JSON object; fix or move it, then run the command again. "
                           "Nothing was changed.")
    return obj


def _dump_json(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def _write_atomic(p: Path, data: bytes) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.golem-tmp")
    tmp.write_bytes(data)
    with contextlib.suppress(FileNotFoundError):  # a new file keeps the default mode
        os.chmod(tmp, p.stat().st_mode & 0o7777)
    os.replace(tmp, p)


def _is_golem_hook(h: Any) -> bool:
    if not isinstance(h, dict) or h.get("type") != "command" or not isinstance(h.get("command"), str):
        return False
    try:
        words = shlex.split(h["command"])
    except ValueError:
        return False
    return len(words) >= 2 and words[-1] == "hook" and (
        Path(words[-2]).name == "golem-mcp" or words[-2] == "golem_mcp")


def hook_events_with_golem(settings: dict) -> set[str]:
    """The hook events whose configuration runs ``golem-mcp hook``."""
    found = set()
    hooks = settings.get("hooks")
    if isinstance(hooks, dict):
        for event, groups in hooks.items():
            for g in groups if isinstance(groups, list) else ():
                if isinstance(g, dict) and any(_is_golem_hook(h) for h in g.get("hooks") or ()):
                    found.add(event)
    return found


def desired_env(opts: Options) -> dict[str, str]:
    """The variables that send Claude Code's native telemetry to the daemon."""
    env = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": opts.endpoint,
        # the daemon answers 401 without its token; Claude Code's exporter sends these headers
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {opts.token or daemon_token()}",
        # short intervals: agents ask about their own spend minutes later, not an hour later
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_LOGS_EXPORT_INTERVAL": "2000",
    }
    if opts.traces:
        env.update({"OTEL_TRACES_EXPORTER": "otlp", "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
                    "OTEL_TRACES_EXPORT_INTERVAL": "2000"})
    return env


def daemon_token() -> str:
    """The token local clients send (``GOLEM_TOKEN``, the running daemon's, the data folder's), made
    now when the daemon has never run, so the telemetry env carries the one it will use."""
    from ..home import ensure_token, read_token

    return read_token() or ensure_token()


_TOKEN_IN_TEXT = re.compile(r"(Bearer )[A-Za-z0-9._~+/=-]+")


def _get_path(obj: dict, keys: list[str]) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)  # type: ignore[assignment]
    return obj


def _ensure_path(obj: dict, keys: list[str], leaf: Any, created: list[str]) -> Any:
    """``obj[k1][k2]...``, creating missing containers (recorded in ``created``) with ``leaf`` last."""
    cur = obj
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if k not in cur or not isinstance(cur[k], dict | list):
            if k in cur:
                raise InvalidInput(f"setting {'.'.join(keys[: i + 1])!r} is not a JSON "
                                   f"{'list' if last and isinstance(leaf, list) else 'object'}; fix it first. "
                                   "Nothing was changed.")
            cur[k] = copy.deepcopy(leaf) if last else {}
            created.append(".".join(keys[: i + 1]))
        cur = cur[k]
    return cur


# -- the per-file edits --------------------------------------------------------------------------

class _Installer:
    def __init__(self, target: Target, opts: Options, manifest: dict, result: Result) -> None:
        self.t = target
        self.o = opts
        self.m = manifest
        self.r = result
        self.cmd = opts.command or golem_command()
        self.hook_command = " ".join(shlex.quote(w) for w in [*self.cmd, "hook"])

    def _file_entry(self, p: Path, current: bytes | None, keep_original: bool = True) -> dict:
        files = self.m.setdefault("files", {})
        key = self.t.rel(p)
        entry = files.get(key)
        if entry is None:
            entry = {"original": _b64(current) if keep_original else None,
                     "original_kept": keep_original, "existed": current is not None,
                     "written_sha256": None, "created": [], "hooks": {}, "env": {}, "items": [], "servers": {}}
            files[key] = entry
        elif current is not None and entry.get("written_sha256") not in (None, _sha(current)):
            # edited since the last install: the saved original would undo the user's edits, so
            # from now on uninstall edits this file back structurally instead
            entry["original_kept"] = False
            entry["original"] = None
        return entry

    def _finish(self, p: Path, before: bytes | None, obj: dict, entry: dict, note: str) -> None:
        after = _dump_json(obj)
        if before is not None and _load_json(p, before) == obj:
            self.r.changes.append(Change(p, "unchanged"))
            entry["written_sha256"] = _sha(before)
            return
        entry["written_sha256"] = _sha(after)
        self.r.changes.append(Change(p, "create" if before is None else "update", note, before, after))

    def mcp_entry(self) -> None:
        p = self.t.mcp_file
        before = _read(p)
        obj = _load_json(p, before)
        # ~/.claude.json is Claude Code's own state file, rewritten constantly: keeping a copy
        # would be useless for restoring and would duplicate private state, so it is edited only
        entry = self._file_entry(p, before, keep_original=self.t.scope == "project")
        want: dict[str, Any] = {"command": self.cmd[0], "args": [*self.cmd[1:], "stdio"]}
        if self.o.port != DEFAULT_PORT:  # the daemon the bridge starts must listen where OTLP is sent
            want["env"] = {"GOLEM_PORT": str(self.o.port)}
        if self.t.scope == "user":
            want["type"] = "stdio"
        servers = _ensure_path(obj, ["mcpServers"], {}, entry["created"])
        have = servers.get(SERVER_NAME)
        recorded = entry["servers"].get(SERVER_NAME)
        if have is None or (recorded is not None and have == recorded["value"]):
            entry["servers"][SERVER_NAME] = {"value": want, "previous": recorded["previous"] if recorded else None}
            servers[SERVER_NAME] = want
        elif have != want:
            if self.o.force:
                entry["servers"][SERVER_NAME] = {"value": want, "previous": have}
                servers[SERVER_NAME] = want
            else:
                self.r.warnings.append(f"{p}: an MCP server named {SERVER_NAME!r} is already configured "
                                       f"({json.dumps(have)}); left as is (use --force to replace it)")
        self._finish(p, before, obj, entry, f"MCP server {SERVER_NAME!r}")

    def settings(self) -> None:
        p = self.t.settings_file
        before = _read(p)
        obj = _load_json(p, before)
        entry = self._file_entry(p, before)
        created: list[str] = entry["created"]
        hooks = _ensure_path(obj, ["hooks"], {}, created)
        present = hook_events_with_golem(obj)
        for event in HOOK_EVENTS:
            if event in present:
                continue
            group: dict[str, Any] = {"hooks": [{"type": "command", "command": self.hook_command}]}
            if event in TOOL_EVENTS:
                group = {"matcher": "*", **group}
            made: list[str] = []
            _ensure_path(hooks, [event], [], made)
            created.extend(f"hooks.{m}" for m in made)
            if not isinstance(hooks[event], list):
                raise InvalidInput(f"{p}: hooks.{event} is not a list; fix it first. Nothing was changed.")
            hooks[event].append(group)
            entry["hooks"][event] = group
        if self.t.scope == "user":
            self._set_env(p, _ensure_path(obj, ["env"], {}, created), entry["env"])
        items = [(["permissions", "allow"], f"mcp__{SERVER_NAME}")]
        if self.t.scope == "project":
            # headless and first runs would otherwise ask before starting a project's .mcp.json server
            items.append((["enabledMcpjsonServers"], SERVER_NAME))
        for keys, value in items:
            lst = _ensure_path(obj, keys, [], created)
            if not isinstance(lst, list):
                raise InvalidInput(f"{p}: {'.'.join(keys)} is not a list; fix it first. Nothing was changed.")
            if value not in lst:
                lst.append(value)
                if [keys, value] not in entry["items"]:
                    entry["items"].append([keys, value])
        self._finish(p, before, obj, entry, "hooks, telemetry env, permission for golem tools")

    def _set_env(self, p: Path, env: dict, records: dict) -> None:
        """Put the telemetry variables into ``env`` (a settings file's), recording what was changed."""
        for k, v in desired_env(self.o).items():
            have = env.get(k)
            recorded = records.get(k)
            if have == v:
                continue
            if have is None or (recorded is not None and have == recorded["value"]):
                records[k] = {"value": v, "previous": recorded["previous"] if recorded else None}
                env[k] = v
            elif self.o.force:
                records[k] = {"value": v, "previous": have}
                env[k] = v
            else:
                self.r.warnings.append(f"{p}: env {k} is already {have!r}; golem-mcp wants {v!r}. Left as is "
                                       "(use --force to replace it; uninstall puts yours back)")

    def user_env(self) -> None:
        """For a project: the telemetry variables go into the *user* settings, the only settings file whose
        ``env`` Claude Code (2.1) applies to its own OpenTelemetry exporter; a project's ``env`` reaches
        tools and hooks but not the exporter. Projects share these variables, so what was changed is
        kept in a ledger beside them, with the projects that use it, and undone by the last uninstall."""
        p, lp = user_settings_file(), env_ledger_file()
        before, led_before = _read(p), _read(lp)
        obj = _load_json(p, before)
        ledger = _load_ledger(lp, led_before) or {"ledger": 1, "env": {}, "created": [], "projects": [],
                                                 "existed": before is not None,
                                                 "dir_created": not p.parent.exists(), "original_kept": True,
                                                 "original": _b64(before), "written_sha256": None}
        self._set_env(p, _ensure_path(obj, ["env"], {}, ledger["created"]), ledger["env"])
        if str(self.t.root) not in ledger["projects"]:
            ledger["projects"].append(str(self.t.root))
        if before is not None and _load_json(p, before) == obj:
            self.r.changes.append(Change(p, "unchanged"))
        else:
            after_settings = _dump_json(obj)
            if ledger["original_kept"] and ledger["written_sha256"] in (None, _sha(before or b"")):
                # untouched since golem's first write: uninstall can restore it byte for byte
                ledger["written_sha256"] = _sha(after_settings)
            else:  # edited by someone since: uninstall edits golem's entries out instead
                ledger["original_kept"], ledger["original"] = False, None
            self.r.changes.append(Change(p, "create" if before is None else "update",
                                         "telemetry env (Claude Code's exporter reads only user settings)",
                                         before, after_settings))
        after = _dump_json(ledger)
        if after != led_before:
            self.r.changes.append(Change(lp, "create" if led_before is None else "update",
                                         "the telemetry env install changed there, and the projects using it",
                                         led_before, after))

    def copies(self) -> None:
        copies = self.m.setdefault("copies", {})
        created_dirs = self.m.setdefault("created_dirs", [])
        for kind, dest_dir in (("agents", self.t.agents_dir), ("commands", self.t.commands_dir)):
            for d in (dest_dir.parent, dest_dir):
                if not d.exists() and self.t.rel(d) not in created_dirs:
                    created_dirs.append(self.t.rel(d))
            for src in kit_files(kind):
                dest = dest_dir / src.name
                key = self.t.rel(dest)
                new = src.read_bytes()
                cur = _read(dest)
                rec = copies.get(key)
                if cur == new:
                    if rec is not None:
                        rec["sha256"] = _sha(new)
                    self.r.changes.append(Change(dest, "unchanged"))
                    continue
                if cur is None:
                    copies[key] = {"sha256": _sha(new), "original": rec["original"] if rec else None}
                    self.r.changes.append(Change(dest, "create", f"{kind[:-1]} {src.stem}", None, new))
                elif rec is not None and _sha(cur) == rec["sha256"]:
                    rec["sha256"] = _sha(new)
                    self.r.changes.append(Change(dest, "update", "newer kit version", cur, new))
                elif self.o.force:
                    copies[key] = {"sha256": _sha(new), "original": rec["original"] if rec else _b64(cur)}
                    self.r.changes.append(Change(dest, "update", "replaced (--force); yours is kept for uninstall",
                                                 cur, new))
                else:
                    why = "edited since install" if rec else "a file of yours has this name"
                    self.r.changes.append(Change(dest, "skip", f"{why}; use --force to replace"))
                    self.r.warnings.append(f"{dest}: {why}; not replaced (use --force)")


def _load_manifest(target: Target) -> dict:
    data = _read(target.manifest)
    if data is None:
        return {}
    try:
        m = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"the install manifest {target.manifest} is damaged ({e}); remove golem's entries "
                           "by hand (hooks running `golem-mcp hook`, OTEL_* env, the 'golem' MCP server) "
                           "and delete the manifest") from e
    if not isinstance(m, dict) or m.get("manifest") != 1:
        raise InvalidInput(f"{target.manifest} is not a golem-mcp install manifest (version 1)")
    return m


def _apply(changes: list[Change]) -> None:
    for c in changes:
        if c.action in ("unchanged", "skip"):
            continue
        if c.after is None:
            c.path.unlink(missing_ok=True)
        else:
            _write_atomic(c.path, c.after)


def install(target: Target, opts: Options | None = None, dry_run: bool = False) -> Result:
    """Install golem-mcp into ``target``; idempotent. With ``dry_run`` nothing is written."""
    opts = opts or Options()
    manifest = _load_manifest(target)
    fresh = not manifest
    manifest.setdefault("manifest", 1)
    manifest.setdefault("scope", target.scope)
    manifest.setdefault("installed_at", datetime.now(UTC).isoformat(timespec="seconds"))
    result = Result(target, dry_run=dry_run)
    if fresh:
        # recorded before anything is written, so uninstall can remove the folders it made
        created = manifest.setdefault("created_dirs", [])
        for d in (target.settings_file.parent,):
            if not d.exists():
                created.append(target.rel(d))
    ins = _Installer(target, opts, manifest, result)
    ins.mcp_entry()
    ins.settings()
    if target.scope == "project":
        ins.user_env()
    if opts.copy_kit:
        ins.copies()
    manifest["version"] = __version__
    manifest["endpoint"] = opts.endpoint
    manifest["hook_command"] = ins.hook_command
    before = _read(target.manifest)
    after = _dump_json(manifest)
    if result.changed or before is None:
        result.changes.append(Change(target.manifest, "create" if before is None else "update",
                                     "what was added, for uninstall", before, after))
    if target.scope == "project" and not project_trusted(target.root):
        result.warnings.append(
            f"Claude Code applies this project's permissions (the golem tools the agents call) once the folder "
            f"is trusted: run `claude` in {target.root} once and accept the trust dialog")
    if not dry_run:
        _apply(result.changes)
    return result


# -- uninstall -----------------------------------------------------------------------------------

def _remove_structurally(obj: dict, entry: dict) -> dict:
    hooks = obj.get("hooks")
    if isinstance(hooks, dict):
        for event, group in entry.get("hooks", {}).items():
            groups = hooks.get(event)
            if not isinstance(groups, list):
                continue
            if group in groups:
                groups.remove(group)
            else:  # the user edited our group: take out only golem's command
                for g in groups:
                    if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                        g["hooks"] = [h for h in g["hooks"] if not _is_golem_hook(h)]
                groups[:] = [g for g in groups if not (isinstance(g, dict) and g.get("hooks") == [])]
    env = obj.get("env")
    if isinstance(env, dict):
        for k, rec in entry.get("env", {}).items():
            if env.get(k) == rec["value"]:
                if rec.get("previous") is None:
                    env.pop(k, None)
                else:
                    env[k] = rec["previous"]
    for keys, value in entry.get("items", []):
        lst = _get_path(obj, keys)
        if isinstance(lst, list) and value in lst:
            lst.remove(value)
    servers = obj.get("mcpServers")
    if isinstance(servers, dict):
        for name, rec in entry.get("servers", {}).items():
            if servers.get(name) == rec["value"]:
                if rec.get("previous") is None:
                    servers.pop(name, None)
                else:
                    servers[name] = rec["previous"]
    # containers install created go again once empty (deepest first)
    for dotted in sorted(entry.get("created", []), key=lambda s: -s.count(".")):
        keys = dotted.split(".")
        parent = _get_path(obj, keys[:-1]) if len(keys) > 1 else obj
        if isinstance(parent, dict) and parent.get(keys[-1]) in ({}, []):
            del parent[keys[-1]]
    return obj


def _live_projects(ledger: dict, leaving: Path | None) -> list[str]:
    return [r for r in ledger.get("projects", []) if r != str(leaving)
            and (Path(r) / ".claude" / MANIFEST_NAME).exists()]


def _release_user_env(target: Target, result: Result) -> None:
    """A project leaves the shared telemetry env; the last one out takes it away from user settings."""
    p, lp = user_settings_file(), env_ledger_file()
    led_before = _read(lp)
    ledger = _load_ledger(lp, led_before)
    if ledger is None:
        return
    others = _live_projects(ledger, target.root)
    if others:
        ledger["projects"] = others
        result.changes.append(Change(lp, "update", f"telemetry env kept: {len(others)} other project(s) use it",
                                     led_before, _dump_json(ledger)))
        return
    cur = _read(p)
    if cur is not None and ledger.get("original_kept") and ledger.get("written_sha256") == _sha(cur):
        orig = _unb64(ledger.get("original"))
        result.changes.append(Change(p, "delete", "created by install", cur, None) if orig is None else
                              Change(p, "restore", "as it was before install", cur, orig))
    elif cur is not None:
        obj = _remove_structurally(_load_json(p, cur), {"env": ledger.get("env", {}),
                                                        "created": ledger.get("created", [])})
        if not obj and not ledger.get("existed"):
            result.changes.append(Change(p, "delete", "created by install, holds nothing else", cur, None))
        elif _load_json(p, cur) != obj:
            result.changes.append(Change(p, "update", "golem's telemetry env removed", cur, _dump_json(obj)))
    result.changes.append(Change(lp, "delete", "env ledger", led_before, None))
    if ledger.get("dir_created"):
        result.dirs_to_remove.append(p.parent)


def uninstall(target: Target, dry_run: bool = False) -> Result:
    """Remove exactly what ``install`` added to ``target``."""
    manifest = _load_manifest(target)
    result = Result(target, dry_run=dry_run)
    if not manifest:
        raise GolemError(f"golem-mcp is not installed in {target.root} (no {target.manifest}); nothing to remove")
    handover, lp = None, env_ledger_file()
    led_before = _read(lp)
    if target.scope == "user":
        ledger = _load_ledger(lp, led_before)
        if ledger is not None and _live_projects(ledger, None):
            handover = ledger   # projects still need the telemetry env: it stays, in their ledger
    for key, entry in manifest.get("files", {}).items():
        p = target.abs(key)
        cur = _read(p)
        if cur is None:
            result.changes.append(Change(p, "skip", "already gone"))
            continue
        if handover is not None and p == user_settings_file() and entry.get("env"):
            for k, rec in entry["env"].items():
                handover["env"].setdefault(k, rec)
            entry = {**entry, "env": {}, "original_kept": False}
            result.changes.append(Change(lp, "update", "telemetry env handed over to the projects that use it",
                                         led_before, _dump_json(handover)))
        if entry.get("original_kept") and _sha(cur) == entry.get("written_sha256"):
            orig = _unb64(entry.get("original"))
            if orig is None:
                result.changes.append(Change(p, "delete", "created by install", cur, None))
            else:
                result.changes.append(Change(p, "restore", "as it was before install", cur, orig))
            continue
        obj = _remove_structurally(_load_json(p, cur), entry)
        if not obj and not entry.get("existed"):
            result.changes.append(Change(p, "delete", "created by install, holds nothing else", cur, None))
        else:
            new = _dump_json(obj)
            if _load_json(p, cur) == obj:
                result.changes.append(Change(p, "unchanged"))
            else:
                result.changes.append(Change(p, "update", "golem entries removed; your later edits kept", cur, new))
    for key, rec in manifest.get("copies", {}).items():
        p = target.abs(key)
        cur = _read(p)
        if cur is None:
            continue
        if _sha(cur) != rec["sha256"]:
            result.changes.append(Change(p, "skip", "edited since install; kept"))
            result.warnings.append(f"{p} was edited after install and is kept; delete it yourself if unwanted")
            continue
        orig = _unb64(rec.get("original"))
        result.changes.append(Change(p, "restore" if orig is not None else "delete", "", cur, orig))
    if target.scope == "project":
        _release_user_env(target, result)
    result.changes.append(Change(target.manifest, "delete", "install manifest", _read(target.manifest), None))
    if not dry_run:
        _apply(result.changes)
        dirs = [target.abs(d) for d in sorted(manifest.get("created_dirs", []), key=lambda s: -len(s))]
        for path in dirs + result.dirs_to_remove:
            with contextlib.suppress(OSError):  # only when empty: anything the user put there stays
                path.rmdir()
    return result
