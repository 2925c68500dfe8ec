"""Every MCP tool through the real ``mcp`` client (in process) over the real Claude Code fixtures.

Answers are checked against truth.json (what the scripted model actually served), not against
numbers copied from our own output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from golem_mcp.config import Settings
from golem_mcp.ingestion.importer import Importer
from golem_mcp.interfaces.mcp_server import _drop_none, build_server
from golem_mcp.interfaces.toolsets import TOOLSETS
from golem_mcp.store import Store

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())
KEYS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
        "cache_write": "cache_creation_tokens"}
READ_ONLY_TOOLS = set(TOOLSETS["reader"])
WRITE_TOOLS = set(TOOLSETS["workflow"] + TOOLSETS["reviewer"] + TOOLSETS["maintainer"])


@pytest.fixture(scope="module")
def base_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two imported stores, made once: everything, and transcripts only (no OTel workflow context)."""
    d = tmp_path_factory.mktemp("mcp-base")
    out = {}
    for name, paths in (("all", [FIX]), ("transcripts", [FIX / "home"])):
        with Store(d / f"{name}.duckdb", settings=Settings()) as s:
            res = Importer(s).run(paths)
            assert not res.skipped
        out[name] = d / f"{name}.duckdb"
    return out


def _open(base: Path, tmp_path: Path) -> Store:
    db = tmp_path / "golem.duckdb"
    shutil.copy(base, db)
    return Store(db, settings=Settings())


@pytest.fixture
def store(base_dbs: dict[str, Path], tmp_path: Path, golem_home: Path) -> Store:
    s = _open(base_dbs["all"], tmp_path)
    yield s
    s.close()


@pytest.fixture
def bare_store(base_dbs: dict[str, Path], tmp_path: Path, golem_home: Path) -> Store:
    s = _open(base_dbs["transcripts"], tmp_path)
    yield s
    s.close()


def mcp(store: Store) -> Client:
    """An in-process client (a context manager per test: async fixtures would cross tasks)."""
    return Client(build_server(lambda: store, wait_for_caller_s=0.3))


async def call(c: Client, name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    r = await c.call_tool(name, args or {}, **kw)
    assert not r.is_error, r.content[0].text
    # one copy of the data (structured, no nulls); the text is the one-line summary
    assert r.structured_content == _drop_none(r.structured_content)
    assert r.content[0].text == r.structured_content["summary"] and "\n" not in r.content[0].text
    return r.structured_content


def rows(tbl: dict[str, Any]) -> list[dict[str, Any]]:
    """A columns+rows table as dicts."""
    return [dict(zip(tbl["columns"], r, strict=True)) for r in tbl["rows"]]


async def error(c: Client, name: str, args: dict[str, Any]) -> str:
    r = await c.call_tool(name, args)
    assert r.is_error, r
    return r.content[0].text



def _session_of(wf: str) -> str:
    return TRUTH[wf]["session_id"]


# --- the tool list ---------------------------------------------------------------------------------

async def test_tools_listed_with_hints_and_findable_words(store: Store) -> None:
    async with mcp(store) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) >= READ_ONLY_TOOLS | WRITE_TOOLS
        for name in READ_ONLY_TOOLS:
            assert tools[name].annotations.read_only_hint is True, name
        for name in WRITE_TOOLS:
            assert tools[name].annotations.read_only_hint is False, name
        for t in tools.values():
            assert t.output_schema, f"{t.name} has no structured output"
            # every parameter described; no padding the model pays for
            for pname, prop in t.input_schema.get("properties", {}).items():
                assert prop.get("description"), (t.name, pname)
            text = json.dumps(t.input_schema)
            for noise in ('"title"', '"maxLength"', '{"type": "null"}'):
                assert noise not in text, (t.name, noise)
        # Claude Code defers MCP tools behind ToolSearch: the words people search with must be there
        text = " ".join((t.description or "").lower() for t in tools.values())
        for word in ("cost", "tokens", "findings", "workflow", "stage"):
            assert word in text
        assert "cost" in tools["query_workflow_cost"].description and "tokens" in tools["query_workflow_cost"].description
        assert "findings" in tools["report_review_findings"].description


# --- query_workflow_cost -------------------------------------------------------------------------------

