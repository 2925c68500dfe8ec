"""Resolved facts (issue 10): every fact stores its context, resolved when it is written and again
when context it depends on arrives later; whatever the order facts and context arrive in, the
stored resolved columns equal a from-scratch resolution, and the change set a write leaves (the
rollups' hook) adds up to the same GROUP BY as the facts."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_mcp.ingestion import transcripts
from golem_mcp.ingestion.otlp import logs_to_batch
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store, resolve
from golem_mcp.store.db import _migrations, _sql
from support.fixture_data import FIXTURES, import_fixture

T0 = datetime(2026, 11, 20, 12, 0, 0)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))


def _write(store: Store, rows: list[tuple[str, dict]]) -> None:
    b = Batch()
    for table, row in rows:
        b.add(table, dict(row))
    store.write(b)


def _resolved(store: Store) -> dict[str, list[tuple]]:
    """Every fact's key and resolved columns, per fact table."""
    out = {}
    for table, spec in resolve.FACTS.items():
        cols = ", ".join((spec.key, *spec.resolved))
        out[table] = [tuple(round(v, 9) if isinstance(v, float) else v for v in r)
                      for r in store.con.execute(f"SELECT {cols} FROM {table} ORDER BY 1").fetchall()]
    return out


def _mismatches(store: Store) -> dict:
    with store.reader() as cur:
        return resolve.mismatches(cur, store._types)


# -- late context, synthetic -------------------------------------------------------------------

def _req(rid: str, sid: str = "s1", agent: str | None = "a1", minutes: int = 1, **kw) -> tuple[str, dict]:
    return ("api_requests", {"request_id": rid, "session_id": sid, "agent_id": agent, "model": "claude-sonnet-4-5",
                             "timestamp": T0 + timedelta(minutes=minutes), "input_tokens": 100,
                             "output_tokens": 50, "cache_read_tokens": 1000, "cache_creation_tokens": 10, **kw})


