"""Agent SQL cannot write, read files or the environment, or take the daemon past its memory budget.

Each hostile shape is sent three ways: through ``run_read_only`` (both walls), through
``execute_sandboxed`` alone (DuckDB's own wall: a rolled-back READ ONLY transaction on a database
with external access off, with the parse-tree check skipped), and a
representative set through the real MCP client to a real daemon on loopback. After each, every
table's rows, the sequences, the settings, the attached databases and the catalog are what they were,
and no file appeared. A generated-SQL fuzz test (Hypothesis) closes the file.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from conftest import FIXTURES, launch_daemon, mcp_http
from golem_mcp.analysis import sql_guard
from golem_mcp.config import Settings
from golem_mcp.errors import GolemError, InvalidInput, ReadOnlyViolation
from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Batch
from golem_mcp.interfaces.client import call as daemon_call
from golem_mcp.store import Store

SECRET = "GOLEM-SECRET-7f3a"  # in a file and the environment: no answer may ever contain it


def hostile(tmp: Path) -> dict[str, list[str]]:
    """The shapes, by what DuckDB's own wall does with them when the parse-tree check is skipped."""
    f = tmp / "secret.csv"
    return {
        # change the store, a sequence, a setting, the catalog or the transaction: DuckDB refuses
        "writes": [
            "WITH x AS (DELETE FROM api_requests RETURNING 1) SELECT count(*) FROM x",
            "WITH x AS (UPDATE api_requests SET input_tokens = 0 RETURNING 1) SELECT count(*) FROM x",
            "WITH x AS (INSERT INTO workflows (workflow_id) VALUES ('evil') RETURNING 1) SELECT count(*) FROM x",
            "WITH a AS (SELECT 1), x AS (DELETE FROM sessions RETURNING *) SELECT * FROM x",
            "WITH x AS (DELETE FROM tool_calls RETURNING 1) SELECT (SELECT count(*) FROM x)",
            "SELECT * FROM (WITH x AS (DELETE FROM api_requests RETURNING 1) SELECT count(*) FROM x)",
            "SELECT (SELECT count(*) FROM (WITH x AS (DELETE FROM api_requests RETURNING 1) SELECT * FROM x))",
            "DELETE FROM api_requests RETURNING request_id",
            "UPDATE api_requests SET input_tokens = 0 RETURNING 1",
            "INSERT INTO settings VALUES ('evil', 'x') RETURNING *",
            "MERGE INTO workflows USING (SELECT 'evil' AS workflow_id) s USING (workflow_id) "
            "WHEN NOT MATCHED THEN INSERT (workflow_id) VALUES ('evil')",
            "SELECT nextval('fact_change_seq')",
            "SELECT setval('fact_change_seq', 1)",
            "CREATE MACRO evil(x) AS x",
            "CREATE TEMP MACRO evil(x) AS x",
            "CREATE TEMP TABLE evil AS SELECT 1",
            "CREATE TABLE evil AS SELECT 1",
            "CREATE VIEW evil AS SELECT 1",
            "DROP VIEW requests",
            "ALTER TABLE api_requests ADD COLUMN evil INT",
            "TRUNCATE api_requests",
            "CHECKPOINT",
            "VACUUM",
            "ANALYZE",
            "SET threads = 1",
            "SET memory_limit = '100GB'",
            "RESET memory_limit",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET VARIABLE evil = 1",
            "PRAGMA threads = 1",
            "PRAGMA enable_profiling",
            "CALL pragma_version()",
            "ROLLBACK; DELETE FROM api_requests",
            "COMMIT; DELETE FROM api_requests",
            "SELECT 1; DELETE FROM api_requests",
            "/* harmless */ DELETE FROM api_requests",
            "ATTACH ':memory:' AS evil",
            "DETACH golem",
            "USE system",
            "INSTALL httpfs",
            "LOAD httpfs",
            "CREATE SECRET evil (TYPE s3, KEY_ID 'a', SECRET 'b')",
        ],
        # files, the network, the environment: DuckDB has no access to them at all
        "outside": [
            f"COPY api_requests TO '{tmp / 'out.csv'}'",
            f"EXPORT DATABASE '{tmp / 'export'}'",
            f"ATTACH '{tmp / 'other.duckdb'}' AS o",
            f"SELECT * FROM read_text('{f}')",
            f"SELECT * FROM read_blob('{f}')",
            f"SELECT * FROM glob('{tmp}/*')",
            f"SELECT * FROM read_csv('{f}')",
            f"SELECT * FROM read_csv_auto('{f}')",
            f"SELECT * FROM sniff_csv('{f}')",
            f"SELECT * FROM read_json('{f}')",
            f"SELECT * FROM '{f}'",
            f"FROM '{f}'",
            f"SELECT * FROM query('SELECT * FROM read_text(''{f}'')')",
            "SELECT * FROM read_parquet('https://example.invalid/x.parquet')",
            "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
            "SELECT getenv('GOLEM_SQL_GUARD_SECRET')",
        ],
        # harmless reads for DuckDB (settings hold paths, no secrets): the parse-tree check refuses them
        "parse_tree_only": [
            "SELECT current_setting('threads')",
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM duckdb_secrets()",
            "SELECT * FROM duckdb_databases()",
            "SELECT * FROM query('SELECT 1')",
            "SELECT * FROM query_table('api_requests')",
            "SELECT setseed(0.5)",
            "SELECT currval('fact_change_seq')",
            "SELECT repeat('x', 40000 * 40000)",
            "SELECT range(0, 2000000000)",
        ],
    }


