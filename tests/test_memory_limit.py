"""DuckDB's memory limit follows the work (store/memory.py): low while the store only takes writes and
small questions, the whole budget while heavy work runs, and a write never lost to the low limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from conftest import FIXTURES
from golem_mcp.analysis import sql_guard
from golem_mcp.config import Settings
from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store, memory
from golem_mcp.store.memory import MemoryLimit, low_limit


def _limit_mb(store: Store) -> float:
    """DuckDB's memory limit in MB (10^6 bytes, as DuckDB reads '307MB'), from what it shows."""
    shown = store.scalar("SELECT current_setting('memory_limit')")
    number, unit = shown.split()
    return float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit] / 1e6


def _until(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoryLimit, "HOLD", 0.2)


@pytest.fixture
def store(tmp_path: Path, golem_home: Path, quick: None) -> Iterator[Store]:
    s = Store(tmp_path / "golem.duckdb", settings=Settings(memory_budget_mb=2048))
    yield s
    s.close()


def test_the_low_limit_is_a_fifth_of_the_budget_or_what_the_key_indexes_need() -> None:
    assert low_limit(1536, 0) == 307
    assert low_limit(300, 0) == 256  # the floor
    assert low_limit(200, 0) == 200  # never above the whole budget
    assert low_limit(1536, 260_000_000) == 518  # a 10M-request store's key indexes
    assert low_limit(600, 2 << 30) == 600


def test_the_limit_falls_when_nothing_heavy_runs_and_rises_while_heavy_work_does(store: Store) -> None:
    high = store.memory_limit_mb
    assert high == 1536
    assert _until(lambda: store.memory.lowered), "the limit never fell after the open"
    assert _limit_mb(store) == pytest.approx(store.memory.low_mb, rel=0.05)
    assert store.memory.low_mb < high
    with store.memory.heavy():
        assert _limit_mb(store) == pytest.approx(high, rel=0.05)
        with store.memory.heavy():  # nested: still high after the inner one ends
            pass
        time.sleep(0.4)
        assert _limit_mb(store) == pytest.approx(high, rel=0.05)
    # held a little after (work comes in runs), then low again
    assert _limit_mb(store) == pytest.approx(high, rel=0.05)
    assert _until(lambda: store.memory.lowered)
    assert _limit_mb(store) == pytest.approx(store.memory.low_mb, rel=0.05)


def test_an_agents_sql_and_an_analysis_run_get_the_whole_budget(store: Store) -> None:
    Importer(store).run([FIXTURES])
    assert _until(lambda: store.memory.lowered)
    seen: list[float] = []
    orig = sql_guard._Watch.__enter__

    def watching(self):  # type: ignore[no-untyped-def]
        seen.append(_limit_mb(store))
        return orig(self)
    sql_guard._Watch.__enter__ = watching  # type: ignore[method-assign]
    try:
        sql_guard.run_read_only(store, "SELECT count(*) FROM requests")
    finally:
        sql_guard._Watch.__enter__ = orig  # type: ignore[method-assign]
    assert seen == [pytest.approx(store.memory_limit_mb, rel=0.05)]
    # and nothing an agent sends can set it: one parsed SELECT runs, nothing else
    for sql in ("SET memory_limit = '100GB'", "RESET memory_limit", "PRAGMA memory_limit = '100GB'"):
        with pytest.raises(Exception):  # noqa: B017 - refused by either wall, each with its own error
            sql_guard.run_read_only(store, sql)
        with pytest.raises(Exception):  # noqa: B017
            sql_guard.execute_sandboxed(store, sql, max_rows=1)
    assert store.memory.as_set()


