"""Rollups stay equal to a GROUP BY over the resolved facts, whatever order facts and context arrive in.

Property test (Hypothesis) on a real DuckDB file: random interleavings of fact batches (new facts, the
same facts again from another source, facts whose emitted context differs) and late context (agent
types and spawn links, workflow links, agents' declared context, workflow attributes, sessions), each
written through ``Store.write``; after every write every rollup table equals the ``GROUP BY`` it stands
for (``rollups.differences``). The store is shared by the examples (opening one costs a second), each
example in its own id space.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_mcp.analysis import known
from golem_mcp.analysis.cost import cost_by
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import rollups
from golem_mcp.store.db import Store

BASE = datetime(2026, 3, 1, 8, 0)
_space = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = Store(tmp_path_factory.mktemp("rollups") / "golem.duckdb")
    yield s
    s.close()


def _assert_equal(store: Store) -> None:
    for fact in rollups.SPECS:
        diff = rollups.differences(store.con, fact)
        assert diff == [], f"{rollups.SPECS[fact].table} differs from its GROUP BY: {diff[:3]}"


def ts_strategy() -> st.SearchStrategy[datetime | None]:
    # three days, so facts move between days when a merge brings an earlier time; sometimes no time
    return st.one_of(st.none(), st.integers(0, 3 * 24 * 60).map(lambda m: BASE + timedelta(minutes=m)))


opt = st.one_of(st.none(), st.sampled_from(["a", "b"]))
durations_in_buckets = st.sampled_from([0.0, 0.4, 1.0, 1.02, 1.0199, 900.0, 901.0, 1200.0])
tokens = st.one_of(st.none(), st.integers(0, 5000))

request = st.fixed_dictionaries({
    "k": st.integers(0, 9), "s": st.integers(0, 2), "a": st.one_of(st.none(), st.integers(0, 3)),
    "model": st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "no-such-model", None]),
    "timestamp": ts_strategy(), "input_tokens": tokens, "output_tokens": tokens, "cache_read_tokens": tokens,
    "cache_creation_tokens": tokens,
    "recorded_cost_usd": st.one_of(st.none(), st.floats(0, 2, allow_nan=False)),
    # durations sharing a bucket (rollup_*_durations) too, and on either side of a bucket's edge
    "duration_ms": st.one_of(st.none(), st.floats(0, 400000, allow_nan=False), durations_in_buckets),
    "attempt": st.one_of(st.none(), st.integers(1, 3)), "success": st.one_of(st.none(), st.booleans()),
    "workflow": opt, "stage": st.one_of(st.none(), st.sampled_from(["planner", "reviewer"])), "task": opt,
    "experiment": opt,
})
tool = st.fixed_dictionaries({
    "k": st.integers(0, 7), "s": st.integers(0, 2), "a": st.one_of(st.none(), st.integers(0, 3)),
    "tool_name": st.sampled_from(["Read", "Bash", "Task"]), "timestamp": ts_strategy(),
    "success": st.one_of(st.none(), st.booleans()),
    "error": st.one_of(st.none(), st.sampled_from(["Exit code 1", "No such file", "timed out"])),
    "duration_ms": st.one_of(st.none(), st.floats(0, 5000, allow_nan=False), durations_in_buckets), "workflow": opt,
    # few values, so identical calls (rollup_calls) repeat, and move when their context arrives late
    "params": st.one_of(st.none(), st.sampled_from(['{"bash_command": "make"}', '{"file_path": "a.py"}'])),
})
error = st.fixed_dictionaries({
    "k": st.integers(0, 3), "s": st.integers(0, 2), "a": st.one_of(st.none(), st.integers(0, 3)),
    "timestamp": ts_strategy(), "status_code": st.sampled_from([429, 500, 529, None]),
    "error": st.sampled_from(["rate limited", "overloaded", "boom"]), "model": st.sampled_from(["claude-sonnet-4-5", None]),
})
context = st.one_of(
    st.fixed_dictionaries({"kind": st.just("agents"), "a": st.integers(0, 3), "s": st.integers(0, 2),
                           "agent_type": st.sampled_from(["analyst", "implementer", "custom", None]),
                           "spawn": st.one_of(st.none(), st.integers(0, 7))}),
    st.fixed_dictionaries({"kind": st.just("workflow_links"), "s": st.integers(0, 2), "valid_from": ts_strategy(),
                           "workflow": st.sampled_from(["a", "b"]), "task": opt, "experiment": opt}),
    st.fixed_dictionaries({"kind": st.just("agent_context"), "a": st.one_of(st.integers(0, 3), st.just(None)),
                           "s": st.integers(0, 2), "workflow": opt,
                           "stage": st.one_of(st.none(), st.sampled_from(["planner", "tester"])),
                           "task": opt, "experiment": opt}),
    st.fixed_dictionaries({"kind": st.just("workflows"), "workflow": st.sampled_from(["a", "b"]),
                           "path": st.sampled_from(["fast-track", "full", None]),
                           "complexity": st.sampled_from(["simple", "complex", None]), "experiment": opt}),
    st.fixed_dictionaries({"kind": st.just("sessions"), "s": st.integers(0, 2),
                           "cwd": st.sampled_from(["/home/x/p1", "/work/p2", None]),
                           "git_branch": st.sampled_from(["main", "dev", None])}),
)
batch = st.fixed_dictionaries({
    "requests": st.lists(request, max_size=6), "tools": st.lists(tool, max_size=4),
    "errors": st.lists(error, max_size=2), "context": st.lists(context, max_size=3),
})


def to_batch(ns: str, spec: dict[str, Any]) -> Batch:
    def sid(i: int) -> str:
        return f"{ns}-s{i}"

    def aid(i: int | None) -> str | None:
        return None if i is None else f"{ns}-a{i}"

    def wf(w: str | None) -> str | None:
        return None if w is None else f"{ns}-wf-{w}"

    b = Batch()
    for r in spec["requests"]:
        b.add("api_requests", {
            "request_id": f"{ns}-req{r['k']}", "session_id": sid(r["s"]), "agent_id": aid(r["a"]), "model": r["model"],
            "timestamp": r["timestamp"], "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
            "cache_read_tokens": r["cache_read_tokens"], "cache_creation_tokens": r["cache_creation_tokens"],
            "recorded_cost_usd": r["recorded_cost_usd"], "duration_ms": r["duration_ms"], "attempt": r["attempt"],
            "success": r["success"], "workflow_id": wf(r["workflow"]), "stage": r["stage"],
            "task_id": r["task"] and f"{ns}-task-{r['task']}", "experiment_id": r["experiment"] and f"arm-{r['experiment']}",
            "source_mask": 2})
    for t in spec["tools"]:
        b.add("tool_calls", {
            "tool_use_id": f"{ns}-tool{t['k']}", "session_id": sid(t["s"]), "agent_id": aid(t["a"]),
            "tool_name": t["tool_name"], "timestamp": t["timestamp"], "success": t["success"], "error": t["error"],
            "duration_ms": t["duration_ms"], "workflow_id": wf(t["workflow"]), "source_mask": 1,
            "tool_parameters": t.get("params")})
    for e in spec["errors"]:
        b.add("api_errors", {
            "error_key": f"{ns}-err{e['k']}", "session_id": sid(e["s"]), "agent_id": aid(e["a"]),
            "timestamp": e["timestamp"], "status_code": e["status_code"], "error": e["error"], "model": e["model"]})
    for c in spec["context"]:
        kind = c["kind"]
        if kind == "agents":
            b.add("agents", {"agent_id": aid(c["a"]), "session_id": sid(c["s"]), "agent_type": c["agent_type"],
                             "spawn_tool_use_id": None if c["spawn"] is None else f"{ns}-tool{c['spawn']}"})
        elif kind == "workflow_links":
            b.add("workflow_links", {"session_id": sid(c["s"]), "valid_from": c["valid_from"] or datetime(1970, 1, 1),
                                     "workflow_id": wf(c["workflow"]), "task_id": c["task"] and f"{ns}-task-{c['task']}",
                                     "experiment_id": c["experiment"] and f"arm-{c['experiment']}", "source": "mcp"})
        elif kind == "agent_context":
            b.add("agent_context", {"agent_id": aid(c["a"]) or sid(c["s"]), "workflow_id": wf(c["workflow"]),
                                    "stage": c["stage"], "task_id": c["task"] and f"{ns}-task-{c['task']}",
                                    "experiment_id": c["experiment"] and f"arm-{c['experiment']}", "source": "mcp",
                                    "updated_at": BASE})
        elif kind == "workflows":
            b.add("workflows", {"workflow_id": wf(c["workflow"]), "path": c["path"], "complexity": c["complexity"],
                                "experiment_id": c["experiment"] and f"arm-{c['experiment']}"})
        else:
            b.add("sessions", {"session_id": sid(c["s"]), "cwd": c["cwd"], "git_branch": c["git_branch"],
                               "project": "proj"})
    return b


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(batches=st.lists(batch, min_size=1, max_size=5))
def test_rollups_equal_group_by_after_any_interleaving(store: Store, batches: list[dict[str, Any]]) -> None:
    ns = f"x{next(_space)}"
    for spec in batches:
        store.write(to_batch(ns, spec))
        _assert_equal(store)


def _newest_by_scan(store: Store) -> Any:
    return store.scalar('SELECT max("timestamp") FROM api_requests')


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(batches=st.lists(batch, min_size=1, max_size=5))
def test_the_newest_request_read_from_the_latest_rollup_day_equals_a_scan(store: Store,
                                                                         batches: list[dict[str, Any]]) -> None:
    """known.newest_request reads only the rows of the rollups' latest day with requests; after any
    interleaving (requests moving to an earlier day in a merge, requests without a time) it is the
    newest request's time of every row."""
    ns = f"n{next(_space)}"
    for spec in batches:
        store.write(to_batch(ns, spec))
        assert known.newest_request(store) == _newest_by_scan(store)