@pytest.mark.parametrize("wf", sorted(TRUTH))
async def test_per_stage_tokens_equal_truth(store: Store, wf: str) -> None:
    async with mcp(store) as client:
        out = await call(client, "query_workflow_cost", {"workflow_id": wf})
        got = {g["stage"]: g for g in rows(out["groups"])}
        truth = TRUTH[wf]["stages"]
        assert set(got) == set(truth)
        for stage, t in truth.items():
            assert got[stage]["requests"] == t["requests"], (wf, stage)
            for k, col in KEYS.items():
                assert got[stage][col] == t[k], (wf, stage, k)
        assert out["total"]["input_tokens"] == sum(t["input"] for t in truth.values())
        assert out["total"]["cost_usd"] == pytest.approx(TRUTH[wf]["total_cost_usd"], abs=1e-4)  # 4 decimals
        # "which stage uses most tokens?" is answered directly
        most = max(truth, key=lambda s: sum(truth[s][k] for k in KEYS))
        assert out["top"] == most
        assert len(json.dumps(out)) < 2800  # ~700 tokens


async def test_cost_by_model_paging_and_empty_range(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "query_workflow_cost", {"experiment_id": "baseline", "group_by": ["workflow"],
                                                          "limit": 3})
        assert out["group_count"] == 4 and len(out["groups"]["rows"]) == 3
        assert "offset=3" in out["more"]
        rest = await call(client, "query_workflow_cost", {"experiment_id": "baseline", "group_by": ["workflow"],
                                                           "limit": 3, "offset": 3})
        assert len(rest["groups"]["rows"]) == 1 and "more" not in rest
        wfs = {g["workflow"] for g in rows(out["groups"]) + rows(rest["groups"])}
        assert wfs == {w for w, t in TRUTH.items() if t["experiment_id"] == "baseline"}
        empty = await call(client, "query_workflow_cost", {"since": "2001-01-01T00:00:00Z", "until": "2001-01-02"})
        assert empty["total"]["requests"] == 0 and empty["groups"]["rows"] == []


async def test_unknown_workflow_names_closest_ones(store: Store) -> None:
    async with mcp(store) as client:
        text = await error(client, "query_workflow_cost", {"workflow_id": "wf-9"})
        assert "no workflow 'wf-9'; closest: wf-0" in text
        text = await error(client, "query_errors_and_loops", {"workflow_id": "nope"})
        assert "no workflow 'nope'" in text



async def test_an_unknown_workflow_is_asked_again_and_a_known_one_stays_known(store: Store) -> None:
    """The ids a store was found to know are kept between calls; a no is not: a workflow recorded
    after an agent asked for it is found at the next call."""
    async with mcp(store) as client:
        assert "no workflow 'wf-late'" in await error(client, "budget_status", {"workflow_id": "wf-late"})
        await call(client, "record_workflow", {"workflow_id": "wf-late", "task_id": "t-late"})
        out = await call(client, "budget_status", {"workflow_id": "wf-late", "stage": "analyst"})
        assert out["workflow"]["key"] == "wf-late" and out["workflow"]["spent_usd"] == 0
        again = await call(client, "budget_status", {"workflow_id": "wf-late", "stage": "analyst"})
        assert again["workflow"] == out["workflow"] and again["stage"] == out["stage"]

# --- compare_experiments -------------------------------------------------------------------------------

async def test_compare_arms_on_analyst_input_tokens(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "compare_experiments", {"metric": "input_tokens", "stage": "analyst",
                                                         "expected": "decrease"})
        base = [t["stages"]["analyst"]["input"] for t in TRUTH.values() if t["experiment_id"] == "baseline"]
        arm = [t["stages"]["analyst"]["input"] for t in TRUTH.values() if t["experiment_id"] != "baseline"]
        assert out["baseline"] == "baseline"
        assert out["arms"]["baseline"]["n"] == len(base) == 4
        assert out["arms"]["analyst-file-limit-v2"]["n"] == len(arm) == 4
        assert out["arms"]["baseline"]["mean"] == sum(base) / 4 == 54000
        assert out["arms"]["analyst-file-limit-v2"]["median"] == 24000
        (c,) = out["comparisons"]
        assert c["difference"] == -30000 and c["ci_low"] <= -30000 <= c["ci_high"] < 0
        assert c["cliffs_delta"] == -1.0
        # 4 vs 4 with complete separation: significant (Mann-Whitney p < 0.05) ...
        assert c["p_value"] < 0.05
        # ... but seed 000 asks for 10+ runs per arm: inconclusive, run 6 more per arm
        assert c["verdict"] == "inconclusive" and c["more_runs_needed"] == 6
        assert "6 more" in c["reason"]
        assert c["guardrails"]["errors"]["worse"] is False
        # with the bar at 4 runs the same data confirm the hypothesis
        out4 = await call(client, "compare_experiments", {"metric": "input_tokens", "stage": "analyst",
                                                          "expected": "decrease", "min_runs": 4})
        assert out4["comparisons"][0]["verdict"] == "confirmed"
        # expecting the opposite direction, enough runs: rejected
        rej = await call(client, "compare_experiments", {"metric": "input_tokens", "stage": "analyst",
                                                         "expected": "increase", "min_runs": 4})
        assert rej["comparisons"][0]["verdict"] == "rejected"


