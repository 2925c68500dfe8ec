"""Loops, retries and rework (seeds 000, 002, 004): the same call repeated with the same input, the
same failing command run again and again, edit -> test-fail cycles, API retries, reviewer -> another
implementer pass, and tool calls per API request (thrashing).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..store.db import Store
from ..store.rollups import CALL_KEY
from .common import window
from .snapshot import REWORK_STAGES, CacheReader, SnapshotReader


class RepeatedCall(BaseModel):
    workflow_id: str | None
    stage: str
    tool_name: str
    command: str | None = Field(default=None, description="the bash command, file path or pattern repeated")
    count: int = Field(description="how many times the identical call was made")
    failures: int
    kind: str = Field(description="'failing_repeat' (>= 3 identical failures) or 'identical_repeat' (>= 5 identical calls)")


class Retry(BaseModel):
    workflow_id: str | None
    stage: str
    request_id: str
    attempt: int
    model: str | None
    # seed 004's retry_reasons: the failure before the retry, in the same session and agent
    reason_category: str | None = Field(default=None, description=(
        "category of the failure just before the retry (golem_error_category: overload, rate_limit, timeout, "
        "connection, ...); None when no failure was recorded in the lookback"))
    reason_status_code: int | None = Field(default=None, description="its HTTP status, for an API error")
    reason: str | None = Field(default=None, description="'api_error' or 'tool <name>' and the error text, shortened")


class EditFailCycle(BaseModel):
    workflow_id: str | None
    stage: str
    cycles: int = Field(description="edit/write followed directly by a failing Bash, counted per agent")


class Rework(BaseModel):
    workflow_id: str
    reason: str


class Thrashing(BaseModel):
    workflow_id: str | None
    stage: str
    tool_calls: int
    api_requests: int
    calls_per_request: float


class LoopReport(BaseModel):
    loops: list[RepeatedCall]
    workflows_with_loops: list[str]
    retries: list[Retry] = Field(description="the retried requests with their reasons (the first retry_reasons of them)")
    retried_requests: int = Field(description="retried requests in the window, all of them")
    edit_fail_cycles: list[EditFailCycle]
    rework: list[Rework]
    thrashing: list[Thrashing]


def _command(params: str | None) -> str | None:
    if not params:
        return None
    try:
        p = json.loads(params)
    except ValueError:
        return params[:200]
    for k in ("bash_command", "command", "file_path", "pattern", "path", "url", "query"):
        if p.get(k):
            return str(p[k])[:200]
    return params[:200]


# Each retried request (attempt > 1) with the reason: the last failure (failure_events, so the categories
# are golem_error_category's) in the same session and agent at or before it, within the lookback; an API
# error is preferred to a tool's failure, since Claude Code retries a request after an API error. The
# category (failure_events' rule, golem_error_category) of the chosen failure only, and only the failures
# of the listed requests' sessions (a list, which DuckDB filters the scan by): categorizing and joining
# every failure of the window was most of the answer's cost. The requests: RETRIED_SQL's rows, as one JSON
# text (finding them again among the window's requests by their ids was half of this query's cost).
RETRY_SQL = """
WITH r AS (
    SELECT unnest(from_json(?, '[{"workflow_id": "VARCHAR", "stage": "VARCHAR", "request_id": "VARCHAR",
                                  "attempt": "INTEGER", "model": "VARCHAR", "ts": "TIMESTAMP", "session_id": "VARCHAR",
                                  "ag": "VARCHAR"}]'), recursive := true)
), f AS (
    SELECT "timestamp" AS fts, session_id, COALESCE(agent_id, '') AS ag, status_code, msg, etype, tool_name,
           left(raw, 160) AS raw
    FROM failure_events WHERE "timestamp" >= ? AND "timestamp" < ? AND session_id IN (SELECT unnest(from_json(?, '["VARCHAR"]')))
), fa AS (SELECT * FROM f WHERE tool_name IS NULL), ft AS (SELECT * FROM f WHERE tool_name IS NOT NULL),
j AS (
    SELECT r.*, fa.fts AS a_ts, fa.status_code AS a_status, fa.msg AS a_msg, fa.etype AS a_etype, fa.raw AS a_raw,
           ft.fts AS t_ts, ft.msg AS t_msg, ft.etype AS t_etype, ft.tool_name AS t_tool, ft.raw AS t_raw
    FROM r
    ASOF LEFT JOIN fa ON fa.session_id = r.session_id AND fa.ag = r.ag AND r.ts >= fa.fts
    ASOF LEFT JOIN ft ON ft.session_id = r.session_id AND ft.ag = r.ag AND r.ts >= ft.fts
), k AS (
    SELECT j.*, a_ts >= ts - to_microseconds(CAST(? * 1e6 AS BIGINT)) AS a_ok,
           t_ts >= ts - to_microseconds(CAST(? * 1e6 AS BIGINT)) AS t_ok
    FROM j
)
SELECT workflow_id, stage, request_id, attempt, model,
       -- one use of the rule (its regular expressions are compiled per use): the API error's, else the tool's
       CASE WHEN a_ok OR t_ok THEN golem_error_category(CASE WHEN a_ok THEN a_status END,
                                                        CASE WHEN a_ok THEN a_msg ELSE t_msg END,
                                                        CASE WHEN a_ok THEN a_etype ELSE t_etype END) END AS reason_category,
       CASE WHEN a_ok THEN a_status END AS reason_status_code,
       CASE WHEN a_ok THEN 'api_error' || COALESCE(': ' || a_raw, '')
            WHEN t_ok THEN 'tool ' || t_tool || COALESCE(': ' || t_raw, '') END AS reason