def test_the_newest_request_when_the_latest_rows_went_around_the_store(tmp_path: Path) -> None:
    # the rollups still count a day whose rows were deleted behind Store.write: the scan of every row answers
    s = Store(tmp_path / "g.duckdb")
    try:
        s.write(_one_request("early"))
        late = _one_request("late", k=2)
        late.rows["api_requests"][0]["timestamp"] = BASE + timedelta(days=2)
        s.write(late)
        assert known.newest_request(s) == BASE + timedelta(days=2)
        s.con.execute('DELETE FROM api_requests WHERE "timestamp" > ?', [BASE + timedelta(days=1)])
        assert known.newest_request(s) == BASE == _newest_by_scan(s)
    finally:
        s.close()


def _one_request(prefix: str, k: int = 1, input_tokens: int = 10) -> Batch:
    """One request of workflow "a" (retried once), as a batch of :func:`to_batch`."""
    return to_batch(prefix, {"requests": [{"k": k, "s": 0, "a": None, "model": "claude-sonnet-4-5",
                                           "timestamp": BASE, "input_tokens": input_tokens, "output_tokens": 5,
                                           "cache_read_tokens": 1, "cache_creation_tokens": 2,
                                           "recorded_cost_usd": None, "duration_ms": 900.0, "attempt": 2,
                                           "success": True, "workflow": "a", "stage": None, "task": None,
                                           "experiment": None}],
                             "tools": [], "errors": [], "context": []})


