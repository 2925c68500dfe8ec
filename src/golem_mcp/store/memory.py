"""DuckDB's memory limit follows the work: the whole budget while something heavy runs, low otherwise.

``memory_budget_mb`` (three quarters of it DuckDB's ``memory_limit``) is sized for the heaviest reads
at team scale: a cold analysis run at 10M requests peaks near 1.8 GB. Held all the time, DuckDB fills
that limit with cached blocks while it only takes writes (the writes read the store), and a daemon
posting 500,000 requests sat at ~930 MB where a limit of 300 MB kept 2M requests under ~730. A lower
fixed limit is no answer: the key indexes a write keeps loaded grow with the store (~260 MB at 10M
requests), and a limit below them fails the writes. So the limit is:

- ``high`` (the budget's three quarters) while heavy work runs (:meth:`MemoryLimit.heavy`: an analysis
  run, the dashboard's build, an agent's SQL, a write of many rows, a full verification or rebuild),
  and for :attr:`MemoryLimit.HOLD` seconds after the last of it ends, so work that comes in runs keeps
  its cache;
- ``low`` otherwise: a fifth of ``high`` (at least :data:`FLOOR_MB`), or more when the key indexes
  DuckDB holds need it (:func:`low_limit`), measured again every :attr:`MemoryLimit.MEASURE_WRITES`
  writes as the store grows.

Work that runs out of memory at the low limit runs again under the high one (:meth:`MemoryLimit.run`:
a write, whose transaction rolled back whole; a tool call, a report, the alert check, a refresh of
the analysis cache), so the low limit never costs a record or an answer. Lowering evicts cached
blocks; when DuckDB cannot free enough (a read holds them) the limit stays and is lowered at the next
try.

The limit is a global ``SET`` on the store's own connection. Agents cannot issue one: ``query_sql``
runs exactly one parsed SELECT (:mod:`golem_mcp.analysis.sql_guard`), and the settings that keep
files, the network and extensions out of DuckDB's reach cannot be turned back on while a database
runs, by DuckDB's own rule (pinned in the tests).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import duckdb

log = logging.getLogger("golem_mcp.store")
T = TypeVar("T")

MB = 1_000_000  # DuckDB reads '300MB' as 10^6 bytes, as the store's memory_limit_mb is meant
FLOOR_MB = 256  # below this DuckDB spends more on re-reading blocks than the memory is worth
INDEX_MARGIN_MB = 128  # a write's own hash tables and row groups beside the key indexes it keeps


def low_limit(high_mb: int, index_bytes: int) -> int:
    """The limit (MB) while nothing heavy runs: a fifth of ``high_mb`` (at least :data:`FLOOR_MB`), or
    1.5 times the key indexes DuckDB holds plus :data:`INDEX_MARGIN_MB` when that is more; never above
    ``high_mb``."""
    need = max(FLOOR_MB, high_mb // 5, int(index_bytes * 1.5 / MB) + INDEX_MARGIN_MB)
    return min(high_mb, need)


def out_of_memory(e: BaseException) -> duckdb.OutOfMemoryException | None:
    """DuckDB's out-of-memory error, in ``e`` or in what ``e`` was raised while handling (the clean-up
    after a failed statement, a ``DROP`` in a ``finally``, fails again with "transaction is aborted",
    and that is what reaches the caller); None when DuckDB did not run out of memory."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, duckdb.OutOfMemoryException):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class MemoryLimit:
    """DuckDB's ``memory_limit`` for one database, raised while heavy work runs (see the module)."""

    HOLD = 10.0  # seconds the high limit stays after the last heavy work (work comes in runs)
    MEASURE_WRITES = 32  # writes between two measures of the key indexes (one small query)

    def __init__(self, connect: Callable[[], Any], high_mb: int, enabled: bool = True) -> None:
        self._cursor = connect  # a fresh cursor of the store's connection for each SET
        self.high_mb = high_mb
        self.enabled = enabled
        self.current_mb = high_mb  # the database opens with the high limit
        self.low_mb = low_limit(high_mb, 0)
        self._heavy = 0
        self._last_heavy = time.monotonic()  # the open is heavy work of its own (migrations, first reads)
        self._writes = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._shown = self.shown()
        if enabled:
            self._schedule(self.HOLD)

    @property
    def lowered(self) -> bool:
        return self.current_mb < self.high_mb

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()``; if DuckDB runs out of memory while the limit is low, ``fn()`` again under the high
        one. For work that can run twice: a write (its transaction rolled back whole), a read."""
        try:
            return fn()
        except duckdb.Error as e:
            if not (self.lowered and out_of_memory(e) is not None):
                raise
        log.info("out of memory at DuckDB's low limit (%d MB): running again with the whole budget", self.current_mb)
        with self.heavy():
            return fn()

    @contextlib.contextmanager
    def heavy(self) -> Iterator[None]:
        """The high limit for the block's duration (and :attr:`HOLD` seconds after)."""
        if not self.enabled:
            yield
            return
        with self._lock:
            self._heavy += 1
            if self.current_mb < self.high_mb:
                self._set(self.high_mb)
        try:
            yield
        finally:
            with self._lock:
                self._heavy -= 1
                self._last_heavy = time.monotonic()
            self._schedule(self.HOLD)

    def after_write(self) -> None:
        """Called by the writer after each commit: every :attr:`MEASURE_WRITES` writes the low limit is
        measured again (the key indexes grow with the store) and applied when nothing heavy runs."""
        if not self.enabled:
            return
        self._writes += 1
        if self._writes < self.MEASURE_WRITES:
            return
        self._writes = 0
        self.settle()

    def settle(self) -> None:
        """Lower the limit to ``low`` now, unless heavy work runs or ran in the last :attr:`HOLD`
        seconds (then it is tried again when that time is up)."""
        with self._lock:
            if self._closed or not self.enabled:
                return
            wait = self._last_heavy + self.HOLD - time.monotonic()
            if self._heavy or wait > 0:
                busy = True
            else:
                busy = False
                self.low_mb = low_limit(self.high_mb, self._index_bytes())
                if self.current_mb != self.low_mb:
                    self._set(self.low_mb)
        if busy and not self._heavy:
            self._schedule(max(wait, 0.1))

    def shown(self) -> str:
        """DuckDB's ``memory_limit`` as it shows it (e.g. ``1.4 GiB``)."""
        cur = self._cursor()
        try:
            row = cur.execute("SELECT current_setting('memory_limit')").fetchone()
        finally:
            cur.close()
        return str(row[0]) if row else ""

    def as_set(self) -> bool:
        """Whether DuckDB's limit is the one this object last set (nothing else changed it)."""
        with self._lock:
            return self.shown() == self._shown

    def close(self) -> None:
        with self._lock:
            self._closed = True
            t, self._timer = self._timer, None
        if t is not None:
            t.cancel()

    # -- inside the lock -------------------------------------------------------------------------
    def _index_bytes(self) -> int:
        try:
            cur = self._cursor()
            try:
                row = cur.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                                  "WHERE tag = 'ART_INDEX'").fetchone()
            finally:
                cur.close()
        except duckdb.Error:
            return 0
        return int(row[0]) if row else 0

    def _set(self, mb: int) -> None:
        try:
            cur = self._cursor()
            try:
                cur.execute(f"SET GLOBAL memory_limit = '{int(mb)}MB'")
                self._shown = str(cur.execute("SELECT current_setting('memory_limit')").fetchone()[0])  # type: ignore[index]
            finally:
                cur.close()
        except duckdb.Error as e:  # lowering while reads hold blocks: stays, tried again later
            log.debug("memory limit %d MB not set: %s", mb, e)
            return
        self.current_mb = mb

    def _schedule(self, delay: float) -> None:
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self.settle)
            self._timer.daemon = True
            self._timer.name = "golem-memory-limit"
            self._timer.start()
