"""Work beside the server: the transcript watcher, the spool drain, alerts, the analysis runner
and the periodic log summary."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...config import Settings
from ...store.db import Store

log = logging.getLogger("golem_mcp.daemon")

WATCH_INTERVAL = 2.0  # seconds between transcript-folder scans; unchanged files cost one stat each
SPOOL_INTERVAL = 2.0  # seconds between hook-spool drains
SUMMARY_INTERVAL = 60.0  # seconds between activity lines in the log (one line per request is too much)
# seconds between alert evaluations, run only when something was ingested since the last one: budgets
# are crossed by new data, and an evaluation scans the last week (too much for every OTLP request)
ALERT_INTERVAL = float(os.environ.get("GOLEM_ALERT_INTERVAL") or 20.0)
ANALYSIS_INTERVAL = 300.0  # seconds between looks for queued analysis runs (a SessionStart wakes it at once)
# The analysis cache (analysis/snapshot.py) brought up to the writes in the background, shortly after they
# stop: a tool call that reads it (find_slow_stages, compare_experiments, predict_cost, ...) then usually
# finds it current rather than refreshing it first (~1 CPU-s after a small write at 10M requests). Writes
# come in bursts (a spool drain, a transcript, an OTLP batch): refreshed once none came for CACHE_QUIET
# seconds, or CACHE_MAX_WAIT seconds after the first write it does not hold while they go on.
CACHE_INTERVAL = 1.0  # seconds between looks
CACHE_QUIET = 2.0
CACHE_MAX_WAIT = 30.0

class Stats:
    """Counters for the periodic log summary; approximate under threads, which is fine for a log."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.records = 0
        self.rejected = 0
        self.failed = 0
        self.hooks = 0
        self.spooled = 0
        self.watched_files = 0

    def take(self) -> dict[str, int]:
        snap = dict(vars(self))
        self.reset()
        return snap