def _has_change_set(s: Store) -> bool:
    return bool(s.con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'golem_delta_new_api_requests'").fetchall())


def test_a_stores_first_facts_build_the_rollups_without_a_change_set(tmp_path: Path) -> None:
    """The write that brings a store's first facts (a first import) builds the rollups from the tables,
    equal to the GROUP BY, without copying its rows into a change set; later writes fold theirs in."""
    with Store(tmp_path / "first.duckdb") as s:
        s.write(_one_request("first"))
        _assert_equal(s)
        assert not _has_change_set(s)
        assert s.scalar("SELECT sum(requests) FROM rollup_requests") == 1
        s.write(_one_request("next", k=2, input_tokens=7))
        _assert_equal(s)
        assert _has_change_set(s)
        assert s.scalar("SELECT sum(input_tokens) FROM rollup_requests") == 17


def test_migration_builds_rollups_of_an_existing_store(tmp_path: Path) -> None:
    """A store written before the rollups existed gets them built once, equal to the GROUP BY."""
    db = tmp_path / "old.duckdb"
    with Store(db) as s:
        s.write(_one_request("old"))
        # as if written by a golem-mcp from before the rollups: no tables, migration not applied
        s.con.execute("DROP TABLE rollup_requests; DROP TABLE rollup_tools; DROP TABLE rollup_errors")
        s.con.execute("DELETE FROM schema_migrations WHERE version = ?", [rollups.MIGRATION])
    with Store(db) as s:
        _assert_equal(s)
        assert s.scalar("SELECT sum(requests) FROM rollup_requests") == 1
        assert s.scalar("SELECT sum(retries) FROM rollup_requests") == 1


def test_migration_adds_the_coarse_rollup_to_a_store_that_has_the_others(tmp_path: Path) -> None:
    """Migration 18 on a store of schema 13: rollup_requests_coarse built from its resolved facts, equal
    to the GROUP BY, and later writes fold into it."""
    db = tmp_path / "s13.duckdb"
    with Store(db) as s:
        s.write(_one_request("old"))
        # as a golem-mcp of schema 13 left it
        s.con.execute("DROP TABLE rollup_requests_coarse")
        s.con.execute("DELETE FROM schema_migrations WHERE version = 18")
    with Store(db) as s:
        _assert_equal(s)
        assert s.scalar("SELECT sum(requests) FROM rollup_requests_coarse") == 1
        s.write(_one_request("new", k=2, input_tokens=7))
        _assert_equal(s)
        assert s.scalar("SELECT sum(input_tokens) FROM rollup_requests_coarse") == 17


def test_migration_adds_the_duration_rollups_to_a_store_that_has_the_others(tmp_path: Path) -> None:
    """Migration 20 on a store of schema 18: rollup_request_durations and rollup_tool_durations built
    from its resolved facts, equal to the GROUP BY, and later writes fold into them."""
    db = tmp_path / "s18.duckdb"
    tool = {"k": 1, "s": 0, "a": None, "tool_name": "Read", "timestamp": BASE, "success": True, "error": None,
            "duration_ms": 40.0, "workflow": "a"}
    with Store(db) as s:
        s.write(_one_request("old"))
        s.write(to_batch("old", {"requests": [], "tools": [tool], "errors": [], "context": []}))
        # as a golem-mcp of schema 18 left it
        s.con.execute("DROP TABLE rollup_request_durations; DROP TABLE rollup_tool_durations")
        s.con.execute("DELETE FROM schema_migrations WHERE version = 20")
    with Store(db) as s:
        _assert_equal(s)
        assert s.con.execute("SELECT model, bucket, requests FROM rollup_request_durations").fetchall() == [
            ("claude-sonnet-4-5", 343, 1)]  # 900 ms: 1.02^343 <= 900 < 1.02^344
        assert s.scalar("SELECT sum(calls) FROM rollup_tool_durations") == 1
        s.write(_one_request("new", k=2, input_tokens=7))
        _assert_equal(s)
        assert s.scalar("SELECT sum(requests) FROM rollup_request_durations WHERE bucket = 343") == 2


def test_a_duration_bucket_stands_for_its_durations_within_one_percent(tmp_path: Path) -> None:
    """Every duration's bucket (DURATION_BUCKET, computed by DuckDB) reads back (bucket_ms) within 1 %,
    0.5 ms under 1 ms."""
    import duckdb

    durations = [0.0, 0.3, 0.999, 1.0, 1.5, 2.0, 17.3, 250.0, 900.0, 2000.0, 59_999.9, 3_600_000.0]
    con = duckdb.connect()
    got = con.execute(f"SELECT duration_ms, {rollups.DURATION_BUCKET} FROM unnest(?::DOUBLE[]) t(duration_ms)",
                      [durations]).fetchall()
    for d, b in got:
        assert abs(rollups.bucket_ms(b) - d) <= 0.01 * d + (0.5 if d < 1 else 0), (d, b)


def test_rollups_of_a_store_with_hugeint_sums_become_bigint_and_stay_equal(tmp_path: Path) -> None:
    """Migration 013: a store whose rollups hold HUGEINT token sums (and the workflow index that blocks an
    ALTER) opens with BIGINT sums, the same groups, and later writes fold into them."""
    db = tmp_path / "hugeint.duckdb"
    with Store(db) as s:
        s.write(_one_request("old"))
        # as a golem-mcp of schema 12 left it
        s.con.execute("DROP INDEX rollup_requests_workflow")
        for col in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "retries"):
            s.con.execute(f"ALTER TABLE rollup_requests ALTER COLUMN {col} TYPE HUGEINT")
        s.con.execute("CREATE INDEX rollup_requests_workflow ON rollup_requests (workflow_id)")
        s.con.execute("DELETE FROM schema_migrations WHERE version = 13")
    with Store(db) as s:
        types = dict(s.con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_name = 'rollup_requests'").fetchall())
        assert [c for c, t in types.items() if "HUGEINT" in t and c != "gkey"] == []
        _assert_equal(s)
        assert s.scalar("SELECT sum(input_tokens) FROM rollup_requests") == 10
        s.write(_one_request("new", k=2, input_tokens=7))
        _assert_equal(s)
        assert s.scalar("SELECT sum(input_tokens) FROM rollup_requests") == 17


def test_a_build_in_runs_of_days_equals_one_group_by(tmp_path: Path) -> None:
    """rollups.build sums the facts a run of days at a time (groups are one day's): whatever the run
    size, including facts without a time, the rollups equal the GROUP BY and its groups."""
    with Store(tmp_path / "runs.duckdb") as s:
        b = Batch()
        for i in range(12):
            b.add("api_requests", {"request_id": f"r{i}", "session_id": f"s{i % 3}", "model": "claude-sonnet-4-5",
                                   "timestamp": None if i % 5 == 4 else BASE + timedelta(hours=11 * i),
                                   "input_tokens": i, "output_tokens": 1, "duration_ms": 100.0 * i})
        s.write(b)
        whole = s.query("SELECT * FROM rollup_requests ORDER BY gkey")
        days = s.scalar("SELECT count(DISTINCT CAST(timestamp AS DATE)) FROM api_requests")
        assert days > 3
        for part_rows in (1, 2, 5, 1_000):
            s.con.execute("BEGIN")
            assert rollups.build(s.con, part_rows=part_rows)["rollup_requests"] == len(whole)
            s.con.execute("COMMIT")
            _assert_equal(s)
            assert s.query("SELECT * FROM rollup_requests ORDER BY gkey") == whole
        runs = rollups._day_runs(s.con, rollups.SPECS["api_requests"], 1)
        assert len(runs) == days + 1  # a run per day, and the facts without a time


def test_migration_adds_the_identical_calls_rollup_one_group_across_days(tmp_path: Path) -> None:
    """Migration 19 on a store of schema 18: rollup_calls built from its facts; it has no day, so the same
    call made on three days is one group, however the build splits the facts into runs of days."""
    db = tmp_path / "s18.duckdb"
    with Store(db) as s:
        b = Batch()
        for i in range(3):
            b.add("tool_calls", {"tool_use_id": f"t{i}", "session_id": "s", "agent_id": "ag", "tool_name": "Bash",
                                 "timestamp": BASE + timedelta(hours=20 * i), "success": False,
                                 "tool_parameters": '{"bash_command": "make"}', "source_mask": 1})
        s.write(b)
        s.con.execute("DROP TABLE rollup_calls")
        s.con.execute("DELETE FROM schema_migrations WHERE version = 19")
    with Store(db) as s:
        _assert_equal(s)
        assert s.query("SELECT calls, first_at, last_at FROM rollup_calls") == [
            {"calls": 3, "first_at": BASE, "last_at": BASE + timedelta(hours=40)}]
        s.con.execute("BEGIN")
        assert rollups.build(s.con, ["rollup_calls"], part_rows=1)["rollup_calls"] == 1
        s.con.execute("COMMIT")
        _assert_equal(s)


def test_a_rollup_build_cut_short_is_built_again_at_the_next_open(tmp_path: Path) -> None:
    """A whole build (a migration, a price change, a re-resolution) commits a run of days at a time,
    to stay inside the memory budget at 10 M requests. A store closed or killed between two runs has
    half its rollups: the mark its build left makes the next open build them again."""
    db = tmp_path / "cut.duckdb"
    with Store(db) as s:
        b = Batch()
        for i in range(12):
            b.add("api_requests", {"request_id": f"r{i}", "session_id": f"s{i % 3}", "model": "claude-sonnet-4-5",
                                   "timestamp": BASE + timedelta(hours=11 * i), "input_tokens": i, "output_tokens": 1})
        s.write(b)
        whole = s.query("SELECT * FROM rollup_requests ORDER BY gkey")
        runs = iter(range(2))

        def commit_twice() -> None:  # the process dies at the third run's commit
            s._commit_and_begin()
            if next(runs, None) is None:
                raise KeyboardInterrupt

        with s._lock:
            s.con.execute("BEGIN")
            s._mark_rollups([])
            with pytest.raises(KeyboardInterrupt):
                rollups.build(s.con, part_rows=1, commit=commit_twice)
            s.con.execute("ROLLBACK")
        assert 0 < s.scalar("SELECT count(*) FROM rollup_requests") < len(whole)  # two runs' days
        assert rollups.differences(s.con, "api_requests")
    with Store(db) as s:
        _assert_equal(s)
        assert s.query("SELECT * FROM rollup_requests ORDER BY gkey") == whole
        assert s.query("SELECT * FROM settings WHERE key = 'rollups_pending'") == []


def _requests_at(s: Store, *at: tuple[int, str]) -> None:
    """One request of session ``s`` per (minutes after BASE, agent id), ids r0, r1, ..."""
    b = Batch()
    for i, (minutes, agent) in enumerate(at):
        b.add("api_requests", {"request_id": f"r{i}", "session_id": "s", "agent_id": agent,
                               "model": "claude-sonnet-4-5", "timestamp": BASE + timedelta(minutes=minutes),
                               "input_tokens": 1, "output_tokens": 1})
    s.write(b)


def _typed_later(s: Store, agent: str, agent_type: str) -> None:
    """Agent ``agent`` of session ``s`` gets its type after its requests; the rollups still equal a GROUP BY."""
    b = Batch()
    b.add("agents", {"agent_id": agent, "session_id": "s", "agent_type": agent_type})
    s.write(b)
    _assert_equal(s)


def test_a_group_that_loses_its_earliest_fact_reads_its_times_again(tmp_path: Path) -> None:
    """first_at / last_at are not sums: moving the earliest request to another stage must not leave
    its time on the group it left."""
    with Store(tmp_path / "t.duckdb") as s:
        _requests_at(s, (0, "ag0"), (30, "ag1"), (60, "ag0"))
        _typed_later(s, "ag0", "implementer")
        rows = s.query("SELECT stage, first_at, last_at, requests FROM rollup_requests ORDER BY stage")
        assert [(r["stage"], r["requests"]) for r in rows] == [("implementer", 2), ("subagent", 1)]
        assert rows[1]["first_at"] == rows[1]["last_at"] == BASE + timedelta(minutes=30)


def test_only_a_group_that_loses_its_first_or_last_fact_reads_its_times_again(tmp_path: Path, monkeypatch) -> None:
    """A fact leaving a group from between its first and last time leaves the group holding both: its
    times are not read again from the facts (a day's facts, at 10M requests ~15 ms a write); a
    fact leaving with the group's last time has it read again."""
    reread: list[str] = []
    real = rollups._reread_times

    def counted(con, spec, net, days):
        reread.append(spec.table)
        return real(con, spec, net, days)

    monkeypatch.setattr(rollups, "_reread_times", counted)
    with Store(tmp_path / "t.duckdb") as s:
        _requests_at(s, (0, "ag0"), (30, "ag1"), (60, "ag0"))
        _typed_later(s, "ag1", "implementer")
        assert "rollup_requests" not in reread and "rollup_requests_coarse" not in reread
        row = s.query("SELECT first_at, last_at, requests FROM rollup_requests WHERE stage = 'subagent'")[0]
        assert (row["first_at"], row["last_at"], row["requests"]) == (BASE, BASE + timedelta(minutes=60), 2)
        last = Batch()
        last.add("agent_context", {"agent_id": "ag0", "workflow_id": None, "stage": "planner", "task_id": None,
                                   "experiment_id": None, "source": "mcp", "updated_at": BASE})
        last.add("api_requests", {"request_id": "r3", "session_id": "s", "agent_id": "ag2", "model": "claude-sonnet-4-5",
                                  "timestamp": BASE + timedelta(minutes=45), "input_tokens": 1, "output_tokens": 1})
        s.write(last)
        _assert_equal(s)
        assert "rollup_requests_coarse" in reread
        row = s.query("SELECT first_at, last_at, requests FROM rollup_requests_coarse WHERE stage = 'subagent'")[0]
        assert (row["first_at"], row["last_at"], row["requests"]) == (BASE + timedelta(minutes=45),) * 2 + (1,)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(by=st.lists(st.sampled_from(["workflow", "stage", "top_stage", "agent", "model", "task", "experiment",
                                    "project", "branch", "path", "day", "week"]), max_size=2, unique=True),
       since=st.one_of(st.none(), st.integers(-60, 4 * 24 * 60).map(lambda m: BASE + timedelta(minutes=m))),
       length=st.one_of(st.none(), st.integers(1, 4 * 24 * 60).map(lambda m: timedelta(minutes=m))),
       stage=st.sampled_from([None, "planner", "main"]))
def test_cost_by_from_rollups_answers_as_the_facts_do(store: Store, by: list[str], since: datetime | None,
                                                      length: timedelta | None, stage: str | None) -> None:
    """Whole days from the rollups plus the cut days from the facts = the facts alone, for any window."""
    from golem_mcp.analysis.cost import cost_by

    if store.scalar("SELECT count(*) FROM api_requests") < 20:
        for i in range(8):
            store.write(to_batch(f"cb{i}", {"requests": [dict(r, k=k) for k, r in enumerate(_SAMPLE)],
                                            "tools": [], "errors": [], "context": []}))
    until = since + length if since is not None and length is not None else None
    a = cost_by(store, by, {"stage": stage}, since=since, until=until, order="key")
    b = cost_by(store, by, {"stage": stage}, since=since, until=until, order="key", rollups=False)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for k, v in y.items():
            if isinstance(v, float):
                assert x[k] == pytest.approx(v, rel=1e-9), k
            elif isinstance(v, list):
                assert sorted(x[k], key=str) == sorted(v, key=str), k
            else:
                assert x[k] == v, k


_SAMPLE = [
    {"s": i % 3, "a": None if i % 4 == 0 else i % 4, "model": ["claude-sonnet-4-5", "no-such-model"][i % 2],
     "timestamp": BASE + timedelta(minutes=397 * i), "input_tokens": 10 * i, "output_tokens": i,
     "cache_read_tokens": 3 * i, "cache_creation_tokens": i % 5, "recorded_cost_usd": 0.01 * i if i % 3 == 0 else None,
     "duration_ms": 100.0 * i, "attempt": 1 + i % 2, "success": True, "workflow": ["a", "b", None][i % 3],
     "stage": ["planner", None][i % 2], "task": None, "experiment": ["a", None][i % 2]}
    for i in range(10)
]


def test_a_workflows_rollup_groups_are_read_by_index(tmp_path: Path) -> None:
    """The agent-facing tools ask about one workflow: its groups come by index, not by scanning
    every group of the store (a scan grew with the store)."""
    with Store(tmp_path / "g.duckdb") as s:
        s.con.execute("INSERT INTO rollup_requests (gkey, workflow_id, requests) "
                      "SELECT i, 'wf-' || (i // 4), 1 FROM range(10000) t(i)")
        plan = "".join(str(v) for r in s.query("EXPLAIN ANALYZE SELECT sum(cost_usd) FROM rollup_requests "
                                                "WHERE workflow_id = ?", ["wf-1"]) for v in r.values())
    assert "Index Scan" in plan, plan


def test_a_statement_with_parameters_looks_for_no_module(tmp_path: Path) -> None:
    """DuckDB's client looks for pandas on every statement with parameters; where pandas is absent
    that searched the whole import path each time (~0.3 ms a statement, several per tool call)."""
    import importlib.abc
    import sys

    attempts: list[str] = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            attempts.append(name)

    with Store(tmp_path / "g.duckdb") as s:
        s.query("SELECT ?::VARCHAR AS v", ["x"])  # whatever loads once, loads now
        spy = Spy()
        sys.meta_path.append(spy)  # asked only when every finder before it, the import path's too, found nothing
        try:
            for _ in range(3):
                assert s.query("SELECT ?::VARCHAR AS v", ["x"]) == [{"v": "x"}]
        finally:
            sys.meta_path.remove(spy)
    assert attempts == []


DAY_KEYED = [n for n, spec in rollups.SPECS.items() if "day" in spec.dims]


def test_migration_keys_the_rollups_by_day_and_later_writes_fold_into_the_same_groups(tmp_path: Path) -> None:
    """Migration 23 on a store of schema 21, whose rollups were keyed by the md5 alone: every rollup with a
    day is built again with the day in its key's top bits, equal to the GROUP BY, and a later write of a
    fact of an existing group adds to that group (a group keyed the old way would be a second row)."""
    assert set(DAY_KEYED) == set(rollups.ADDED[23])
    db = tmp_path / "s21.duckdb"
    tool = {"k": 1, "s": 0, "a": None, "tool_name": "Read", "timestamp": BASE, "success": False,
            "error": "No such file", "duration_ms": 40.0, "workflow": "a", "params": None}
    err = {"k": 1, "s": 0, "a": None, "timestamp": BASE, "status_code": 429, "error": "rate limited",
           "model": "claude-sonnet-4-5"}
    with Store(db) as s:
        s.write(_one_request("old"))
        s.write(to_batch("old", {"requests": [], "tools": [tool], "errors": [err], "context": []}))
        for name in DAY_KEYED:  # as a golem-mcp of schema 21 left them: keys without the day
            s.con.execute(f"UPDATE {rollups.SPECS[name].table} SET gkey = gkey & ((1::UHUGEINT << 96) - 1)")
        s.con.execute("DELETE FROM schema_migrations WHERE version = 23")
    with Store(db) as s:
        _assert_equal(s)
        for name in DAY_KEYED:
            t = rollups.SPECS[name].table
            assert s.scalar(f"SELECT count(*) FROM {t} WHERE gkey >> 96 <> day - DATE '1970-01-01' + 2147483648") == 0, t
            assert s.scalar(f"SELECT count(*) FROM {t}") == 1, t
        s.write(_one_request("new", k=1, input_tokens=7))  # the same group as the old request
        s.write(to_batch("new", {"requests": [], "tools": [tool], "errors": [err], "context": []}))
        _assert_equal(s)
        assert s.scalar("SELECT count(*) FROM rollup_requests_coarse") == 1
        assert s.scalar("SELECT sum(requests) FROM rollup_requests_coarse") == 2
        assert s.scalar("SELECT count(*) FROM rollup_request_durations") == 1


def _art_mb(s: Store) -> float:
    return float(s.scalar("SELECT memory_usage_bytes / 1048576 FROM duckdb_memory() WHERE tag = 'ART_INDEX'"))


def test_new_groups_of_one_day_load_only_that_days_part_of_the_rollups_key_index(tmp_path: Path) -> None:
    """DuckDB loads a PRIMARY KEY index from the file as it is touched and keeps it in memory. Keyed by the
    day first, a write's new groups (today's) touch today's part of rollup_tools' index; keyed by a hash
    alone, new groups spread over the whole key range and touched nearly all of it (a few thousand tool
    calls loaded 220 MB of index at 6 M groups). Compared on a store written a day at a time, as a
    daemon's is, each on the store just opened: the rollup upsert of a write (``rollups._add``) of 600 new
    groups of the last day against 600 spread over the 60 days."""
    db = tmp_path / "big.duckdb"
    end = datetime(2026, 3, 1)
    with Store(db) as s:  # 240,000 tool calls, a workflow (so a group) each, over 60 days; around Store.write
        s.con.execute(f"""INSERT INTO tool_calls (tool_use_id, session_id, agent_id, tool_name, "timestamp",
                                                  success, duration_ms, workflow_id, source_mask)
            SELECT 't' || i, 's' || (i // 4000), 'a' || (i // 4), 'Read',
                   TIMESTAMP '{end:%Y-%m-%d}' - INTERVAL 60 DAY + to_seconds(i * 21.5), true, 10, 'wf' || i, 1
            FROM range(240000) r(i)""")
        s.resolve_all()
        s.con.execute("BEGIN")  # the groups inserted a day at a time, as a store written over 60 days has them
        assert rollups.build(s.con, ["tool_calls"], part_rows=4000)["rollup_tools"] == 240_000
        s.con.execute("COMMIT")
        s.con.execute("CHECKPOINT")

    def add(where: str) -> float:
        """ART memory loaded by adding 600 new groups: facts picked by ``where``, as new workflows'."""
        with Store(db) as s:
            s.con.execute(f"""CREATE TEMP TABLE new_facts AS SELECT * REPLACE ('new-' || r_workflow_id AS r_workflow_id)
                FROM tool_calls WHERE {where} LIMIT 600""")
            before = _art_mb(s)
            s.con.execute("BEGIN")
            rollups._add(s.con, rollups.SPECS["tool_calls"], "new_facts")
            loaded = _art_mb(s) - before
            assert s.con.execute("SELECT count(*) FROM rollup_tools").fetchone() == (240_600,)
            s.con.execute("ROLLBACK")
            return loaded

    today = add(f"\"timestamp\" >= TIMESTAMP '{end:%Y-%m-%d}' - INTERVAL 1 DAY")
    spread = add("CAST(substr(tool_use_id, 2) AS INTEGER) % 400 = 0")
    assert spread > 4, spread  # the comparison means something: spread groups load much of the index
    assert today < spread / 2, (today, spread)  # md5 keys: about equal (12 and 11.5 MB); day-first: 3.5 and 11


def test_a_cut_day_is_read_whole_only_when_all_its_requests_are_inside_the_window(tmp_path: Path) -> None:
    """cost_by reads a day the window cuts through from the rollups as a whole day when the day's first
    and last requests lie inside the window (the default window ends after the newest request), and
    from the request rows otherwise: the same answer as the rows either way."""
    day = datetime(BASE.year, BASE.month, BASE.day)
    times = [day + timedelta(hours=1), day + timedelta(hours=23), day + timedelta(days=1, hours=12),
             day + timedelta(days=2, hours=5)]
    s = Store(tmp_path / "g.duckdb")
    try:
        for i, t in enumerate(times):
            b = _one_request(f"c{i}", k=i)
            b.rows["api_requests"][0]["timestamp"] = t
            s.write(b)
        for since, until, n in ((day + timedelta(minutes=30), day + timedelta(days=2, hours=6), 4),  # both ends whole
                                (day + timedelta(hours=2), day + timedelta(days=2, hours=4), 2),  # neither
                                (day + timedelta(minutes=30), day + timedelta(days=2, hours=4), 3),
                                (day + timedelta(hours=2), day + timedelta(days=2, hours=6), 3)):
            got = cost_by(s, [], since=since, until=until)
            assert got[0]["requests"] == n, (since, until)
            assert got == cost_by(s, [], since=since, until=until, rollups=False)
    finally:
        s.close()