def test_requests_written_before_their_subagent_start_end_as_in_the_other_order(tmp_path):
    facts = [_req("r1"), _req("r2", minutes=2), ("tool_calls", {"tool_use_id": "t1", "session_id": "s1", "agent_id": "a1",
                                                                "tool_name": "Read", "timestamp": T0, "success": True})]
    context = [("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "planner"}),
               ("sessions", {"session_id": "s1", "cwd": "/home/dev/proj", "git_branch": "main"})]
    late, early = Store(tmp_path / "late.duckdb"), Store(tmp_path / "early.duckdb")
    _write(late, facts)
    assert late.query("SELECT stage FROM requests")[0]["stage"] == "subagent"  # no type known yet
    _write(late, context)
    _write(early, context + facts)
    assert _resolved(late) == _resolved(early)
    row = late.query("SELECT stage, agent, project, git_branch FROM requests WHERE request_id = 'r1'")[0]
    assert row == {"stage": "planner", "agent": "planner", "project": "~/proj", "git_branch": "main"}
    assert _mismatches(late) == {} and _mismatches(early) == {}


def test_requests_written_before_record_workflow_end_as_in_the_other_order(tmp_path):
    facts = [_req("r1", agent=None, minutes=1), _req("r2", agent=None, minutes=5), _req("r3", agent="a1", minutes=6)]
    # the master records its workflow at minute 3: requests from then on belong to it, the earlier ones
    # too (a session's first link holds from its start)
    context = [("workflows", {"workflow_id": "wf-1", "path": "full", "complexity": "complex", "experiment_id": "exp-a"}),
               ("workflow_links", {"session_id": "s1", "valid_from": T0 + timedelta(minutes=3), "workflow_id": "wf-1",
                                   "task_id": "task-9"})]
    late, early = Store(tmp_path / "late.duckdb"), Store(tmp_path / "early.duckdb")
    _write(late, facts)
    assert {r["workflow_id"] for r in late.query("SELECT workflow_id FROM requests")} == {"session-s1"}
    _write(late, context)
    _write(early, context + facts)
    assert _resolved(late) == _resolved(early)
    rows = late.query("SELECT request_id, workflow_id, workflow_path, complexity, task_id, experiment_id "
                      "FROM requests ORDER BY 1")
    assert [r["workflow_id"] for r in rows] == ["session-s1", "wf-1", "wf-1"]
    assert rows[2] == {"request_id": "r3", "workflow_id": "wf-1", "workflow_path": "full", "complexity": "complex",
                       "task_id": "task-9", "experiment_id": "exp-a"}
    # a later change of the workflow's path reaches its facts
    _write(late, [("workflows", {"workflow_id": "wf-1", "path": "fast-track"})])
    assert {r["workflow_path"] for r in late.query("SELECT workflow_path FROM requests WHERE workflow_id = 'wf-1'")} == {"fast-track"}
    assert _mismatches(late) == {}


def test_a_link_from_a_time_on_reads_again_only_the_facts_from_then(tmp_path):
    """A session's next workflow holds from the moment it is recorded: the facts before it keep their
    link, so only those of that time or later (or of no time, which take the latest link) are read
    and resolved again. The end is the same as writing everything at once."""
    facts = [_req("r1", agent=None, minutes=1), _req("r2", agent=None, minutes=5), _req("r3", agent=None, minutes=7),
             ("tool_calls", {"tool_use_id": "t0", "session_id": "s1", "tool_name": "Read", "success": True})]
    first = [("workflow_links", {"session_id": "s1", "valid_from": 0, "workflow_id": "wf-1"})]
    second = [("workflow_links", {"session_id": "s1", "valid_from": T0 + timedelta(minutes=4), "workflow_id": "wf-2",
                                  "task_id": "task-2"})]
    late, early = Store(tmp_path / "late.duckdb"), Store(tmp_path / "early.duckdb")
    _write(late, first + facts)
    _write(late, second)
    read = {r[0] for r in late.con.execute("SELECT request_id FROM _res_cur_api_requests").fetchall()}
    assert read == {"r2", "r3"}  # not r1, whose link did not change
    assert [r[0] for r in late.con.execute("SELECT tool_use_id FROM _res_cur_tool_calls").fetchall()] == ["t0"]
    _write(early, first + second + facts)
    assert _resolved(late) == _resolved(early)
    assert late.query("SELECT request_id, workflow_id, task_id FROM requests ORDER BY 1") == [
        {"request_id": "r1", "workflow_id": "wf-1", "task_id": None},
        {"request_id": "r2", "workflow_id": "wf-2", "task_id": "task-2"},
        {"request_id": "r3", "workflow_id": "wf-2", "task_id": "task-2"}]
    assert late.scalar("SELECT r_workflow_id FROM tool_calls WHERE tool_use_id = 't0'") == "wf-2"
    # the first link's task changes: every fact it held is read again
    _write(late, [("workflow_links", {"session_id": "s1", "valid_from": 0, "workflow_id": "wf-1", "task_id": "task-1"})])
    assert late.scalar("SELECT task_id FROM requests WHERE request_id = 'r1'") == "task-1"
    assert _mismatches(late) == {} and _mismatches(early) == {}


def test_an_agents_context_reads_again_only_it_and_the_agents_below_it(tmp_path):
    """A SubagentStart changes the facts of that agent and of the agents it spawned (their top stage),
    never the main thread's or its other subagents': only those are read and resolved again, and the
    end is the same as writing everything at once."""
    facts = [_req("m1", agent=None), _req("r1", agent="a1", minutes=2), _req("r2", agent="a2", minutes=3),
             _req("r4", agent="a4", minutes=4),
             ("agents", {"agent_id": "a2", "session_id": "s1", "agent_type": "custom", "spawn_tool_use_id": "sp-a2"}),
             ("agents", {"agent_id": "a4", "session_id": "s1", "agent_type": "tester"}),
             ("tool_calls", {"tool_use_id": "sp-a2", "session_id": "s1", "agent_id": "a1", "tool_name": "Agent",
                             "timestamp": T0, "success": True})]
    late, early = Store(tmp_path / "late.duckdb"), Store(tmp_path / "early.duckdb")
    _write(late, facts)
    # an agent without facts yet (its SubagentStart came first, as it does): nothing is read again
    late.con.execute("DROP TABLE IF EXISTS _res_cur_api_requests")  # (the first write's, re-resolving a2)
    _write(late, [("agents", {"agent_id": "a9", "session_id": "s1", "agent_type": "planner"})])
    assert not late.con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = '_res_cur_api_requests'").fetchall()
    # a1's type: a1 and a2, which it spawned, take it as their top stage; m1 and a4 are not read
    a1 = [("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "implementer"})]
    _write(late, a1)
    read = {r[0] for r in late.con.execute("SELECT request_id FROM _res_cur_api_requests").fetchall()}
    assert read == {"r1", "r2"}
    _write(early, a1 + [("agents", {"agent_id": "a9", "session_id": "s1", "agent_type": "planner"})] + facts)
    assert _resolved(late) == _resolved(early)
    assert late.query("SELECT request_id, top_stage FROM requests ORDER BY 1") == [
        {"request_id": "m1", "top_stage": "main"}, {"request_id": "r1", "top_stage": "implementer"},
        {"request_id": "r2", "top_stage": "implementer"}, {"request_id": "r4", "top_stage": "tester"}]
    assert _mismatches(late) == {} and _mismatches(early) == {}


def test_a_compaction_written_before_its_sessions_context_ends_as_in_the_other_order(tmp_path):
    """A compaction is resolved as the requests around it: the session's workflow link and the
    subagent's type arriving after it move it, as they move the requests."""
    def compaction(key: str, agent: str | None, minutes: int, **kw) -> tuple[str, dict]:
        return ("compaction_events", {"event_key": key, "source": "otel", "session_id": "s1", "agent_id": agent,
                                      "prompt_id": f"p-{key}", "timestamp": T0 + timedelta(minutes=minutes),
                                      "trigger": "auto", "pre_tokens": 90_000, "post_tokens": 20_000, **kw})
    facts = [_req("r1", agent=None, minutes=4), _req("r2", agent="a1", minutes=5),
             compaction("c1", None, 4), compaction("c2", "a1", 5), compaction("c3", None, 1)]
    context = [("workflows", {"workflow_id": "wf-1", "path": "full", "experiment_id": "exp-a"}),
               ("workflow_links", {"session_id": "s1", "valid_from": T0 + timedelta(minutes=3), "workflow_id": "wf-1",
                                   "task_id": "task-9"}),
               ("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "planner"})]
    question = "SELECT prompt_id, workflow_id, stage, task_id, experiment_id, tokens_saved FROM compactions ORDER BY 1"
    late, early = Store(tmp_path / "late.duckdb"), Store(tmp_path / "early.duckdb")
    _write(late, facts)
    assert {(r["workflow_id"], r["stage"]) for r in late.query(question)} == {("session-s1", "main"), ("session-s1", "subagent")}
    _write(late, context)
    _write(early, context + facts)
    assert late.query(question) == early.query(question)
    assert late.query(question) == [
        {"prompt_id": "p-c1", "workflow_id": "wf-1", "stage": "main", "task_id": "task-9", "experiment_id": "exp-a",
         "tokens_saved": 70_000},
        {"prompt_id": "p-c2", "workflow_id": "wf-1", "stage": "planner", "task_id": "task-9", "experiment_id": "exp-a",
         "tokens_saved": 70_000},
        # before the link's time: the session's own workflow, as a request then would be
        {"prompt_id": "p-c3", "workflow_id": "session-s1", "stage": "main", "task_id": None, "experiment_id": None,
         "tokens_saved": 70_000}]
    # each compaction in the workflow and stage of the request beside it
    assert [(r["workflow_id"], r["stage"]) for r in late.query("SELECT workflow_id, stage FROM requests ORDER BY request_id")] \
        == [("wf-1", "main"), ("wf-1", "planner")]
    assert _resolved(late) == _resolved(early)
    assert _mismatches(late) == {} and _mismatches(early) == {}


def _staged_session_sources(tmp_path: Path) -> tuple[Batch, Batch]:
    """A ``claude -p --agent analyst`` process of a launcher that names the workflow and the stage only
    in ``OTEL_RESOURCE_ATTRIBUTES``, as the real parsers read it: OTel saw its first request, the
    transcript both. (Claude Code waits 2 s for its last OTLP export at exit; on a loaded machine that
    export is lost, and the last request is in the transcript alone.)"""
    sid = "5b5068c2-0000-4000-8000-000000000001"
    res = [{"key": k, "value": {"stringValue": v}} for k, v in
           (("service.name", "claude-code"), ("workflow_id", "wf-staged"), ("stage", "analyst"), ("task_id", "KIT-7"))]
    attrs = {"event.name": "api_request", "session.id": sid, "model": "claude-haiku-4-5", "input_tokens": "1200",
             "output_tokens": "300", "cache_read_tokens": "4000", "cache_creation_tokens": "500", "request_id": "req_1"}
    otlp = Batch()
    logs_to_batch({"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [{"logRecords": [{
        "timeUnixNano": str(int(T0.replace(tzinfo=UTC).timestamp() * 1e9)), "body": {"stringValue": "claude_code.api_request"},
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}]}]}]}, otlp)
    path = tmp_path / "projects" / "-home-dev-work-greeter" / f"{sid}.jsonl"
    path.parent.mkdir(parents=True)
    lines = [{"type": "assistant", "sessionId": sid, "requestId": f"req_{i}", "uuid": f"u{i}", "cwd": "/home/dev/work/greeter",
              "timestamp": (T0 + timedelta(seconds=i)).isoformat() + "Z",
              "message": {"id": f"msg_{i}", "role": "assistant", "model": "claude-haiku-4-5",
                          "content": [{"type": "text", "text": "done"}],
                          "usage": {"input_tokens": 1200, "output_tokens": 300, "cache_read_input_tokens": 4000,
                                    "cache_creation_input_tokens": 500}}} for i in (1, 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    transcript = Batch()
    transcripts.parse_lines(transcripts.TranscriptFile.from_path(path), path.read_bytes(), 1, transcript)
    assert [r["request_id"] for r in transcript.rows["api_requests"]] == ["req_1", "req_2"]
    return otlp, transcript


@pytest.mark.parametrize("order", [["otlp", "transcript"], ["transcript", "otlp"], ["transcript", "linked", "otlp"]])
def test_a_request_seen_only_in_its_transcript_takes_its_sessions_stage_from_the_resource(tmp_path, order):
    """The resource attributes name the workflow and the stage of the whole process: a request whose
    OTel record never came (only its transcript line) is at the stage the session's others are at,
    as it is in their workflow, whichever source came first; also when the session was linked to the
    workflow before (``record_workflow``'s link, no stage) and OTel adds the stage to that link."""
    otlp, transcript = _staged_session_sources(tmp_path)
    sid = transcript.rows["api_requests"][0]["session_id"]
    linked = Batch(rows={"workflow_links": [{"session_id": sid, "valid_from": 0, "workflow_id": "wf-staged",
                                             "task_id": "KIT-7", "source": "mcp"}]})
    store = Store(tmp_path / "g.duckdb")
    for name in order:
        store.write({"otlp": otlp, "transcript": transcript, "linked": linked}[name])
    rows = store.query("SELECT request_id, workflow_id, stage, task_id FROM requests ORDER BY 1")
    assert rows == [{"request_id": f"req_{i}", "workflow_id": "wf-staged", "stage": "analyst", "task_id": "KIT-7"}
                    for i in (1, 2)]
    # the answers' rollups too (query_workflow_cost by stage reads them)
    assert store.query("SELECT stage, CAST(sum(requests) AS INTEGER) AS n FROM rollup_requests GROUP BY ALL "
                       "HAVING sum(requests) > 0") == [{"stage": "analyst", "n": 2}]
    assert _mismatches(store) == {}
    store.close()


def test_a_nested_subagent_rolls_up_once_its_spawning_call_arrives(tmp_path):
    store = Store(tmp_path / "g.duckdb")
    _write(store, [("agents", {"agent_id": "outer", "session_id": "s1", "agent_type": "implementer"}),
                   ("agents", {"agent_id": "inner", "session_id": "s1", "agent_type": "analyst", "spawn_tool_use_id": "sp1"}),
                   _req("r1", agent="inner")])
    assert store.query("SELECT stage, top_stage FROM requests")[0] == {"stage": "analyst", "top_stage": "analyst"}
    # the outer agent's Agent call that spawned it arrives later (another source)
    _write(store, [("tool_calls", {"tool_use_id": "sp1", "session_id": "s1", "agent_id": "outer", "tool_name": "Agent"})])
    assert store.query("SELECT stage, top_stage FROM requests")[0] == {"stage": "analyst", "top_stage": "implementer"}
    assert _mismatches(store) == {}


def test_a_write_rolled_back_takes_its_agent_tree_with_it(tmp_path):
    # writes whose agents are stored as before reuse the tree the last one built (resolve.TreeCache);
    # a write that fails rolls that tree back, so the next one must not take it as built
    store = Store(tmp_path / "g.duckdb")
    _write(store, [("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "planner"}),
                   ("agents", {"agent_id": "a2", "session_id": "s1", "agent_type": "reviewer"}), _req("r1", agent="a1")])
    _write(store, [_req("r2", agent="a1", minutes=2)])  # the same agents: the tree as built

    def fail(con, changed):
        raise RuntimeError("a hook fails after the tree of a2 was built")

    store.on_fact_changes(fail)
    with pytest.raises(RuntimeError):
        _write(store, [_req("r3", agent="a2", minutes=3)])
    store._fact_hooks.remove(fail)
    _write(store, [_req("r4", agent="a2", minutes=4)])
    _write(store, [_req("r5", agent="a1", minutes=5)])
    got = {r["request_id"]: r["agent"] for r in store.query("SELECT request_id, agent FROM requests")}
    assert got == {"r1": "planner", "r2": "planner", "r4": "reviewer", "r5": "planner"}
    assert _mismatches(store) == {}


def test_declared_context_and_a_price_change_reach_stored_facts(tmp_path, monkeypatch):
    store = Store(tmp_path / "g.duckdb")
    _write(store, [_req("r1", agent=None), _req("r2", model="claude-sonnet-4-5-20250929", agent=None)])
    assert {r["cost_source"] for r in store.query("SELECT cost_source FROM requests")} == {"price_table"}
    _write(store, [("agent_context", {"agent_id": "s1", "workflow_id": "wf-d", "stage": "review"})])
    assert {(r["workflow_id"], r["stage"]) for r in store.query("SELECT workflow_id, stage FROM requests")} == {("wf-d", "review")}
    before = store.scalar("SELECT sum(cost_usd) FROM requests")
    store.close()
    prices = tmp_path / "prices.json"
    prices.write_text('{"as_of": "test", "models": {"claude-sonnet-4-5": {"input": 30, "output": 150, "cache_read": 3, '
                      '"cache_write_5m": 37.5, "cache_write_1h": 60}}}')
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "settings.json").write_text(f'{{"price_file": "{prices}"}}')
    store = Store(tmp_path / "g.duckdb")
    assert store.settings.price_file
    assert store.scalar("SELECT sum(cost_usd) FROM requests") == pytest.approx(before * 10)
    assert _mismatches(store) == {}


# -- late context, the real Claude Code data ----------------------------------------------------

def _import(tmp_path: Path, name: str, order: list[str]) -> Store:
    return import_fixture(Store(tmp_path / name), FIXTURES, order)


@pytest.mark.parametrize("order", [["transcripts", "otlp", "hooks"], ["hooks", "transcripts", "otlp"]])
def test_otlp_after_transcripts_ends_in_the_same_resolved_rows(tmp_path, order):
    one = _import(tmp_path, "one.duckdb", order)
    other = _import(tmp_path, "other.duckdb", ["otlp", "hooks", "transcripts"])
    assert _resolved(one) == _resolved(other)
    assert _mismatches(one) == {}


# -- migration of a store written before resolved facts ----------------------------------------

def _old_store(path: Path, version: int) -> duckdb.DuckDBPyConnection:
    """A database at schema ``version``, as a golem-mcp of that time left it (migrations up to it)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, name in _migrations():
        if v <= version:
            con.execute(_sql(name))
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [v])
    return con


def test_a_store_of_the_old_schema_upgrades_in_place(tmp_path):
    new = _import(tmp_path, "new.duckdb", ["transcripts", "otlp", "hooks"])
    expected = _resolved(new)
    # (the columns of migrations after 006, such as 010's typed telemetry, stay empty in an old store)
    question = ("SELECT workflow_id, stage, top_stage, count(*) AS n, sum(input_tokens + output_tokens) AS tokens, "
                "round(sum(cost_usd), 9) AS cost FROM requests GROUP BY ALL ORDER BY ALL")
    answer = new.query(question)
    new.close()
    old_path = tmp_path / "old.duckdb"
    con = _old_store(old_path, 6)
    con.execute(f"ATTACH '{tmp_path / 'new.duckdb'}' AS src (READ_ONLY)")
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                        "AND table_name <> 'schema_migrations'").fetchall()]
    for t in tables:
        cols = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                                          "AND table_name = ?", [t]).fetchall()]
        assert not any(c.startswith("r_") for c in cols)
        col_list = ", ".join(f'"{c}"' for c in cols)
        con.execute(f'INSERT INTO "{t}" ({col_list}) SELECT {col_list} FROM src."{t}"')
    assert con.execute("SELECT count(*) FROM api_requests").fetchone()[0] == len(expected["api_requests"])
    con.close()

    store = Store(old_path)  # upgrades in place: migration 007 resolves every stored fact
    assert store.scalar("SELECT max(version) FROM schema_migrations") >= 7
    assert _resolved(store) == expected
    assert store.query(question) == answer
    assert _mismatches(store) == {}
    assert store.scalar("SELECT count(*) FROM resolve_owners") > 0


def test_compactions_of_a_store_before_012_are_resolved_at_open(tmp_path):
    """Migration 012 makes compactions resolved facts: the ones a store already holds get their
    workflow and stage when it opens, as if written now."""
    path = tmp_path / "old.duckdb"
    con = _old_store(path, 10)
    con.execute("INSERT INTO workflow_links (session_id, valid_from, workflow_id, task_id) VALUES ('s1', ?, 'wf-1', 'task-9')",
                [T0])
    con.execute("INSERT INTO agents (agent_id, session_id, agent_type) VALUES ('a1', 's1', 'planner')")
    con.execute("INSERT INTO compaction_events (event_key, source, session_id, agent_id, \"timestamp\", pre_tokens, "
                "post_tokens) VALUES ('c1', 'otel', 's1', 'a1', ?, 900, 200), ('c2', 'otel', 's2', NULL, ?, 50, 10)",
                [T0 + timedelta(minutes=1), T0])
    con.close()
    store = Store(path)
    assert store.query("SELECT session_id, workflow_id, stage, task_id, tokens_saved FROM compactions ORDER BY 1") == [
        {"session_id": "s1", "workflow_id": "wf-1", "stage": "planner", "task_id": "task-9", "tokens_saved": 700},
        {"session_id": "s2", "workflow_id": "session-s2", "stage": "main", "task_id": None, "tokens_saved": 40}]
    assert _mismatches(store) == {}
    assert store.scalar("SELECT count(*) FROM resolve_owners WHERE owner IN ('s:s1', 's:s2', 'a:a1', 'w:wf-1')") == 4


# -- random interleavings -------------------------------------------------------------------------

SESSIONS = {"s1": ("a1", "a2"), "s2": ("a3",)}
MODELS = ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-opus-4-1", "unknown-model")


def _agent_of(draw, sid):
    return draw(st.sampled_from((None, *SESSIONS[sid])))


@st.composite
def pieces(draw):
    """A list of (table, row): facts (some sent twice, as two sources would) and context."""
    out = []
    n = draw(st.integers(3, 14))
    for i in range(n):
        kind = draw(st.sampled_from(("request", "request", "tool", "error", "span", "again", "session", "agent",
                                     "workflow", "link", "declared", "spawn")))
        sid = draw(st.sampled_from(sorted(SESSIONS)))
        agent = _agent_of(draw, sid)
        ts = T0 + timedelta(minutes=draw(st.integers(0, 9)))
        wf = draw(st.sampled_from((None, None, "wf-1", "wf-2")))
        if kind in ("request", "again"):
            rid = f"r{draw(st.integers(0, 5))}" if kind == "again" else f"r{i}"
            out.append(("api_requests", {"request_id": rid, "session_id": sid, "agent_id": agent, "timestamp": ts,
                                         "model": draw(st.sampled_from(MODELS)), "workflow_id": wf,
                                         "input_tokens": draw(st.integers(0, 1000)), "output_tokens": draw(st.integers(0, 500)),
                                         "cache_read_tokens": 10, "cache_creation_tokens": 5,
                                         "recorded_cost_usd": draw(st.sampled_from((None, 0.5)))}))
        elif kind == "tool":
            out.append(("tool_calls", {"tool_use_id": f"t{i}", "session_id": sid, "agent_id": agent, "timestamp": ts,
                                       "tool_name": "Read", "success": draw(st.booleans()), "workflow_id": wf}))
        elif kind == "spawn":
            out.append(("tool_calls", {"tool_use_id": "sp-a2", "session_id": "s1", "agent_id": "a1", "timestamp": ts,
                                       "tool_name": "Agent", "success": True}))
        elif kind == "error":
            out.append(("api_errors", {"error_key": f"e{i}", "session_id": sid, "agent_id": agent, "timestamp": ts,
                                       "status_code": 529, "error": "overloaded"}))
        elif kind == "span":
            out.append(("spans", {"span_id": f"p{i}", "session_id": sid, "agent_id": agent, "start_time": ts,
                                  "name": "phase", "span_type": "phase", "stage": draw(st.sampled_from((None, "PLAN")))}))
        elif kind == "session":
            out.append(("sessions", {"session_id": sid, "cwd": draw(st.sampled_from(("/home/u/p", "/tmp/q"))),
                                     "git_branch": draw(st.sampled_from(("main", "dev")))}))
        elif kind == "agent":
            aid = draw(st.sampled_from(SESSIONS[sid]))
            out.append(("agents", {"agent_id": aid, "session_id": sid, "agent_type": draw(st.sampled_from(("custom", "planner", "reviewer"))),
                                   "spawn_tool_use_id": "sp-a2" if aid == "a2" else None}))
        elif kind == "workflow":
            out.append(("workflows", {"workflow_id": draw(st.sampled_from(("wf-1", "wf-2"))),
                                      "path": draw(st.sampled_from(("full", "fast-track"))),
                                      "complexity": draw(st.sampled_from(("simple", "complex"))),
                                      "experiment_id": draw(st.sampled_from((None, "exp-1")))}))
        elif kind == "link":
            out.append(("workflow_links", {"session_id": sid, "valid_from": ts, "workflow_id": draw(st.sampled_from(("wf-1", "wf-2"))),
                                           "task_id": draw(st.sampled_from((None, "task-1"))),
                                           "stage": draw(st.sampled_from((None, "analyst")))}))
        else:
            out.append(("agent_context", {"agent_id": agent or sid, "workflow_id": draw(st.sampled_from((None, "wf-2"))),
                                          "stage": draw(st.sampled_from((None, "review")))}))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(out) - 1)), max_size=4)))
    return out, cuts


class Rollup:
    """An aggregate kept from the change set alone, as rollups do: per (workflow, stage)."""

    def __init__(self) -> None:
        self.sums: dict[tuple, list[float]] = {}

    def __call__(self, con, changed: dict[str, int]) -> None:
        for sign, which in ((-1, "old"), (1, "new")):
            if "api_requests" in changed:
                for wf, stage, n, tok, cost in con.execute(
                        f"SELECT r_workflow_id, r_stage, count(*), sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), "
                        f"sum(COALESCE(r_cost_usd, 0)) FROM golem_delta_{which}_api_requests GROUP BY ALL").fetchall():
                    s = self.sums.setdefault(("req", wf, stage), [0, 0, 0.0])
                    s[0] += sign * n
                    s[1] += sign * tok
                    s[2] += sign * cost
            if "tool_calls" in changed:
                for wf, stage, n in con.execute(f"SELECT r_workflow_id, r_stage, count(*) FROM golem_delta_{which}_tool_calls "
                                                "GROUP BY ALL").fetchall():
                    s = self.sums.setdefault(("tool", wf, stage), [0, 0, 0.0])
                    s[0] += sign * n

    def table(self) -> dict[tuple, tuple]:
        return {k: (v[0], v[1], round(v[2], 9)) for k, v in self.sums.items() if v[0] or v[1] or abs(v[2]) > 1e-9}


def _group_by(store: Store) -> dict[tuple, tuple]:
    out = {}
    for wf, stage, n, tok, cost in store.con.execute(
            "SELECT r_workflow_id, r_stage, count(*), sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), "
            "sum(COALESCE(r_cost_usd, 0)) FROM api_requests GROUP BY ALL").fetchall():
        out[("req", wf, stage)] = (n, tok, round(cost, 9))
    for wf, stage, n in store.con.execute("SELECT r_workflow_id, r_stage, count(*) FROM tool_calls GROUP BY ALL").fetchall():
        out[("tool", wf, stage)] = (n, 0, 0.0)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=pieces())
def test_random_interleavings_resolve_as_from_scratch(tmp_path_factory, data):
    rows, cuts = data
    store = Store(tmp_path_factory.mktemp("prop") / "g.duckdb")
    roll = Rollup()
    store.on_fact_changes(roll)
    try:
        for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
            if lo < hi:
                _write(store, rows[lo:hi])
        assert _mismatches(store) == {}
        got, want = roll.table(), _group_by(store)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k][:2] == want[k][:2] and math.isclose(got[k][2], want[k][2], rel_tol=1e-9, abs_tol=1e-9), k
    finally:
        store.close()


# -- doctor -------------------------------------------------------------------------------------

def test_doctor_names_facts_that_do_not_resolve_as_from_scratch(tmp_path, monkeypatch):
    from golem_mcp.kit.doctor import FAIL, OK, check_resolution

    db = tmp_path / "g.duckdb"
    monkeypatch.setenv("GOLEM_DB", str(db))
    store = Store(db)
    _write(store, [_req("r1"), _req("r2", agent=None), ("agents", {"agent_id": "a1", "session_id": "s1", "agent_type": "planner"})])
    store.close()
    for verify in (False, True):
        c = check_resolution(None, verify=verify)
        assert c.status == OK, c
    with Store(db) as store:  # a fact changed around the resolver
        store.con.execute("UPDATE api_requests SET r_stage = 'wrong' WHERE request_id = 'r1'")
    c = check_resolution(None, verify=True)
    assert c.status == FAIL and "api_requests: 1 rows differ" in c.detail and "r1: r_stage is 'wrong', expected 'planner'" in c.detail
    with Store(db) as store:
        store.resolve_all()
    assert check_resolution(None, verify=True).status == OK


def test_cache_writes_priced_when_the_split_is_zero(tmp_path):
    """Cache writes whose 5-minute/1-hour split is missing or all zero are priced from their total at the
    5-minute rate (a split of 0 + 0 under a positive total priced them at nothing)."""
    with Store(tmp_path / "g.duckdb") as store:
        price = store.query("SELECT * FROM prices WHERE model = 'claude-sonnet-4-5'")[0]
        _write(store, [_req("r-split0", cache_creation_5m_tokens=0, cache_creation_1h_tokens=0),
                       _req("r-nosplit", minutes=2),
                       _req("r-split", minutes=3, cache_creation_5m_tokens=4, cache_creation_1h_tokens=6)])
        got = {r["request_id"]: r["calculated_cost_usd"] for r in store.query("SELECT * FROM requests")}
        base = (100 * price["input_per_mtok"] + 50 * price["output_per_mtok"] + 1000 * price["cache_read_per_mtok"]) / 1e6
        whole = base + 10 * price["cache_write_5m_per_mtok"] / 1e6
        assert got["r-split0"] == pytest.approx(whole) and got["r-nosplit"] == pytest.approx(whole)
        assert got["r-split"] == pytest.approx(
            base + (4 * price["cache_write_5m_per_mtok"] + 6 * price["cache_write_1h_per_mtok"]) / 1e6)


def test_many_keys_take_semi_joins_and_resolve_the_same(tmp_path, monkeypatch):
    """A write naming more keys than an IN list takes (a large import's) looks them up by semi-joins:
    the same resolved rows as IN lists, and as from scratch, late context included."""
    def rows(n: int) -> tuple[list, list]:
        first, late = [], []
        for i in range(n):
            sid, parent, child = f"s{i}", f"p{i}", f"c{i}"
            first += [("sessions", {"session_id": sid, "project": f"proj{i % 3}", "cwd": f"/w/{i}"}),
                      ("agents", {"agent_id": parent, "session_id": sid, "agent_type": "planner"}),
                      ("tool_calls", {"tool_use_id": f"t{i}", "session_id": sid, "agent_id": parent, "tool_name": "Agent",
                                      "timestamp": T0}),
                      _req(f"rp{i}", sid, parent), _req(f"rc{i}", sid, child, minutes=2), _req(f"rm{i}", sid, None)]
            # the child's spawning call and the session's workflow arrive after its requests
            late += [("agents", {"agent_id": child, "session_id": sid, "agent_type": "implementer",
                                 "spawn_tool_use_id": f"t{i}"}),
                     ("workflow_links", {"session_id": sid, "valid_from": T0, "workflow_id": f"wf{i % 4}"})]
        return first, late

    got = {}
    for label, chunk in (("in_lists", resolve._CHUNK), ("semi_joins", 3)):
        monkeypatch.setattr(resolve, "_CHUNK", chunk)
        with Store(tmp_path / f"{label}.duckdb") as store:
            first, late = rows(12)
            _write(store, first)
            _write(store, late)
            assert _mismatches(store) == {}
            got[label] = _resolved(store)
    assert got["semi_joins"] == got["in_lists"]
    stages = {r[0]: (r[1], r[2], r[3]) for r in got["in_lists"]["api_requests"]}
    assert stages["rc5"] == ("wf1", "implementer", "planner")  # workflow link, own type, top stage from its parent


# -- each rule written once ---------------------------------------------------------------------

def test_a_review_report_counts_for_its_workflow_else_its_parent_everywhere(tmp_path):
    """A report that names no workflow is its parent's, in the per-workflow views and the loops
    analysis alike (resolve.sql's golem_report_workflow)."""
    from golem_mcp.analysis.loops import find_loops

    store = Store(tmp_path / "g.duckdb")
    _write(store, [_req("r1", agent=None, minutes=1),
                   ("workflows", {"workflow_id": "wf-p", "started_at": T0}),
                   ("workflow_links", {"session_id": "s1", "valid_from": T0, "workflow_id": "wf-p"}),
                   ("review_reports", {"report_id": "rp1", "v": 1, "ts": T0 + timedelta(minutes=2), "task": "wf-p.review",
                                       "parent": "wf-p", "critical": 2, "major": 0, "minor": 1, "rework": True}),
                   ("review_issues", {"report_id": "rp1", "idx": 0, "severity": "critical", "category": "bug",
                                      "summary": "off by one"})])
    assert store.query("SELECT workflow_id FROM claude_metrics") == [{"workflow_id": "wf-p"}]
    assert store.query("SELECT workflow_id FROM review_issue_rows") == [{"workflow_id": "wf-p"}]
    assert store.query("SELECT critical_issues, rework FROM workflow_summary WHERE workflow_id = 'wf-p'") == [
        {"critical_issues": 2, "rework": True}]
    answer = find_loops(store, days=2, now=T0 + timedelta(days=1), workflow_id="wf-p")
    assert [r.workflow_id for r in answer.rework] == ["wf-p"]


def test_the_grouped_cost_answer_totals_the_cache_hit_rate_as_the_store_does(tmp_path):
    from golem_mcp.analysis.workflows import query_workflow_cost

    store = Store(tmp_path / "g.duckdb")
    _write(store, [_req("r1", agent=None), _req("r2", agent="a1", input_tokens=7, cache_read_tokens=300),
                   ("workflow_links", {"session_id": "s1", "valid_from": T0, "workflow_id": "wf-1"})])
    grouped = query_workflow_cost(store, workflow_id="wf-1", group_by=["stage"]).total.cache_hit_rate
    whole = store.scalar("SELECT golem_cache_hit_rate(sum(cache_read_tokens), sum(input_tokens), "
                         "sum(cache_creation_tokens)) FROM requests")
    assert grouped == pytest.approx(whole, abs=1e-4) and 0 < whole < 1


def test_attribution_rules_are_written_only_in_resolve_sql():
    """The stage of an agent, a review report's workflow and a fact's workflow are macros of
    resolve.sql; no other source restates them."""
    src = Path(__file__).resolve().parents[1] / "src" / "golem_mcp"
    restated: dict[str, list[str]] = {r"COALESCE\(.*'subagent'\)": [], r"COALESCE\(workflow_id, parent\)": [],
                                      r"COALESCE\(emitted, agent_ctx": [], r"'session-' \|\|": []}
    for path in sorted([*src.rglob("*.py"), *src.rglob("*.sql")]):
        if path.name == "resolve.sql":
            continue
        text = path.read_text()
        for pattern, where in restated.items():
            if re.search(pattern, text):
                where.append(path.name)
    assert restated == {p: [] for p in restated}
