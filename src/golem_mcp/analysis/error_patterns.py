"""Error patterns (seed 002's error-analyze --suggest-fixes): categories by stage, tool and day,
repeated failures with examples, error rate per stage, recovery rate, bursts, and a fix per pattern.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..store.db import Store, dict_rows
from .common import window
from .snapshot import CacheReader, current_cache, failure_groups_sql

# One classification for tool failures and API errors: the store's golem_error_category macro
# (views.sql), which the failure_events view applies to every failure.

FIXES: dict[str, str] = {
    "rate_limit": "Spread parallel subagents out or lower their concurrency; Claude Code retries 429s, but many in a "
                  "row mean the plan's rate limit is too small for this workflow.",
    "overload": "The API was overloaded (529); Claude Code retries by itself. Nothing to change unless it repeats; "
                "then run long workflows off-peak.",
    "timeout": "Give the step a longer timeout or split it; for Bash, run long tests in the background or on a subset.",
    "permission": "Allow the tool in settings (permissions.allow) or run the step in a folder the agent may write.",
    "file_not_found": "Tell the agent where files are (list the tree with Glob first) instead of guessing paths; "
                      "check the paths in its prompt.",
    "syntax": "Run a formatter/linter after each edit so syntax errors surface before tests.",
    "import": "A module is missing or misnamed: install the dependency (or activate the project's environment) "
              "before running, and check the import path against the tree.",
    "connection": "A service the step needs was not reachable: start it first (or wait for its port), or point the "
                  "step at the right host and port; retrying the same call rarely helps.",
    "type": "A value of the wrong type reached a call: run the type checker after edits, and read the traceback's "
            "last frame before changing code.",
    "memory": "The step ran out of memory: work on a smaller input or in chunks, and stop leftover processes.",
    "test_failure": "Tests failed: have the agent read the failure output and change the code before re-running "
                    "the same command.",
    "shell_exit": "A command failed; if the same command fails again and again, have the agent read the output "
                  "and change something before re-running (or stop after 2 failures).",
    "edit_conflict": "Read the file again before editing; make old_string unique.",
    "server_error": "Transient API error; retry. If it persists, report it with the request id.",
    "bad_request": "A request was rejected; check the model name and the size of the context.",
    "refusal": "The model declined (stop_reason refusal): rephrase the task or the prompt that leads to it, or use "
               "another model; the same request again gets the same answer.",
    "other": "Look at the examples; no rule matches this error yet.",
}


class CategoryCount(BaseModel):
    category: str
    count: int
    stages: dict[str, int]
    tools: dict[str, int]
    fix: str = Field(description="suggested fix in plain words")


class RepeatedFailure(BaseModel):
    category: str
    tool_name: str | None
    stage: str
    count: int
    workflows: list[str]
    example: str | None = Field(default=None, description="one failure text (redacted), cut to 200 characters")
    fix: str


class StageErrorRate(BaseModel):
    stage: str
    operations: int = Field(description="tool calls + API requests")
    failures: int
    error_rate: float
    recovered: int = Field(description="failed tool calls followed by a success of the same tool by the same agent")
    recovery_rate: float | None
    recovery_p50_s: float | None = Field(default=None, description="median seconds from a failed tool call to the "
                                         "same agent's next success of that tool (seed 004's recovery time)")
    recovery_p95_s: float | None = Field(default=None, description="95th percentile of the same")


class Burst(BaseModel):
    day: str
    errors: int
    normal: float = Field(description="median errors per day over the window")
    top_category: str


class ErrorPatternReport(BaseModel):
    total_errors: int
    categories: list[CategoryCount]
    repeated_failures: list[RepeatedFailure]
    by_stage: list[StageErrorRate]
    daily: list[dict] = Field(description="day, errors")
    bursts: list[Burst]


def _failures_sql() -> str:
    return 'SELECT * FROM failure_events WHERE "timestamp" >= ? AND "timestamp" < ?'


def error_categories(store: Store, start: datetime, end: datetime) -> list[CategoryCount]:
    """The failures of [start, end) per category, with their stages and tools and a suggested fix (the
    first part of :func:`query_error_patterns`, alone for an answer that shows only it)."""
    # the failures counted per error text, status, stage and tool first, then each such group
    # categorized (the category is a function of the text, status and type): the rule's regular
    # expressions run once per distinct failure, not per failure, and no per-failure list leaves DuckDB
    sql = """WITH g AS ({groups}),
        c AS (SELECT golem_error_category(status_code, msg, etype) AS category, stage, tool, n FROM g)
        SELECT category, CAST(sum(sum(n)) OVER (PARTITION BY category) AS BIGINT) AS total, stage, tool,
               CAST(sum(n) AS BIGINT) AS n
        FROM c GROUP BY category, stage, tool ORDER BY total DESC, category"""
    rows = (f"""SELECT status_code, msg, etype, COALESCE(stage, '-') AS stage, COALESCE(tool_name, 'api') AS tool,
                       count(*) AS n FROM ({_failures_sql()}) GROUP BY ALL""", [start, end])
    days = failure_groups_sql(start, end)
    if isinstance(store, Store | CacheReader) and days is not None:
        # a window of whole days on a store: the failed tool calls' groups per day from the analysis cache
        with current_cache(store) as (cur, cached):
            groups = days if cached else rows
            cats = dict_rows(cur, sql.format(groups=groups[0]), groups[1])
    else:  # one day or less, or a run's reader (its own views): the rows
        cats = store.query(sql.format(groups=rows[0]), rows[1])
    by_cat: dict[str, tuple[int, dict[str, int], dict[str, int]]] = {}
    for r in cats:
        total, st, tl = by_cat.setdefault(r["category"], (r["total"], {}, {}))
        st[r["stage"]] = st.get(r["stage"], 0) + r["n"]
        tl[r["tool"]] = tl.get(r["tool"], 0) + r["n"]
    categories = [CategoryCount(category=cat, count=total, stages=st, tools=tl, fix=FIXES.get(cat, FIXES["other"]))
                  for cat, (total, st, tl) in by_cat.items()]
    return categories


def query_error_patterns(store: Store, days: float = 30, now: datetime | None = None, min_repeat: int = 3,
                         burst_factor: float = 3.0, burst_min: int = 5) -> ErrorPatternReport:
    """Errors grouped into patterns with a suggested fix each, over the last ``days``."""
    start, end = window(now, days)
    base = _failures_sql()
    categories = error_categories(store, start, end)
    reps = store.query(f"""
        WITH c AS ({base})
        SELECT category, tool_name, COALESCE(stage, '-') AS stage, count(*) AS n,
               list(DISTINCT workflow_id) FILTER (WHERE workflow_id IS NOT NULL) AS workflows,
               left(any_value(raw), 200) AS example
        FROM c GROUP BY category, tool_name, COALESCE(stage, '-'), COALESCE(params, msg)
        -- ties broken by the group's own keys: the same store gives the same 20 every time
        HAVING count(*) >= ? ORDER BY n DESC, category, tool_name, stage, COALESCE(params, msg) LIMIT 20""", [start, end, min_repeat])
    repeated = [RepeatedFailure(category=r["category"], tool_name=r["tool_name"], stage=r["stage"], count=r["n"],
                                workflows=sorted(r["workflows"] or []), example=r["example"],
                                fix=FIXES.get(r["category"], FIXES["other"])) for r in reps]
    # A failed call is recovered when the same agent's next call of that tool (in the window)
    # succeeds. Only the (session, agent, tool) sequences with a failure are ordered for that: a
    # hash of the three picks them (a collision only orders a sequence more, which has no failure
    # to count), rather than every call of the window (3M at 10M requests: 1.4 CPU-s -> 0.3).
    stages = store.query("""
        WITH k AS (SELECT DISTINCT hash(session_id, agent_id, tool_name) AS h FROM tools
                   WHERE "timestamp" >= $start AND "timestamp" < $end AND NOT success),
        t AS (
            SELECT stage, success, "timestamp",
                   lead(success) OVER w AS next_ok, lead("timestamp") OVER w AS next_ts
            FROM tools WHERE "timestamp" >= $start AND "timestamp" < $end
                         AND hash(session_id, agent_id, tool_name) IN (SELECT h FROM k)
            WINDOW w AS (PARTITION BY session_id, agent_id, tool_name ORDER BY "timestamp", tool_use_id)),
        rc AS (SELECT stage, count(*) FILTER (WHERE next_ok) AS recovered,
                      quantile_cont(epoch(next_ts - "timestamp"), [0.5, 0.95]) FILTER (WHERE next_ok) AS rec_s
               FROM t WHERE NOT success GROUP BY stage),
        ts AS (SELECT c.stage, c.calls, c.fails, rc.recovered, rc.rec_s
               FROM (SELECT stage, count(*) AS calls, count(*) FILTER (WHERE NOT success) AS fails FROM tools
                     WHERE "timestamp" >= $start AND "timestamp" < $end GROUP BY stage) c
               LEFT JOIN rc ON rc.stage IS NOT DISTINCT FROM c.stage),
        rq AS (SELECT stage, count(*) AS reqs, sum(attempt - 1) AS retries FROM requests
               WHERE "timestamp" >= $start AND "timestamp" < $end GROUP BY stage),
        er AS (SELECT stage, count(*) AS errs FROM errors WHERE "timestamp" >= $start AND "timestamp" < $end
               GROUP BY stage)
        SELECT COALESCE(ts.stage, rq.stage) AS stage, COALESCE(calls, 0) + COALESCE(reqs, 0) AS operations,
               COALESCE(fails, 0) + COALESCE(errs, 0) + COALESCE(retries, 0) AS failures,
               COALESCE(fails, 0) AS tool_failures, COALESCE(recovered, 0) AS recovered, rec_s
        FROM ts FULL JOIN rq ON rq.stage = ts.stage LEFT JOIN er ON er.stage = COALESCE(ts.stage, rq.stage)
        ORDER BY failures DESC""", {"start": start, "end": end})
    by_stage = [StageErrorRate(stage=r["stage"] or "-", operations=r["operations"], failures=r["failures"],
                               error_rate=round(r["failures"] / r["operations"], 4) if r["operations"] else 0.0,
                               recovered=r["recovered"],
                               recovery_rate=round(r["recovered"] / r["tool_failures"], 3) if r["tool_failures"] else None,
                               recovery_p50_s=round(r["rec_s"][0], 3) if r["rec_s"] else None,
                               recovery_p95_s=round(r["rec_s"][1], 3) if r["rec_s"] else None)
                for r in stages]
    daily, bursts = error_bursts(store, start, end, burst_factor, burst_min)
    return ErrorPatternReport(total_errors=sum(c.count for c in categories), categories=categories,
                              repeated_failures=repeated, by_stage=by_stage,
                              daily=daily, bursts=bursts)


def error_bursts(store: Store, start: datetime, end: datetime, burst_factor: float = 3.0,
                 burst_min: int = 5) -> tuple[list[dict[str, Any]], list[Burst]]:
    """The errors of each day in [start, end) and the days among them that burst: at least
    ``burst_min`` errors and ``burst_factor`` times the normal day's (the median over every day of
    activity, days without an error counting zero). The error-spike alert asks only this."""
    base = _failures_sql()
    daily = store.query(f"""
        WITH c AS ({base})
        SELECT CAST(CAST("timestamp" AS DATE) AS VARCHAR) AS day, count(*) AS errors, mode(category) AS top_category
        FROM c GROUP BY 1 ORDER BY 1""", [start, end])
    bursts: list[Burst] = []
    if daily:
        # days with no error count as zero: the normal level is the median over every day of activity
        active_days = store.query("""SELECT count(DISTINCT CAST("timestamp" AS DATE)) AS n FROM requests
                                     WHERE "timestamp" >= ? AND "timestamp" < ?""", [start, end])[0]["n"] or len(daily)
        counts = sorted([d["errors"] for d in daily] + [0] * max(0, active_days - len(daily)))
        normal = float(counts[len(counts) // 2]) if len(counts) % 2 else (counts[len(counts) // 2 - 1] + counts[len(counts) // 2]) / 2
        for d in daily:
            if d["errors"] >= burst_min and d["errors"] >= burst_factor * max(normal, 1.0):
                bursts.append(Burst(day=d["day"], errors=d["errors"], normal=normal, top_category=d["top_category"]))
    return [{"day": d["day"], "errors": d["errors"]} for d in daily], bursts