async def test_compare_no_difference_is_not_confirmed(store: Store) -> None:
    async with mcp(store) as client:
        # the planner did not change between arms: identical tokens
        out = await call(client, "compare_experiments", {"metric": "tokens", "stage": "planner", "min_runs": 4})
        c = out["comparisons"][0]
        assert c["difference"] == 0 and c["verdict"] == "rejected"
        text = await error(client, "compare_experiments", {"arms": ["baseline", "nope"]})
        assert "no experiment 'nope'" in text and "baseline" in text


async def test_experiment_defined_compared_by_id_and_decided(store: Store) -> None:
    # seed 000's hypothesis process: define, compare by the stored definition, record the decision
    definition = {"v": 1, "experiment_id": "analyst-file-limit-v2",
                  "hypothesis": "Limiting the analyst to 20 files cuts analyst input tokens by 30%",
                  "arms": ["baseline", "analyst-file-limit-v2"], "metric": "input_tokens", "stage": "analyst",
                  "expected_change_pct": -30, "guardrails": ["errors", "review_findings"], "min_runs_per_arm": 4}
    async with mcp(store) as client:
        rec = await call(client, "record_experiment", {"definition_json": definition})
        assert rec["status"] == "defined" and "warnings" not in rec and "verdict" not in rec
        out = await call(client, "compare_experiments", {"experiment_id": "analyst-file-limit-v2"})
        # the same answer as asking with every parameter spelled out
        spelled = await call(client, "compare_experiments", {"metric": "input_tokens", "stage": "analyst",
                                                             "expected": "decrease", "min_runs": 4,
                                                             "arms": definition["arms"]})
        assert out["experiment_id"] == "analyst-file-limit-v2" and out["hypothesis"] == definition["hypothesis"]
        assert {k: v for k, v in out.items() if k not in ("experiment_id", "hypothesis")} == \
            {k: v for k, v in spelled.items() if k not in ("experiment_id", "hypothesis")}
        assert out["comparisons"][0]["verdict"] == "confirmed"
        decided = await call(client, "record_experiment", {"definition_json": json.dumps({
            **definition, "decision": {"verdict": "confirmed", "action": "kept as the new baseline"}})})
        assert decided["status"] == "decided" and decided["verdict"] == "confirmed"
        assert decided["created_at"] == rec["created_at"] and decided["decided_at"]
        # an arm nobody ran yet is pointed out; a bad definition lists each problem and stores nothing
        new = await call(client, "record_experiment", {"definition_json": {
            **definition, "experiment_id": "planner-v3", "arms": ["baseline", "planner-v3"]}})
        assert "planner-v3" in new["warnings"][0]
        text = await error(client, "record_experiment", {"definition_json": {
            "experiment_id": "x", "arms": ["only-one"], "metric": "vibes"}})
        for expected in ("'hypothesis' is a required property", "at /arms", "at /metric"):
            assert expected in text, (expected, text)
        text = await error(client, "compare_experiments", {"experiment_id": "x"})
        assert "no experiment 'x'" in text and "analyst-file-limit-v2" in text
    assert store.scalar("SELECT count(*) FROM experiments") == 2


# --- report_review_findings ---------------------------------------------------------------------------

FINDINGS = {"v": 1, "ts": "2026-01-31T20:49:38Z", "task": "wf-003.review", "parent": "wf-003",
            "severity": {"critical": 0, "major": 1, "minor": 1}, "categories": {"documentation": 1, "tests": 1},
            "issues": [{"severity": "major", "category": "tests", "file": "src/a.py", "line": 10,
                        "summary": "no test for the empty case"},
                       {"severity": "minor", "category": "documentation", "file": "README.md", "line": 3,
                        "summary": "typo"}]}


