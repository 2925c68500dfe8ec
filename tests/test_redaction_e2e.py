"""Issue 9's proof for redaction: every kind of secret, sent through every way in, is nowhere.

The secrets of ``support/secrets.py`` (the 18 kinds, then generic assignments) go in as Claude Code
would send them: hook payloads through the real ``golem-mcp hook`` client with the daemon down
(its spool) and up (the spool it writes itself, the daemon's journal, a direct POST), OTLP/JSON
logs, metrics and traces, a transcript the daemon's watcher reads, and MCP tool calls. Then every
column of every table (cast to text), the daemon's log and output, the hook's error log and the
spool are scanned: no secret anywhere, while the rows that carried them are there, redacted.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
from mcp import Client

from conftest import launch_daemon, mcp_http
from support.secrets import ALL, KINDS
from test_hook import run_hook

MARKERS = [s.secret for s in ALL]
SID_HOOK = "5ec7e700-0000-4000-8000-00000000000a"
SID_OTEL = "5ec7e700-0000-4000-8000-00000000000b"
SID_TRANSCRIPT = "5ec7e700-0000-4000-8000-00000000000c"


def _leaks(text: str) -> list[str]:
    return [m for m in MARKERS if m in text]


def _hook_payloads(tag: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, s in enumerate(ALL):
        base = {"session_id": SID_HOOK, "transcript_path": "/home/dev/.claude/projects/-home-dev-app/x.jsonl",
                "cwd": "/home/dev/app", "permission_mode": "default"}
        tid = f"toolu_hook_{tag}_{i:02d}"
        out += [
            {**base, "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_use_id": tid,
             "tool_input": {"command": s.text, "description": s.text, "timeout": 1000}},
            {**base, "hook_event_name": "PostToolUseFailure", "tool_name": "Bash", "tool_use_id": tid,
             "tool_input": {"command": s.text}, "error": f"Exit code 1\n{s.text}", "duration_ms": 12},
            {**base, "hook_event_name": "UserPromptSubmit", "prompt": f"{tag}: please run {s.text}"},
        ]
    return out


def _kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _otlp() -> dict[str, dict[str, Any]]:
    now = time.time_ns()
    resource = {"attributes": [_kv("service.name", "claude-code"), _kv("session.id", SID_OTEL),
                               _kv("deployment.notes", KINDS[16].text)]}
    records, points, spans = [], [], []
    for i, s in enumerate(ALL):
        common = [_kv("session.id", SID_OTEL), _kv("event.timestamp", "2026-12-01T10:00:00Z")]
        records.append({"timeUnixNano": str(now + i), "body": {"stringValue": "claude_code.tool_result"},
                        "attributes": common + [
                            _kv("event.name", "tool_result"), _kv("event.sequence", str(2 * i)),
                            _kv("tool_use_id", f"toolu_otel_{i:02d}"), _kv("tool_name", "Bash"), _kv("success", "false"),
                            _kv("error", s.text), _kv("notes", s.text),
                            _kv("tool_parameters", json.dumps({"bash_command": s.text, "full_command": s.text}))]})
        records.append({"timeUnixNano": str(now + i), "body": {"stringValue": "claude_code.api_error"},
                        "attributes": common + [
                            _kv("event.name", "api_error"), _kv("event.sequence", str(2 * i + 1)),
                            _kv("model", "claude-sonnet-4-5"), _kv("status_code", "401"), _kv("error", s.text)]})
        points.append({"timeUnixNano": str(now), "asDouble": 1.0,
                       "attributes": [_kv("session.id", SID_OTEL), _kv("type", "input"), _kv("note", s.text)]})
        spans.append({"traceId": "ab" * 16, "spanId": f"{i + 1:016x}", "name": "claude_code.tool",
                      "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000),
                      "status": {"code": 2, "message": s.text},
                      "attributes": [_kv("session.id", SID_OTEL), _kv("span.type", "tool"),
                                     _kv("tool_use_id", f"toolu_span_{i:02d}"), _kv("tool_name", "Bash"),
                                     _kv("http.request.header.authorization", s.text)]})
    return {
        "logs": {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]},
        "metrics": {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
            {"name": "claude_code.token.usage", "unit": "tokens",
             "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points}}]}]}]},
        "traces": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]},
    }


def _transcript(projects: Path) -> Path:
    d = projects / "-home-dev-app"
    d.mkdir(parents=True)
    lines: list[dict[str, Any]] = []
    for i, s in enumerate(ALL):
        ts = f"2026-12-01T10:{i:02d}:00.000Z"
        tid = f"toolu_tr_{i:02d}"
        lines.append({"type": "assistant", "sessionId": SID_TRANSCRIPT, "timestamp": ts, "cwd": "/home/dev/app",
                      "version": "2.1.328", "requestId": f"req_tr_{i:02d}",
                      "message": {"id": f"msg_tr_{i:02d}", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
                                  "usage": {"input_tokens": 10, "output_tokens": 5},
                                  "content": [{"type": "tool_use", "id": tid, "name": "Bash",
                                               "input": {"command": s.text, "description": s.text}}]}})
        lines.append({"type": "user", "sessionId": SID_TRANSCRIPT, "timestamp": ts,
                      "message": {"role": "user", "content": [
                          {"type": "tool_result", "tool_use_id": tid, "is_error": True, "content": s.text}]}})
        lines.append({"type": "system", "subtype": "api_error", "sessionId": SID_TRANSCRIPT, "timestamp": ts,
                      "uuid": f"u-tr-{i:02d}", "error": {"status": 401, "message": s.text}})
    # a line the reader skips: the daemon logs why, quoting its record type
    lines.append({"type": KINDS[13].text, "sessionId": SID_TRANSCRIPT})
    path = d / f"{SID_TRANSCRIPT}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _headers(home: Path) -> dict[str, str]:
    token = json.loads((home / "daemon.json").read_text()).get("token")
    return {"authorization": f"Bearer {token}"} if token else {}


def _wait_counts(url: str, headers: dict[str, str], timeout: float = 90, **want: int) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        c = httpx.get(url + "/api/status", headers=headers, timeout=10).json()
        if all(c.get(k, 0) >= v for k, v in want.items()):
            return c
        assert time.monotonic() < deadline, f"not stored within {timeout} s: want {want}, have {c}"
        time.sleep(0.2)


def _spool_files(home: Path) -> list[Path]:
    d = home / "spool"
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


async def test_no_secret_reaches_any_table_log_or_spool(golem_home: Path, tmp_path: Path) -> None:
    db = tmp_path / "golem.duckdb"
    projects = tmp_path / "projects"
    transcript = _transcript(projects)
    assert _leaks(transcript.read_text())  # the scan below can fail: the secrets are there to find

    # 1. the daemon is down: the hook client spools, and the spool holds no secret
    down = _hook_payloads("down")
    r = run_hook(golem_home, json.dumps(down))
    assert r.returncode == 0 and r.stdout == b""
    files = _spool_files(golem_home)
    assert files and stat.S_IMODE((golem_home / "spool").stat().st_mode) == 0o700
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        text = f.read_text()
        assert "[REDACTED]" in text and not _leaks(text), f
    r = run_hook(golem_home, b"not JSON: " + KINDS[13].text.encode())  # logged, quoting its input
    assert r.returncode == 0

    # 2. the daemon starts (draining the spool), watching the transcript's folder
    d = launch_daemon(golem_home, db, "--watch", str(projects))
    try:
        h = _headers(golem_home)
        up = _hook_payloads("up")
        assert run_hook(golem_home, json.dumps(up)).returncode == 0  # the client's own spool
        start = {"session_id": SID_HOOK, "hook_event_name": "SessionStart", "source": "startup",
                 "cwd": f"/home/dev/{KINDS[17].text}", "transcript_path": "/tmp/x.jsonl"}
        assert run_hook(golem_home, start).returncode == 0  # posted: the daemon's journal
        direct = _hook_payloads("direct")
        assert httpx.post(d.url + "/hooks", json=direct, headers=h, timeout=30).status_code == 200
        for signal, body in _otlp().items():
            resp = httpx.post(f"{d.url}/v1/{signal}", json=body, headers=h, timeout=30)
            assert resp.status_code == 200, resp.text
        async with Client(mcp_http(d.url)) as mcp:
            res = await mcp.call_tool("record_stage_usage", {
                "workflow_id": "wf-redaction", "stage": "implementer", "session_id": SID_HOOK,
                "agent": KINDS[0].text, "input_tokens": 1})
            assert not res.is_error, res.content[0].text
            report = {"task": "t-redaction", "parent": "wf-redaction", "rework": False,
                      "severity": {"critical": 0, "major": len(ALL), "minor": 0},
                      "issues": [{"severity": "major", "category": "security", "file": "deploy.sh",
                                  "summary": f"leaked: {s.text}"} for s in ALL]}
            res = await mcp.call_tool("report_review_findings", report)
            assert not res.is_error, res.content[0].text
        n = len(ALL)
        _wait_counts(d.url, h, hook_events=len(down) + len(up) + len(direct) + 1,
                     otel_events=2 * n, spans=n, metric_points=n, api_errors=2 * n,
                     api_requests=n, tool_calls=6 * n, review_reports=1)
    finally:
        assert d.stop() == 0

    # 3. every column of every table, as text
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal").fetchall()]
        scanned = 0
        for t in tables:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ?", [t]).fetchall()]
            select = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols)
            for row in con.execute(f'SELECT {select} FROM "{t}"').fetchall():
                for c, v in zip(cols, row, strict=True):
                    scanned += 1
                    assert v is None or not _leaks(v), f"{t}.{c}: {v[:300]}"
        assert scanned > 5_000  # every row of every table, not an empty store

        # the rows that carried the secrets are there, redacted, from every source
        def count(sql: str) -> int:
            return con.execute(sql).fetchone()[0]

        red = "LIKE '%[REDACTED]%'"
        for bit in (1, 2, 8):  # transcript, OTel log event, hook
            assert count(f"SELECT count(*) FROM tool_calls WHERE source_mask & {bit} > 0 "
                         f"AND tool_parameters::VARCHAR {red}") >= n, bit
        assert count(f"SELECT count(*) FROM tool_calls WHERE error {red}") >= n
        assert count(f"SELECT count(*) FROM api_errors WHERE error {red} AND source = 'otel'") == n
        assert count(f"SELECT count(*) FROM api_errors WHERE error {red} AND source = 'transcript'") == n
        assert count(f"SELECT count(*) FROM otel_events WHERE attributes::VARCHAR {red}") >= n
        assert count(f"SELECT count(*) FROM otel_events WHERE resource::VARCHAR {red}") == 2 * n
        assert count(f"SELECT count(*) FROM metric_points WHERE attributes::VARCHAR {red}") == n
        assert count(f"SELECT count(*) FROM spans WHERE status_message {red}") == n
        assert count(f"SELECT count(*) FROM sessions WHERE cwd {red}") == 1
        assert count(f"SELECT count(*) FROM review_issues WHERE summary {red}") == n
        assert count(f"SELECT count(*) FROM stage_records WHERE agent {red}") == 1
        # raw hook payloads are not kept by default; their typed columns are
        assert count("SELECT count(*) FROM hook_events WHERE payload IS NOT NULL") == 0
        assert count("SELECT count(DISTINCT tool_use_id) FROM hook_events WHERE tool_name = 'Bash'") == 3 * n
    finally:
        con.close()

    # 4. the logs and what is left of the spool
    daemon_log = golem_home / "daemon.log"
    assert "[REDACTED]" in daemon_log.read_text()  # the watcher's skipped line, quoted
    hook_log = golem_home / "hook-errors.log"
    assert "[REDACTED]" in hook_log.read_text()
    for f in [daemon_log, hook_log, golem_home / "daemon.test.out", *_spool_files(golem_home)]:
        assert not _leaks(f.read_text(errors="replace")), f
    leftovers = [p for p in golem_home.rglob("*") if p.is_file() and p.suffix != ".duckdb" and p.name != "daemon.json"]
    for f in leftovers:
        assert not _leaks(f.read_text(errors="replace")), f