def test_a_write_that_needs_more_than_the_low_limit_is_written_again_under_the_whole_budget(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # a low limit far below what writing the fixtures needs (and just above what the open store holds)
    monkeypatch.setattr(memory, "low_limit", lambda high_mb, index_bytes: 6)
    store.memory.settle()
    assert _until(lambda: store.memory.lowered)
    assert _limit_mb(store) < 7
    batch = Batch()
    for row in _fixture_batch(tmp_path).rows["api_requests"]:
        batch.add("api_requests", dict(row))
    batch.add("api_requests", {"request_id": "bad-tokens", "session_id": "s", "timestamp": "2026-01-01T00:00:00Z",
                               "input_tokens": "twelve"})
    with caplog.at_level("INFO", logger="golem_mcp.store"):
        counts = store.write(batch)
    assert "out of memory at DuckDB's low limit (6 MB)" in caplog.text  # it did, and was written again
    assert counts["api_requests"] == len(batch.rows["api_requests"])
    stored = store.scalar("SELECT count(*) FROM api_requests")
    assert stored == len(batch.rows["api_requests"]) - 1  # every good row, the bad one left out
    assert [s.reason for s in batch.skipped].count(batch.skipped[0].reason) == 1  # reported once
    assert len(batch.skipped) == 1
    # the same rows in a store that never lowered its limit
    with Store(tmp_path / "other.duckdb", settings=Settings(memory_budget_mb=2048)) as other:
        again = Batch()
        for row in batch.rows["api_requests"]:
            again.add("api_requests", {k: v for k, v in row.items() if not k.startswith("_")})
        other.write(again)
        sql = ("SELECT sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), count(*), "
               "count(r_workflow_id) FROM api_requests")
        assert store.query(sql) == other.query(sql)


def _fixture_batch(tmp_path: Path) -> Batch:
    """The shared fixture's API requests, as the transcript importer reads them."""
    with Store(tmp_path / "read.duckdb", settings=Settings()) as s:
        Importer(s).run([FIXTURES])
        rows = s.query("SELECT * EXCLUDE (machine_id) FROM api_requests")
    b = Batch()
    for r in rows:
        b.add("api_requests", {k: v for k, v in r.items() if not k.startswith(("r_", "_"))})
    return b


def test_duckdb_will_not_turn_files_the_network_or_extensions_back_on(store: Store) -> None:
    """The configuration is not locked (the store sets its own memory limit), so this rests on
    DuckDB's own rule: external access, once off, stays off while the database runs."""
    with store.reader() as cur:
        for sql in ("SET enable_external_access = true", "SET allow_community_extensions = true",
                    "SET allowed_directories = ['/']", "SET temp_directory = '/tmp/elsewhere'"):
            with pytest.raises(duckdb.Error):
                cur.execute(sql)
        with pytest.raises(duckdb.Error):
            cur.execute("SELECT * FROM read_text('/etc/hostname')")
        cur.execute("SET autoload_known_extensions = true")  # allowed, and still nothing loads
        with pytest.raises(duckdb.Error):
            cur.execute("LOAD httpfs")
    assert store.scalar("SELECT current_setting('enable_external_access')") is False


def test_a_read_only_store_keeps_the_whole_budget(tmp_path: Path, golem_home: Path, quick: None) -> None:
    db = tmp_path / "golem.duckdb"
    Store(db, settings=Settings()).close()
    with Store(db, read_only=True, settings=Settings()) as ro:
        time.sleep(0.5)
        assert not ro.memory.lowered
        assert _limit_mb(ro) == pytest.approx(ro.memory_limit_mb, rel=0.05)


def test_an_out_of_memory_hidden_behind_a_failed_clean_up_still_runs_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement in a ``finally`` after the failed one fails again ("transaction is aborted"), and that
    error is what reaches the caller: the analysis cache's refresh at 10M requests did exactly that."""
    monkeypatch.setattr(memory, "low_limit", lambda high_mb, index_bytes: 64)
    store.memory.settle()
    assert _until(lambda: store.memory.lowered)

    def work() -> list:
        with store.reader() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                return cur.execute("SELECT len(list(i)) FROM range(30000000) t(i)").fetchall()
            finally:
                cur.execute("CREATE OR REPLACE TEMP TABLE clean_up AS SELECT 1")  # fails after the first
                cur.execute("ROLLBACK")

    with pytest.raises(duckdb.TransactionException) as e:
        work()
    assert memory.out_of_memory(e.value) is not None
    assert store.memory.run(work) == [(30000000,)]


def test_the_low_limit_is_measured_again_as_the_writes_go_on(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key indexes a write keeps loaded grow with the store: every MEASURE_WRITES writes the low
    limit is worked out again from what DuckDB holds (here on the writing thread itself)."""
    import threading

    measured: list[tuple[int, int]] = []  # (writes so far, key index bytes) at each measure
    done = [0]

    def low(high_mb: int, index_bytes: int) -> int:
        if threading.current_thread() is threading.main_thread():
            measured.append((done[0], index_bytes))
        return 300
    monkeypatch.setattr(memory, "low_limit", low)
    time.sleep(MemoryLimit.HOLD + 0.1)  # the open's own heavy work is past
    for i in range(3 * MemoryLimit.MEASURE_WRITES):
        done[0] += 1
        store.write(Batch(rows={"workflows": [{"workflow_id": f"wf-{i}"}]}))
    assert len(measured) == 3
    assert [b[0] - a[0] for a, b in zip(measured[:-1], measured[1:], strict=True)] == [MemoryLimit.MEASURE_WRITES] * 2
    assert all(n > 0 for _, n in measured)  # the workflows' key index, at least
    assert store.memory.current_mb == 300 and _limit_mb(store) == pytest.approx(300, rel=0.05)
