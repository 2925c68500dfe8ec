"""golem-mcp install / uninstall on real folders: merged, idempotent, exactly reversible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from golem_mcp.errors import GolemError, InvalidInput
from golem_mcp.kit.bundle import kit_files
from golem_mcp.kit.install import HOOK_EVENTS, Options, Target, hook_events_with_golem, install, uninstall

# a user's settings written by hand: odd indentation, key order, their own hook and env
USER_SETTINGS = (b'{\n    "model": "sonnet",\n    "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": '
                 b'[{"type": "command", "command": "./scripts/guard.sh"}]}],\n'
                 b'              "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]},\n'
                 b'    "env": {"MY_FLAG": "1", "OTEL_METRIC_EXPORT_INTERVAL": "10000"},\n'
                 b'    "permissions": {"allow": ["Bash(npm test)"]}\n}\n')
USER_MCP = b'{"mcpServers": {"docs": {"command": "docs-server", "args": []}}}'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "golem-home"))
    monkeypatch.delenv("GOLEM_PORT", raising=False)
    return h


@pytest.fixture
def project(tmp_path: Path, home: Path) -> Path:
    # the user's own settings, where a project install must put the telemetry env
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_bytes(USER_SETTINGS)
    p = tmp_path / "proj"
    (p / ".claude").mkdir(parents=True)
    (p / ".claude" / "settings.json").write_bytes(USER_SETTINGS)
    (p / ".mcp.json").write_bytes(USER_MCP)
    (p / "README.md").write_text("app\n")
    return p


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def dirs(root: Path) -> list[str]:
    return sorted(str(d.relative_to(root)) for d in root.rglob("*") if d.is_dir())


OPTS = Options(command=["golem-mcp"])


def test_install_twice_then_uninstall_restores_every_byte(project: Path, home: Path) -> None:
    before, before_dirs = snapshot(project), dirs(project)
    home_before, home_dirs = snapshot(home), dirs(home)
    first = install(Target.project(project), OPTS)
    assert {c.action for c in first.changed} <= {"create", "update"}
    after_first, home_after_first = snapshot(project), snapshot(home)
    second = install(Target.project(project), OPTS)
    assert second.changed == [], second.summary()
    assert snapshot(project) == after_first and snapshot(home) == home_after_first

    settings = json.loads((project / ".claude" / "settings.json").read_text())
    assert hook_events_with_golem(settings) == set(HOOK_EVENTS)
    # the user's hooks, env and permissions are still there, untouched
    assert settings["hooks"]["PreToolUse"][0] == {"matcher": "Bash", "hooks": [
        {"type": "command", "command": "./scripts/guard.sh"}]}
    assert settings["hooks"]["Stop"][0]["hooks"][0]["command"] == "notify-send done"
    assert settings["env"]["MY_FLAG"] == "1" and settings["model"] == "sonnet"
    assert settings["permissions"]["allow"] == ["Bash(npm test)", "mcp__golem"]
    # the telemetry env goes where Claude Code's exporter reads it: the user settings, not the project's
    assert settings["env"] == {"MY_FLAG": "1", "OTEL_METRIC_EXPORT_INTERVAL": "10000"}
    user = json.loads((home / ".claude" / "settings.json").read_text())
    assert user["hooks"] == json.loads(USER_SETTINGS)["hooks"] and user["model"] == "sonnet"
    env = user["env"]
    assert env["MY_FLAG"] == "1" and env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4319"
    assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and env["OTEL_LOGS_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf" and env["OTEL_TRACES_EXPORTER"] == "otlp"
    # each golem hook appears once per event after two installs
    for event in HOOK_EVENTS:
        cmds = [h["command"] for g in settings["hooks"][event] for h in g["hooks"]]
        assert cmds.count("golem-mcp hook") == 1, event
    mcp = json.loads((project / ".mcp.json").read_text())
    assert mcp["mcpServers"] == {"docs": {"command": "docs-server", "args": []},
                                 "golem": {"command": "golem-mcp", "args": ["stdio"]}}
    for kind in ("agents", "commands"):
        for f in kit_files(kind):
            assert (project / ".claude" / kind / f.name).read_bytes() == f.read_bytes()

    uninstall(Target.project(project))
    assert snapshot(project) == before and snapshot(home) == home_before
    assert dirs(project) == before_dirs and dirs(home) == home_dirs


def test_install_into_empty_project_and_uninstall_leaves_nothing(tmp_path: Path, home: Path) -> None:
    p = tmp_path / "empty"
    p.mkdir()
    install(Target.project(p), OPTS)
    assert (p / ".mcp.json").exists() and (p / ".claude" / "agents" / "master.md").exists()
    assert (home / ".claude" / "settings.json").exists()
    uninstall(Target.project(p))
    assert list(p.iterdir()) == [] and list(home.iterdir()) == []


def test_dry_run_writes_nothing_and_shows_the_diff(project: Path) -> None:
    before = snapshot(project)
    result = install(Target.project(project), OPTS, dry_run=True)
    assert snapshot(project) == before
    settings = next(c for c in result.changed if c.path == project / ".claude" / "settings.json")
    diff = settings.diff()
    assert diff.startswith("---") and '+            "command": "golem-mcp hook"' in diff
    user = next(c for c in result.changed if c.path.name == "settings.json" and c.path != settings.path)
    assert '+    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4319"' in user.diff()
    assert any(c.path.name == "master.md" and c.action == "create" for c in result.changed)


def test_edits_after_install_survive_uninstall(project: Path) -> None:
    install(Target.project(project), OPTS)
    sp = project / ".claude" / "settings.json"
    s = json.loads(sp.read_text())
    s["env"]["LATER"] = "x"
    s["hooks"]["PostToolUse"].append({"matcher": "Edit", "hooks": [{"type": "command", "command": "fmt"}]})
    sp.write_text(json.dumps(s))
    install(Target.project(project), OPTS)  # a re-install must not forget the user's edit either
    agent = project / ".claude" / "agents" / "planner.md"
    agent.write_text(agent.read_text() + "\nMy own planning rule.\n")

    result = uninstall(Target.project(project))
    s = json.loads(sp.read_text())
    assert s["env"] == {"MY_FLAG": "1", "OTEL_METRIC_EXPORT_INTERVAL": "10000", "LATER": "x"}
    assert s["hooks"]["PostToolUse"] == [{"matcher": "Edit", "hooks": [{"type": "command", "command": "fmt"}]}]
    assert set(s["hooks"]) == {"PreToolUse", "Stop", "PostToolUse"}
    assert hook_events_with_golem(s) == set()
    assert s["permissions"] == {"allow": ["Bash(npm test)"]} and "enabledMcpjsonServers" not in s
    assert agent.exists() and "My own planning rule" in agent.read_text()
    assert not (project / ".claude" / "agents" / "master.md").exists()
    assert any("edited after install" in w for w in result.warnings)


def test_conflicting_endpoint_is_kept_unless_forced_and_restored_after(project: Path, home: Path) -> None:
    sp = home / ".claude" / "settings.json"
    s = json.loads(sp.read_text())
    s["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://collector:4318"
    sp.write_text(json.dumps(s, indent=4))
    original = sp.read_bytes()

    r = install(Target.project(project), OPTS)
    assert json.loads(sp.read_text())["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert any("OTEL_EXPORTER_OTLP_ENDPOINT" in w and "--force" in w for w in r.warnings)

    install(Target.project(project), Options(command=["golem-mcp"], force=True, port=5555))
    assert json.loads(sp.read_text())["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:5555"
    # the daemon the MCP bridge starts listens where the telemetry goes
    assert json.loads((project / ".mcp.json").read_text())["mcpServers"]["golem"]["env"] == {"GOLEM_PORT": "5555"}
    # edited structurally now: uninstall must still hand the user's endpoint back
    s = json.loads(sp.read_text())
    s["env"]["ANOTHER"] = "1"
    sp.write_text(json.dumps(s))
    uninstall(Target.project(project))
    s = json.loads(sp.read_text())
    assert s["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318" and s["env"]["ANOTHER"] == "1"
    del s["env"]["ANOTHER"]
    assert s == json.loads(original)


def test_user_files_with_the_kits_names_are_not_replaced(project: Path) -> None:
    mine = project / ".claude" / "agents" / "reviewer.md"
    mine.parent.mkdir()
    mine.write_text("---\nname: reviewer\n---\nmy reviewer\n")
    r = install(Target.project(project), OPTS)
    assert mine.read_text().endswith("my reviewer\n")
    assert any("reviewer.md" in w for w in r.warnings)
    install(Target.project(project), Options(command=["golem-mcp"], force=True))
    assert "ROLE:reviewer" in mine.read_text()
    uninstall(Target.project(project))
    assert mine.read_text().endswith("my reviewer\n")


def test_invalid_settings_json_is_reported_and_nothing_changes(project: Path) -> None:
    sp = project / ".claude" / "settings.json"
    sp.write_text('{"hooks": {,}')
    before = snapshot(project)
    with pytest.raises(InvalidInput, match="settings.json is not valid JSON.*Nothing was changed"):
        install(Target.project(project), OPTS)
    assert snapshot(project) == before


def test_uninstall_without_install_says_so(tmp_path: Path, home: Path) -> None:
    with pytest.raises(GolemError, match="not installed"):
        uninstall(Target.project(tmp_path))


def test_user_scope_edits_claude_json_structurally(home: Path) -> None:
    claude_json = home / ".claude.json"
    state = {"numStartups": 3, "projects": {"/x": {"allowedTools": []}},
             "mcpServers": {"docs": {"type": "stdio", "command": "docs-server", "args": []}}}
    claude_json.write_text(json.dumps(state, indent=2))
    install(Target.user(), OPTS)
    got = json.loads(claude_json.read_text())
    assert got["mcpServers"]["golem"] == {"command": "golem-mcp", "args": ["stdio"], "type": "stdio"}
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert hook_events_with_golem(settings) == set(HOOK_EVENTS) and "enabledMcpjsonServers" not in settings
    assert (home / ".claude" / "agents" / "master.md").exists()
    # Claude Code rewrites its state file all the time; uninstall must keep what it wrote meanwhile
    got["numStartups"] = 4
    claude_json.write_text(json.dumps(got))
    uninstall(Target.user())
    assert json.loads(claude_json.read_text()) == {**state, "numStartups": 4}
    assert not (home / ".claude").exists()


def test_cli_install_dry_run_install_uninstall(project: Path) -> None:
    exe = [sys.executable, "-m", "golem_mcp"]
    env = {**os.environ}
    before = snapshot(project)
    out = subprocess.run([*exe, "install", "--project", str(project), "--dry-run"], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert "dry run:" in out and "golem-mcp hook" in out and snapshot(project) == before
    out = subprocess.run([*exe, "install", "--project", str(project)], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "settings.json" in out
    hook_cmd = json.loads((project / ".claude" / "settings.json").read_text())["hooks"]["Stop"][-1]["hooks"][0]["command"]
    assert hook_cmd.endswith(" hook") and "golem" in hook_cmd
    subprocess.run([*exe, "uninstall", "--project", str(project)], capture_output=True, env=env, check=True)
    assert snapshot(project) == before
    bad = subprocess.run([*exe, "install", "--project", str(project / "nope")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_projects_share_the_user_telemetry_env_until_the_last_one_leaves(tmp_path: Path, home: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    user = home / ".claude" / "settings.json"
    install(Target.project(a), OPTS)
    install(Target.project(b), OPTS)
    env = json.loads(user.read_text())["env"]
    r = uninstall(Target.project(a))
    assert json.loads(user.read_text())["env"] == env, "b still needs its telemetry"
    assert any("1 other project" in c.note for c in r.changes)
    # a user-scope install and uninstall meanwhile hands its env over instead of taking it away
    install(Target.user(), OPTS)
    uninstall(Target.user())
    assert json.loads(user.read_text())["env"] == env
    uninstall(Target.project(b))
    assert not home.joinpath(".claude").exists() and list(home.iterdir()) == []
    # a project folder deleted without uninstall does not hold the env forever
    install(Target.project(a), OPTS)
    install(Target.project(b), OPTS)
    (b / ".claude" / "golem-install.json").unlink()
    uninstall(Target.project(a))
    assert "env" not in json.loads(user.read_text()) if user.exists() else True


def test_user_settings_edited_between_installs_are_edited_back_not_restored(project: Path, home: Path) -> None:
    user = home / ".claude" / "settings.json"
    install(Target.project(project), OPTS)
    s = json.loads(user.read_text())
    s["theme"] = "dark"
    del s["env"]["OTEL_LOGS_EXPORTER"]          # golem's value removed by hand: a re-install puts it back
    user.write_text(json.dumps(s))
    install(Target.project(project), Options(command=["golem-mcp"], port=5555))
    uninstall(Target.project(project))
    got = json.loads(user.read_text())
    assert got == {**json.loads(USER_SETTINGS), "theme": "dark"}


def test_the_daemons_token_goes_into_the_otlp_headers_and_nowhere_in_the_project(project: Path, home: Path,
                                                                                  tmp_path: Path) -> None:
    token_file = tmp_path / "golem-home" / "token"
    r = install(Target.project(project), OPTS)
    tok = token_file.read_text().strip()  # made now: Claude Code must carry the token the daemon will want
    user = home / ".claude" / "settings.json"
    assert json.loads(user.read_text())["env"]["OTEL_EXPORTER_OTLP_HEADERS"] == f"Authorization=Bearer {tok}"
    # a project folder may be committed: the token is not in it; a diff shown on screen hides it
    assert not [name for name, data in snapshot(project).items() if tok.encode() in data]
    assert all(tok not in c.diff() for c in r.changes) and any("Bearer [token]" in c.diff() for c in r.changes)
    # a new token (the old file removed): installing again updates the header
    token_file.unlink()
    install(Target.project(project), OPTS)
    new = token_file.read_text().strip()
    assert new != tok and json.loads(user.read_text())["env"]["OTEL_EXPORTER_OTLP_HEADERS"] == f"Authorization=Bearer {new}"
    uninstall(Target.project(project))
    assert user.read_bytes() == USER_SETTINGS
