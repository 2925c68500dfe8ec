"""The store's one writer (``Store.submit``): OTLP and hook posts, the hook spool's drain and the
transcript watcher all write through it. Concurrent sources land exactly what a serial import of the
same inputs gives (nothing lost, nothing doubled), a bad batch fails alone, and a kill -9 in the
middle of it loses nothing that was acknowledged."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import FIXTURES, api, launch_daemon
from golem_mcp.ingestion import otlp, spool
from golem_mcp.ingestion.hooks import hook_to_batch
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store
from golem_mcp.store.batch import Batch
from test_daemon import otlp_bodies, post_otlp

WAIT = 120  # seconds: a wait for the daemon to catch up on a loaded machine, not a speed check


def hook_lines() -> list[bytes]:
    """The fixture's hook payloads as spool lines, each stamped with its own receive time."""
    out = []
    for i, line in enumerate((FIXTURES / "hooks.jsonl").read_text().splitlines()):
        if line.strip():
            out.append(json.dumps({**json.loads(line), "_golem_received_us": 1_700_000_000_000_000 + i}).encode())
    return out


def reference(tmp: Path, bodies: list[tuple[str, str, bytes]], hooks: list[bytes], projects: Path | None) -> dict:
    """Table counts of a store that read the same inputs one after another, with plain writes."""
    with Store(tmp / "reference.duckdb") as ref:
        for signal, ctype, body in bodies:
            b = Batch()
            otlp.to_batch(signal, otlp.decode(signal, body, ctype), b, False)
            ref.write(b)
        for line in hooks:
            b = Batch()
            hook_to_batch(json.loads(line), b, source="reference", line=1)
            ref.write(b)
        if projects is not None:
            Importer(ref, False).run([str(projects)])
        return ref.table_counts()


def status(url: str) -> dict[str, int]:
    r = api.get(url + "/api/status", timeout=WAIT)
    assert r.status_code == 200, r.text
    return r.json()


def settled(url: str, home: Path, want_hooks: int) -> dict[str, int]:
    """Counts once the spool is drained and two looks a few seconds apart agree."""
    deadline = time.monotonic() + WAIT
    last: dict[str, int] | None = None
    while time.monotonic() < deadline:
        now = status(url)
        drained = not any((home / "spool").glob("*")) if (home / "spool").exists() else True
        if drained and now["hook_events"] >= want_hooks and now == last:
            # every body answered is written: none waits in the write inbox, none was kept there
            assert now.pop("write_inbox") == {"rows_not_written": 0, "batches_kept": 0}
            return now
        last = now
        time.sleep(3)
    raise AssertionError(f"the daemon did not settle within {WAIT} s: {last}")


