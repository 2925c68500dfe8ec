"""Closing the store while a read runs on one of its cursors: the read is interrupted, the close
succeeds. (DuckDB refuses to close a connection a cursor is busy on; a daemon stopped in the middle
of an analysis run aborted the process on it.)"""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from golem_mcp.store.db import Store


def test_close_interrupts_a_running_read_and_closes(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    store = Store(tmp_path / "s.duckdb")
    outcome: list[BaseException | str] = []
    started = threading.Event()

    def long_read() -> None:
        try:
            with store.reader() as cur:
                started.set()
                cur.execute("SELECT count(*) FROM range(1000000000000) a").fetchall()  # hours, uninterrupted
            outcome.append("finished")
        except BaseException as e:  # noqa: BLE001 - the test looks at what the reader saw
            outcome.append(e)

    t = threading.Thread(target=long_read)
    t.start()
    assert started.wait(5)
    time.sleep(0.3)  # the query is running
    s = time.monotonic()
    store.close()
    assert time.monotonic() - s < 5
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], duckdb.InterruptException), outcome
    with pytest.raises(duckdb.Error):
        store.con.execute("SELECT 1")  # closed for real
    # and the file opens again with what was committed
    with Store(tmp_path / "s.duckdb") as again:
        assert again.scalar("SELECT 1") == 1