async def test_findings_stored_and_linked(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "report_review_findings", {"findings_json": FINDINGS})
        assert out["workflow_id"] == "wf-003" and out["task_id"] == "wf-003.review" and out["issues_stored"] == 2
        assert out["duplicate"] is False
        again = await call(client, "report_review_findings", {"findings_json": json.dumps(FINDINGS)})
        assert again["report_id"] == out["report_id"] and again["duplicate"] is True
        rows = store.query("SELECT workflow_id, severity, categories, len(issues) AS n FROM claude_metrics "
                           "WHERE report_id = ?", [out["report_id"]])
        assert rows == [{"workflow_id": "wf-003", "severity": {"critical": 0, "major": 1, "minor": 1},
                         "categories": {"documentation": 1, "tests": 1}, "n": 2}]
        wf = store.query("SELECT major_issues, minor_issues FROM workflow_summary WHERE workflow_id = 'wf-003'")
        assert wf[0]["major_issues"] >= 1 and wf[0]["minor_issues"] >= 1


async def test_findings_from_the_future_get_the_time_received(store: Store) -> None:
    # a model writes `ts` from what it believes the time is; a future ts would hide the review from
    # every window ending now, a past one (a backfill) is kept as given
    from datetime import UTC, datetime, timedelta
    now = datetime.now(UTC)
    async with mcp(store) as client:
        future = {**FINDINGS, "task": "t-future", "ts": (now + timedelta(hours=8)).isoformat()}
        out = await call(client, "report_review_findings", {"findings_json": future})
        assert any("in the future" in w for w in out["warnings"])
        past = {**FINDINGS, "task": "t-past", "ts": "2026-01-02T03:04:05Z"}
        out_past = await call(client, "report_review_findings", {"findings_json": past})
        assert "warnings" not in out_past
    rows = {r["task"]: r["ts"] for r in store.query(
        "SELECT task, ts FROM claude_metrics WHERE task IN ('t-future', 't-past')")}
    assert abs(rows["t-future"].replace(tzinfo=UTC) - now) < timedelta(minutes=1)
    assert rows["t-past"].replace(tzinfo=UTC) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_malformed_findings_list_each_problem_and_store_nothing(store: Store) -> None:
    async with mcp(store) as client:
        before = store.scalar("SELECT count(*) FROM review_reports")
        text = await error(client, "report_review_findings", {"findings_json": '{"v": 1, "task": '})
        assert "not valid JSON" in text and "line 1" in text
        bad = {"v": 2, "task": "", "severity": {"critical": -1, "major": 0},
               "issues": [{"severity": "huge", "summary": "x"}, {"summary": 3}]}
        text = await error(client, "report_review_findings", {"findings_json": bad})
        for expected in ("at /v", "at /task", "at /severity/critical", "'minor' is a required property",
                         "at /issues/0/severity", "at /issues/1"):
            assert expected in text, (expected, text)
        assert store.scalar("SELECT count(*) FROM review_reports") == before


# --- record_workflow / record_stage_usage -----------------------------------------------------------

async def test_record_workflow_links_session_and_subagents(bare_store: Store) -> None:
    sid = _session_of("wf-001")
    async with Client(build_server(lambda: bare_store, wait_for_caller_s=0.3)) as c:
        out = await call(c, "record_workflow", {"workflow_id": "wf-A", "path": "full", "complexity": "complex",
                                                "experiment_id": "exp-1", "task_id": "T-1", "session_id": sid})
        assert out["linked"] is True and out["linked_by"] == "argument"
        cost = await call(c, "query_workflow_cost", {"workflow_id": "wf-A"})
    got = {g["stage"]: g for g in rows(cost["groups"])}
    for stage, t in TRUTH["wf-001"]["stages"].items():
        assert got[stage]["requests"] == t["requests"] and got[stage]["input_tokens"] == t["input"]
    ws = bare_store.query("SELECT workflow_path, complexity_assessment, experiment_id FROM workflow_summary "
                          "WHERE workflow_id = 'wf-A'")
    assert ws == [{"workflow_path": "full", "complexity_assessment": "complex", "experiment_id": "exp-1"}]