def state(store: Store, tmp: Path, macros: bool = False) -> dict[str, Any]:
    """Everything an agent's SQL must leave as it was (``macros``: also count the macros, 0.2 s)."""
    q = store.query
    tables = [r["table_name"] for r in q("SELECT table_name FROM duckdb_tables() ORDER BY 1")]
    counts = q("SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}") AS "{t}"' for t in tables))[0]
    return {
        "counts": counts,
        "tokens": q("SELECT sum(input_tokens), sum(output_tokens) FROM api_requests")[0],
        "sequences": q("SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY 1"),
        # the memory limit is the store's own to move (store/memory.py): it must be the one it set
        "settings": q("SELECT name, value FROM duckdb_settings() WHERE name <> 'memory_limit' ORDER BY 1"),
        "memory_limit_as_set": store.memory.as_set(),
        "databases": q("SELECT database_name FROM duckdb_databases() ORDER BY 1"),
        "views": q("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"),
        "macros": q("SELECT count(*) AS n FROM duckdb_functions() WHERE NOT internal") if macros else None,
        "files": sorted(p.name for p in tmp.iterdir()),
    }


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sql-guard") / "golem.duckdb"
    with Store(db, settings=Settings()) as s:
        Importer(s).run([FIXTURES])
        assert s.table_counts()["api_requests"] > 0
    return db


@pytest.fixture
def store(base_db: Path, tmp_path: Path, golem_home: Path) -> Iterator[Store]:
    db = tmp_path / "db" / "golem.duckdb"
    db.parent.mkdir()
    db.write_bytes(base_db.read_bytes())
    s = Store(db, settings=Settings())
    yield s
    s.close()


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "files"
    d.mkdir()
    (d / "secret.csv").write_text(f"secret\n{SECRET}\n")
    monkeypatch.setenv("GOLEM_SQL_GUARD_SECRET", SECRET)
    return d


def test_every_write_file_and_setting_shape_is_refused_and_changes_nothing(store: Store, files: Path) -> None:
    shapes = hostile(files)
    before, macros = state(store, files), state(store, files, macros=True)
    for sql in [s for group in shapes.values() for s in group]:
        with pytest.raises((InvalidInput, ReadOnlyViolation)) as e:
            sql_guard.run_read_only(store, sql)
        assert SECRET not in str(e.value), sql
        assert state(store, files) == before, sql
    assert state(store, files, macros=True) == macros


def test_duckdb_alone_refuses_writes_files_and_the_network(store: Store, files: Path) -> None:
    """The first wall without the parse-tree check: what DuckDB itself refuses."""
    shapes = hostile(files)
    before, macros = state(store, files), state(store, files, macros=True)
    for sql in shapes["writes"] + shapes["outside"]:
        with pytest.raises(GolemError) as e:
            sql_guard.execute_sandboxed(store, sql, max_rows=10)
        assert SECRET not in str(e.value), sql
        assert state(store, files) == before, sql
    for sql in shapes["parse_tree_only"][:-2]:  # the last two are memory shapes, tested below
        with contextlib.suppress(GolemError):
            columns, rows = sql_guard.execute_sandboxed(store, sql, max_rows=1000)
            assert SECRET not in repr(rows), sql
        assert state(store, files) == before, sql
    assert state(store, files, macros=True) == macros


def test_the_parse_tree_check_alone_refuses_every_shape(store: Store, files: Path) -> None:
    """The second wall without DuckDB's: each shape is named and refused before anything runs."""
    for sql in [s for group in hostile(files).values() for s in group]:
        with pytest.raises((InvalidInput, ReadOnlyViolation)):
            sql_guard.check_read_only(store, sql)


