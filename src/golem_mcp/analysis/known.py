"""What the store knows: ids an agent may name, the closest ones to a misspelt id, and the recent window.

One rule for every tool: an id the store has never seen (workflow, stage, task, experiment arm) is an
error naming the closest known values, never an empty answer that reads like "nothing happened".
And one rule for "no scope given": the recent window, :data:`DEFAULT_DAYS` days up to the newest
request the store has seen (not up to the wall clock, so a store that was quiet for a week still
answers about its last work), stated in every answer that used it.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from datetime import datetime, timedelta

from ..errors import NotFound
from ..store.db import NO_DAY, Store
from .common import utcnow

DEFAULT_DAYS = 30
KINDS = ("workflow_id", "stage", "task_id", "experiment_id", "machine_id")

# every id the store knows for a kind; the tables hold agents' own records, the view what was observed
_KNOWN_SQL = {
    "workflow_id": "SELECT workflow_id AS v FROM workflows UNION SELECT workflow_id FROM workflow_links "
                   "UNION SELECT workflow_id FROM agent_context UNION SELECT DISTINCT workflow_id FROM api_requests "
                   # a root session's own workflow, known from its hooks before any request names it
                   "UNION SELECT golem_session_workflow(session_id) FROM sessions "
                   # and a workflow traced by its own orchestrator (phase spans), with no request of its own
                   "UNION SELECT DISTINCT r_workflow_id FROM spans",
    "stage": "SELECT golem_main_stage() AS v UNION SELECT NULLIF(agent_type, 'custom') FROM agents "
             "UNION SELECT stage FROM agent_context UNION SELECT stage FROM stage_records "
             "UNION SELECT DISTINCT stage FROM api_requests",
    "task_id": "SELECT task_id AS v FROM workflows UNION SELECT task_id FROM workflow_links "
               "UNION SELECT task FROM review_reports UNION SELECT task_id FROM stage_records",
    "experiment_id": "SELECT experiment_id AS v FROM workflows UNION SELECT experiment_id FROM workflow_links "
                     "UNION SELECT experiment_id FROM experiments UNION SELECT DISTINCT experiment_id FROM api_requests",
    "machine_id": "SELECT machine_id AS v FROM machines UNION SELECT DISTINCT machine_id FROM rollup_requests_coarse",
}
# the same question for one value, answered from small tables and the rollups (the resolved ids, a
# superset of the ids facts emitted) without listing every id: asked first, one source at a time,
# cheapest first (a primary key or a small table before the rollups), stopping at the first that has
# it; the full lists above only when none has (to name the closest ones, or to find it among emitted ids)
_HAS_SQL = {
    "workflow_id": ("SELECT 1 FROM workflows WHERE workflow_id = ?",
                    "SELECT 1 FROM workflow_links WHERE workflow_id = ? LIMIT 1",
                    "SELECT 1 FROM agent_context WHERE workflow_id = ? LIMIT 1",
                    "SELECT 1 FROM rollup_requests WHERE workflow_id = ? LIMIT 1",
                    "SELECT 1 FROM spans WHERE r_workflow_id = ? LIMIT 1"),
    "stage": ("SELECT 1 WHERE golem_main_stage() = ?",
              "SELECT 1 FROM agent_context WHERE stage = ? LIMIT 1",
              "SELECT 1 FROM stage_records WHERE stage = ? LIMIT 1",
              "SELECT 1 FROM rollup_requests WHERE stage = ? LIMIT 1"),
    "task_id": ("SELECT 1 FROM workflows WHERE task_id = ? LIMIT 1",
                "SELECT 1 FROM workflow_links WHERE task_id = ? LIMIT 1",
                "SELECT 1 FROM rollup_requests WHERE task_id = ? LIMIT 1"),
    "experiment_id": ("SELECT 1 FROM workflows WHERE experiment_id = ? LIMIT 1",
                      "SELECT 1 FROM experiments WHERE experiment_id = ? LIMIT 1",
                      "SELECT 1 FROM rollup_requests WHERE experiment_id = ? LIMIT 1"),
    "machine_id": ("SELECT 1 FROM machines WHERE machine_id = ?",
                   "SELECT 1 FROM rollup_requests_coarse WHERE machine_id = ? LIMIT 1"),
}
_WHAT = {"workflow_id": "workflow", "stage": "stage", "task_id": "task", "experiment_id": "experiment",
         "machine_id": "machine"}
_HOW = {"workflow_id": "record it with record_workflow, or name no workflow for the recent window",
        "stage": "stages are subagent types ('main' = the master)",
        "task_id": "tasks come from record_workflow, record_stage_usage and review reports",
        "experiment_id": "arms come from record_workflow(experiment_id) or OTEL_RESOURCE_ATTRIBUTES",
        "machine_id": "a machine's id is its host name and a suffix; `golem-mcp report --by machine` lists them"}


# difflib compares in Python, ~10 us a pair: over every workflow id of a team's store (50,000 at 1M
# requests) a misspelt id took half a second, and ten times that at 10M. DuckDB ranks them all by
# Jaro-Winkler in a few milliseconds; difflib then chooses among this many of the nearest (all of
# them in a store that knows no more, so a small store's answer is difflib's over every id).
_SHORTLIST = 200


def nearest(store: Store, kind: str, value: str, n: int = 3) -> tuple[bool, list[str]]:
    """Whether ``value`` is a known ``kind`` id; if not, the ``n`` closest known ones (:func:`closest`).
    A known id is found from small tables and the rollups (:func:`_has`); only an unknown one lists them all."""
    if _has(store, kind, value):
        return True, []
    ids = [r["v"] for r in store.query(
        f"SELECT v FROM (SELECT DISTINCT v FROM ({_KNOWN_SQL[kind]}) WHERE v IS NOT NULL) "
        "ORDER BY v = ? DESC, jaro_winkler_similarity(v, ?) DESC, v LIMIT ?", [value, value, _SHORTLIST])]
    if ids and ids[0] == value:
        return True, []
    return False, closest(value, sorted(ids), n)


def closest(value: str, candidates: list[str], n: int = 3) -> list[str]:
    """The closest candidates to ``value`` (difflib), else the first few, so an error always names some."""
    near = difflib.get_close_matches(value, candidates, n=n, cutoff=0.5)
    return near or candidates[:n]


def require(store: Store, kind: str, value: str | None) -> None:
    """Raise NotFound naming the closest known values when ``value`` is not a known ``kind`` id."""
    if value is None:
        return
    known, near = nearest(store, kind, value)
    if known:
        return
    hint = f"closest: {', '.join(near)}" if near else f"none is known yet; {_HOW[kind]}"
    raise NotFound(f"no {_WHAT[kind]} {value!r}; {hint}. {_HOW[kind][0].upper()}{_HOW[kind][1:]}."
                   if near else f"no {_WHAT[kind]} {value!r}; {hint}.")


# the ids each open store was found to know, kept: the store forgets no id (facts and records are
# never deleted), so a yes stays true, and an agent names the same workflow and stage in call after
# call (budget_status before each step: four of its statements were these lookups). A no is asked again.
_KNOWN_SEEN: weakref.WeakKeyDictionary[Store, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_KNOWN_SEEN_MAX = 10_000  # ids kept per store; past it the set starts again
_KNOWN_LOCK = threading.Lock()


def _has(store: Store, kind: str, value: str) -> bool:
    """Whether a small table or the rollups name ``value`` (one cursor, a query per source)."""
    with _KNOWN_LOCK:  # kept per store, also when asked through a reader of it (its transaction's cursor)
        seen = _KNOWN_SEEN.setdefault(getattr(store, "_store", store), set())
        if (kind, value) in seen:
            return True
    with store.reader() as cur:
        found = any(cur.execute(sql, [value]).fetchone() for sql in _HAS_SQL[kind])
    if found:
        with _KNOWN_LOCK:
            if len(seen) >= _KNOWN_SEEN_MAX:
                seen.clear()
            seen.add((kind, value))
    return found


def require_all(store: Store, **ids: str | None) -> None:
    """:func:`require` for each given id (keyword = kind)."""
    for kind, value in ids.items():
        require(store, kind, value)


# The newest request's time, read from the rows of the latest day with requests in the coarse rollup (a
# few hundred rows a day, not the per-workflow one's millions): a max over every request's time scanned
# the whole column (15-30 CPU-ms at 10M requests, paid by nearly
# every answer). Exact whatever the rollups hold: the newest request is at or after any day that has
# requests, and a bound past it (rows gone around Store.write) finds none, so the scan of every row
# answers then.
_NEWEST_SQL = ('SELECT max("timestamp") FROM api_requests WHERE "timestamp" >= (SELECT max(day) '
               f"FILTER (WHERE requests > 0 AND day < DATE '{NO_DAY.isoformat()}') FROM rollup_requests_coarse)")


def newest_request(store: Store) -> datetime | None:
    """The newest request's time as stored, or None when no request has one."""
    newest = store.scalar(_NEWEST_SQL)
    if not isinstance(newest, datetime):
        newest = store.scalar('SELECT max("timestamp") FROM api_requests')
    return newest if isinstance(newest, datetime) else None


def data_now(store: Store) -> datetime:
    """The newest request's time (naive UTC), or the wall clock when the store has none."""
    newest = newest_request(store)
    if newest is None:
        return utcnow()
    return min(newest.replace(tzinfo=None) + timedelta(seconds=1), utcnow())


def window_note(start: datetime, end: datetime, days: float) -> str:
    return (f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({days:g} days up to the newest request; "
            "give since/until or an id to choose)")
