"""Group commit: one thread writes to the store; batches that arrive meanwhile share the next commit."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from ...ingestion.records import Batch, Skipped
from ...store.db import Store

log = logging.getLogger("golem_mcp.daemon")
log = logging.getLogger("golem_mcp.daemon")

class GroupWriter:
    """One thread writes to the store; batches that arrive while a write runs go into the next one.

    A DuckDB transaction costs a few milliseconds per table whatever its size, so under load many
    small OTLP and hook batches share one commit (the importer batches the same way; the store's
    merge policies make a merged write equal to separate ones). Each caller still gets its answer
    only after the transaction holding its rows committed. If a merged write fails, its batches are
    retried one by one, so one bad batch cannot fail the others.
    """

    MAX_ROWS = 50_000  # bound one transaction's time, and so the latency of those queued behind it

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Batch, Future[None]] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.commits = 0

    async def write(self, batch: Batch) -> None:
        """Write ``batch``; returns once it is committed, raises what the store raised."""
        if not batch.count():
            return
        fut: Future[None] = Future()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="golem-writer", daemon=True)
                self.thread.start()
            self.queue.put((batch, fut))
        await asyncio.wrap_future(fut)

    def close(self, timeout: float = 10.0) -> None:
        with self.lock:
            t = self.thread
            if t is None:
                return
            self.queue.put(None)
            self.thread = None
        t.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            items = [item]
            rows = item[0].count()
            stop = False
            while rows < self.MAX_ROWS:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
                rows += nxt[0].count()
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[Batch, Future[None]]]) -> None:
        if len(items) > 1:
            merged = Batch()
            for b, _ in items:
                merged.extend(b)
            owner: dict[int, Batch] = {}

            def report(row: dict, problem: Skipped) -> None:
                # a problem belongs to the request its row came from, which answers with it
                if not owner:
                    owner.update((id(r), b) for b, _ in items for rs in b.rows.values() for r in rs)
                owner.get(id(row), merged).skipped.append(problem)

            try:
                self.store.write(merged, report)
            except Exception:  # noqa: BLE001 - find the culprit by writing each batch on its own
                log.warning("a merged write of %d batches failed; writing them one by one", len(items))
            else:
                self.commits += 1
                for _, f in items:
                    f.set_result(None)
                return
        for b, f in items:
            try:
                self.store.write(b)
            except Exception as e:  # noqa: BLE001 - handed to the waiting request, which answers 500
                f.set_exception(e)
            else:
                self.commits += 1
                f.set_result(None)