def test_reads_still_work_and_the_writer_is_neither_blocked_nor_rolled_back(store: Store) -> None:
    out = sql_guard.run_read_only(store, "WITH s AS (SELECT stage, sum(input_tokens) AS t FROM requests GROUP BY 1) "
                                         "SELECT count(*) AS stages, sum(t) > 0 AS any FROM s")
    assert out["rows"][0][0] > 1 and out["rows"][0][1] is True
    assert sql_guard.run_read_only(store, "FROM workflows SELECT workflow_id LIMIT 1")["row_count"] == 1

    # a slow agent query holds its READ ONLY transaction open while the store commits a batch
    started, result = threading.Event(), {}

    def slow() -> None:
        started.set()
        try:
            # a long scan that holds no memory (a cross join materializes a side: past the budget in a
            # process already holding a test suite's stores, the memory watch stopped it first)
            sql_guard.run_read_only(store, "SELECT count(*) FROM range(100000000000) WHERE range % 7 = 9",
                                    timeout_s=5)
        except InvalidInput as e:
            result["error"] = str(e)

    t = threading.Thread(target=slow)
    t.start()
    started.wait()
    time.sleep(0.3)
    store.write(Batch(rows={"workflows": [{"workflow_id": "wf-written-meanwhile", "path": "full"}]}))
    # committed while the agent's query still ran: the write did not wait for it (an order, not a
    # wall-clock bound, which a loaded machine breaks)
    assert t.is_alive() and "error" not in result, "the write waited for the agent's query"
    t.join(30)
    assert "longer than 5 s" in result["error"] and "LIMIT" in result["error"]
    # the agent's transaction was rolled back; the store's commit was not
    assert store.scalar("SELECT count(*) FROM workflows WHERE workflow_id = 'wf-written-meanwhile'") == 1


def test_time_zone_values_are_answered(store: Store) -> None:
    """now() and other TIMESTAMP WITH TIME ZONE values (common in runbook queries) come back as text
    with their offset; DuckDB needs pytz to hand them to Python, and without it the query failed."""
    out = sql_guard.run_read_only(store, "SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00' AS t, now() > t AS later")
    assert out["rows"][0][0].startswith("2026-01-02") and out["rows"][0][0].endswith("+00:00")
    assert out["rows"][0][1] is True


def test_long_values_are_cut_with_a_note(store: Store) -> None:
    out = sql_guard.run_read_only(store, "SELECT 1 AS n, repeat('x', 100000) AS big")
    assert out["rows"][0][0] == 1 and out["truncated"] is True
    assert 100 < len(out["rows"][0][1]) < 6000 and "left(column" in out["note"]


def test_constant_sized_values_are_refused_before_duckdb_builds_them(store: Store) -> None:
    """DuckDB folds constants while planning, where neither the time limit nor its memory limit stops
    it (repeat('x', 40000*40000) took 3 GB and 26 s): the parse tree refuses them first."""
    for sql in ("SELECT repeat('x', 40000 * 40000)", "SELECT range(0, 2000000000)",
                "SELECT lpad('a', 2000000000, 'b')", "SELECT repeat('x', '2000000000'::INT)",
                "SELECT repeat('abcdefghij', 2000000)", "SELECT repeat(repeat('x', 10000000), 10)",
                # one repeat() call builds its whole value uninterruptibly: 1.6 GB ran 40 s past the limit
                "WITH a AS (SELECT 1600000000 AS n) SELECT length(repeat('x', n)) FROM a",
                "SELECT max(length(repeat('x', n))) FROM range(5) t(n)",
                "SELECT repeat(request_id, 1000) FROM api_requests"):
        with pytest.raises(InvalidInput, match="memory budget") as e:
            sql_guard.run_read_only(store, sql)
        assert "bar()" in str(e.value)
    # small literal sizes run, lists over rows run (in DuckDB's managed memory), and so do table functions
    out = sql_guard.run_read_only(store, "SELECT repeat('ab', 3), lpad('7', 3, '0'), repeat([1], 2), bar(5, 0, 10, 4)")
    assert out["rows"] == [["ababab", "007", [1, 1], "██  "]]
    assert sql_guard.run_read_only(store, "SELECT max(len(range(0, n))) FROM range(5) t(n)")["rows"] == [[4]]
    out = sql_guard.run_read_only(store, "SELECT count(*) FROM generate_series(DATE '2026-01-01', DATE '2026-01-31', "
                                         "INTERVAL 1 DAY)")
    assert out["rows"] == [[31]]


