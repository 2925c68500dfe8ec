"""Shards (issue 11): two machines export into one folder, a third imports it, and every workflow x
stage of the real Claude Code corpus equals truth.json; the workflow both machines saw counts once;
importing again adds nothing; `report --by machine` shows both. Through the real CLI and stores."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from golem_mcp.ingestion.importer import Importer, read_file
from golem_mcp.ingestion.records import Batch
from golem_mcp.interfaces.cli_main import run
from golem_mcp.store import Store
from golem_mcp.store.shards import export, import_shards
from support.fixture_data import FIXTURES as FIX
from support.fixture_data import TOKENS, token_counts
from support.secrets import KINDS

TRUTH = json.loads((FIX / "truth.json").read_text())
A_PART = ["wf-001", "wf-002", "wf-003", "wf-004", "wf-005"]
B_PART = ["wf-005", "wf-006", "wf-007", "wf-008"]  # wf-005 ran on both


def _otlp_by_workflow() -> dict[str, list[Path]]:
    """Each captured OTLP body, by the workflow whose session sent it (read with golem's own reader)."""
    by_session = {t["session_id"]: wf for wf, t in TRUTH.items()}
    out: dict[str, list[Path]] = {}
    for f in sorted((FIX / "otlp").iterdir()):
        b = Batch()
        read_file(f, f.stat(), "otlp", None, b)
        wfs = {by_session[r["session_id"]] for rows in b.rows.values() for r in rows if r.get("session_id")}
        assert len(wfs) == 1, (f, wfs)
        out.setdefault(wfs.pop(), []).append(f)
    return out


def _part(tmp: Path, wfs: list[str], otlp: dict[str, list[Path]]) -> list[Path]:
    """The corpus files of these workflows: their transcripts, OTLP bodies and hook payloads."""
    sessions = {TRUTH[w]["session_id"] for w in wfs}
    hooks = tmp / "hooks.jsonl"
    hooks.parent.mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in (FIX / "hooks.jsonl").read_text().splitlines()
             if ln.strip() and json.loads(ln).get("session_id") in sessions]
    hooks.write_text("\n".join(lines) + "\n")
    projects = FIX / "home" / ".claude" / "projects"
    return [projects / f"-home-dev-work-{w}" for w in wfs] + [f for w in wfs for f in otlp[w]] + [hooks]