async def test_a_workflow_recorded_again_keeps_its_link(bare_store: Store) -> None:
    """A master recording its workflow again (its status at the end) adds no link from now: the session
    already works for it. Another task, or another workflow, still starts a link of its own."""
    sid = _session_of("wf-001")

    def links() -> list[tuple[str, str | None]]:
        return [(r["workflow_id"], r["task_id"]) for r in bare_store.query(
            "SELECT workflow_id, task_id FROM workflow_links WHERE session_id = ? ORDER BY valid_from", [sid])]

    async with Client(build_server(lambda: bare_store, wait_for_caller_s=0.3)) as c:
        await call(c, "record_workflow", {"workflow_id": "wf-A", "session_id": sid})
        await call(c, "record_workflow", {"workflow_id": "wf-B", "task_id": "T-2", "session_id": sid})
        assert links() == [("wf-A", None), ("wf-B", "T-2")]
        await call(c, "record_workflow", {"workflow_id": "wf-B", "status": "completed", "session_id": sid})
        await call(c, "record_workflow", {"workflow_id": "wf-B", "task_id": "T-2", "session_id": sid})
        assert links() == [("wf-A", None), ("wf-B", "T-2")]
        await call(c, "record_workflow", {"workflow_id": "wf-B", "task_id": "T-3", "session_id": sid})
        assert links() == [("wf-A", None), ("wf-B", "T-2"), ("wf-B", "T-3")]
    assert bare_store.scalar("SELECT status FROM workflows WHERE workflow_id = 'wf-B'") == "completed"
    # the session's facts (all before the later links) stay with the first workflow
    assert bare_store.query("SELECT DISTINCT workflow_id FROM requests WHERE session_id = ?", [sid]) == [
        {"workflow_id": "wf-A"}]


async def test_session_found_from_claude_code_tool_use_id(bare_store: Store) -> None:
    """Claude Code sends _meta['claudecode/toolUseId']; the hook/transcript row of that call names the session."""
    sid = _session_of("wf-002")
    tuid = bare_store.scalar("SELECT tool_use_id FROM tool_calls WHERE session_id = ? AND agent_id IS NULL "
                             "ORDER BY timestamp LIMIT 1", [sid])
    async with Client(build_server(lambda: bare_store, wait_for_caller_s=0.3)) as c:
        out = await call(c, "record_workflow", {"workflow_id": "wf-B"}, meta={"claudecode/toolUseId": tuid})
        assert out["linked"] is True and out["linked_by"] == "tool_use_id" and out["session_id"] == sid
        unknown = await call(c, "record_workflow", {"workflow_id": "wf-C"},
                             meta={"claudecode/toolUseId": "toolu_never_seen"})
        assert unknown["linked"] is False and "hooks" in unknown["note"]
    n = bare_store.scalar("SELECT count(*) FROM requests WHERE workflow_id = 'wf-B'")
    assert n == sum(t["requests"] for t in TRUTH["wf-002"]["stages"].values())


async def test_stage_usage_observed_or_given(bare_store: Store) -> None:
    sid = _session_of("wf-004")
    agent = bare_store.scalar("SELECT agent_id FROM agent_tree WHERE session_id = ? AND agent_type = 'reviewer'", [sid])
    t = TRUTH["wf-004"]["stages"]["reviewer"]
    async with Client(build_server(lambda: bare_store, wait_for_caller_s=0.3)) as c:
        out = await call(c, "record_stage_usage", {"workflow_id": "wf-D", "stage": "review", "task_id": "T-4",
                                                   "status": "done", "session_id": sid, "agent_id": agent})
        assert out["usage_source"] == "observed"
        assert out["usage"]["input_tokens"] == t["input"] and out["usage"]["output_tokens"] == t["output"]
        assert out["observed_requests"] == t["requests"]
        given = await call(c, "record_stage_usage", {"workflow_id": "wf-D", "stage": "plan", "input_tokens": 5,
                                                     "output_tokens": 7, "cost_usd": 0.01,
                                                     "started_at": "2026-01-01T10:00:00Z",
                                                     "ended_at": "2026-01-01T10:05:00Z"})
        assert given["usage_source"] == "given" and given["usage"]["input_tokens"] == 5
        text = await error(c, "record_stage_usage", {"workflow_id": "wf-D", "stage": "x",
                                                     "started_at": "2026-01-02", "ended_at": "2026-01-01"})
        assert "before started_at" in text
        for bad in ({"input_tokens": 10**12}, {"cost_usd": 1e9}, {"output_tokens": -1}):
            text = await error(c, "record_stage_usage", {"workflow_id": "wf-D", "stage": "x", **bad})
            assert next(iter(bad)) in text  # refused, saying which number; nothing stored
        # NaN cannot cross JSON: it arrives as null, and nothing non-finite is stored
        out = await call(c, "record_stage_usage", {"workflow_id": "wf-D", "stage": "y", "cost_usd": float("nan")})
        assert out["usage"].get("cost_usd") is None
    # the reviewer's requests now count as stage 'review' of wf-D
    rows = bare_store.query("SELECT workflow_id, stage, count(*) AS n FROM requests WHERE agent_id = ? GROUP BY ALL",
                            [agent])
    assert rows == [{"workflow_id": "wf-D", "stage": "review", "n": t["requests"]}]


