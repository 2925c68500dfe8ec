"""Timeout risk (seed 002's widget): requests and tool calls that run close to the limit that would
cut them off, by tool, by model and by request size, with the calls that did time out.

Limits: a Bash call's own ``timeout`` parameter, else Claude Code's default of 2 minutes
(``BASH_DEFAULT_TIMEOUT_MS``); an API request's ``API_TIMEOUT_MS``, 10 minutes by default. Both can be
changed with the arguments when a machine sets them otherwise. "Close" is ``near`` (80 %) of the limit.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from .common import window

BASH_DEFAULT_TIMEOUT_MS = 120_000
API_TIMEOUT_MS = 600_000
# request sizes as a person reads them: what was sent (uncached + cached input)
SIZE_BUCKETS = ((10_000, "<10k"), (50_000, "10k-50k"), (150_000, "50k-150k"))


class RiskRow(BaseModel):
    kind: str = Field(description="tool | request")
    name: str = Field(description="tool name, or model")
    size: str | None = Field(default=None, description="request input size bucket (requests only)")
    calls: int
    p95_share_of_limit: float = Field(description="95th percentile of duration / limit")
    near_limit: int = Field(description="calls that ran at least `near` of their limit")
    timed_out: int = Field(description="calls that failed with a timeout")
    at_risk: bool = Field(description="near-limit or timed-out calls are at least `min_share` of the calls")


class TimeoutRiskReport(BaseModel):
    rows: list[RiskRow]
    near: float
    bash_default_timeout_ms: int
    api_timeout_ms: int
    note: str | None = None


def timeout_risk(store: Store, days: float = 30, now: datetime | None = None, near: float = 0.8,
                 min_share: float = 0.1, min_calls: int = 5, bash_default_timeout_ms: int = BASH_DEFAULT_TIMEOUT_MS,
                 api_timeout_ms: int = API_TIMEOUT_MS) -> TimeoutRiskReport:
    """Tools and models whose calls come close to their time limits, riskiest first.

    Example: ``timeout_risk(store).rows[0]`` -> Bash, p95 at 0.93 of its limit, 14 of 40 calls near it.
    """
    if not 0 < near < 1 or not 0 < min_share <= 1:
        raise InvalidInput("near must be between 0 and 1, and min_share above 0 and at most 1")
    if bash_default_timeout_ms <= 0 or api_timeout_ms <= 0:
        raise InvalidInput("timeouts must be positive milliseconds")
    start, end = window(now, days)
    size_case = " ".join(f"WHEN sent < {limit} THEN '{label}'" for limit, label in SIZE_BUCKETS)
    rows = store.query(f"""
        WITH t AS (
            SELECT 'tool' AS kind, tool_name AS name, NULL::VARCHAR AS size, duration_ms,
                   CASE WHEN tool_name = 'Bash'
                        THEN COALESCE(TRY_CAST(json_extract_string(tool_parameters, '$.timeout') AS DOUBLE), ?)
                   END AS limit_ms,
                   NOT success AND regexp_matches(lower(COALESCE(error, '')), 'timed? ?out|timeout') AS timed_out
            FROM tools WHERE "timestamp" >= ? AND "timestamp" < ?
        ), r AS (
            SELECT 'request', model, CASE {size_case} ELSE '>150k' END, duration_ms, ?::DOUBLE, false
            FROM (SELECT model, duration_ms, input_tokens + cache_read_tokens + cache_creation_tokens AS sent
                  FROM requests WHERE "timestamp" >= ? AND "timestamp" < ? AND model IS NOT NULL)
        ), e AS (
            SELECT 'request', model, NULL::VARCHAR, NULL::DOUBLE, ?::DOUBLE, true FROM errors
            WHERE "timestamp" >= ? AND "timestamp" < ? AND model IS NOT NULL
              AND (status_code = 408 OR regexp_matches(lower(COALESCE(error, '')), 'timed? ?out|timeout'))
        ), a AS (SELECT * FROM t WHERE limit_ms IS NOT NULL UNION ALL SELECT * FROM r UNION ALL SELECT * FROM e)
        SELECT kind, name, size, count(*) AS calls,
               quantile_cont(duration_ms / limit_ms, 0.95) FILTER (WHERE duration_ms IS NOT NULL) AS p95,
               count(*) FILTER (WHERE duration_ms >= ? * limit_ms) AS near_limit,
               count(*) FILTER (WHERE timed_out) AS timed_out
        FROM a GROUP BY ALL HAVING count(*) >= ?
        ORDER BY (count(*) FILTER (WHERE duration_ms >= ? * limit_ms OR timed_out)) / count(*) DESC, p95 DESC NULLS LAST,
                 kind, name, size""",
        [bash_default_timeout_ms, start, end, api_timeout_ms, start, end, api_timeout_ms, start, end,
         near, min_calls, near])
    out = [RiskRow(kind=r["kind"], name=r["name"] or "-", size=r["size"], calls=r["calls"],
                   p95_share_of_limit=round(r["p95"] or 0.0, 3), near_limit=r["near_limit"], timed_out=r["timed_out"],
                   at_risk=(r["near_limit"] + r["timed_out"]) / r["calls"] >= min_share) for r in rows]
    note = None if out else f"no tool or model with {min_calls} or more timed calls in the window"
    return TimeoutRiskReport(rows=out, near=near, bash_default_timeout_ms=bash_default_timeout_ms,
                             api_timeout_ms=api_timeout_ms, note=note)