def _machine(tmp: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("GOLEM_HOME", str(home))
    monkeypatch.setenv("GOLEM_MACHINE", name)
    for var in ("GOLEM_URL", "GOLEM_TOKEN", "GOLEM_DB"):
        monkeypatch.delenv(var, raising=False)
    return home / "golem.duckdb"


def _per_workflow_stage(db: Path) -> dict[tuple[str, str], dict[str, int]]:
    with Store(db, read_only=True) as store:
        return token_counts(store, ("workflow_id", "stage"), view="otel_api_request_events")  # type: ignore[return-value]


def _truth(wfs: list[str]) -> dict[tuple[str, str], dict[str, int]]:
    return {(wf, stage): {k: s[k] for k in ("requests", *TOKENS)}
            for wf in wfs for stage, s in TRUTH[wf]["stages"].items()}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert run(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_two_machines_export_into_one_folder_a_third_imports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    otlp = _otlp_by_workflow()
    shared = tmp_path / "repo" / ".golem" / "telemetry"
    dbs = {}
    for name, part in (("laptop", A_PART), ("runner", B_PART)):
        db = dbs[name] = _machine(tmp_path, name, monkeypatch)
        with Store(db) as store:
            assert Importer(store).run(_part(tmp_path / f"{name}-corpus", part, otlp)).skipped == []
        assert _per_workflow_stage(db) == _truth(part)  # each machine alone: its part, exact
        out = _cli(capsys, "export", str(shared), "--db", str(db))
        assert "shard files" in out
    files = sorted(p.name for p in shared.iterdir())
    assert {f.split("-")[0] for f in files} == {"laptop", "runner"}  # named by machine: never the same file
    assert not [f for f in files if f.startswith(".")]  # no temporary left behind

    # the third machine: every workflow x stage of both parts, the shared one once
    third = _machine(tmp_path, "desk", monkeypatch)
    out = _cli(capsys, "import", str(shared), "--db", str(third), "--create")
    assert f"merged {len(files)} shard files" in out
    assert _per_workflow_stage(third) == _truth(sorted(TRUTH))
    with Store(third, read_only=True) as store:
        cost = {r["workflow_id"]: r["cost"] for r in store.query(
            "SELECT workflow_id, sum(cost_usd) AS cost FROM requests GROUP BY 1")}
        counts = store.table_counts()
        machines = {r["machine_id"]: r["label"] for r in store.query("SELECT machine_id, label FROM machines")}
    for wf, t in TRUTH.items():
        assert cost[wf] == pytest.approx(t["total_cost_usd"], rel=1e-9)
    assert {"laptop", "runner"} <= set(machines)

    # importing again adds nothing: every file is listed as merged, and merging it anyway changes no count
    out = _cli(capsys, "import", str(shared), "--db", str(third))
    assert f"merged 0 shard files (0 rows), {len(files)} merged before" in out
    with Store(third) as store:
        store.con.execute("DELETE FROM imported_shards")
        again = import_shards(store, [shared])
        assert again["shards"] == len(files) and again["skipped"] == []
        assert store.table_counts() == counts
    assert _per_workflow_stage(third) == _truth(sorted(TRUTH))

    # report --by machine: both machines, every request once
    rows = json.loads(_cli(capsys, "report", "--by", "machine", "--format", "json", "--db", str(third), "--no-sync"))
    by_machine = {r["machine"]: r["requests"] for r in rows}
    assert set(by_machine) == {"laptop", "runner"}
    assert sum(by_machine.values()) == sum(s["requests"] for t in TRUTH.values() for s in t["stages"].values())

    # a machine that saw wf-005 itself and imports the other's shards: wf-005 still once
    _machine(tmp_path, "laptop", monkeypatch)
    _cli(capsys, "import", str(shared), "--db", str(dbs["laptop"]))
    assert _per_workflow_stage(dbs["laptop"]) == _truth(sorted(TRUTH))
    # and it does not send the other machine's facts back out: nothing new of its own
    out = _cli(capsys, "export", str(shared), "--db", str(dbs["laptop"]))
    assert out.startswith("nothing new since the last export")


def test_context_in_a_later_shard_reresolves_earlier_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shards"
    db = _machine(tmp_path, "runner", monkeypatch)
    with Store(db) as store:
        b = Batch()
        b.add("sessions", {"session_id": "s1", "cwd": "/work/p"})
        b.add("api_requests", {"request_id": "r1", "session_id": "s1", "agent_id": "a1", "model": "claude-sonnet-4-5",
                               "input_tokens": 100})
        store.write(b)
        first = export(store, folder)
        b = Batch()
        b.add("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "analyst"})
        b.add("workflow_links", {"session_id": "s1", "valid_from": 0, "workflow_id": "wf-late"})
        store.write(b)
        second = export(store, folder)
    assert first["files"] and second["files"] and not set(first["files"]) & set(second["files"])
    desk = _machine(tmp_path, "desk", monkeypatch)
    with Store(desk) as store:
        import_shards(store, [folder / f for f in first["files"]])
        assert store.query("SELECT workflow_id, stage FROM requests") == [
            {"workflow_id": "session-s1", "stage": "subagent"}]
        import_shards(store, [folder])
        assert store.query("SELECT workflow_id, stage, machine_id FROM requests") == [
            {"workflow_id": "wf-late", "stage": "analyst", "machine_id": "runner"}]


def test_a_shard_holds_no_prompt_text_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shards"
    db = _machine(tmp_path, "runner", monkeypatch)
    monkeypatch.setenv("GOLEM_STORE_PROMPTS", "1")  # even a store that keeps prompts sends none
    monkeypatch.setenv("GOLEM_KEEP_HOOK_PAYLOADS", "1")
    from golem_mcp.config import Settings

    with Store(db, settings=Settings.load()) as store:
        b = Batch()
        b.add("otel_events", {"event_key": "e1", "event_name": "user_prompt", "session_id": "s1",
                              "attributes": json.dumps({"prompt": "PROMPT-TEXT-1 refactor the billing module",
                                                        "prompt_length": 41})})
        b.add("hook_events", {"event_key": "h1", "session_id": "s1", "event_name": "UserPromptSubmit",
                              "payload": json.dumps({"prompt": "PROMPT-TEXT-2"})})
        b.add("agent_tasks", {"task_key": "s1|1", "session_id": "s1", "cc_task_id": "1",
                              "subject": "PROMPT-TEXT-3 migrate the billing tables"})
        b.add("compaction_events", {"event_key": "c1", "session_id": "s1", "pre_tokens": 90000, "post_tokens": 12000})
        for i, k in enumerate(KINDS):
            b.add("tool_calls", {"tool_use_id": f"t{i}", "session_id": "s1", "tool_name": "Bash", "success": False,
                                 "error": k.text})
        store.write(b)
        assert "PROMPT-TEXT-1" in store.scalar("SELECT attributes FROM otel_events")  # kept locally, as asked
        res = export(store, folder)
    raw = b"".join((folder / f).read_bytes() for f in res["files"])
    texts = json.dumps([pq.read_table(folder / f).to_pylist() for f in res["files"]], default=str)
    assert any(f.endswith("-agent_tasks.parquet") for f in res["files"])  # the task travels, its subject not
    assert any(f.endswith("-compaction_events.parquet") for f in res["files"])
    for marker in ("PROMPT-TEXT-1", "PROMPT-TEXT-2", "PROMPT-TEXT-3", *(k.secret for k in KINDS)):
        assert marker not in texts and marker.encode() not in raw, marker
    events = pq.read_table(next(folder / f for f in res["files"] if f.endswith("-otel_events.parquet"))).to_pylist()
    assert json.loads(events[0]["attributes"]) == {"prompt_length": 41}  # the rest of the event travels


def test_bad_files_are_skipped_with_a_reason_and_cost_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "shards"
    db = _machine(tmp_path, "runner", monkeypatch)
    with Store(db) as store:
        b = Batch()
        b.add("api_requests", {"request_id": "r1", "session_id": "s1", "input_tokens": 5})
        store.write(b)
        export(store, folder)
    pq.write_table(pq.read_table(next(folder.glob("*-api_requests.parquet"))).replace_schema_metadata({}),
                   folder / "foreign.parquet")
    (folder / "broken-000000000001-abcdef-api_requests.parquet").write_bytes(b"PAR1 not really")
    desk = _machine(tmp_path, "desk", monkeypatch)
    capsys.readouterr()
    assert run(["import", str(folder), "--db", str(desk), "--create"]) == 0
    captured = capsys.readouterr()
    assert "not a readable Parquet file" in captured.err and "not a golem-mcp shard" in captured.err
    with Store(desk, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM api_requests") == 1


def test_project_export_holds_only_that_projects_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _machine(tmp_path, "laptop", monkeypatch)
    proj = tmp_path / "proj"
    proj.mkdir()
    with Store(db) as store:
        b = Batch()
        b.add("sessions", {"session_id": "in", "cwd": str(proj / "sub")})
        b.add("sessions", {"session_id": "out", "cwd": str(tmp_path / "other")})
        for s in ("in", "out"):
            b.add("api_requests", {"request_id": f"r-{s}", "session_id": s, "input_tokens": 1})
        store.write(b)
        res = export(store, proj / ".golem" / "telemetry", project=proj)
    assert res["rows"]["api_requests"] == 1 and res["rows"]["sessions"] == 1
    sessions = pq.read_table(proj / ".golem" / "telemetry" / next(f for f in res["files"] if "-sessions" in f))
    assert sessions.column("session_id").to_pylist() == ["in"]
