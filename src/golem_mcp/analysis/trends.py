"""Trends and quality (seed 004's 7-day moving averages and 30-day trends; seed 000's review findings):
daily/weekly cost, tokens, duration, error rate, cache hit rate and findings by severity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from .common import window
from .cost import whole_days


class TrendPoint(BaseModel):
    period: str = Field(description="day (YYYY-MM-DD) or week start")
    cost_usd: float
    tokens: int = Field(description="input + output + cache read + cache write")
    requests: int
    workflows: int
    avg_workflow_seconds: float | None
    error_rate: float | None = Field(description="failed tool calls + API errors + retries per operation")
    cache_hit_rate: float | None
    findings_critical: int
    findings_major: int
    findings_minor: int
    cost_ma7: float | None = Field(default=None, description="average cost of the last 7 calendar periods (empty ones count as $0)")
    cost_change: float | None = Field(default=None, description="relative change of cost vs the previous calendar period")


class TrendReport(BaseModel):
    period: str
    points: list[TrendPoint]
    cost_change_vs_previous_window: float | None = Field(
        None, description="total cost of this window vs the same length before it")


def query_trends(store: Store, period: str = "day", days: float = 30, now: datetime | None = None) -> TrendReport:
    """Cost, tokens, duration, error rate, cache hit rate and findings per day or week."""
    if period not in ("day", "week"):
        raise InvalidInput("period must be 'day' or 'week'")
    from .snapshot import summaries

    with summaries(store) as reader:  # the workflows' durations: the cache's rows, not the views' sums
        return _trends(reader, period, days, now)


def _trends(store: Store, period: str, days: float, now: datetime | None) -> TrendReport:
    start, end = window(now, days)
    prev_start, _ = window(start, days)
    # Every calendar period of the window is a point, the empty ones too (a chart's time axis shows a
    # gap as a gap), and the moving average and the change are over calendar periods: 7 days back, not
    # the 7 rows before, which on intermittent use joined days weeks apart. The 6 periods before the
    # window are read so the first points' averages are whole.
    step = timedelta(days=1 if period == "day" else 7)
    ext_start = start - 6 * step
    # whole days from the rollups, the days the window cuts through from the resolved facts
    req, req_p = _daily(ext_start, end, "rollup_requests",
                        "workflow_id, CASE WHEN cost_n > 0 THEN cost_usd END AS cost_usd, input_tokens, output_tokens, "
                        "cache_read_tokens, cache_creation_tokens, requests, retries",
                        "requests", "workflow_id, cost_usd, input_tokens, output_tokens, cache_read_tokens, "
                        "cache_creation_tokens, 1 AS requests, attempt - 1 AS retries")
    tool, tool_p = _daily(ext_start, end, "rollup_tools", "calls, failures AS fails", "tools",
                          "1 AS calls, CAST(NOT success AS INTEGER) AS fails")
    err, err_p = _daily(ext_start, end, "rollup_errors", "errors AS errs", "errors", "1 AS errs")
    rows = store.query(f"""
        WITH cal AS (SELECT CAST(range AS DATE) AS p
                     FROM range(date_trunc('{period}', ?::TIMESTAMP), ?::TIMESTAMP, INTERVAL 1 {period})),
        r AS (
            SELECT CAST(date_trunc(?, d) AS DATE) AS p, sum(cost_usd) AS cost,
                   sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS tokens,
                   CAST(sum(requests) AS BIGINT) AS requests, sum(retries) AS retries,
                   golem_cache_hit_rate(sum(cache_read_tokens), sum(input_tokens), sum(cache_creation_tokens)) AS hit,
                   count(DISTINCT workflow_id) AS workflows
            FROM ({req}) GROUP BY 1),
        t AS (SELECT CAST(date_trunc(?, d) AS DATE) AS p, sum(calls) AS calls, sum(fails) AS fails
              FROM ({tool}) GROUP BY 1),
        e AS (SELECT CAST(date_trunc(?, d) AS DATE) AS p, sum(errs) AS errs FROM ({err}) GROUP BY 1),
        w AS (SELECT CAST(date_trunc(?, started_at) AS DATE) AS p, avg(duration_seconds) AS secs
              FROM workflow_summary WHERE started_at >= ? AND started_at < ? GROUP BY 1),
        q AS (SELECT CAST(date_trunc(?, ts) AS DATE) AS p, sum(critical) AS c, sum(major) AS ma, sum(minor) AS mi
              FROM review_reports WHERE ts >= ? AND ts < ? GROUP BY 1),
        j AS (
            SELECT cal.p, COALESCE(r.cost, 0) AS cost, COALESCE(r.tokens, 0) AS tokens,
                   COALESCE(r.requests, 0) AS requests, COALESCE(r.workflows, 0) AS workflows, w.secs, r.hit,
                   (COALESCE(t.fails, 0) + COALESCE(e.errs, 0) + COALESCE(r.retries, 0))
                       / NULLIF(COALESCE(t.calls, 0) + COALESCE(r.requests, 0), 0) AS err,
                   COALESCE(q.c, 0) AS c, COALESCE(q.ma, 0) AS ma, COALESCE(q.mi, 0) AS mi
            FROM cal LEFT JOIN r USING (p) LEFT JOIN t USING (p) LEFT JOIN e USING (p) LEFT JOIN w USING (p)
            LEFT JOIN q USING (p)),
        m AS (
            SELECT *, avg(cost) OVER (ORDER BY p ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS ma7,
                   cost / NULLIF(lag(cost) OVER (ORDER BY p), 0) - 1 AS change
            FROM j)
        SELECT CAST(p AS VARCHAR) AS period, cost, tokens, requests, workflows, secs, err, hit, c, ma, mi, ma7, change
        FROM m WHERE p >= CAST(date_trunc('{period}', ?::TIMESTAMP) AS DATE) ORDER BY p""",
        [ext_start, end] + [period, *req_p, period, *tool_p, period, *err_p] + [period, ext_start, end] * 2 + [start])
    points = [TrendPoint(period=r["period"], cost_usd=r["cost"] or 0.0, tokens=int(r["tokens"] or 0),
                         requests=r["requests"], workflows=r["workflows"], avg_workflow_seconds=r["secs"],
                         error_rate=r["err"], cache_hit_rate=r["hit"], findings_critical=int(r["c"]),
                         findings_major=int(r["ma"]), findings_minor=int(r["mi"]), cost_ma7=r["ma7"],
                         cost_change=r["change"]) for r in rows]
    prev = store.scalar('SELECT sum(cost_usd) FROM requests WHERE "timestamp" >= ? AND "timestamp" < ?', [prev_start, start])
    cur = sum(p.cost_usd for p in points)
    return TrendReport(period=period, points=points,
                       cost_change_vs_previous_window=(cur / prev - 1) if prev else None)


def _daily(since: datetime, until: datetime, rollup: str, rolled: str, facts: str, per_fact: str
           ) -> tuple[str, list[Any]]:
    """Rows ``d`` (the day) + columns of [since, until): the rollup's groups of whole days (``rolled``
    over ``rollup``), the facts of the days cut through (``per_fact`` over the view ``facts``)."""
    days, cuts = whole_days(since, until)
    lo, hi = days or (None, None)
    sql = f"SELECT day AS d, {rolled} FROM {rollup} WHERE day >= ? AND day < ?"
    params: list[Any] = [lo, hi]
    if cuts:
        sql += (f' UNION ALL SELECT CAST("timestamp" AS DATE) AS d, {per_fact} FROM {facts} WHERE '
                + " OR ".join('("timestamp" >= ? AND "timestamp" < ?)' for _ in cuts))
        params += [t for c in cuts for t in c]
    return sql, params


class FileFindings(BaseModel):
    file: str
    findings: int
    critical: int
    major: int


class CleanWorkflow(BaseModel):
    workflow_id: str
    total_cost: float | None
    error_count: int
    findings: int


class QualityReport(BaseModel):
    reports: int
    by_severity: dict[str, int]
    by_category: dict[str, int]
    rework_rate: float | None
    findings_per_workflow_by_experiment: dict[str, float]
    top_files: list[FileFindings]
    cleanest_workflows: list[CleanWorkflow] = Field(description="no critical/major findings, fewest errors, cheapest")


def query_quality(store: Store, days: float = 30, now: datetime | None = None, limit: int = 5) -> QualityReport:
    """Review findings (seed 000's .claude-metrics) over the last ``days``."""
    from .snapshot import summaries

    with summaries(store) as reader:  # workflow_summary (twice) and the review tables; no fact rows
        return _quality(reader, days, now, limit)


def _quality(store: Store, days: float, now: datetime | None, limit: int) -> QualityReport:
    start, end = window(now, days)
    p = [start, end]
    sev = store.query("SELECT lower(severity) AS s, count(*) AS n FROM review_issue_rows WHERE ts >= ? AND ts < ? GROUP BY 1", p)
    cat = store.query("""SELECT COALESCE(category, '-') AS c, count(*) AS n FROM review_issue_rows
                         WHERE ts >= ? AND ts < ? GROUP BY 1 ORDER BY n DESC LIMIT 20""", p)
    rep = store.query("SELECT count(*) AS n, avg(CAST(COALESCE(rework, false) AS INTEGER)) AS rw FROM review_reports "
                      "WHERE ts >= ? AND ts < ?", p)[0]
    exp = store.query("""SELECT COALESCE(experiment_id, '-') AS e,
                                avg(critical_issues + major_issues + minor_issues) AS f
                         FROM workflow_summary WHERE started_at >= ? AND started_at < ? GROUP BY 1""", p)
    files = store.query("""SELECT file, count(*) AS findings, count(*) FILTER (WHERE lower(severity) = 'critical') AS critical,
                                  count(*) FILTER (WHERE lower(severity) = 'major') AS major
                           FROM review_issue_rows WHERE ts >= ? AND ts < ? AND file IS NOT NULL
                           GROUP BY file ORDER BY critical DESC, major DESC, findings DESC LIMIT ?""", p + [limit])
    clean = store.query("""SELECT workflow_id, total_cost, error_count,
                                  critical_issues + major_issues + minor_issues AS findings
                           FROM workflow_summary WHERE started_at >= ? AND started_at < ?
                             AND critical_issues + major_issues = 0 AND NOT COALESCE(rework, false)
                           ORDER BY findings, error_count, total_cost NULLS LAST LIMIT ?""", p + [limit])
    return QualityReport(reports=rep["n"], by_severity={r["s"]: r["n"] for r in sev},
                         by_category={r["c"]: r["n"] for r in cat},
                         rework_rate=rep["rw"], findings_per_workflow_by_experiment={r["e"]: round(r["f"], 2) for r in exp},
                         top_files=[FileFindings(**r) for r in files],
                         cleanest_workflows=[CleanWorkflow(**r) for r in clean])
