"""Claude Code's native ``Workflow`` runs against the real CLI's output (tests/fixtures/claude-code-2.1.328-workflow):
each run is a workflow, each agent a stage, with exactly the tokens the stand-in served, from
transcripts alone, from OTel alone, and from both in either order; the journal is no session; a
resumed run counts only what was really served."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import api
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store
from support.fixture_data import TOKENS, import_fixture, sources, token_counts

FIX = Path(__file__).resolve().parent / "fixtures" / "claude-code-2.1.328-workflow"
TRUTH = json.loads((FIX / "truth.json").read_text())
SID = TRUTH["session_id"]
SESSION_DIR = next((FIX / "home" / ".claude" / "projects").glob(f"*/{SID}"))
SOURCES = sources(FIX)
RUN1, RUN2 = TRUTH["workflows"]  # build-feature (resumed once), second-opinion


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))


def _store(tmp_path: Path, order: list[str], name: str = "g.duckdb") -> Store:
    return import_fixture(Store(tmp_path / name), FIX, order)


def _by_workflow_stage(store: Store) -> dict[tuple[str, str], dict[str, int]]:
    return token_counts(store, ("workflow_id", "stage"), where="agent_id IS NOT NULL")  # type: ignore[return-value]


def _truth() -> dict[tuple[str, str], dict[str, int]]:
    return {(run, stage): t for run, w in TRUTH["workflows"].items() for stage, t in w["stages"].items()}


def _per_workflow(d: dict[tuple[str, str], dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (wf, _stage), t in d.items():
        acc = out.setdefault(wf, dict.fromkeys(("requests", *TOKENS), 0))
        for k, v in t.items():
            acc[k] += v
    return out


def _main_thread(store: Store) -> dict[str, Any]:
    r = store.query("""SELECT count(*) AS requests, sum(input_tokens) AS input, sum(output_tokens) AS output,
                              sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_write,
                              count(DISTINCT workflow_id) AS workflows, any_value(workflow_id) AS workflow_id
                       FROM requests WHERE agent_id IS NULL""")[0]
    return r


def test_the_fixture_is_what_the_cli_writes_for_workflow_runs():
    # the layout the reader relies on, as Claude Code 2.1.328 wrote it (see the fixture's README)
    runs = SESSION_DIR / "subagents" / "workflows"
    assert sorted(p.name for p in runs.iterdir()) == sorted([RUN1, RUN2])
    for run in (RUN1, RUN2):
        assert (runs / run / "journal.jsonl").exists()
        assert (SESSION_DIR / "workflows" / f"{run}.json").exists()
    # the resumed run kept its run id: four agent transcripts (planner, implementer, reviewer twice)
    assert len(list((runs / RUN1).glob("agent-*.jsonl"))) == 4
    assert TRUTH["workflows"][RUN1]["resumed"] is True


def test_transcripts_alone_give_each_run_as_a_workflow_with_its_stages(tmp_path):
    store = _store(tmp_path, ["transcripts"])
    assert _by_workflow_stage(store) == _truth()
    # the main thread that called Workflow is not in any run
    main = _main_thread(store)
    assert {k: main[k] for k in ("requests", *TOKENS)} == TRUTH["main"]
    assert main["workflows"] == 1 and main["workflow_id"] not in TRUTH["workflows"]
    # names from the run records; the resume is visible, its cached agents made no request
    w = {r["workflow_id"]: json.loads(r["attributes"]) for r in store.query(
        "SELECT workflow_id, attributes FROM workflows WHERE workflow_id LIKE 'wf\\_%' ESCAPE '\\'")}
    assert {k: v["name"] for k, v in w.items()} == {k: v["name"] for k, v in TRUTH["workflows"].items()}
    assert (w[RUN1]["resumed"], w[RUN1]["cached_agents"], w[RUN2]["resumed"]) == (True, 2, False)
    labels = dict(store.con.execute("SELECT workflow_id, label FROM workflow_summary").fetchall())
    assert labels[RUN1] == f"build-feature · {RUN1}" and labels[RUN2] == f"second-opinion · {RUN2}"


@pytest.mark.parametrize("order", [["transcripts", "otlp"], ["otlp", "transcripts"],
                                   ["hooks", "otlp", "transcripts"], ["transcripts", "hooks", "otlp"]])
def test_transcripts_and_otel_joined_in_either_order(tmp_path, order):
    store = _store(tmp_path, order)
    assert _by_workflow_stage(store) == _truth()
    main = _main_thread(store)
    assert {k: main[k] for k in ("requests", *TOKENS)} == TRUTH["main"]
    # one row per request: OTel's and the transcript's copies merged (source bits 1 and 2)
    assert store.scalar("SELECT count(*) FROM api_requests WHERE source_mask & 3 <> 3") == 0
    assert store.scalar("SELECT count(*) FROM api_requests") == TRUTH["main"]["requests"] + sum(
        t["requests"] for t in _truth().values())
    # the runs' cost and the session's own add up to Claude Code's total for the session
    assert store.scalar("SELECT sum(cost_usd) FROM requests") == pytest.approx(TRUTH["total_cost_usd"], rel=1e-9)


def test_otel_alone_gives_each_run_its_tokens_and_agents(tmp_path):
    otel = _store(tmp_path, ["otlp"], "otel.duckdb")
    tr = _store(tmp_path, ["transcripts"], "tr.duckdb")
    # every request of a run's agents carries workflow.run_id: per run, exact
    assert _per_workflow(_by_workflow_stage(otel)) == _per_workflow(_truth())
    q = """SELECT workflow_id, agent_id, count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o,
                  sum(cache_read_tokens) AS cr, sum(cache_creation_tokens) AS cw
           FROM requests GROUP BY ALL ORDER BY ALL"""
    assert otel.query(q) == tr.query(q)
    # Claude Code names a custom agent "custom" and its own generic one "workflow-subagent" in OTel,
    # so alone it cannot tell the stage by name; hooks (SubagentStart.agent_type) name custom agents
    stages = {r["stage"] for r in otel.query("SELECT DISTINCT stage FROM requests WHERE agent_id IS NOT NULL")}
    assert stages == {"subagent", "workflow-subagent"}
    with_hooks = _store(tmp_path, ["otlp", "hooks"], "oh.duckdb")
    got = _by_workflow_stage(with_hooks)
    for run in (RUN1, RUN2):
        assert got[(run, "planner")] == TRUTH["workflows"][run]["stages"]["planner"]
        assert got[(run, "workflow-subagent")] == TRUTH["workflows"][run]["stages"]["reviewer"]
    # OTel's workflow.name is "custom" for a script the user wrote: no name is made up from it
    assert otel.scalar("SELECT count(*) FROM workflows WHERE attributes IS NOT NULL") == 0


def test_a_run_inside_a_tagged_session_is_a_child_of_the_sessions_workflow(tmp_path):
    # the same OTLP bodies as if the session ran with OTEL_RESOURCE_ATTRIBUTES=workflow_id=wf-outer
    tagged = tmp_path / "otlp"
    tagged.mkdir()
    for f in sorted((FIX / "otlp").iterdir()):
        doc = json.loads(f.read_text())
        for key in ("resourceLogs", "resourceSpans", "resourceMetrics"):
            for r in doc.get(key, []):
                r["resource"]["attributes"].append({"key": "workflow_id", "value": {"stringValue": "wf-outer"}})
        (tagged / f.name).write_text(json.dumps(doc))
    store = Store(tmp_path / "g.duckdb")
    assert Importer(store).run([tagged]).skipped == []
    per_wf = _per_workflow(_by_workflow_stage(store))
    assert per_wf == _per_workflow(_truth())  # the run's facts stay with the run, not wf-outer
    assert _main_thread(store)["workflow_id"] == "wf-outer"
    parents = dict(store.con.execute("SELECT workflow_id, parent_workflow_id FROM workflows").fetchall())
    assert parents[RUN1] == parents[RUN2] == "wf-outer"


def test_the_journal_is_read_as_a_runs_agents_not_as_a_session(tmp_path):
    store = Store(tmp_path / "g.duckdb")
    journal = SESSION_DIR / "subagents" / "workflows" / RUN1 / "journal.jsonl"
    res = Importer(store).run([journal])
    assert res.skipped == [] and res.files_read == 1
    assert store.table_counts()["sessions"] == 0
    assert store.scalar("SELECT count(*) FROM api_requests") == 0
    # each agent it started is linked to the run, with its label; the cached agents add no record
    started = [json.loads(line) for line in journal.read_text().splitlines() if '"started"' in line]
    assert len(started) == 4
    rows = store.query("SELECT c.agent_id, c.workflow_id, a.description FROM agent_context c "
                       "JOIN agents a USING (agent_id) ORDER BY 1")
    assert rows == sorted(({"agent_id": s["agentId"], "workflow_id": RUN1, "description": s["label"]}
                           for s in started), key=lambda r: r["agent_id"])
    # the results it records are not stored anywhere (no model output is kept)
    result = next(json.loads(line)["result"] for line in journal.read_text().splitlines() if '"result"' in line)
    for table in ("agents", "agent_context", "workflows"):
        assert not store.query(f"SELECT * FROM {table} WHERE CAST(COLUMNS(*) AS VARCHAR) = ?", [result])


def test_a_journal_with_an_unknown_record_says_which_line(tmp_path):
    run = tmp_path / "p" / "s1" / "subagents" / "workflows" / "wf_abc123-def"
    run.mkdir(parents=True)
    (run / "journal.jsonl").write_text('{"type":"launched"}\n{"type":"teleported","agentId":"a1"}\n{oops\n')
    res = Importer(Store(tmp_path / "g.duckdb")).run([tmp_path / "p"])
    got = [str(s) for s in res.skipped]
    assert got[0] == f"{run / 'journal.jsonl'}:2: unknown workflow journal record type 'teleported'"
    assert got[1].startswith(f"{run / 'journal.jsonl'}:3: not JSON (") and len(got) == 2


def _copy(src: Path, dst: Path) -> None:
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(Path(root) / f, target / f)


def test_a_run_resumed_between_imports_is_counted_once(tmp_path):
    """The first import sees run 1 before its resume (three agents, a three-started journal); the
    resume then appends to the journal, adds the re-run agent and rewrites the run record."""
    home = tmp_path / "projects"
    _copy(FIX / "home" / ".claude" / "projects", home)
    sdir = next(home.glob(f"*/{SID}"))
    run_dir = sdir / "subagents" / "workflows" / RUN1
    journal = (run_dir / "journal.jsonl").read_text().splitlines(keepends=True)
    last = json.loads(journal[-1])["agentId"]  # the reviewer that the resume ran again
    held = {p.name: p.read_bytes() for p in run_dir.glob(f"agent-{last}.*")}
    for name in held:
        (run_dir / name).unlink()
    (run_dir / "journal.jsonl").write_text("".join(journal[:-2]))
    store = Store(tmp_path / "g.duckdb")
    imp = Importer(store)
    assert imp.run([home]).skipped == []
    before = _by_workflow_stage(store)[(RUN1, "reviewer")]
    assert before["requests"] == TRUTH["workflows"][RUN1]["stages"]["reviewer"]["requests"] - 1
    # the resume: two cached agents (nothing new from them), one agent run again
    for name, data in held.items():
        (run_dir / name).write_bytes(data)
    (run_dir / "journal.jsonl").write_text("".join(journal))
    res = imp.run([home])
    assert res.skipped == []
    assert _by_workflow_stage(store) == _truth()
    assert imp.run([home]).files_read == 0  # nothing changed: nothing read again


def test_importing_twice_adds_nothing(tmp_path):
    store = _store(tmp_path, ["transcripts", "otlp", "hooks"])
    before = store.table_counts()
    store.con.execute("DELETE FROM ingest_files")  # a full re-read, as if the state were lost
    assert Importer(store).run([FIX]).skipped == []
    assert store.table_counts() == before
    assert _by_workflow_stage(store) == _truth()


def test_the_daemons_watcher_picks_up_workflow_run_folders(start_daemon, tmp_path):
    watched = tmp_path / "projects"
    watched.mkdir()
    d = start_daemon("--watch", str(watched))
    _copy(FIX / "home" / ".claude" / "projects", watched)
    want = TRUTH["main"]["requests"] + sum(t["requests"] for t in _truth().values())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and api.get(d.url + "/api/status").json()["api_requests"] < want:
        time.sleep(0.2)
    assert api.get(d.url + "/api/status").json()["api_requests"] == want
    rows = api.post(d.url + "/api/report", json={"by": ["workflow", "stage"]}).json()
    got = {(r["workflow"], r["stage"]): r["input_tokens"] for r in rows if r["workflow"] in TRUTH["workflows"]}
    assert got == {k: t["input"] for k, t in _truth().items()}


def test_every_truth_stage_is_a_role_the_stand_in_served():
    served = json.loads((FIX / "scenario.json").read_text())["served"]
    roles = {s["role"] for s in served}
    assert {stage for _run, stage in _truth()} <= roles
    assert sum(t["requests"] for t in _truth().values()) + TRUTH["main"]["requests"] == len(
        [s for s in served if s["session_id"] == SID])
    assert list(itertools.chain(TRUTH["workflows"])) == [RUN1, RUN2]


def test_report_by_workflow_names_each_run_beside_its_id(tmp_path):
    """``golem-mcp report --by workflow`` shows a run's script name next to its id (the table) and
    carries both (``--json``); the main thread's session workflow is named by its session label."""
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home), "GOLEM_URL": ""}
    env.pop("GOLEM_DB", None)

    def golem(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    golem("import", str(FIX / "home"), "--json")
    rows = {r["workflow"]: r for r in json.loads(golem("report", "--by", "workflow", "--json", "--no-sync"))}
    assert {w: rows[w]["workflow_name"] for w in (RUN1, RUN2)} == {RUN1: "build-feature", RUN2: "second-opinion"}
    main = [r for w, r in rows.items() if w not in TRUTH["workflows"]]
    assert len(main) == 1 and main[0]["workflow"].startswith("session-") and SID[:8] in main[0]["workflow_name"]
    lines = golem("report", "--by", "workflow", "--no-sync", "--width", "200").splitlines()
    assert any(RUN1 in line and "build-feature" in line for line in lines), lines
    assert any(RUN2 in line and "second-opinion" in line for line in lines), lines
    # grouped by stage alone, no name column
    assert "workflow_name" not in json.loads(golem("report", "--by", "stage", "--json", "--no-sync"))[0]
