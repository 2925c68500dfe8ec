"""The three sources against the real Claude Code data: per-stage tokens equal truth.json exactly,
whatever sources are imported and in whatever order, and importing twice adds nothing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from golem_mcp.ingestion.importer import FirstImport, Importer
from golem_mcp.store import Store
from support.fixture_data import FIXTURES as FIX
from support.fixture_data import TOKENS, import_fixture, sources, token_counts

TRUTH = json.loads((FIX / "truth.json").read_text())
SOURCES = sources(FIX)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))


def _store(tmp_path: Path, order: list[str], name: str = "g.duckdb") -> Store:
    return import_fixture(Store(tmp_path / name), FIX, order)


def _by_session_stage(store: Store) -> dict[tuple[str, str], dict[str, int]]:
    return token_counts(store, ("session_id", "stage"))  # type: ignore[return-value]


def _by_workflow_stage(store: Store) -> dict[tuple[str, str], dict[str, int]]:
    return token_counts(store, ("workflow_id", "stage"), view="otel_api_request_events")  # type: ignore[return-value]


def _truth(key: str) -> dict[tuple[str, str], dict[str, int]]:
    out = {}
    for wf, t in TRUTH.items():
        for stage, s in t["stages"].items():
            out[(t["session_id"] if key == "session" else wf, stage)] = {k: s[k] for k in ("requests", *TOKENS)}
    return out


def test_transcripts_alone_give_truth_per_session_and_stage(tmp_path):
    store = _store(tmp_path, ["transcripts"])
    assert _by_session_stage(store) == _truth("session")


def test_each_workflow_cost_matches_claude_codes_own_total(tmp_path):
    store = _store(tmp_path, ["transcripts", "otlp", "hooks"])
    rows = {r["workflow_id"]: r for r in store.query(
        "SELECT workflow_id, sum(cost_usd) AS cost, sum(recorded_cost_usd) AS recorded, "
        "sum(calculated_cost_usd) AS calculated, count(*) FILTER (WHERE cost_source <> 'claude_code') AS other "
        "FROM requests GROUP BY 1")}
    for wf, t in TRUTH.items():
        assert rows[wf]["cost"] == pytest.approx(t["total_cost_usd"], rel=1e-9)
        assert rows[wf]["other"] == 0  # Claude Code's own figure wins when present
        # the bundled price table reproduces Claude Code's figure: the table can be audited side by side
        assert rows[wf]["calculated"] == pytest.approx(rows[wf]["recorded"], rel=1e-9)


@pytest.mark.parametrize("order", [list(p) for p in itertools.permutations(["transcripts", "otlp", "hooks"])])
def test_all_three_sources_in_any_order_give_truth_per_workflow_and_stage(tmp_path, order):
    store = _store(tmp_path, order)
    assert _by_workflow_stage(store) == _truth("workflow")


def test_otlp_and_hooks_without_transcripts_give_truth(tmp_path):
    store = _store(tmp_path, ["otlp", "hooks"])
    assert _by_workflow_stage(store) == _truth("workflow")


def test_otlp_alone_matches_transcripts_per_session_and_agent(tmp_path):
    otel = _store(tmp_path, ["otlp"], "otel.duckdb")
    tr = _store(tmp_path, ["transcripts"], "tr.duckdb")
    q = """SELECT session_id, COALESCE(agent_id, '-') AS agent_id, count(*) AS n, sum(input_tokens) AS i,
                  sum(output_tokens) AS o, sum(cache_read_tokens) AS cr, sum(cache_creation_tokens) AS cw
           FROM api_requests GROUP BY ALL ORDER BY ALL"""
    assert otel.query(q) == tr.query(q)
    # Claude Code names custom agents "custom" in OTel: alone, OTel cannot say which stage an agent was
    stages = {r["stage"] for r in otel.query("SELECT DISTINCT stage FROM requests")}
    assert stages == {"main", "subagent"}


def test_importing_twice_adds_nothing(tmp_path):
    store = _store(tmp_path, ["transcripts", "otlp", "hooks"])
    before = store.table_counts()
    totals = _by_workflow_stage(store)
    res = Importer(store).run([FIX])
    assert res.files_read == 0 and res.files_unchanged > 0
    # forcing a full re-read (as if the state were lost) still adds nothing: every fact has a key
    store.con.execute("DELETE FROM ingest_files")
    res = Importer(store).run([FIX])
    assert res.files_read > 0
    assert store.table_counts() == before
    assert _by_workflow_stage(store) == totals


def test_a_first_import_parsed_while_its_store_is_created_gives_truth(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_IMPORT_WORKERS", "2")  # the parser processes, on this small folder too
    transcripts = SOURCES["transcripts"]
    started = FirstImport.start(transcripts)
    assert started.parsing is not None  # parsing before the store exists
    store = Store(tmp_path / "g.duckdb")
    res = Importer(store).run(transcripts, started=started)
    assert res.skipped == [] and res.files_read == res.files_seen > 0
    assert started.parsing is None  # the parser processes are stopped
    assert _by_session_stage(store) == _truth("session")
    # handed to a store that has read files already, it is set aside: what is unchanged is not read
    late = FirstImport.start(transcripts)
    res = Importer(store).run(transcripts, started=late)
    assert res.files_read == 0 and res.files_unchanged == res.files_seen > 0
    assert late.parsing is None
    assert _by_session_stage(store) == _truth("session")


def test_context_and_attribution(tmp_path):
    store = _store(tmp_path, ["transcripts", "otlp", "hooks"])
    # every request has a session, and with OTel resource attributes a workflow and experiment
    missing = store.scalar("SELECT count(*) FROM requests WHERE workflow_id IS NULL OR experiment_id IS NULL")
    assert missing == 0
    exp = dict(store.query("SELECT workflow_id, any_value(experiment_id) AS e FROM requests GROUP BY 1")
               and [(r["workflow_id"], r["e"]) for r in store.query(
                   "SELECT workflow_id, any_value(experiment_id) AS e FROM requests GROUP BY 1")])
    assert exp == {wf: t["experiment_id"] for wf, t in TRUTH.items()}
    # sessions keep project and branch, so cost per branch is one query away
    s = store.query("SELECT project, git_branch, cwd, version FROM sessions WHERE session_id = ?",
                    [TRUTH["wf-001"]["session_id"]])[0]
    assert s == {"project": "-home-dev-work-wf-001", "git_branch": "master", "cwd": "/home/dev/work/wf-001",
                 "version": "2.1.328"}
    # tool calls from transcripts, OTel and hooks merge by tool_use_id, with their agent's stage
    t = store.query("SELECT stage, tool_name, success, error, tool_parameters->>'bash_command' AS cmd, duration_ms "
                    "FROM tools WHERE workflow_id = 'wf-006' AND tool_name = 'Bash' AND success = false")
    assert len(t) == 9 and {r["stage"] for r in t} == {"implementer"}
    assert {r["cmd"] for r in t} == {"exit 1"} and all(r["error"] == "Exit code 1" for r in t)
    assert all(r["duration_ms"] is not None for r in t)
    # the 529 Claude Code retried shows as attempt 2 on one reviewer request of wf-008
    r = store.query("SELECT workflow_id, stage, attempt FROM requests WHERE attempt > 1")
    assert r == [{"workflow_id": "wf-008", "stage": "reviewer", "attempt": 2}]


def test_workflow_link_attributes_transcript_facts(tmp_path):
    """Transcripts carry no workflow id (each session is a workflow of its own); once OTel links the
    session, its transcript facts join the tagged workflow."""
    store = _store(tmp_path, ["transcripts"])
    assert store.scalar("SELECT count(*) FROM requests WHERE workflow_id NOT LIKE 'session-%'") == 0
    Importer(store).run([FIX / "otlp" / "00006_logs.json"])  # one body of wf-002
    n = store.scalar("SELECT count(*) FROM requests WHERE workflow_id = 'wf-002'")
    assert n == sum(s["requests"] for s in TRUTH["wf-002"]["stages"].values())


def test_main_stage_name_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_MAIN_STAGE", "master")
    store = _store(tmp_path, ["transcripts"])
    assert "master" in {r["stage"] for r in store.query("SELECT DISTINCT stage FROM requests")}


def test_nested_subagents_roll_up_to_the_outer_stage(tmp_path):
    """A subagent spawned by a subagent keeps its parent link; top_stage rolls its cost up."""
    from golem_mcp.ingestion.records import Batch

    store = _store(tmp_path, ["transcripts", "hooks"])
    outer = store.query("SELECT agent_id, session_id FROM agent_tree WHERE agent_type = 'implementer' LIMIT 1")[0]
    b = Batch()
    b.add("tool_calls", {"tool_use_id": "toolu_nested", "session_id": outer["session_id"],
                         "agent_id": outer["agent_id"], "tool_name": "Agent", "timestamp": 1795301160000000})
    b.add("agents", {"agent_id": "anested", "session_id": outer["session_id"], "agent_type": "tester",
                     "spawn_tool_use_id": "toolu_nested"})
    b.add("api_requests", {"request_id": "req_nested", "session_id": outer["session_id"], "agent_id": "anested",
                           "model": "claude-haiku-5-5", "timestamp": 1795301161000000, "input_tokens": 10,
                           "output_tokens": 1})
    store.write(b)
    row = store.query("SELECT stage, top_stage FROM requests WHERE request_id = 'req_nested'")[0]
    assert row == {"stage": "tester", "top_stage": "implementer"}
    tree = store.query("SELECT parent_agent_id, root_agent_id, depth FROM agent_tree WHERE agent_id = 'anested'")[0]
    assert tree == {"parent_agent_id": outer["agent_id"], "root_agent_id": outer["agent_id"], "depth": 2}


def test_unpriced_model_is_reported_not_zero(tmp_path):
    from golem_mcp.analysis.cost import cost_by
    from golem_mcp.ingestion.records import Batch

    store = Store(tmp_path / "u.duckdb")
    b = Batch()
    b.add("api_requests", {"request_id": "r1", "session_id": "s", "model": "claude-unknown-9",
                           "timestamp": 1795301161000000, "input_tokens": 1000, "output_tokens": 10})
    store.write(b)
    row = cost_by(store, ["model"])[0]
    assert row["cost_usd"] is None and row["unpriced_requests"] == 1 and row["unpriced_models"] == ["claude-unknown-9"]


def test_price_table_override_file(tmp_path, monkeypatch):
    from golem_mcp.ingestion.records import Batch

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"as_of": "2030-01-01", "models": {"claude-unknown-9": {
        "input": 1.0, "output": 2.0, "cache_read": 0.1, "cache_write_5m": 1.25}}}))
    monkeypatch.setenv("GOLEM_PRICES", str(prices))
    store = Store(tmp_path / "p.duckdb")
    b = Batch()
    b.add("api_requests", {"request_id": "r1", "session_id": "s", "model": "claude-unknown-9-20300101",
                           "timestamp": 1795301161000000, "input_tokens": 1_000_000, "output_tokens": 1_000_000})
    store.write(b)
    row = store.query("SELECT cost_usd, cost_source FROM requests")[0]
    assert row == {"cost_usd": pytest.approx(3.0), "cost_source": "price_table"}