# --- query_errors -------------------------------------------------------------------------------------

async def test_errors_find_the_runaway_loop_and_the_retry(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "query_errors_and_loops", {"workflow_id": "wf-006"})
        (loop,) = [r for r in rows(out["loops"]) if r["failures"] >= 9]
        assert loop["stage"] == "implementer" and loop["workflow_id"] == "wf-006"
        assert out["workflows_with_loops"] == ["wf-006"]
        assert any(r["stage"] == "implementer" and r["tool_failures"] >= 9 for r in rows(out["by_stage"]))
        retry = await call(client, "query_errors_and_loops", {"workflow_id": "wf-008", "sections": ["retries"]})
        assert [r["stage"] for r in rows(retry["retries"])] == ["reviewer"] and "loops" not in retry
        clean = await call(client, "query_errors_and_loops", {"workflow_id": "wf-001"})
        assert clean["loops"]["rows"] == [] and clean["api_errors"]["rows"] == []


# --- query_sql ----------------------------------------------------------------------------------------

async def test_sql_reads_views(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "query_sql", {"sql": "SELECT stage, sum(input_tokens) AS input FROM "
                                                      "otel_api_request_events WHERE workflow_id = 'wf-001' "
                                                      "GROUP BY stage ORDER BY stage"})
        assert out["columns"] == ["stage", "input"]
        assert dict(out["rows"]) == {s: t["input"] for s, t in TRUTH["wf-001"]["stages"].items()}
        capped = await call(client, "query_sql", {"sql": "SELECT * FROM requests", "max_rows": 5})
        assert capped["row_count"] <= 5 and capped["truncated"] is True and "LIMIT" in capped["note"]
        wide = await call(client, "query_sql", {"sql": "SELECT * FROM tools", "max_rows": 500})
        assert wide["truncated"] is True and "characters" in wide["note"]
        assert len(json.dumps(wide["rows"])) < 8000


REFUSED_SQL = [
    "DELETE FROM api_requests",
    "UPDATE api_requests SET input_tokens = 0",
    "INSERT INTO settings VALUES ('a', 'b')",
    "DROP VIEW requests",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH '/tmp/other.duckdb' AS o",
    "COPY api_requests TO '/tmp/out.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA enable_profiling",
    "SET threads = 1",
    "EXPORT DATABASE '/tmp/x'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/hosts.csv'",
    "SELECT * FROM read_parquet('https://example.invalid/x.parquet')",
    "SELECT * FROM glob('/*')",
    "SELECT getenv('HOME')",
    "SELECT * FROM query('DELETE FROM api_requests')",
    "SELECT 1; DELETE FROM api_requests",
    "/* harmless */ DELETE FROM api_requests",
]
async def test_sql_refuses_writes_files_and_network(store: Store) -> None:
    async with mcp(store) as client:
        before = store.table_counts()
        for sql in REFUSED_SQL:
            text = await error(client, "query_sql", {"sql": sql})
            assert "not allowed" in text or "only read-only" in text or "outside" in text or "exactly one" in text \
                or "not a table" in text, (sql, text)
        assert store.table_counts() == before


async def test_sql_errors_say_where_to_look(store: Store) -> None:
    async with mcp(store) as client:
        text = await error(client, "query_sql", {"sql": "SELECT nope FROM requests"})
        assert "describe_schema" in text
        text = await error(client, "query_sql", {"sql": "SELEC 1"})
        assert "does not parse" in text


# --- describe_schema, resource, prompt -------------------------------------------------------------

async def test_schema_tool_resource_and_prompt(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "describe_schema")
        names = {v["name"] for v in out["views"]}
        assert {"requests", "workflow_summary", "workflow_stage_summary", "claude_metrics"} <= names
        one = await call(client, "describe_schema", {"view": "workflow_stage_summary"})
        cols = {c["name"]: c for c in one["columns"]}
        assert cols["cache_hit_rate"]["description"] and cols["input_tokens"]["type"] == "HUGEINT" or \
            cols["input_tokens"]["type"].startswith(("BIGINT", "HUGEINT", "DECIMAL", "INT"))
        text = await error(client, "describe_schema", {"view": "nope"})
        assert "views:" in text
        res = await client.read_resource("golem://schema")
        body = res.contents[0].text
        assert "## workflow_summary" in body and "cache_hit_rate" in body
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "analyze" in prompts
        p = await client.get_prompt("analyze", {"workflow_id": "wf-001"})
        assert "wf-001" in p.messages[0].content.text and "query_workflow_cost" in p.messages[0].content.text