class Background:
    """Threads next to the server: transcript watcher, spool drainer, alerts, periodic log summary,
    and the analysis runner (seed 003's auto-trigger: a SessionStart queues a run when the last
    successful one is older than ``analysis_max_age_days``; queued runs run here, one at a time,
    never on a request's path).

    Nothing here may stop the daemon: each round's exception is logged (once a minute at most when
    it repeats) and the next round runs.
    """

    def __init__(self, store: Store, settings: Settings, stats: Stats, watch: list[Path],
                 spool: Path | None, import_lock: threading.Lock) -> None:
        self.store = store
        self._alerts_seen = -1
        self.settings = settings
        self.stats = stats
        self.watch = watch
        self.spool = spool
        self.import_lock = import_lock
        self.on_hooks: Callable[[], None] | None = None  # told when a drain stored hook payloads
        self.drain_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.spool_wake = threading.Event()
        self.analysis_wake = threading.Event()
        self.session_started = threading.Event()  # a SessionStart arrived since the analysis thread last looked
        self._recovered = False
        self.threads: list[threading.Thread] = []
        self._last_error: dict[str, tuple[str, float]] = {}
        self._cache_commits = store.commits  # the writes the last look at the cache saw
        self._cache_behind: float | None = None  # since when a write is not in the cache (None: none seen)
        self._cache_last_write = 0.0  # when the last look saw a new write

    def start(self) -> None:
        jobs: list[tuple[str, float, Callable[[], None]]] = [("summary", SUMMARY_INTERVAL, self.summary)]
        if self.spool is not None:
            jobs.append(("spool", SPOOL_INTERVAL, self.drain_spool))
        if self.watch:
            jobs.append(("watch", WATCH_INTERVAL, self.scan))
        if ALERT_INTERVAL > 0:
            jobs.append(("alerts", ALERT_INTERVAL, self.alerts))
        jobs.append(("analysis", ANALYSIS_INTERVAL, self.analysis))
        if not self.store.read_only:
            jobs.append(("cache", CACHE_INTERVAL, self._cache_round))
        for name, interval, fn in jobs:
            t = threading.Thread(target=self._loop, args=(name, interval, fn), name=f"golem-{name}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.spool_wake.set()
        self.analysis_wake.set()
        self.store.interrupt_readers(timeout)  # an analysis run in progress stops (and says so) at once
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wake_spool(self) -> None:
        """Drain now rather than at the next interval (a hook was just journaled)."""
        self.spool_wake.set()

    def session_start(self) -> None:
        """A session started: the analysis thread checks the last run's age (and runs one if due)."""
        self.session_started.set()
        self.analysis_wake.set()

    def _loop(self, name: str, interval: float, fn: Callable[[], None]) -> None:
        # drain, scan and run queued analyses at once on start; the others after a while
        first = name not in ("summary", "alerts", "cache")
        wake = {"spool": self.spool_wake, "analysis": self.analysis_wake}.get(name)
        while not self.stop_event.is_set():
            if not first:
                if wake is not None:
                    wake.wait(interval)
                    wake.clear()
                    if self.stop_event.is_set():
                        break
                elif self.stop_event.wait(interval):
                    break
            first = False
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a failing round must not end the thread or the daemon
                self._report(name, e)

    def _report(self, name: str, e: Exception) -> None:
        text = f"{type(e).__name__}: {e}"
        last = self._last_error.get(name)
        now = time.monotonic()
        if last and last[0] == text and now - last[1] < 60:
            return
        self._last_error[name] = (text, now)
        log.error("%s failed (will retry): %s", name, text, exc_info=e)

    def drain_spool(self) -> None:
        from ...ingestion.spool import drain, quarantine_path

        assert self.spool is not None
        with self.drain_lock:  # the SessionEnd export drains too: two drains at once read a file twice
            res = drain(self.store, self.spool, self.settings.store_prompts)
        if res.payloads and self.on_hooks is not None:
            self.on_hooks()
        if res.files:
            self.stats.spooled += res.payloads
            log.info("ingested %d spooled hook payloads from %d files", res.payloads, res.files)
        for s in res.skipped[:20]:
            log.warning("spool: %s", s)
        if res.quarantined:
            log.warning("spool: %d payload(s) could not be stored and were moved to %s (see golem-mcp doctor)",
                        res.quarantined, quarantine_path(self.spool))
        for f in res.failed:
            log.error("spool: %s (kept for the next drain)", f)

    def scan(self) -> None:
        from ...ingestion.importer import Importer

        paths = [p for p in self.watch if p.exists()]
        if not paths:
            return
        with self.import_lock:
            res = Importer(self.store, self.settings.store_prompts).run(paths)
        if res.files_read:
            self.stats.watched_files += res.files_read
            self.stats.records += res.rows
            log.info("watch: read %d files (%.1f MB), %d records", res.files_read, res.bytes_read / 1e6, res.rows)
        for s in res.skipped[:20]:
            log.warning("watch: skipped %s", s)

    def alerts(self) -> None:
        """Budget, error-spike and quality alerts on what was ingested: to the log file, the daemon's log
        and the webhook (each alert once, ever; see ``analysis.budgets``)."""
        from ...analysis.budgets import evaluate_alerts

        seen = self.store.commits
        if seen == self._alerts_seen:
            return
        self._alerts_seen = seen
        # (out of memory at the store's low limit: evaluated again with the whole budget, store/memory.py)
        for a in self.store.memory.run(lambda: evaluate_alerts(self.store)):
            log.warning("alert: %s", a.message)

    def analysis(self) -> None:
        from ...analysis import runs

        if not self._recovered:
            n = runs.recover_interrupted(self.store)
            if n:
                log.warning("analysis: %d run(s) left running by a stopped daemon marked failed", n)
            self._recovered = True
        if self.session_started.is_set():
            self.session_started.clear()
            try:
                max_age = float(self.settings.analysis_max_age_days)
            except (TypeError, ValueError):
                max_age = 7.0
            if max_age > 0 and runs.maybe_enqueue(self.store, max_age_days=max_age):
                log.info("analysis: the last successful run is older than %g days; queued one", max_age)
        for run in runs.run_pending(self.store):
            took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0
            log.info("analysis run %d (%s) %s in %.1fs: %s", run.run_id, run.trigger, run.status, took,
                     run.error_detail or run.produced)
        # keep the analysis' per-day aggregates up to date in idle time: the next run finds them warm
        from ...analysis.snapshot import warm_cache

        s = time.monotonic()
        n = self.store.memory.run(lambda: warm_cache(self.store))
        if n:
            log.info("analysis cache: %s in %.1fs", "built" if n < 0 else f"{n} day(s) refreshed",
                     time.monotonic() - s)

    def _cache_round(self) -> None:
        try:
            self.refresh_cache()
        except Exception:
            if not self.stop_event.is_set():  # stopping interrupts the refresh: not a failure to report
                raise

    def refresh_cache(self, now: float | None = None) -> bool:
        """The analysis cache brought up to the writes once they pause (see CACHE_QUIET); returns whether
        it was refreshed. Only takes work off the tool calls' path: a call still checks, in its own
        transaction, that the cache holds every write it sees, and refreshes it first when not.
        ``now``: the monotonic clock's time (for tests)."""
        from ...analysis.snapshot import cache_current, warm_cache

        now = time.monotonic() if now is None else now
        commits = self.store.commits
        if commits != self._cache_commits:
            self._cache_commits, self._cache_last_write = commits, now
            if self._cache_behind is None:
                self._cache_behind = now
        if self._cache_behind is None:
            return False
        if now - self._cache_last_write < CACHE_QUIET and now - self._cache_behind < CACHE_MAX_WAIT:
            return False
        self._cache_behind = None  # a write committed from here on is seen by the next look
        if cache_current(self.store):  # a tool call or the analysis thread refreshed it meanwhile
            return False
        s = time.monotonic()
        n = self.store.memory.run(lambda: warm_cache(self.store))
        log.debug("analysis cache: %d day(s) refreshed after writes in %.2fs", n, time.monotonic() - s)
        return True

    def summary(self) -> None:
        s = self.stats.take()
        if any(s.values()):
            log.info("last %ds: %s", int(SUMMARY_INTERVAL), ", ".join(f"{k} {v}" for k, v in s.items() if v))
