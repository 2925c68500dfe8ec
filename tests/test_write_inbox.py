"""The write inbox (``store/inbox.py``): the daemon answers an OTLP body once its checked, redacted
rows are committed there, and the writer resolves them into facts afterwards. What a 200 promised
must hold all the same: a process that ends between the two loses nothing (the next store opened on
the file writes them first), a read asked after the answer sees the rows, and the inbox holds no
text the fact tables would not."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import api
from golem_mcp.ingestion import otlp
from golem_mcp.interfaces.metrics import live
from golem_mcp.kit.doctor import FAIL, OK, WARN, check_write_inbox, run_checks
from golem_mcp.redaction import REDACTED
from golem_mcp.store import Store, inbox
from golem_mcp.store.batch import Batch
from test_daemon import otlp_bodies
from test_kit_doctor import by_name

WAIT = 120  # seconds: a wait for a loaded machine, not a speed check
FACTS = ("api_requests", "tool_calls", "otel_events", "agents", "workflows", "sessions")


def log_batches() -> list[Batch]:
    out = []
    for signal, ctype, body in otlp_bodies():
        if signal == "logs":
            b = Batch()
            otlp.to_batch(signal, otlp.decode(signal, body, ctype), b, False)
            out.append(b)
    return out


def counts(store: Store) -> dict[str, int]:
    return {t: n for t, n in store.table_counts().items() if t in FACTS}


def resolved(store: Store) -> list[tuple]:
    return store.con.execute("SELECT request_id, r_workflow_id, r_stage, r_top_stage, r_cost_usd, input_tokens, "
                             "output_tokens FROM api_requests ORDER BY request_id").fetchall()


def test_rows_landed_by_a_process_killed_before_their_write_are_written_by_the_next_store(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db):
        pass  # created (and migrated) by this process; the child only lands
    # a process that lands every fixture log body (its 200s would have gone out) and is killed -9
    # before its writer resolved any of them
    child = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_write_inbox import log_batches
from golem_mcp.store import Store
store = Store({str(db)!r})
for b in log_batches():
    assert store.land(b) is not None
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=WAIT)
    assert proc.returncode == -9, proc.stderr.decode()
    with Store(db, read_only=True) as ro:  # read-only: writes nothing, so the inbox is as the kill left it
        landed = ro.scalar("SELECT count(DISTINCT seq) FROM write_inbox")
        assert landed == len(log_batches())
        assert ro.scalar("SELECT count(*) FROM api_requests") == 0

    with Store(db) as store:  # the next store writes them first
        assert store.scalar("SELECT count(*) FROM write_inbox") == 0
        got, got_resolved = counts(store), resolved(store)
        assert store.check_resolution(full=True)["mismatches"] == {}
    with Store(tmp_path / "reference.duckdb") as ref:
        for b in log_batches():
            ref.write(b)
        assert counts(ref) == got and got["api_requests"] > 0
        assert resolved(ref) == got_resolved


def test_a_read_waits_for_the_batches_answered_before_it(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        batch = log_batches()[0]
        n = len({r["request_id"] for r in batch.rows["api_requests"]})
        held, release = threading.Event(), threading.Event()

        def hold_the_writer() -> None:  # the write needs the store's lock: it cannot commit meanwhile
            with store._lock:
                held.set()
                release.wait(WAIT)

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        assert held.wait(WAIT)
        try:
            assert store.land(batch) is not None  # committed to the inbox: a caller answers now
            written = store.submit(batch)
            seen: list[int] = []
            reader = threading.Thread(target=lambda: seen.append(store.scalar("SELECT count(*) FROM api_requests")))
            reader.start()
            reader.join(1.0)
            assert reader.is_alive() and not written.done()  # the read waits for the write, not the other way
            assert store.landed_rows() == batch.count()
            assert f"\ngolem_write_inbox_rows {batch.count()}\n" in live(store)  # /metrics shows the backlog
        finally:
            release.set()
            holder.join(WAIT)
        reader.join(WAIT)
        assert seen == [n]  # it saw the batch answered before it
        assert written.result(WAIT)["api_requests"] == len(batch.rows["api_requests"])
        assert store.scalar("SELECT count(*) FROM write_inbox") == 0  # deleted by the write that resolved them
        assert store.landed_rows() == 0 and not store._writes.landed_pending()


def test_the_inbox_holds_the_rows_as_checked_and_redacted(tmp_path: Path) -> None:
    secret = "Authorization: Bearer sk-live-0123456789abcdef"
    with Store(tmp_path / "s.duckdb") as store:
        batch = log_batches()[0]
        batch.rows["otel_events"][0]["attributes"] = json.dumps({"note": secret})
        bad = dict(batch.rows["api_requests"][0], request_id="req_bad", input_tokens=-5)
        batch.rows["api_requests"].append(bad)
        store.land(batch)
        # the checks ran before the answer: the refused record is reported and out of the batch
        assert any("input_tokens" in s.reason for s in batch.skipped) and batch.rejected() == 1
        assert "req_bad" not in {r["request_id"] for r in batch.rows["api_requests"]}
        blobs = store.con.execute("SELECT table_name, rows FROM write_inbox").fetchall()
        texts = {t: str(inbox.decode(b).to_pylist()) for t, b in blobs}
        assert "sk-live-0123456789abcdef" not in str(texts) and REDACTED in texts["otel_events"]
        assert "req_bad" not in texts["api_requests"]
        store.submit(batch).result(WAIT)
        stored = store.scalar("SELECT attributes FROM otel_events WHERE attributes LIKE '%note%'")
        assert "sk-live" not in stored and REDACTED in stored
        assert store.scalar("SELECT count(*) FROM api_requests WHERE request_id = 'req_bad'") == 0


def test_landed_batches_merge_into_one_write_as_separate_writes_would(tmp_path: Path) -> None:
    """Batches landed one by one are written together (the rows the checks staged, concatenated):
    the same rows as each written on its own."""
    with Store(tmp_path / "s.duckdb") as store:
        store._writes.GATHER_WAIT = 60
        batches = log_batches()
        with store.coming():  # the writer waits while the rest land
            futures = []
            for b in batches:
                store.land(b)
                futures.append(store.submit(b))
            time.sleep(0.2)
        for f in futures:
            f.result(WAIT)
        assert store.commits == 1
        got, got_resolved = counts(store), resolved(store)
    with Store(tmp_path / "reference.duckdb") as ref:
        for b in log_batches():
            ref.write(b)
        assert counts(ref) == got and resolved(ref) == got_resolved


def test_status_and_doctor_say_what_the_inbox_holds_and_what_a_start_could_not_write(
        tmp_path: Path, golem_home: Path, monkeypatch: pytest.MonkeyPatch, start_daemon: Callable[..., Any]) -> None:
    """Batches answered before a stop wait in the store: `status` and `doctor` say so while no daemon
    runs. The next start writes them; one it cannot write (here a table this version does not have,
    as after going back to an older golem-mcp) stays, the others are written, and doctor fails on it
    with where to look."""
    db = tmp_path / "golem.duckdb"
    monkeypatch.setenv("GOLEM_DB", str(db))
    with Store(db) as store:
        for b in log_batches()[:2]:
            assert store.land(b) is not None  # answered; the process stops before their write
        store.con.execute("INSERT INTO write_inbox (seq, table_name, rows) VALUES (99, 'a_newer_table', ?)",
                          [inbox.encode(pa.table({"id": ["x"]}))])
    c = check_write_inbox(None)
    assert c.status == WARN and "3 batches" in c.detail and "wait in the store" in c.detail, c
    # doctor without a daemon opens the store once, read-only, for both checks that read it
    opened: list[bool] = []
    real_init = Store.__init__

    def counted(self: Store, *args: Any, **kwargs: Any) -> None:
        opened.append(bool(kwargs.get("read_only")))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Store, "__init__", counted)
    checks = by_name(run_checks(None))
    monkeypatch.setattr(Store, "__init__", real_init)
    assert checks["write inbox"].status == WARN and checks["resolved facts"].status == OK, checks
    assert opened == [True]
    out = subprocess.run([sys.executable, "-m", "golem_mcp", "status"], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0 and "write inbox: 3 batches accepted before the daemon stopped" in out.stdout, out

    d = start_daemon(db=db)
    status = api.get(d.url + "/api/status", timeout=WAIT).json()
    assert status["write_inbox"] == {"rows_not_written": 0, "batches_kept": 1}
    assert status["api_requests"] > 0  # the two good batches were written beside the one kept
    c = check_write_inbox(status)
    assert c.status == FAIL and "1 batches accepted before a stop could not be written" in c.detail
    assert "daemon's log" in (c.fix or "")
    assert by_name(run_checks(None))["write inbox"].status == FAIL  # the same through the daemon doctor finds