# --- bad input ----------------------------------------------------------------------------------------

async def test_huge_argument_is_refused_and_nothing_written(store: Store) -> None:
    async with mcp(store) as client:
        before = store.table_counts()
        big = dict(FINDINGS, issues=[{"severity": "minor", "summary": "x" * 1000}] * 10_000)  # ~10 MB
        text = await error(client, "report_review_findings", {"findings_json": big})
        assert "limit" in text
        text = await error(client, "query_sql", {"sql": "SELECT 1 -- " + "x" * 10_000_000})
        assert "20000" in text.replace(",", "") or "limit" in text or "at most" in text
        assert store.table_counts() == before
        # and the server still answers
        ok = await call(client, "query_workflow_cost", {"workflow_id": "wf-001", "group_by": []})
        assert ok["total"]["requests"] == sum(t["requests"] for t in TRUTH["wf-001"]["stages"].values())


async def test_invalid_arguments_are_tool_errors(store: Store) -> None:
    async with mcp(store) as client:
        text = await error(client, "record_workflow", {"workflow_id": "wf-1", "path": "sideways"})
        assert "path" in text
        text = await error(client, "query_workflow_cost", {"workflow_id": "wf-001", "group_by": ["colour"]})
        assert "group_by" in text


async def test_master_recording_a_stage_does_not_relabel_its_own_requests(bare_store: Store) -> None:
    sid = _session_of("wf-005")
    tuid = bare_store.scalar("SELECT tool_use_id FROM tool_calls WHERE session_id = ? AND agent_id IS NULL "
                             "ORDER BY timestamp LIMIT 1", [sid])
    async with mcp(bare_store) as c:
        out = await call(c, "record_stage_usage", {"workflow_id": "wf-E", "stage": "analyst", "input_tokens": 1},
                         meta={"claudecode/toolUseId": tuid})
        assert out["session_id"] == sid and "agent_id" not in out
    stages = bare_store.query("SELECT DISTINCT stage FROM requests WHERE session_id = ? AND agent_id IS NULL", [sid])
    assert stages == [{"stage": "main"}]


# --- report_review_findings: the v1 fields as the tool's own arguments --------------------------------

async def test_findings_as_v1_arguments_and_unknown_parent(store: Store) -> None:
    async with mcp(store) as client:
        out = await call(client, "report_review_findings", {**FINDINGS, "task": "wf-003.review-2", "rework": True})
        assert out["workflow_id"] == "wf-003" and out["issues_stored"] == 2 and out["duplicate"] is False
        # the older wrapped form and the new form store the same report once
        again = await call(client, "report_review_findings", {"findings_json": {**FINDINGS, "task": "wf-003.review-2",
                                                                                 "rework": True}})
        assert again["report_id"] == out["report_id"] and again["duplicate"] is True
        text = await error(client, "report_review_findings", {**FINDINGS, "severity": {"critical": "none"}})
        assert "- severity.critical:" in text and "- severity.major: required" in text
        # an unknown parent and no session to link through: refused, nothing invented or stored
        before = store.scalar("SELECT count(*) FROM review_reports")
        text = await error(client, "report_review_findings", {**FINDINGS, "parent": "wf-03"})
        assert "parent 'wf-03' is not a known workflow; closest: wf-0" in text
        assert store.scalar("SELECT count(*) FROM review_reports") == before
        assert store.scalar("SELECT count(*) FROM workflows WHERE workflow_id = 'wf-03'") == 0


