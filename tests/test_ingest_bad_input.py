"""Bad input: the valid rest is imported, what was skipped is reported with file and line, and
nothing already stored is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Skipped
from golem_mcp.store import Store

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
WF1 = FIX / "home" / ".claude" / "projects" / "-home-dev-work-wf-001"
SID = "e0012828-f4f9-49e1-a3e1-72267cbe7974"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))
    projects = tmp_path / "projects"
    shutil.copytree(WF1, projects / WF1.name)
    return tmp_path, projects


def main_file(projects: Path) -> Path:
    return projects / WF1.name / f"{SID}.jsonl"


def requests(store: Store) -> int:
    return store.scalar("SELECT count(*) FROM api_requests")


def test_truncated_last_line_is_reported_then_completed(env):
    tmp, projects = env
    f = main_file(projects)
    data = f.read_bytes()
    lines = data.split(b"\n")
    last_assistant = max(i for i, line in enumerate(lines) if b'"type":"assistant"' in line)
    torn = b"\n".join(lines[:last_assistant]) + b"\n" + lines[last_assistant][:200]
    f.write_bytes(torn)
    store = Store(tmp / "g.duckdb")
    res = Importer(store).run([projects])
    assert [(s.source, s.line) for s in res.skipped] == [(str(f), last_assistant + 1)]
    assert "incomplete last line" in res.skipped[0].reason
    n = requests(store)
    assert n == 24 - 1  # all of wf-001 but the torn response
    # the writer finishes the line: the next import reads only the new bytes and completes it
    f.write_bytes(data)
    res = Importer(store).run([projects])
    assert res.skipped == [] and res.bytes_read == len(data) - len(torn) + 200
    assert requests(store) == 24


@pytest.mark.parametrize("workers", ["1", "2"])  # read here, and by parser processes (their rows sent back)
def test_line_that_is_not_json_and_unknown_type(env, monkeypatch, workers):
    monkeypatch.setenv("GOLEM_IMPORT_WORKERS", workers)
    tmp, projects = env
    f = main_file(projects)
    lines = f.read_bytes().split(b"\n")
    lines.insert(5, b'{"type":"assistant","message": {oops')
    lines.insert(9, b'{"type":"hologram","sessionId":"x"}')
    lines.insert(12, b"[1, 2, 3]")
    f.write_bytes(b"\n".join(lines))
    store = Store(tmp / "g.duckdb")
    res = Importer(store).run([projects])
    got = sorted((s.line, s.reason.split(" (")[0]) for s in res.skipped)
    assert got == [(6, "not JSON"), (10, "unknown record type 'hologram'"), (13, "not a JSON object")]
    assert all(isinstance(s, Skipped) and s.source == str(f) and s.dropped for s in res.skipped)
    assert requests(store) == 24


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_lines_of_another_program_skipped_whole(env, monkeypatch, workers):
    """Importing a whole home also walks ~/.cache/claude-cli-nodejs/<project>/mcp-logs-<server>/:
    JSON lines with no "type". Each such file is one reason, not one per line; a transcript whose
    first line is broken is still read, and its lines reported."""
    monkeypatch.setenv("GOLEM_IMPORT_WORKERS", workers)
    tmp, projects = env
    logs = tmp / ".cache" / "claude-cli-nodejs" / "-home-dev-work" / "mcp-logs-demo"
    logs.mkdir(parents=True)
    log = logs / "2026-12-05T07-05-51-441Z.jsonl"
    log.write_text("".join(json.dumps({"debug": f"step {i}", "timestamp": "2026-12-05T07:05:51.442Z",
                                       "sessionId": "b4c29c49", "cwd": "/home/dev/work"}) + "\n" for i in range(40)))
    f = main_file(projects)
    f.write_bytes(b'{"type":"user", torn\n' + f.read_bytes())
    store = Store(tmp / "g.duckdb")
    res = Importer(store).run([projects, tmp / ".cache"])
    assert [(s.source, s.line) for s in res.skipped if s.source == str(log)] == [(str(log), None)]
    assert "not a Claude Code transcript" in next(s.reason for s in res.skipped if s.source == str(log))
    assert [(s.line, s.reason.split(" (")[0]) for s in res.skipped if s.source == str(f)] == [(1, "not JSON")]
    assert requests(store) == 24
    # recorded as read: the next import passes it by
    assert Importer(store).run([tmp / ".cache"]).files_unchanged == 1
    # the log grows (the server is still running): its new lines are skipped with it, not reported one by one
    with log.open("a") as fh:
        fh.write(json.dumps({"debug": "step 40", "timestamp": "2026-12-05T07:05:52.000Z"}) + "\n")
    again = Importer(store).run([tmp / ".cache"])
    assert [(s.source, s.line) for s in again.skipped] == [(str(log), None)]


def test_empty_file_and_empty_folder(env):
    tmp, projects = env
    (projects / "-empty").mkdir()
    (projects / "-empty" / "0000.jsonl").write_bytes(b"")
    store = Store(tmp / "g.duckdb")
    res = Importer(store).run([projects])
    assert res.skipped == [] and requests(store) == 24


def test_file_deleted_while_the_import_runs(env):
    tmp, projects = env
    store = Store(tmp / "g.duckdb")
    victims = sorted((projects / WF1.name / SID / "subagents").glob("*.jsonl"))

    def delete_next(done: int, total: int) -> None:
        for v in victims:
            if v.exists():
                v.unlink()
                return

    res = Importer(store).run([projects], progress=delete_next)
    gone = [s for s in res.skipped if "disappeared" in s.reason]
    assert gone, res.skipped
    assert requests(store) > 0  # the rest was imported


def test_bad_otlp_capture_and_bad_hook_line(env):
    tmp, projects = env
    cap = tmp / "captures"
    cap.mkdir()
    shutil.copy(FIX / "otlp" / "00006_logs.json", cap / "00006_logs.json")
    (cap / "00099_logs.json").write_text('{"resourceLogs": [')
    (cap / "00098_traces.pb").write_bytes(b"\xff\xff\xff garbage")
    hooks = tmp / "hooks.jsonl"
    good = (FIX / "hooks.jsonl").read_text().splitlines()[0]
    hooks.write_text(good + "\nnot json at all\n" + json.dumps({"no": "event"}) + "\n")
    store = Store(tmp / "g.duckdb")
    res = Importer(store).run([cap, hooks])
    reasons = {Path(s.source).name + (f":{s.line}" if s.line else ""): s.reason for s in res.skipped}
    assert reasons["00099_logs.json"].startswith("OTLP/JSON body does not decode")
    assert reasons["00098_traces.pb"].startswith("OTLP/protobuf traces body does not decode")
    assert reasons["hooks.jsonl:2"].startswith("not JSON")
    assert reasons["hooks.jsonl:3"] == "hook payload has no 'hook_event_name'"
    assert store.scalar("SELECT count(*) FROM otel_events") > 0
    assert store.scalar("SELECT count(*) FROM hook_events") == 1


def test_nothing_stored_is_lost_when_a_write_fails(env):
    tmp, projects = env
    from golem_mcp.ingestion.records import Batch

    store = Store(tmp / "g.duckdb")
    Importer(store).run([projects])
    before = store.table_counts()
    bad = Batch()
    bad.add("api_requests", {"request_id": "new", "session_id": "s", "input_tokens": 1})
    bad.add("tool_calls", {"tool_use_id": "t", "nonexistent_column": 1})
    with pytest.raises(ValueError):
        store.write(bad)
    assert store.table_counts() == before  # the whole batch rolled back, nothing half-written


def test_incremental_import_reads_only_new_bytes(env):
    tmp, projects = env
    f = main_file(projects)
    data = f.read_bytes()
    lines = data.split(b"\n")
    cut = len(b"\n".join(lines[:40])) + 1
    f.write_bytes(data[:cut])
    store = Store(tmp / "g.duckdb")
    Importer(store).run([projects])
    first = requests(store)
    f.write_bytes(data)
    res = Importer(store).run([projects])
    assert res.files_read == 1 and res.bytes_read == len(data) - cut
    assert requests(store) == 24 > first


def test_cli_reports_skipped_lines_with_file_and_line(env):
    tmp, projects = env
    f = main_file(projects)
    f.write_bytes(f.read_bytes() + b'{"type":"assistant", broken\n')
    out = subprocess.run([sys.executable, "-m", "golem_mcp", "import", str(projects), "--db", str(tmp / "c.duckdb"),
                          "--create"],
                         capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert "records" in out.stdout
    assert f"{f}:74: not JSON" in out.stderr
    rep = subprocess.run([sys.executable, "-m", "golem_mcp", "report", "--by", "stage", "--json", "--no-sync",
                          "--db", str(tmp / "c.duckdb")], capture_output=True, text=True)
    rows = json.loads(rep.stdout)
    assert sum(r["requests"] for r in rows) == 24


def test_cli_missing_path_and_missing_db(env):
    tmp, _ = env
    out = subprocess.run([sys.executable, "-m", "golem_mcp", "import", str(tmp / "nope"), "--db", str(tmp / "d.duckdb"),
                          "--create"], capture_output=True, text=True)
    assert out.returncode == 2 and "no such file or folder" in out.stderr
    assert not (tmp / "d.duckdb").exists()  # refused before anything was opened
    # a --db that is not there is a typo until --create says otherwise (the default store is made freely)
    rep = subprocess.run([sys.executable, "-m", "golem_mcp", "report", "--no-sync", "--db", str(tmp / "none.duckdb")],
                         capture_output=True, text=True)
    assert rep.returncode == 2 and "--create" in rep.stderr and not (tmp / "none.duckdb").exists()
    rep = subprocess.run([sys.executable, "-m", "golem_mcp", "report", "--no-sync", "--db", str(tmp / "none.duckdb"),
                          "--create"], capture_output=True, text=True)
    assert rep.returncode == 0 and "golem-mcp import" in rep.stderr