def test_a_query_growing_past_the_memory_budget_is_stopped_by_the_watch(golem_home: Path) -> None:
    """Memory DuckDB's own limit does not see (a growing string_agg state): the process' RSS is
    watched while the query runs, and the query is interrupted once it passes the budget."""
    with Store(":memory:", settings=Settings()) as s:
        start = sql_guard._rss_mb()
        assert start is not None
        budget = start + 200
        peak, done = [start], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], sql_guard._rss_mb() or 0)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with pytest.raises(InvalidInput, match="memory budget") as e:
                sql_guard.execute_sandboxed(s, "SELECT length(string_agg(repeat('x', 1000 + i % 7), ',')) "
                                               "FROM range(3000000) t(i)", max_rows=1, timeout_s=60, budget_mb=budget)
        finally:
            done.set()
            sampler.join()
        assert "LIMIT" in str(e.value)
        assert peak[0] < budget + 100, f"RSS peaked at {peak[0]:.0f} MB, budget {budget:.0f} MB"


def test_queries_running_at_once_are_each_watched_and_only_the_slow_one_is_stopped(store: Store) -> None:
    """One thread watches every running query: a query past its time limit is stopped with the time
    message while queries run beside it and after it, and those answer in full."""
    stopped: list[str] = []

    def slow() -> None:
        try:
            sql_guard.execute_sandboxed(store, "SELECT sum(i % 7) FROM range(1000000000000) t(i)", max_rows=1,
                                        timeout_s=1)
        except InvalidInput as e:
            stopped.append(str(e))

    t = threading.Thread(target=slow)
    t.start()
    answers = [sql_guard.execute_sandboxed(store, f"SELECT {i}", max_rows=1, timeout_s=30)[1] for i in range(50)]
    t.join(120)
    assert not t.is_alive()
    assert answers == [[(i,)] for i in range(50)]
    assert len(stopped) == 1 and "ran longer than 1 s" in stopped[0]
    # the watch keeps nothing of the stopped query: the next ones run to their end
    assert sql_guard.run_read_only(store, "SELECT 42 AS n")["rows"] == [[42]]


# --- through the real daemon over loopback -------------------------------------------------------

ROW_COUNTS = ("SELECT (SELECT count(*) FROM api_requests) AS r, (SELECT count(*) FROM tool_calls) AS t, "
              "(SELECT count(*) FROM sessions) AS s, (SELECT count(*) FROM workflows) AS w, "
              "(SELECT sum(input_tokens) FROM api_requests) AS tok, (SELECT count(*) FROM settings) AS st")


async def _rows(c: Client, sql: str) -> list[list[Any]]:
    r = await c.call_tool("query_sql", {"sql": sql})
    assert not r.is_error, r.content[0].text
    return r.structured_content["rows"]