async def test_findings_reported_before_their_hook_take_the_caller_when_it_arrives(bare_store: Store) -> None:
    """On a loaded machine the reviewer's PreToolUse hook can reach the store after its findings (the
    server waits for it only so long). The report is stored without its caller, and the write that
    brings the call's row gives it the call's session, agent and the session's workflow: the same row
    as when the hook came first."""
    from golem_mcp.ingestion.hooks import hook_to_batch
    from golem_mcp.ingestion.records import Batch

    sid = _session_of("wf-004")
    agent = bare_store.scalar("SELECT agent_id FROM agent_tree WHERE session_id = ? AND agent_type = 'reviewer'", [sid])
    report = {k: v for k, v in FINDINGS.items() if k != "parent"}

    def hook(tool_use_id: str) -> None:
        b = Batch()
        assert hook_to_batch({"hook_event_name": "PreToolUse", "session_id": sid, "agent_id": agent,
                              "agent_type": "reviewer", "tool_name": "mcp__golem__report_review_findings",
                              "tool_input": {}, "tool_use_id": tool_use_id}, b)
        bare_store.write(b)

    def stored(task: str) -> list[Any]:
        return [tuple(r.values()) for r in bare_store.query(
            "SELECT m.session_id, m.agent_id, m.workflow_id, r._change_seq FROM claude_metrics m "
            "JOIN review_reports r USING (report_id) WHERE r.task = ?", [task])]

    async with Client(build_server(lambda: bare_store, wait_for_caller_s=0.3)) as c:
        await call(c, "record_workflow", {"workflow_id": "wf-L", "session_id": sid})
        late = await call(c, "report_review_findings", {**report, "task": "wf-L.late"},
                          meta={"claudecode/toolUseId": "toolu_late_review"})
        assert "agent_id" not in late and "session_id" not in late  # not known yet: the hook is on its way
        assert "linked to its agent, session and workflow when it does" in late["warnings"][0]
        before = stored("wf-L.late")
        assert [r[:3] for r in before] == [(None, None, None)]
        assert bare_store.scalar("SELECT pending_tool_use_id FROM review_reports WHERE task = 'wf-L.late'") \
            == "toolu_late_review"
        hook("toolu_late_review")
        # the other order: the hook first, then the findings
        hook("toolu_early_review")
        early = await call(c, "report_review_findings", {**report, "task": "wf-L.early"},
                           meta={"claudecode/toolUseId": "toolu_early_review"})
        assert (early["session_id"], early["agent_id"], early["workflow_id"]) == (sid, agent, "wf-L")
        assert "warnings" not in early
    after = stored("wf-L.late")
    assert [r[:3] for r in after] == [r[:3] for r in stored("wf-L.early")] == [(sid, agent, "wf-L")]
    assert after[0][3] > before[0][3]  # a changed row: exported and pushed again
    # neither report waits for a call any more (each write with tool calls looks for those that do)
    assert bare_store.query("SELECT task FROM review_reports WHERE pending_tool_use_id IS NOT NULL") == []
    # a later write of the same call changes nothing more
    hook("toolu_late_review")
    assert stored("wf-L.late") == after


async def test_unknown_parent_is_linked_to_the_calling_sessions_workflow(bare_store: Store) -> None:
    sid = _session_of("wf-002")
    tuid = bare_store.scalar("SELECT tool_use_id FROM tool_calls WHERE session_id = ? AND agent_id IS NULL "
                             "ORDER BY timestamp LIMIT 1", [sid])
    async with mcp(bare_store) as c:
        await call(c, "record_workflow", {"workflow_id": "wf-R"}, meta={"claudecode/toolUseId": tuid})
        out = await call(c, "report_review_findings", {**FINDINGS, "parent": "wf-typo"},
                         meta={"claudecode/toolUseId": tuid})
        assert out["workflow_id"] == "wf-R" and "wf-typo" in out["warnings"][0]
    assert bare_store.scalar("SELECT count(*) FROM workflows WHERE workflow_id = 'wf-typo'") == 0


async def test_cost_groups_come_a_page_at_a_time_with_the_totals_of_all(store: Store) -> None:
    """Only the page asked for leaves the store (the last 30 days by workflow or session at 10M requests
    are ~250,000 groups); the totals, the group count and the top group are those of every group, the
    pages put together are the whole list, and a page past the last still gives the totals."""
    async with mcp(store) as client:
        whole = await call(client, "query_workflow_cost", {"since": "2000-01-01T00:00:00Z", "group_by": ["workflow"],
                                                          "limit": 200})
        n = whole["group_count"]
        assert n >= 3 and len(whole["groups"]["rows"]) == n
        pages = []
        for offset in range(0, n + 2, 2):
            got = await call(client, "query_workflow_cost", {"since": "2000-01-01T00:00:00Z", "group_by": ["workflow"],
                                                            "limit": 2, "offset": offset})
            assert got["total"] == whole["total"] and got["group_count"] == n and got["top"] == whole["top"]
            assert ("more" in got) == (offset + 2 < n), got.get("more")
            pages += rows(got["groups"])
        assert pages == rows(whole["groups"])
        assert whole["total"]["requests"] == sum(r["requests"] for r in pages)
        assert whole["total"]["total_tokens"] == sum(r["total_tokens"] for r in pages)
        top = max(pages, key=lambda r: r["total_tokens"])
        assert whole["top"] == top["workflow"]
        days = await call(client, "query_workflow_cost", {"since": "2000-01-01T00:00:00Z", "group_by": ["day"]})
        listed = [r["day"] for r in rows(days["groups"])]
        assert listed == sorted(listed)