def test_submissions_from_many_threads_land_once_each_and_a_bad_batch_fails_alone(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        def batch(i: int) -> Batch:
            b = Batch()
            hook_to_batch({"hook_event_name": "Stop", "session_id": f"s{i}", "_golem_received_us": i}, b,
                          received_us=i)
            return b

        bad = Batch()
        bad.add("hook_events", {"no_such_column": 1, "event_id": "x"})
        with ThreadPoolExecutor(8) as pool:
            futures = list(pool.map(lambda i: store.submit(batch(i)), range(400)))
            bad_future = store.submit(bad)
            futures += list(pool.map(lambda i: store.submit(batch(i)), range(400, 800)))
        for f in futures:
            assert f.result(WAIT)["hook_events"] == 1  # committed (it raises what the write raised)
        with pytest.raises(ValueError, match="unknown columns"):
            bad_future.result(WAIT)
        assert store.scalar("SELECT count(*) FROM hook_events") == 800
        assert 0 < store.commits <= 801  # batches queued together shared a commit


def test_a_write_waits_for_batches_announced_as_coming_and_commits_them_together(tmp_path: Path) -> None:
    """Exporters that got their answers together post again together: the writer must not take the
    first body decoded alone while the others are being decoded (``Store.coming``)."""
    def batch(i: int) -> Batch:
        b = Batch()
        hook_to_batch({"hook_event_name": "Stop", "session_id": f"s{i}", "_golem_received_us": i}, b, received_us=i)
        return b

    with Store(tmp_path / "s.duckdb") as store:
        store._writes.GATHER_WAIT = 60  # longer than any test step: only the announcements decide
        with store.coming():  # a second body is being decoded
            first = store.submit(batch(1))
            time.sleep(0.3)
            assert not first.done()  # the writer waits for the batch announced
            second = store.submit(batch(2))
        assert first.result(WAIT) and second.result(WAIT)
        assert store.commits == 1  # one transaction for both

        # an announced body that did not decode releases the write as it gives up
        with store.coming():
            third = store.submit(batch(3))
            time.sleep(0.3)
            assert not third.done()
        assert third.result(WAIT)["hook_events"] == 1  # (the decoding failed: nothing more submitted)
        assert store.commits == 2

        # nothing announced (one exporter, an import): written at once
        t0 = time.monotonic()
        assert store.submit(batch(4)).result(WAIT)["hook_events"] == 1
        assert time.monotonic() - t0 < 30

        # an announced batch that is slow to come waits for the next write past GATHER_WAIT
        store._writes.GATHER_WAIT = 0.2
        with store.coming():
            t0 = time.monotonic()
            assert store.submit(batch(5)).result(WAIT)["hook_events"] == 1
            assert time.monotonic() - t0 < 30
        assert store.scalar("SELECT count(*) FROM hook_events") == 5


def test_a_store_dropped_without_close_lets_go_of_its_database(tmp_path: Path) -> None:
    """The writer thread outlives its batches; it must not keep the store that started it (and its
    DuckDB connection and buffers) alive once the store's owner drops it without close(). Every such
    store once stayed in memory for the life of the process (the test suite grew past 24 GB)."""
    import gc
    import weakref

    store = Store(tmp_path / "g.duckdb")
    b = Batch()
    hook_to_batch({"hook_event_name": "Stop", "session_id": "s1", "_golem_received_us": 1}, b, received_us=1)
    store.submit(b).result(timeout=60)
    thread = store._writes.thread
    assert thread is not None and thread.is_alive()
    timer = store.memory._timer  # the memory limit's next look, due in a while
    assert timer is not None and timer.is_alive()
    gone = weakref.ref(store)
    del store
    gc.collect()
    assert gone() is None
    thread.join(10)
    assert not thread.is_alive()
    assert timer.finished.is_set()  # cancelled: it runs no DuckDB statement for a store nobody holds
    # the database is free again: another connection may open it for writing
    with Store(tmp_path / "g.duckdb") as again:
        assert again.scalar("SELECT count(*) FROM hook_events") == 1


def test_http_spool_and_watcher_write_through_one_writer_nothing_lost_or_doubled(
        golem_home: Path, tmp_path: Path, start_daemon) -> None:
    watch = tmp_path / "projects"
    watch.mkdir()
    d = start_daemon("--watch", str(watch))
    bodies = otlp_bodies()
    hooks = hook_lines()
    src = FIXTURES / "home" / ".claude" / "projects"

    def post_all() -> None:
        with ThreadPoolExecutor(4) as pool:
            for r in pool.map(lambda b: post_otlp(d.url, *b), bodies):
                assert r.status_code == 200, r.text

    def spool_all() -> None:
        for i in range(0, len(hooks), 3):
            spool.append(str(golem_home / "spool"), b"\n".join(hooks[i:i + 3]) + b"\n")
            api.post(d.url + "/api/wake", timeout=WAIT)

    def copy_transcripts() -> None:
        for project in sorted(src.iterdir()):
            shutil.copytree(project, watch / project.name)
            time.sleep(0.2)

    threads = [threading.Thread(target=f) for f in (post_all, spool_all, copy_transcripts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    got = settled(d.url, golem_home, len(hooks))
    assert got == reference(tmp_path, bodies, hooks, src)


def test_kill_9_while_all_sources_write_loses_nothing_acknowledged(golem_home: Path, tmp_path: Path) -> None:
    db = tmp_path / "golem.duckdb"
    d = launch_daemon(golem_home, db)
    bodies = [b for b in otlp_bodies() if b[0] == "logs"]
    hooks = hook_lines()
    acked: list[tuple[str, str, bytes]] = []
    lock = threading.Lock()

    def post(b: tuple[str, str, bytes]) -> None:
        try:
            r = post_otlp(d.url, *b)
        except Exception:  # noqa: BLE001 - the daemon was killed under it: not acknowledged
            return
        if r.status_code == 200:
            with lock:
                acked.append(b)

    for line in hooks:  # journaled before the kill: the next start drains them
        spool.append(str(golem_home / "spool"), line + b"\n")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, b) for b in bodies]
        while len(acked) < len(bodies) // 3 and not all(f.done() for f in futures):
            time.sleep(0.01)
        d.proc.kill()  # SIGKILL: no shutdown, no flush
        d.proc.wait(WAIT)
    assert acked, "nothing was acknowledged before the kill"
    d = launch_daemon(golem_home, db)
    try:
        got = settled(d.url, golem_home, len(hooks))
    finally:
        d.stop()
    (tmp_path / "acked").mkdir()
    floor = reference(tmp_path / "acked", acked, hooks, None)
    ceiling = reference(tmp_path, bodies, hooks, None)
    for table, n in got.items():
        assert floor[table] <= n <= ceiling[table], (table, floor[table], n, ceiling[table])
    assert got["hook_events"] == ceiling["hook_events"]
