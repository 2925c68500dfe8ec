"""Machine identity and change tracking (issue 11, migration 009): every fact knows the machine it was
observed on; every row of an exported table knows the write that last changed it."""

from __future__ import annotations

import itertools
import random
import socket
from datetime import datetime
from pathlib import Path

import pytest

from golem_mcp import home
from golem_mcp.analysis.cost import cost_by
from golem_mcp.config import Settings
from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import CHANGE_TABLES, MACHINE_TABLES, Store
from golem_mcp.store.rollups import SPECS, differences
from support import sightings


def _req(rid: str, **kw: object) -> Batch:
    b = Batch()
    b.add("api_requests", {"request_id": rid, "session_id": "s1", "model": "claude-sonnet-4-5",
                           "timestamp": datetime(2026, 11, 2, 10), "input_tokens": 10, **kw})
    return b


def test_machine_id_is_made_once_and_kept(golem_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOLEM_MACHINE", raising=False)
    mid, label = home.machine()
    assert label == socket.gethostname()
    assert (golem_home / "machine").read_text().strip() == mid
    assert home.machine() == (mid, label)  # stable: read back, not made again
    assert set(mid) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and mid.rsplit("-", 1)[1].isalnum()
    monkeypatch.setenv("GOLEM_MACHINE", "CI Runner #7")
    assert home.machine() == ("ci-runner-7", "CI Runner #7")


def test_local_facts_get_this_machine_imported_keep_theirs(tmp_path: Path, golem_home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLEM_MACHINE", "laptop")
    with Store(tmp_path / "g.duckdb", settings=Settings()) as store:
        b = _req("r1")
        b.add("tool_calls", {"tool_use_id": "t1", "session_id": "s1", "tool_name": "Read"})
        b.add("sessions", {"session_id": "s1", "cwd": "/tmp/p"})
        store.write(b)
        store.write(_req("r2", machine_id="runner-1", session_id="s2"))
        # the same fact again from elsewhere, by no better source: the least machine id stays (either order)
        store.write(_req("r1", machine_id="runner-1", output_tokens=5))
        got = {r["request_id"]: r["machine_id"] for r in store.query("SELECT request_id, machine_id FROM requests")}
        assert got == {"r1": "laptop", "r2": "runner-1"}
        assert store.scalar("SELECT machine_id FROM tools") == "laptop"
        assert store.scalar("SELECT machine_id FROM sessions") == "laptop"
        assert store.query("SELECT machine_id, label FROM machines") == [{"machine_id": "laptop", "label": "laptop"}]
        by = {r["machine"]: r["requests"] for r in cost_by(store, ["machine"])}
        assert by == {"laptop": 1, "runner-1": 1}
        assert [r["requests"] for r in cost_by(store, [], {"machine_id": "runner-1"})] == [1]


def test_a_store_from_before_machines_claims_its_facts(tmp_path: Path, golem_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLEM_MACHINE", "old-box")
    db = tmp_path / "g.duckdb"
    with Store(db, settings=Settings()) as store:
        store.write(_req("r1"))
        # as a store written before migration 009 looks: no machine on its facts, 009 not applied
        for t in MACHINE_TABLES:
            store.con.execute(f"UPDATE {t} SET machine_id = NULL")
        store.con.execute("DELETE FROM schema_migrations WHERE version = 9")
    with Store(db, settings=Settings()) as store:
        assert store.scalar("SELECT machine_id FROM api_requests") == "old-box"


def test_change_numbers_follow_real_changes_only(tmp_path: Path, golem_home: Path) -> None:
    with Store(tmp_path / "g.duckdb", settings=Settings()) as store:
        start = store.change_high()
        store.write(_req("r1"))
        first = store.changes_since("api_requests", start)
        assert first.num_rows == 1 and first.column("_change_seq")[0].as_py() > start
        seq1 = first.column("_change_seq")[0].as_py()
        store.write(_req("r1"))  # the same fact again: nothing changed, nothing to send
        assert store.changes_since("api_requests", seq1).num_rows == 0
        store.write(_req("r1", output_tokens=42))  # a real change: sent again
        again = store.changes_since("api_requests", seq1)
        assert again.num_rows == 1 and again.column("output_tokens")[0].as_py() == 42
        high = store.change_high()
        assert again.column("_change_seq")[0].as_py() <= high
        # many rows at once (the batch path with a key lookup) and rows folded inside a batch
        b = Batch()
        for i in range(100):
            b.add("api_requests", {"request_id": f"m{i}", "input_tokens": i})
            b.add("api_requests", {"request_id": f"m{i}", "output_tokens": i})
        store.write(b)
        assert store.changes_since("api_requests", high).num_rows == 100
        assert store.changes_since("api_requests", high, upto=high).num_rows == 0
        # every exported table carries the column
        for t in CHANGE_TABLES:
            assert "_change_seq" in store._types[t], t
        assert store.watermark("export:/x", "api_requests") == 0
        store.set_watermark("export:/x", "api_requests", high)
        assert store.watermark("export:/x", "api_requests") == high
        with pytest.raises(Exception, match="not change-tracked"):
            store.changes_since("prices", 0)


def test_tables_of_later_migrations_get_both_columns(tmp_path: Path, golem_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLEM_MACHINE", "box")
    db = tmp_path / "g.duckdb"
    with Store(db, settings=Settings()) as store:
        # as 010's compaction_events is on a store where it was made after 009 ran: without the columns
        store.con.execute("ALTER TABLE compaction_events DROP COLUMN machine_id")
        store.con.execute("ALTER TABLE compaction_events DROP COLUMN _change_seq")
        store.con.execute("INSERT INTO compaction_events (event_key, session_id) VALUES ('c1', 's1')")
    with Store(db, settings=Settings()) as store:
        assert store.query("SELECT machine_id, _change_seq FROM compaction_events") == [
            {"machine_id": "box", "_change_seq": 1}]
        b = Batch()
        b.add("compaction_events", {"event_key": "c2", "session_id": "s1", "pre_tokens": 10})
        store.write(b)
        assert store.changes_since("compaction_events", 1).column("machine_id").to_pylist() == ["box"]


def _named_after(writes: list[list[tuple[str, str, str, int | None]]]) -> dict[tuple[str, str], str]:
    with Store(":memory:", settings=Settings(), machine=("here", "here")) as store:
        for w in writes:
            store.write(sightings.batch(w))
        for fact in SPECS:  # the rollups (by machine among others) follow a fact's machine changing
            assert differences(store.con, fact) == [], fact
        return sightings.named(store.con)


def test_a_fact_seen_on_several_machines_names_the_same_machine_in_any_order(golem_home: Path) -> None:
    """The same facts from three machines (a shard of each imported, a sighting arriving again),
    merged in every order of the machines, one sighting at a time in shuffled orders, and all in one
    batch (folded by key before the merge): every fact names the machine the rule picks."""
    by_machine = [sightings.of(m) for m in sightings.MACHINES]
    for order in itertools.permutations(by_machine):
        assert _named_after(list(order)) == sightings.EXPECTED, [o[0][2] for o in order]
    for seed in range(3):
        shuffled = list(sightings.SIGHTINGS)
        random.Random(seed).shuffle(shuffled)
        assert _named_after([[s] for s in shuffled]) == sightings.EXPECTED, seed
    assert _named_after([sightings.SIGHTINGS]) == sightings.EXPECTED
    assert _named_after([list(reversed(sightings.SIGHTINGS))]) == sightings.EXPECTED
    # sightings sent again (a resent push, a shard imported twice) name the same machines and, sent
    # once more, change nothing, so send nothing on (the first resend turns a NULL source_mask into 0)
    with Store(":memory:", settings=Settings(), machine=("here", "here")) as store:
        store.write(sightings.batch(sightings.SIGHTINGS))
        for _ in range(2):
            high = store.change_high()
            for m in by_machine:
                store.write(sightings.batch(m))
            assert sightings.named(store.con) == sightings.EXPECTED
        assert sum(store.changes_since(t, high).num_rows for t in ("api_requests", "tool_calls", "api_errors",
                                                                   "spans", "sessions")) == 0