FROM k ORDER BY ts, request_id
"""
# the retried requests alone, in the same order
RETRIED_SQL = """SELECT workflow_id, stage, request_id, attempt, model, "timestamp" AS ts, session_id,
                         COALESCE(agent_id, '') AS ag
                  FROM requests WHERE {scope} AND attempt > 1 ORDER BY "timestamp", request_id"""


def _listed(values: Any) -> str:
    """Values for ``unnest(from_json(?, '["TYPE"]'))``: a list as one JSON text. DuckDB binds a Python
    list parameter value by value (~35 ms for 500 session ids); one text and from_json take ~1 ms."""
    return json.dumps(list(values))


def _repeated_calls(store: Store, p: list[Any], start: datetime, end: datetime, workflow_id: str | None,
                    min_failing: int, min_identical: int) -> list[dict[str, Any]]:
    """The identical calls of the window made ``min_failing`` times failing (at most one success) or
    ``min_identical`` times, with their counts."""
    scope = '"timestamp" >= ? AND "timestamp" < ? AND (? IS NULL OR workflow_id = ?)'
    key = f"workflow_id, stage, {CALL_KEY.split(', ', 2)[2]}"  # the rollup's identity, by the view's names
    having = ("HAVING (count(*) FILTER (WHERE NOT success) >= ? AND count(*) FILTER (WHERE success) <= 1) "
              "OR count(*) >= ?")
    grouped = (f"SELECT workflow_id, stage, tool_name, CAST(tool_parameters AS VARCHAR) AS params, count(*) AS n, "
               f"count(*) FILTER (WHERE NOT success) AS failures FROM tools WHERE {scope} AND tool_parameters IS NOT NULL")
    fewest = min(min_failing, min_identical)
    if workflow_id is None and not isinstance(store, SnapshotReader):
        # a whole window: rollup_calls (every session's calls per hash of their identity, all time) names
        # the hashes made at least `fewest` times with a call in the window (a group's count in the window
        # is at most its count), and only their sessions' calls in their time range are grouped, with the
        # same test: exact, and a few candidates instead of hashing every call of the window
        cand = store.query("SELECT session_id, call_hash, first_at, last_at FROM rollup_calls "
                           "WHERE calls >= ? AND call_hash IS NOT NULL AND first_at < ? AND last_at >= ?",
                           [fewest, end, start])
        if not cand:
            return []
        sessions = sorted({c["session_id"] for c in cand if c["session_id"] is not None})
        return store.query(f"""{grouped}
            AND "timestamp" >= ? AND "timestamp" <= ?
            AND (session_id IN (SELECT unnest(from_json(?, '["VARCHAR"]'))) OR (session_id IS NULL AND ?))
            AND hash({key}) IN (SELECT unnest(from_json(?, '["UBIGINT"]')))
            GROUP BY {key} {having} ORDER BY n DESC""",
            p + [min(c["first_at"] for c in cand), max(c["last_at"] for c in cand), _listed(sessions),
                 any(c["session_id"] is None for c in cand), _listed(sorted({c["call_hash"] for c in cand})),
                 min_failing, min_identical])
    # one workflow (or a snapshot's rows): the calls counted by a hash of the identical call's key first
    # (one number, not six strings, per call); only the calls of hashes made often enough are grouped by
    # the key itself, with the same test (a group's count is at most its hash's, so none is missed; a
    # shared hash only adds candidates)
    return store.query(f"""
        WITH c AS (SELECT hash({key}) AS h FROM tools WHERE {scope} AND tool_parameters IS NOT NULL
                   GROUP BY h HAVING count(*) >= ?)
        {grouped} AND hash({key}) IN (SELECT h FROM c)
        GROUP BY {key} {having} ORDER BY n DESC""", p + [fewest] + p + [min_failing, min_identical])


# the rework the reviewer reported, and (REWORK_PASSES_SQL) the workflows where a new implementer agent
# starts (in the window) after a reviewer agent finished: the review sent work back
REWORK_SQL = """
    SELECT golem_report_workflow(workflow_id, parent) AS workflow_id, 'reviewer reported rework' AS reason
    FROM review_reports WHERE rework AND ts >= ? AND ts < ? AND (? IS NULL OR golem_report_workflow(workflow_id, parent) = ?)
    UNION {passes}
    ORDER BY 1"""
# (stage_agent_spans has one row per workflow, stage and agent: the window filters its rows; {only}: a
# filter on the implementer's workflow)
REWORK_PASSES_SQL = """
    SELECT i.workflow_id, ? FROM
        (SELECT workflow_id, agent_id, first_at FROM stage_agent_spans
         WHERE stage = ? AND first_at >= ? AND first_at < ? AND (? IS NULL OR workflow_id = ?){only}) i
    JOIN (SELECT workflow_id, agent_id, last_at FROM stage_agent_spans
          WHERE stage = ? AND (? IS NULL OR workflow_id = ?)) rv
      ON rv.workflow_id = i.workflow_id AND i.first_at > rv.last_at"""
# The same from the cache's workflow summaries (a CacheReader's), for loops' own stages (REWORK_STAGES):
# per workflow the latest start of its implementer agents and the earliest finish of its reviewer agents.
# Some implementer agent starting in the window after some reviewer agent finished is: the latest
# implementer start in the window after the earliest reviewer finish. Where the latest start overall is
# in the window, that is it; a workflow whose latest implementer start is at or after the window's end
# (a window in the past) is looked at row by row (above).
REWORK_CACHED_SQL = """
    SELECT workflow_id, ? FROM analysis_workflow_summary
    WHERE rw_implementer_last_start >= ? AND rw_implementer_last_start < ? AND (? IS NULL OR workflow_id = ?)
      AND rw_implementer_last_start > rw_reviewer_first_end"""


def _rework(store: Store, p: list[Any], end: datetime, workflow_id: str | None, implementer: str,
            reviewer: str) -> list[dict[str, Any]]:
    reason = f"another {implementer} pass after the {reviewer}"
    args = [reason, implementer, *p, reviewer, workflow_id, workflow_id]
    if not isinstance(store, CacheReader) or (implementer, reviewer) != REWORK_STAGES:
        return store.query(REWORK_SQL.format(passes=REWORK_PASSES_SQL.format(only="")), p + args)
    late = [r["workflow_id"] for r in store.query(
        "SELECT workflow_id FROM analysis_workflow_summary WHERE rw_implementer_last_start >= ? "
        "AND (? IS NULL OR workflow_id = ?)", [end, workflow_id, workflow_id])]
    passes, cached = REWORK_CACHED_SQL, [reason, *p]
    if late:
        passes += " UNION " + REWORK_PASSES_SQL.format(
            only=" AND workflow_id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]')))")
        cached += [reason, implementer, *p, _listed(late), reviewer, workflow_id, workflow_id]
    return store.query(REWORK_SQL.format(passes=passes), p + cached)


def find_loops(store: Store, days: float = 30, now: datetime | None = None, workflow_id: str | None = None,
               min_failing: int = 3, min_identical: int = 5, min_cycles: int = 3,
               implementer: str = REWORK_STAGES[0], reviewer: str = REWORK_STAGES[1],
               thrash_ratio: float = 4.0, thrash_min_calls: int = 12, retry_lookback_s: float = 600,
               retry_reasons: int | None = None) -> LoopReport:
    """Loops, retries and rework in the last ``days`` (optionally one workflow). ``retry_reasons``: list
    only the first that many retried requests (in time order) with their reasons; all are counted.

    Example: ``find_loops(store).loops[0]`` -> wf-006 implementer Bash ``exit 1`` x 9.
    """
    from .snapshot import summaries

    with summaries(store) as reader:  # stage_agent_spans and workflow_stage_summary: one row per key
        return _find_loops(reader, days, now, workflow_id, min_failing, min_identical, min_cycles, implementer,
                           reviewer, thrash_ratio, thrash_min_calls, retry_lookback_s, retry_reasons)


def _find_loops(store: Store, days: float, now: datetime | None, workflow_id: str | None, min_failing: int,
                min_identical: int, min_cycles: int, implementer: str, reviewer: str, thrash_ratio: float,
                thrash_min_calls: int, retry_lookback_s: float, retry_reasons: int | None) -> LoopReport:
    start, end = window(now, days)
    p = [start, end, workflow_id, workflow_id]
    scope = '"timestamp" >= ? AND "timestamp" < ? AND (? IS NULL OR workflow_id = ?)'
    rep = _repeated_calls(store, p, start, end, workflow_id, min_failing, min_identical)
    loops = [RepeatedCall(workflow_id=r["workflow_id"], stage=r["stage"], tool_name=r["tool_name"],
                          command=_command(r["params"]), count=r["n"], failures=r["failures"],
                          kind="failing_repeat" if r["failures"] >= min_failing else "identical_repeat") for r in rep]
    # the rollups know whether the window's days hold a retried request at all (most workflows have
    # none): the request rows are read only when they do (a workflow's groups by the workflow index: no
    # "? IS NULL OR" around its filter, which keeps DuckDB from using it; every workflow's from the same
    # sums without the workflow, a few rows a day)
    one = " AND workflow_id = ?" if workflow_id is not None else ""
    rolled = "rollup_requests" if workflow_id is not None else "rollup_requests_coarse"
    retried = store.scalar(f"SELECT COALESCE(sum(retried_requests), 0) FROM {rolled} WHERE day >= ? AND day <= ?{one}",
                           [start.date(), end.date(), *([workflow_id] if workflow_id is not None else [])])
    retries: list[Retry] = []
    listed: list[dict[str, Any]] = []
    if retried:
        # every retried request counted; the first `retry_reasons` (an answer showing a few) listed with
        # their reasons, from the failures of their sessions alone, in the lookbacks' time range (a
        # failure before a request's lookback is no reason, as none found)
        listed = store.query(RETRIED_SQL.format(scope=scope), p)
        asked = listed if retry_reasons is None else listed[:retry_reasons]
        lookback = timedelta(seconds=retry_lookback_s)
        f_from = max(start, min((r["ts"] for r in asked), default=start)) - lookback
        f_until = min(end, max((r["ts"] for r in asked), default=end) + timedelta(microseconds=1))
        retries = [Retry(**r) for r in store.query(RETRY_SQL, [
            json.dumps([{**r, "ts": r["ts"].isoformat()} for r in asked]), f_from, f_until,
            _listed(sorted({r["session_id"] for r in asked if r["session_id"] is not None})),
            retry_lookback_s, retry_lookback_s])] if asked else []
    # only the sessions' agents with at least min_cycles failing Bash calls can have as many cycles:
    # their calls alone are ordered (all of them, so each call's next is the same), found by their
    # sessions (a list: DuckDB filters the scan by it; a join read every call of the window's sessions)
    if workflow_id is None and isinstance(store, CacheReader) and store.cache_current():
        # every workflow's: those agents from the cache's failed calls per day and agent, the window's
        # edge days whole (a superset of them: the cycles below are counted from the window's rows)
        k = store.query("""SELECT session_id, agent_id FROM analysis_agent_failure_days
                           WHERE tool_name = 'Bash' AND day >= ? AND day <= ? GROUP BY ALL HAVING sum(n) >= ?""",
                        [start.date(), end.date(), min_cycles])
    else:
        k = store.query(f"""SELECT session_id, agent_id FROM tools WHERE {scope} AND tool_name = 'Bash'
                            AND success = false GROUP BY ALL HAVING count(*) >= ?""", p + [min_cycles])
    cyc = store.query(f"""
        WITH k AS (SELECT unnest(from_json(?, '["VARCHAR"]')) AS session_id,
                          unnest(from_json(?, '["VARCHAR"]')) AS agent_id),
        t AS (
            SELECT workflow_id, stage, x.agent_id, x.session_id, tool_name, success,
                   lead(tool_name) OVER w AS next_tool, lead(success) OVER w AS next_ok
            FROM tools x SEMI JOIN k ON x.session_id IS NOT DISTINCT FROM k.session_id
                                     AND x.agent_id IS NOT DISTINCT FROM k.agent_id
            WHERE {scope} AND (x.session_id IN (SELECT unnest(from_json(?, '["VARCHAR"]'))) OR (x.session_id IS NULL AND ?))
            WINDOW w AS (PARTITION BY x.session_id, x.agent_id ORDER BY "timestamp", tool_use_id))
        SELECT workflow_id, stage, count(*) AS cycles FROM t
        WHERE tool_name IN ('Edit', 'Write', 'MultiEdit', 'NotebookEdit') AND next_tool = 'Bash' AND NOT next_ok
        GROUP BY workflow_id, stage, session_id, agent_id HAVING count(*) >= ? ORDER BY cycles DESC""",
        [_listed(r["session_id"] for r in k), _listed(r["agent_id"] for r in k)] + p
        + [_listed(sorted({r["session_id"] for r in k if r["session_id"] is not None})),
           any(r["session_id"] is None for r in k),
           min_cycles]) if k else []
    rework = [Rework(workflow_id=r["workflow_id"], reason=r["reason"])
              for r in _rework(store, p, end, workflow_id, implementer, reviewer)]
    thrash = [Thrashing(**r) for r in store.query("""
        SELECT workflow_id, stage, tool_calls, api_requests, round(tool_calls / api_requests, 2) AS calls_per_request
        FROM workflow_stage_summary
        WHERE started_at >= ? AND started_at < ? AND (? IS NULL OR workflow_id = ?)
          AND api_requests > 0 AND tool_calls >= ? AND tool_calls / api_requests >= ?
        ORDER BY calls_per_request DESC""", p + [thrash_min_calls, thrash_ratio])]
    return LoopReport(loops=loops, workflows_with_loops=sorted({str(r.workflow_id) for r in loops}),
                      retries=retries, retried_requests=len(listed), edit_fail_cycles=[EditFailCycle(**r) for r in cyc], rework=rework,
                      thrashing=thrash)
