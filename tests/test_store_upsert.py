"""Store.write merges by key exactly as one INSERT .. ON CONFLICT would, on every internal path:
all keys new, all stored, a mix, keys repeated inside one batch, composite and TIMESTAMP keys; a
batch of few keys (ON CONFLICT straight away) and the lookup of stored keys by index (IN list, for
big tables) or by join (small tables)."""

from __future__ import annotations

import pytest

from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

T0 = 1_764_000_000_000_000  # 2025-11-24, in epoch microseconds: facts before 2000 are not times


@pytest.fixture(params=["few_keys", "join", "in_list"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    s = Store(tmp_path / "g.duckdb")
    if request.param != "few_keys":
        s._SMALL = 0  # no batch counts as small: stored keys are looked up first
    if request.param == "in_list":
        s._IN_LIST_ROWS_PER_KEY = -1  # any table counts as big: the lookup goes through the index
    yield s
    s.close()


def _write(store: Store, table: str, rows: list[dict]) -> None:
    b = Batch()
    for r in rows:
        b.add(table, r)
    store.write(b)


def _req(store: Store, rid: str) -> dict:
    return store.query("SELECT output_tokens, source_mask, timestamp, recorded_cost_usd, success, model "
                       "FROM api_requests WHERE request_id = ?", [rid])[0]


def test_new_stored_mixed_and_repeated_keys_merge_by_policy(store):
    _write(store, "api_requests", [
        {"request_id": "a", "output_tokens": 5, "source_mask": 1, "timestamp": T0 + 2_000_000, "success": True},
        {"request_id": "b", "output_tokens": 7, "source_mask": 1, "model": "m1"},
    ])
    assert store.scalar("SELECT count(*) FROM api_requests") == 2
    # one batch: a stored key twice (folded, then merged), a new key twice (folded, inserted), a new key
    _write(store, "api_requests", [
        {"request_id": "a", "output_tokens": 3, "source_mask": 2, "timestamp": T0 + 1_000_000, "recorded_cost_usd": 0.1},
        {"request_id": "c", "output_tokens": 1, "source_mask": 2, "model": "first", "recorded_cost_usd": 0.5},
        {"request_id": "a", "output_tokens": 9, "source_mask": 4, "success": False, "recorded_cost_usd": 0.2},
        {"request_id": "c", "output_tokens": 4, "source_mask": 8, "model": "second", "recorded_cost_usd": None},
        {"request_id": "d", "output_tokens": 2},
        {"request_id": None, "output_tokens": 100},  # no key: dropped
    ])
    assert store.scalar("SELECT count(*) FROM api_requests") == 4
    a = _req(store, "a")
    assert (a["output_tokens"], a["source_mask"], a["recorded_cost_usd"], a["success"]) == (9, 7, 0.2, False)
    assert a["timestamp"].timestamp() == T0 / 1e6 + 1.0  # min
    c = _req(store, "c")
    # model keeps the first non-null, recorded cost the latest non-null
    assert (c["output_tokens"], c["source_mask"], c["model"], c["recorded_cost_usd"]) == (4, 10, "first", 0.5)
    assert _req(store, "b")["model"] == "m1"
    assert _req(store, "d")["output_tokens"] == 2


def test_all_stored_keys_and_key_only_rows(store):
    _write(store, "agents", [{"agent_id": "x", "agent_type": "custom"}, {"agent_id": "y", "agent_type": "Explore"}])
    _write(store, "agents", [{"agent_id": "x", "agent_type": "Plan"}, {"agent_id": "y", "agent_type": "custom"},
                             {"agent_id": "y"}])
    got = {r["agent_id"]: r["agent_type"] for r in store.query("SELECT agent_id, agent_type FROM agents")}
    assert got == {"x": "Plan", "y": "Explore"}  # a real type beats 'custom' either way round


def test_a_real_tool_name_beats_the_redacted_mcp_placeholder(store):
    # OTel names MCP tools 'mcp_tool'; the transcript and the hooks name them: in any order of arrival,
    # in separate writes or in one batch, the real name is kept (a race made the e2e test flaky)
    real = "mcp__golem__query_workflow_cost"
    _write(store, "tool_calls", [{"tool_use_id": "t1", "tool_name": "mcp_tool"}, {"tool_use_id": "t2", "tool_name": real}])
    _write(store, "tool_calls", [{"tool_use_id": "t1", "tool_name": real}, {"tool_use_id": "t2", "tool_name": "mcp_tool"}])
    _write(store, "tool_calls", [{"tool_use_id": "t3", "tool_name": "mcp_tool"}, {"tool_use_id": "t3", "tool_name": real},
                                 {"tool_use_id": "t4", "tool_name": real}, {"tool_use_id": "t4", "tool_name": "mcp_tool"},
                                 {"tool_use_id": "t5", "tool_name": "mcp_tool"}])
    _write(store, "tool_calls", [{"tool_use_id": "t5", "success": True}])  # no name: keeps the placeholder
    got = {r["tool_use_id"]: r["tool_name"] for r in store.query("SELECT tool_use_id, tool_name FROM tool_calls")}
    assert got == {"t1": real, "t2": real, "t3": real, "t4": real, "t5": "mcp_tool"}


def test_composite_and_timestamp_keys(store):
    link = {"session_id": "s1", "valid_from": 0, "workflow_id": "w1", "source": "otel"}
    _write(store, "workflow_links", [link, dict(link, valid_from=5_000_000)])
    # both stored (TIMESTAMP key given as microseconds), one new, one repeated inside the batch
    _write(store, "workflow_links", [dict(link, workflow_id="w2"), dict(link, valid_from=5_000_000, task_id="t"),
                                     dict(link, session_id="s2"), dict(link, session_id="s2", task_id="t2")])
    rows = store.query("SELECT session_id, epoch_us(valid_from) AS vf, workflow_id, task_id FROM workflow_links "
                       "ORDER BY 1, 2")
    assert [(r["session_id"], r["vf"], r["task_id"]) for r in rows] == [
        ("s1", 0, None), ("s1", 5_000_000, "t"), ("s2", 0, "t2")]


def test_a_failing_batch_leaves_nothing_behind(store):
    _write(store, "api_requests", [{"request_id": "a", "output_tokens": 1}])
    bad = Batch()
    bad.add("api_requests", {"request_id": "new", "output_tokens": 1})
    bad.add("api_requests", {"request_id": "a", "output_tokens": 5})
    bad.add("tool_calls", {"tool_use_id": "t", "no_such_column": 1})  # a bug, not bad data: the write fails
    with pytest.raises(ValueError):
        store.write(bad)
    assert store.query("SELECT request_id, output_tokens FROM api_requests") == [{"request_id": "a", "output_tokens": 1}]
    _write(store, "api_requests", [{"request_id": "new", "output_tokens": 2}])  # the store still writes
    assert store.scalar("SELECT count(*) FROM api_requests") == 2


def test_map_columns_are_written_and_merged(store):
    report = {"report_id": "r1", "v": 1, "critical": 0, "major": 1, "minor": 2}
    _write(store, "review_reports", [dict(report, categories={"testing": 1, "documentation": 2})])
    _write(store, "review_reports", [dict(report, categories={"other": 9}), {"report_id": "r2", "categories": None}])
    got = {r["report_id"]: r["categories"] for r in store.query("SELECT report_id, categories FROM review_reports")}
    assert got == {"r1": {"testing": 1, "documentation": 2}, "r2": None}  # keep: the first report's map stays


def test_list_parameters_do_not_search_for_pandas_per_value(tmp_path, monkeypatch):
    """DuckDB's binding asks for pandas once per value of a list parameter; with pandas absent, each
    ask must fail at once instead of walking sys.path (that walk was most of a large write's CPU)."""
    import importlib.machinery
    if importlib.machinery.PathFinder.find_spec("pandas") is not None:
        pytest.skip("pandas is installed: DuckDB imports it once and reuses it")
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    walks: list[str] = []
    real = importlib.machinery.PathFinder.find_spec

    def counting(name, path=None, target=None):
        if name == "pandas":
            walks.append(name)
        return real(name, path, target)

    with Store(tmp_path / "g.duckdb") as s:
        monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", counting)
        keys = [f"k{i}" for i in range(500)]
        assert s.scalar("SELECT count(*) FROM (SELECT unnest(?::VARCHAR[]))", [keys]) == 500
    assert walks == []


def test_a_fraction_in_an_integer_column_is_never_cut_off_without_a_word(tmp_path):
    """Arrow takes 1.5 into an int64 column as 1; the checks see it first. A token count with a
    fraction leaves its request out, any other integer column stores NULL, both reported; a float
    that is a whole number is that number."""
    with Store(tmp_path / "s.duckdb") as s:
        b = Batch()
        b.add("api_requests", {"request_id": "r-frac", "session_id": "s", "input_tokens": 1.5, "output_tokens": 1})
        b.add("api_requests", {"request_id": "r-attempt", "session_id": "s", "input_tokens": 2.0, "attempt": 2.5})
        b.add("api_requests", {"request_id": "r-good", "session_id": "s", "input_tokens": 3, "attempt": 1})
        s.write(b)
        assert s.query("SELECT request_id, input_tokens, attempt FROM api_requests ORDER BY 1") == [
            {"request_id": "r-attempt", "input_tokens": 2, "attempt": None},
            {"request_id": "r-good", "input_tokens": 3, "attempt": 1}]
        said = [str(p) for p in b.skipped]
        assert any("input_tokens" in p and "1.5" in p and "not stored" in p for p in said), said
        assert any("attempt" in p and "2.5" in p and "NULL" in p for p in said), said