async def test_daemon_refuses_each_shape_over_mcp_and_the_store_is_unchanged(
        start_daemon: Any, files: Path) -> None:
    d = start_daemon(env={"GOLEM_SQL_GUARD_SECRET": SECRET})
    daemon_call(d.url, "/api/import", {"paths": [str(FIXTURES)]})
    shapes = hostile(files)
    subset = shapes["writes"][:16] + ["CREATE MACRO evil(x) AS x", "SET threads = 1", "PRAGMA threads = 1",
                                      "ROLLBACK; DELETE FROM api_requests"] + shapes["outside"] + shapes["parse_tree_only"]
    async with Client(mcp_http(d.url)) as c:
        before = await _rows(c, ROW_COUNTS)
        assert before[0][0] > 0
        for sql in subset:
            r = await c.call_tool("query_sql", {"sql": sql})
            assert r.is_error, sql
            text = r.content[0].text
            assert SECRET not in text, sql
            assert any(w in text for w in ("read-only", "not allowed", "off limits", "outside", "memory budget",
                                           "exactly one", "not a table")), (sql, text)
            assert await _rows(c, ROW_COUNTS) == before, sql
    assert sorted(p.name for p in files.iterdir()) == ["secret.csv"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the daemon's RSS from /proc")
async def test_hostile_string_agg_is_stopped_with_the_daemon_under_its_budget(golem_home: Path, tmp_path: Path) -> None:
    """string_agg over every request took the daemon to 6.3 GB (3M rows, before). Here: 300k rows of
    2 kB each would need ~600 MB, over a 512 MB budget; the daemon's RSS, sampled from /proc every 10 ms,
    stays under it and the agent is told how to narrow the query."""
    budget = 512
    db = tmp_path / "big.duckdb"
    with Store(db, settings=Settings()) as s:
        s.con.execute("INSERT INTO api_requests (request_id, input_tokens) "
                      "SELECT 'req-' || i, i % 1000 FROM range(300000) t(i)")
    d = launch_daemon(golem_home, db, env={"GOLEM_MEMORY_BUDGET_MB": str(budget)})
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], _rss_mb(d.proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    try:
        async with Client(mcp_http(d.url)) as c:
            need = await _rows(c, "SELECT sum(length(request_id) + 2000) / 1e6 FROM api_requests")
            assert need[0][0] > budget  # the answer alone would not fit
            sampler.start()
            t0 = time.monotonic()
            r = await c.call_tool("query_sql", {"sql": "SELECT string_agg(request_id || repeat('x', 2000), ',') "
                                                       "FROM api_requests"})
            took = time.monotonic() - t0
            assert r.is_error and "memory" in r.content[0].text and "LIMIT" in r.content[0].text, r.content[0].text
            assert took < 10
            # and the daemon still answers
            assert (await _rows(c, "SELECT count(*) FROM api_requests")) == [[300000]]
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        d.stop()
    assert 0 < peak[0] < budget, f"daemon RSS peaked at {peak[0]:.0f} MB"


# --- fuzz -------------------------------------------------------------------------------------------

_TABLES = ["api_requests", "requests", "workflows", "settings", "tool_calls", "x", "'f.csv'", "read_text('/etc/hostname')",
           "range(3)", "query_table('api_requests')", "duckdb_settings()", "glob('/*')"]
_WRITES = ["DELETE FROM api_requests RETURNING 1", "UPDATE api_requests SET input_tokens = 0 RETURNING 1",
           "INSERT INTO workflows (workflow_id) VALUES ('fz') RETURNING 1", "SELECT nextval('fact_change_seq')",
           "SELECT 1", "SELECT * FROM api_requests", "DELETE FROM settings RETURNING *"]
_FUNCS = ["nextval('fact_change_seq')", "setval('fact_change_seq', 1)", "current_setting('threads')",
          "getenv('HOME')", "count(*)", "1", "repeat('x', 3)", "repeat('x', 99999999999)", "read_text('x')",
          "list(request_id)", "NULL"]
_STATEMENTS = ["SET threads = 1", "PRAGMA threads = 1", "ATTACH ':memory:' AS z", "CREATE MACRO m(x) AS x",
               "ROLLBACK", "COMMIT", "CHECKPOINT", "COPY api_requests TO 'o.csv'", "DROP TABLE settings",
               "CALL pragma_version()", "SET VARIABLE v = 1", "INSTALL httpfs", "EXPORT DATABASE 'e'"]


@st.composite
def hostile_sql(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    write, func, table = draw(st.sampled_from(_WRITES)), draw(st.sampled_from(_FUNCS)), draw(st.sampled_from(_TABLES))
    if kind == 0:
        sql = f"WITH x AS ({write}) SELECT {func} FROM x"
    elif kind == 1:
        sql = f"SELECT {func} FROM (WITH x AS ({write}) SELECT * FROM x) LIMIT 3"
    elif kind == 2:
        sql = f"SELECT {func} FROM {table} LIMIT 3"
    elif kind == 3:
        sql = f"SELECT {func}; {draw(st.sampled_from(_STATEMENTS))}"
    else:
        sql = draw(st.sampled_from(_STATEMENTS + _WRITES))
    # comments, case and spacing must not matter
    if draw(st.booleans()):
        sql = sql.replace(" ", draw(st.sampled_from(["  ", "\n", " /* c */ ", "\t"])))
    if draw(st.booleans()):
        sql = sql.upper() if draw(st.booleans()) else sql.lower()
    return sql + draw(st.sampled_from(["", ";", " -- tail", "\n"]))


@pytest.fixture(scope="module")
def fuzz_store(base_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    d = tmp_path_factory.mktemp("sql-fuzz")
    (d / "db").mkdir()
    db = d / "db" / "golem.duckdb"
    db.write_bytes(base_db.read_bytes())
    s = Store(db, settings=Settings())
    yield s, d / "db"
    s.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=hostile_sql())
def test_fuzz_guard_raises_only_its_own_errors_and_the_store_never_changes(
        fuzz_store: tuple[Store, Path], sql: str) -> None:
    store, folder = fuzz_store
    before = state(store, folder)
    with contextlib.suppress(InvalidInput, ReadOnlyViolation):  # refused with a message: most of these
        sql_guard.run_read_only(store, sql, timeout_s=2)
    assert state(store, folder) == before, sql
