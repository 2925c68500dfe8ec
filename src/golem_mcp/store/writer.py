"""The store's one writer: a queue and a thread that commits what was submitted, in groups.

Every way facts arrive while the daemon runs (OTLP and hook posts, the hook spool's drain, the
transcript watcher, ``/api/import``) submits its batches here (:meth:`Store.submit`), as datasette's
``Database`` owns its write queue. A DuckDB transaction costs a few milliseconds per table whatever
its size, so batches that arrive while a write runs go into the next one together (the store's merge
policies make a merged write equal to separate ones). Each caller gets its answer only once its rows
are committed: a deleted spool file or a recorded file offset waits for the write; an OTLP body's 200
goes out once its checked rows are committed to the store's write inbox (``Store.land``,
:mod:`.inbox`), and the write that resolves them deletes them there. Either way a kill -9 loses
nothing that was acknowledged, and a read waits for the landed batches answered before it
(:meth:`WriteQueue.settle`). If a merged write fails, its batches are written one by one, so one bad
batch cannot fail the others.

A write's fixed cost (~30 statements, ~150 CPU-ms) is most of a 500-record write's, so the group
matters: exporters that all got their answer at once post again together, and the writer took the
first body decoded alone while the others were still being decoded (groups of 1, 2, 1, 3 with four
exporters). A caller that is about to submit says so (:meth:`WriteQueue.coming`, around reading and
decoding a body), and the writer waits for the batches announced, at most ``GATHER_WAIT``, before it
writes; with nothing announced (one exporter, an import) it writes at once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from .batch import Batch, Skipped

log = logging.getLogger("golem_mcp.store")

Report = Callable[[dict, Skipped], None]
Write = Callable[[Batch, Report | None], dict[str, int]]


class WriteQueue:
    """Batches in, one writer thread, one transaction per group of queued batches."""

    MAX_ROWS = 50_000  # bound one transaction's time, and so the latency of those queued behind it
    # how long a write waits for batches announced by coming(): decoding four 500-record bodies
    # under one GIL takes ~100 ms; past this a slow body (a large one, a starved thread) waits
    # for the next write instead of holding the ones gathered
    GATHER_WAIT = 0.25

    def __init__(self, write: Write, name: str = "golem-writer") -> None:
        # A bound method (Store.write) is held weakly: the thread waits for batches for as long as
        # the process lives, and held strongly it kept every store that ever submitted alive, open
        # and holding its DuckDB buffers (~50 MB each) after its owner dropped it without close()
        self._write: Callable[[], Write | None] = (weakref.WeakMethod(write) if inspect.ismethod(write)
                                                   else lambda: write)
        self.name = name
        self.queue: queue.SimpleQueue[tuple[Batch, Future[dict[str, int]]] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)  # a batch submitted, or an announced one given up
        self._coming = 0  # batches announced (coming()) and not yet submitted
        self.commits = 0  # transactions committed (the daemon's alerts look again when it moves)
        self.closed = False
        # batches already committed to the write inbox (Batch.landed: their callers answered before
        # the write): how many were submitted, how many written (or failed) since, their rows queued
        self._landed_in = 0
        self._landed_out = 0
        self.landed_rows = 0
        self._landed_done = threading.Condition(self.lock)

    def submit(self, batch: Batch) -> Future[dict[str, int]]:
        """Queue ``batch``; the future gives its rows offered per table once committed, or raises
        what the write raised. Problems found in its values are added to ``batch.skipped`` first."""
        fut: Future[dict[str, int]] = Future()
        if not batch.count():
            fut.set_result({})
            return fut
        with self.lock:
            if self.closed:
                raise RuntimeError("the store is closed; nothing more can be written")
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            if batch.landed:
                self._landed_in += 1
                self.landed_rows += batch.count()
                fut.add_done_callback(functools.partial(self._landed_written, rows=batch.count()))
            self.queue.put((batch, fut))
            self._arrived.notify_all()
        return fut

    def _landed_written(self, fut: Future[dict[str, int]], rows: int) -> None:
        with self.lock:
            self._landed_out += 1
            self.landed_rows -= rows
            self._landed_done.notify_all()
        if not fut.cancelled() and fut.exception() is not None:
            # its caller was answered already: the rows stay in the inbox, written at the next start
            log.error("a batch accepted before its write could not be written (it stays in the write "
                      "inbox for the next start): %s", fut.exception())

    def landed_pending(self) -> bool:
        """Whether batches submitted after landing (their callers answered) are still to be written."""
        return self._landed_out < self._landed_in

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until every landed batch submitted before this call is written (or failed); False if
        ``timeout`` passed first or the writer stopped. A read that must see what was acknowledged."""
        deadline = time.monotonic() + timeout
        with self.lock:
            target = self._landed_in
            while self._landed_out < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.thread is None or not self.thread.is_alive():
                    return False
                self._landed_done.wait(min(left, 1.0))
        return True

    def wait_landed_below(self, rows: int, timeout: float = 60.0) -> None:
        """Wait until the landed batches still to be written hold at most ``rows`` rows (or
        ``timeout`` passed, or the writer stopped): the queue a fast sender may fill stays bounded."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.landed_rows > rows:
                left = deadline - time.monotonic()
                if left <= 0 or self.thread is None or not self.thread.is_alive():
                    return
                self._landed_done.wait(min(left, 1.0))

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self.thread

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a batch about to be submitted (its body read and decoded inside the block), so
        a write starting meanwhile waits for it and commits it in the same transaction."""
        with self.lock:
            self._coming += 1
        try:
            yield
        finally:
            with self.lock:
                self._coming -= 1
                self._arrived.notify_all()

    def write(self, batch: Batch, report: Report | None) -> dict[str, int]:
        write = self._write()
        if write is None:
            raise RuntimeError("the store was dropped without close(); nothing more can be written")
        return write(batch, report)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (submit raises afterwards)."""
        with self.lock:
            self.closed = True
            t, self.thread = self.thread, None
            if t is None:
                return
            self.queue.put(None)
            self._arrived.notify_all()
        t.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            items = [_running(item)]
            rows = item[0].count()
            stop = False
            deadline = time.monotonic() + self.GATHER_WAIT
            while rows < self.MAX_ROWS:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    with self.lock:
                        # announced batches still being decoded: wait for them (under the lock
                        # submit() holds, so one submitted between the check and the wait wakes it)
                        left = deadline - time.monotonic()
                        if self.queue.empty() and (self._coming <= 0 or left <= 0):
                            break
                        if self.queue.empty():
                            self._arrived.wait(left)
                    continue
                if nxt is None:
                    stop = True
                    break
                items.append(_running(nxt))
                rows += nxt[0].count()
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[Batch, Future[dict[str, int]]]]) -> None:
        if len(items) > 1:
            merged = Batch()
            for b, _ in items:
                merged.extend(b)
            owner: dict[int, Batch] = {}

            def report(row: dict, problem: Skipped) -> None:
                # a problem belongs to the batch its row came from, whose caller answers with it
                if not owner:
                    owner.update((id(r), b) for b, _ in items for rs in b.rows.values() for r in rs)
                owner.get(id(row), merged).skipped.append(problem)

            try:
                self.write(merged, report)
            except Exception:  # noqa: BLE001 - find the culprit by writing each batch on its own
                log.warning("a merged write of %d batches failed; writing them one by one", len(items))
            else:
                self.commits += 1
                for b, f in items:
                    f.set_result({t: len(rs) for t, rs in b.rows.items() if rs})
                return
        for b, f in items:
            try:
                counts = self.write(b, None)
            except Exception as e:  # noqa: BLE001 - handed to the caller waiting on the future
                f.set_exception(e)
            else:
                self.commits += 1
                f.set_result(counts)


def _running(item: tuple[Batch, Future[dict[str, int]]]) -> tuple[Batch, Future[dict[str, int]]]:
    """Mark the future running, so its caller can no longer cancel it while it is written. One
    cancelled before (its caller left: a closed connection) gets a stand-in, and its batch is written
    all the same: writes merge by key, so the caller's retry adds nothing."""
    batch, fut = item
    if fut.set_running_or_notify_cancel():
        return item
    stand_in: Future[dict[str, int]] = Future()
    stand_in.set_running_or_notify_cancel()
    return batch, stand_in
