"""golem-mcp doctor names the broken piece: daemon down, hooks missing, OTLP pointed elsewhere, and
says all is well once a real daemon receives real hook payloads and OTLP bodies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from golem_mcp.kit.doctor import FAIL, OK, WARN, Check, run_checks
from golem_mcp.kit.install import Options, Target, install

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
CLAUDE = Path(__file__).resolve().parent / "e2e" / "node_modules" / ".bin" / "claude"


@pytest.fixture
def project(tmp_path: Path, golem_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".claude" / "projects").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for var in ("CLAUDE_CONFIG_DIR", "GOLEM_PORT"):
        monkeypatch.delenv(var, raising=False)
    p = tmp_path / "proj"
    p.mkdir()
    return p


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def doctor_cli(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "golem_mcp", "doctor", "--project", str(project)],
                          capture_output=True, text=True, env={**os.environ}, timeout=60)


def test_daemon_down_is_named_with_the_fix(project: Path) -> None:
    install(Target.project(project), Options(command=[sys.executable, "-m", "golem_mcp"]))
    checks = by_name(run_checks(project))
    assert checks["daemon"].status == FAIL and "golem-mcp serve" in (checks["daemon"].fix or "")
    assert checks["hooks installed"].status == OK and checks["otlp endpoint"].status == OK
    assert checks["mcp server"].status == OK
    proc = doctor_cli(project)
    assert proc.returncode == 1
    assert "FAIL  daemon" in proc.stdout and "1 failing: daemon" in proc.stdout


def test_missing_hooks_are_named(project: Path) -> None:
    checks = by_name(run_checks(project))
    assert checks["hooks installed"].status == FAIL
    assert checks["hooks installed"].fix == f"golem-mcp install --project {project}"
    assert checks["mcp server"].status == FAIL and checks["otlp endpoint"].status == FAIL

    install(Target.project(project), Options(command=["golem-mcp"]))
    sp = project / ".claude" / "settings.json"
    s = json.loads(sp.read_text())
    del s["hooks"]["SubagentStart"], s["hooks"]["PostToolUseFailure"]
    sp.write_text(json.dumps(s))
    c = by_name(run_checks(project))["hooks installed"]
    assert c.status == FAIL and c.detail.endswith("missing for: PostToolUseFailure, SubagentStart")
    proc = doctor_cli(project)
    assert proc.returncode == 1 and "FAIL  hooks installed" in proc.stdout


def test_an_install_without_claude_code_21s_hook_events_is_told_what_they_add(project: Path) -> None:
    """An install made before PostToolBatch, StopFailure, Pre/PostCompact, ... existed still works
    (a warning, not a failure) and doctor names the events missing and what each adds; installing
    again adds only those."""
    install(Target.project(project), Options(command=["golem-mcp"]))
    sp = project / ".claude" / "settings.json"
    s = json.loads(sp.read_text())
    for event in ("PostToolBatch", "StopFailure", "PreCompact", "PostCompact", "TaskCreated", "TaskCompleted",
                  "PermissionDenied"):
        del s["hooks"][event]
    sp.write_text(json.dumps(s))
    c = by_name(run_checks(project))["hooks installed"]
    assert c.status == WARN, c
    assert "missing for: PostToolBatch, PermissionDenied, StopFailure, PreCompact, PostCompact" in c.detail
    assert "context compactions (without OTel)" in c.detail and "which tool calls ran together" in c.detail
    assert c.fix == f"golem-mcp install --project {project}"
    again = install(Target.project(project), Options(command=["golem-mcp"]))
    assert sp in [x.path for x in again.changed] and (project / ".mcp.json") not in [x.path for x in again.changed]
    assert by_name(run_checks(project))["hooks installed"].status == OK
    s = json.loads(sp.read_text())
    assert s["hooks"]["PermissionDenied"][-1]["matcher"] == "*" and "matcher" not in s["hooks"]["StopFailure"][-1]


def test_otlp_pointed_elsewhere_is_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(Target.project(project), Options(command=["golem-mcp"]))
    assert by_name(run_checks(project))["otlp endpoint"].status == OK
    # Claude Code's exporter reads the user settings (and its environment): that is where it matters
    user = Path(os.environ["HOME"]) / ".claude" / "settings.json"
    s = json.loads(user.read_text())
    s["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://collector.internal:4318"
    user.write_text(json.dumps(s))
    c = by_name(run_checks(project))["otlp endpoint"]
    assert c.status == FAIL
    assert "http://collector.internal:4318" in c.detail and str(user) in c.detail
    assert "http://127.0.0.1:4319" in c.detail
    s["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4319"
    s["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    user.write_text(json.dumps(s))
    c = by_name(run_checks(project))["otlp endpoint"]
    assert c.status == FAIL and "grpc" in c.detail
    # variables only in a project's settings never reach the exporter (checked with the real CLI):
    # doctor says so instead of calling them fine
    del s["env"]
    user.write_text(json.dumps(s))
    local = project / ".claude" / "settings.local.json"
    local.write_text(json.dumps({"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4319"}}))
    c = by_name(run_checks(project))["otlp endpoint"]
    assert c.status == FAIL and "does not reach Claude Code's exporter" in c.detail and str(local) in c.detail
    # ... while the same variables in Claude Code's environment do
    for k, v in {"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4319"}.items():
        monkeypatch.setenv(k, v)
    assert by_name(run_checks(project))["otlp endpoint"].status == OK


def test_all_ok_once_hooks_and_otlp_reach_a_real_daemon(project: Path, start_daemon: Callable) -> None:
    d = start_daemon()
    port = urlsplit(d.url).port
    assert port
    # settings aimed at another port than the daemon's: that is "pointed elsewhere" too
    install(Target.project(project), Options(command=[sys.executable, "-m", "golem_mcp"], port=port + 1))
    c = by_name(run_checks(project))["otlp endpoint"]
    assert c.status == FAIL and d.url in c.detail

    install(Target.project(project), Options(command=[sys.executable, "-m", "golem_mcp"], port=port, force=True))
    checks = by_name(run_checks(project))
    assert checks["daemon"].status == OK and checks["otlp endpoint"].status == OK
    assert checks["otlp token"].status == OK
    assert checks["hooks firing"].status == FAIL and checks["otlp arriving"].status == FAIL

    # one real hook payload through the installed hook command, one real OTLP body
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    hook_cmd = settings["hooks"]["SessionStart"][-1]["hooks"][0]["command"]
    payload = next(line for line in (FIXTURES / "hooks.jsonl").read_text().splitlines() if line.strip())
    subprocess.run(hook_cmd, shell=True, input=payload, text=True, check=True, timeout=30)
    body = next(p for p in sorted((FIXTURES / "otlp").glob("*_logs.json")))
    user_env = json.loads((Path(os.environ["HOME"]) / ".claude" / "settings.json").read_text())["env"]
    # sent as Claude Code's exporter sends it: to the endpoint, with the headers install wrote
    name, _, value = user_env["OTEL_EXPORTER_OTLP_HEADERS"].partition("=")
    r = httpx.post(f"{user_env['OTEL_EXPORTER_OTLP_ENDPOINT']}/v1/logs", content=body.read_bytes(),
                   headers={"content-type": "application/json", name: value}, timeout=10)
    assert r.status_code == 200, r.text

    claude = str(CLAUDE) if CLAUDE.exists() else None
    checks = by_name(run_checks(project, claude=claude))
    assert checks["hooks firing"].status == OK, checks["hooks firing"]
    assert checks["otlp arriving"].status == OK, checks["otlp arriving"]
    if claude:
        assert checks["versions"].status == OK and "Claude Code 2." in checks["versions"].detail
    assert [c.name for c in checks.values() if c.status == FAIL] == []


def test_golem_tools_allowed_only_where_claude_code_applies_it(project: Path) -> None:
    # Claude Code applies a project's shared permissions only once the folder is trusted (found by
    # the kit's end-to-end run: an untrusted project had every golem tool call denied in `claude -p`)
    assert by_name(run_checks(project))["tool permissions"].status == "warn"
    install(Target.project(project), Options(command=[sys.executable, "-m", "golem_mcp"]))
    c = by_name(run_checks(project))["tool permissions"]
    assert c.status == "warn" and "trust dialog" in (c.fix or "") and "settings.local.json" in (c.fix or "")
    user_json = Path(os.environ["HOME"]) / ".claude.json"
    trusted = {"projects": {str(project.parent.resolve()): {"hasTrustDialogAccepted": True}}}
    user_json.write_text(json.dumps(trusted))
    assert by_name(run_checks(project))["tool permissions"].status == "warn"  # a trusted parent does not count
    trusted["projects"][str(project.resolve())] = {"hasTrustDialogAccepted": True}
    user_json.write_text(json.dumps(trusted))
    assert by_name(run_checks(project))["tool permissions"].status == OK
    user_json.unlink()
    (project / ".claude" / "settings.local.json").write_text(json.dumps({"permissions": {"allow": ["mcp__golem"]}}))
    assert by_name(run_checks(project))["tool permissions"].status == OK


def test_otlp_headers_without_the_daemons_token_are_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from golem_mcp.home import ensure_token

    tok = ensure_token()
    settings = Path(os.environ["HOME"]) / ".claude" / "settings.json"
    for headers, status, says in [(None, FAIL, "carries no token"),
                                  ("x-other=1", FAIL, "has no Authorization"),
                                  ("Authorization=Bearer stale-token", FAIL, "is not the daemon's"),
                                  (f"x-other=1,authorization=Bearer%20{tok}", OK, "carries the daemon's token")]:
        settings.write_text(json.dumps({"env": {"OTEL_EXPORTER_OTLP_HEADERS": headers} if headers else {}}))
        c = by_name(run_checks(project))["otlp token"]
        assert c.status == status and says in c.detail, c
        assert tok not in c.line()  # the doctor's output may be pasted anywhere
        if status == FAIL:
            assert "golem-mcp install" in (c.fix or "")
