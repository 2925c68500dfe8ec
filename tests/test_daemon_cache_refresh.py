"""The daemon brings the analysis cache up to the writes in the background once they pause (or at the
latest CACHE_MAX_WAIT after the first one it does not hold), so a tool call usually finds it current;
without writes it leaves the cache alone. The clock is passed in: no waiting."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from golem_mcp.analysis.snapshot import cache_current, warm_cache
from golem_mcp.config import Settings
from golem_mcp.ingestion.records import Batch
from golem_mcp.interfaces.daemon.background import CACHE_MAX_WAIT, CACHE_QUIET, Background, Stats

AT = datetime(2031, 3, 1, 9)


def write(store: Any, i: int) -> None:
    """One small write through the daemon's writer (a request and a tool call of a new workflow)."""
    b = Batch()
    ts = AT + timedelta(minutes=i)
    b.add("workflows", {"workflow_id": f"wf-{i}", "path": "full", "started_at": ts})
    b.add("api_requests", {"request_id": f"r-{i}", "session_id": "s-1", "agent_id": "a-1", "model": "m",
                           "timestamp": ts, "input_tokens": 10 + i, "output_tokens": 5, "workflow_id": f"wf-{i}",
                           "stage": "implementer"})
    b.add("tool_calls", {"tool_use_id": f"t-{i}", "session_id": "s-1", "agent_id": "a-1", "tool_name": "Bash",
                         "timestamp": ts + timedelta(seconds=5), "success": True, "workflow_id": f"wf-{i}",
                         "stage": "implementer"})
    store.submit(b).result()


def test_the_cache_is_refreshed_once_writes_pause_and_not_without_them(store: Any) -> None:
    write(store, 0)
    warm_cache(store)
    bg = Background(store, Settings(), Stats(), [], None, threading.Lock())
    assert not bg.refresh_cache(now=1000.0)  # nothing written since the daemon started
    write(store, 1)
    assert not cache_current(store)
    t = 1000.0
    assert not bg.refresh_cache(now=t)  # a write just came: more may follow
    assert not bg.refresh_cache(now=t + CACHE_QUIET / 2)
    write(store, 2)
    t += CACHE_QUIET  # the second write restarts the quiet time
    assert not bg.refresh_cache(now=t)
    assert not cache_current(store)
    assert bg.refresh_cache(now=t + CACHE_QUIET)
    assert cache_current(store)
    assert store.scalar("SELECT count(*) FROM analysis_workflow_summary WHERE workflow_id IN ('wf-1', 'wf-2')") == 2
    assert not bg.refresh_cache(now=t + 10 * CACHE_MAX_WAIT)  # no write since


def test_steady_writes_get_the_cache_refreshed_at_the_latest_after_the_longest_wait(store: Any) -> None:
    write(store, 0)
    warm_cache(store)
    bg = Background(store, Settings(), Stats(), [], None, threading.Lock())
    t, i = 1000.0, 1
    first = t
    refreshed = False
    while not refreshed:
        write(store, i)
        refreshed = bg.refresh_cache(now=t)
        assert refreshed == (t - first >= CACHE_MAX_WAIT)
        t += CACHE_QUIET / 2
        i += 1
    # the write of the refreshing look is held; the next write is not
    assert cache_current(store)
    write(store, i)
    assert not cache_current(store)
