"""The store's totals for Prometheus (``GET /metrics``): one read of every fact, grouped by labels of
bounded cardinality only.

Labels are stage, model, experiment, tool, workflow path, alert kind: never a workflow, session,
task or request id (each would be a new time series per workflow, which Prometheus is not built
for; ask golem-mcp's own tools for those). Where a label could still grow (tools: every MCP server
adds names; experiments), the most used values are kept and the rest are summed under ``other``,
so a scrape stays a few hundred series whatever the store holds.

Every total is over all history, so Prometheus sees counters and takes rates and increases itself.
Context that arrives late can move a fact from one label set to another (a request first counted
under ``subagent`` moves to ``implementer``): the first series then goes down once, which
Prometheus reads as a counter reset. Sums over all labels never go down.

Example::

    m = store_metrics(store)
    sum(g.cost_usd for g in m.requests)   # = SELECT sum(cost_usd) FROM requests
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ..store.db import Store, dict_rows
from ..store.rollups import LATENCY_BUCKETS_MS

# upper bounds (seconds) of the API request latency histogram: a Claude API call takes from under a
# second (haiku, short answer) to minutes (long outputs, extended thinking); the rollups count them
LATENCY_BUCKETS: tuple[float, ...] = tuple(b / 1000 for b in LATENCY_BUCKETS_MS)
# how many values of a label are kept (by use); the rest are summed as OTHER
MAX_VALUES = {"stage": 30, "model": 15, "experiment": 20, "tool": 30, "path": 10}
OTHER = "other"
NONE = "none"  # a fact without the label's value (no experiment, no model recorded)

# every total over all history: the rollups' groups summed by the labels (the latency histogram's
# counts too when its buckets are the rolled-up ones; other buckets are counted over the requests)
_REQUESTS = """
SELECT stage, COALESCE(model, '{none}') AS model, COALESCE(experiment_id, '{none}') AS experiment,
       CAST(sum(requests) AS BIGINT) AS requests, CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
       CAST(sum(output_tokens) AS BIGINT) AS output_tokens, CAST(sum(cache_read_tokens) AS BIGINT) AS cache_read_tokens,
       CAST(sum(cache_creation_tokens) AS BIGINT) AS cache_creation_tokens,
       COALESCE(sum(cost_usd), 0) AS cost_usd,
       CAST(COALESCE(sum(requests) FILTER (WHERE cost_source = 'unpriced'), 0) AS BIGINT) AS unpriced_requests,
       CAST(sum(retries) AS BIGINT) AS retries,
       CAST(sum(timed_requests) AS BIGINT) AS timed_requests, COALESCE(sum(duration_ms), 0) / 1000.0 AS duration_seconds,
       [{buckets}] AS buckets
FROM rollup_requests GROUP BY ALL"""
_ROLLED_BUCKET = "CAST(sum(lat_le_{ms}) AS BIGINT)"
_BUCKETS_FROM_ROWS = """
SELECT stage, COALESCE(model, '{none}') AS model, COALESCE(experiment_id, '{none}') AS experiment,
       [{buckets}] AS buckets
FROM requests GROUP BY ALL"""
_TOOLS = """
SELECT stage, COALESCE(tool_name, '{none}') AS tool, CAST(sum(calls) AS BIGINT) AS calls,
       CAST(sum(failures) AS BIGINT) AS failures
FROM rollup_tools GROUP BY ALL"""
_ERRORS = """
SELECT stage, COALESCE(model, '{none}') AS model, CAST(sum(errors) AS BIGINT) AS errors FROM rollup_errors GROUP BY ALL"""
_WORKFLOWS = """
SELECT COALESCE(path, '{none}') AS path, COALESCE(experiment_id, '{none}') AS experiment, count(*) AS workflows
FROM workflows GROUP BY ALL"""
_ALERTS = "SELECT kind, scope, COALESCE(CAST(level AS VARCHAR), '') AS level, count(*) AS alerts FROM alerts GROUP BY ALL"
_LAST = 'SELECT max("timestamp") FROM api_requests WHERE "timestamp" < TIMESTAMP \'2262-01-01\''


class RequestGroup(BaseModel):
    stage: str
    model: str
    experiment: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float = Field(description="Claude Code's recorded cost, else tokens x the price table")
    unpriced_requests: int = Field(description="requests of a model the price table does not know (cost 0)")
    retries: int = Field(description="failed attempts before the requests succeeded")
    timed_requests: int = Field(description="requests with a duration (the latency histogram's count)")
    duration_seconds: float = Field(description="sum of their durations")
    buckets: list[int] = Field(description="timed requests at most LATENCY_BUCKETS[i] seconds long (cumulative)")


class LatencyGroup(BaseModel):
    """The request latency histogram of one stage and model (experiments summed)."""

    stage: str
    model: str
    count: int = Field(description="timed requests")
    seconds: float = Field(description="sum of their durations")
    buckets: list[int] = Field(description="timed requests at most LATENCY_BUCKETS[i] seconds long (cumulative)")


class ToolGroup(BaseModel):
    stage: str
    tool: str
    calls: int
    failures: int


class ErrorGroup(BaseModel):
    stage: str
    model: str
    errors: int


class WorkflowGroup(BaseModel):
    path: str
    experiment: str
    workflows: int


class AlertGroup(BaseModel):
    kind: str
    scope: str
    level: str = Field(description="the budget level crossed (percent), '' for other kinds")
    alerts: int


class StoreMetrics(BaseModel):
    """Totals over all history, by bounded labels."""

    requests: list[RequestGroup]
    latency: list[LatencyGroup]
    tools: list[ToolGroup]
    errors: list[ErrorGroup]
    workflows: list[WorkflowGroup]
    alerts: list[AlertGroup]
    latency_buckets: list[float] = Field(default_factory=lambda: list(LATENCY_BUCKETS))
    last_request_at: datetime | None = Field(default=None, description="the newest API request's time (UTC)")
    seconds: float = Field(default=0.0, description="how long reading the store took")


M = TypeVar("M", bound=BaseModel)


def _cap(groups: list[M], limits: dict[str, int], weight: Callable[[M], float]) -> list[M]:
    """Keep each label's ``limits[label]`` most used values (by ``weight``); fold the rest into OTHER,
    summing every numeric field (lists element by element)."""
    for label, limit in limits.items():
        use: dict[str, float] = {}
        for g in groups:
            v = getattr(g, label)
            use[v] = use.get(v, 0.0) + weight(g)
        if len(use) <= limit:
            continue
        keep = set(sorted(use, key=lambda v: (-use[v], v))[:limit - 1])
        folded: dict[tuple[Any, ...], M] = {}
        for g in groups:
            if getattr(g, label) not in keep:
                g = g.model_copy(update={label: OTHER})
            key = tuple(getattr(g, f) for f in type(g).model_fields if isinstance(getattr(g, f), str))
            if key in folded:
                folded[key] = _add(folded[key], g)
            else:
                folded[key] = g
        groups = list(folded.values())
    return _sorted(groups)


def _sorted(groups: list[M]) -> list[M]:
    """By label values: a scrape lists the same series in the same order every time."""
    return sorted(groups, key=lambda g: tuple(v for v in g.model_dump().values() if isinstance(v, str)))


def _add(a: M, b: M) -> M:
    out: dict[str, Any] = {}
    for f in type(a).model_fields:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, str):
            out[f] = x
        elif isinstance(x, list):
            out[f] = [p + q for p, q in zip(x, y, strict=True)]
        else:
            out[f] = x + y
    return type(a)(**out)


def _latency(requests: list[RequestGroup], n_buckets: int) -> list[LatencyGroup]:
    """Histograms per stage and model: a histogram per experiment too would triple the series for
    little (experiments compare cost and errors, which keep the label)."""
    out: dict[tuple[str, str], LatencyGroup] = {}
    for g in requests:
        key = (g.stage, g.model)
        h = out.setdefault(key, LatencyGroup(stage=g.stage, model=g.model, count=0, seconds=0.0,
                                             buckets=[0] * n_buckets))
        h.count += g.timed_requests
        h.seconds += g.duration_seconds
        h.buckets = [a + b for a, b in zip(h.buckets, g.buckets, strict=True)]
    return _sorted(list(out.values()))


def store_metrics(store: Store, buckets: Sequence[float] = LATENCY_BUCKETS) -> StoreMetrics:
    """Every total ``/metrics`` shows, read in one transaction (the numbers agree with each other).

    Cost: one pass over each rollup table (store/rollups.py), whatever the number of facts."""
    start = time.monotonic()
    none = {"none": NONE}
    rolled = tuple(round(float(b) * 1000) for b in buckets) == LATENCY_BUCKETS_MS
    with store.reader() as cur:
        cur.execute("BEGIN TRANSACTION")
        try:
            if rolled:
                bucket_sql = ", ".join(_ROLLED_BUCKET.format(ms=ms) for ms in LATENCY_BUCKETS_MS)
                req = dict_rows(cur, _REQUESTS.format(buckets=bucket_sql, **none))
            else:
                req = dict_rows(cur, _REQUESTS.format(buckets="", **none))
                counted = ", ".join("count(*) FILTER (WHERE duration_ms <= ?)" for _ in buckets)
                hist = {(r["stage"], r["model"], r["experiment"]): r["buckets"] for r in dict_rows(
                    cur, _BUCKETS_FROM_ROWS.format(buckets=counted, **none), [float(b) * 1000 for b in buckets])}
                for r in req:
                    r["buckets"] = hist.get((r["stage"], r["model"], r["experiment"]), [0] * len(buckets))
            tools = dict_rows(cur, _TOOLS.format(**none))
            errors = dict_rows(cur, _ERRORS.format(**none))
            workflows = dict_rows(cur, _WORKFLOWS.format(**none))
            alerts = dict_rows(cur, _ALERTS)
            last = cur.execute(_LAST).fetchone()
        finally:
            cur.execute("ROLLBACK")  # read only: nothing to keep
    requests = _cap([RequestGroup(**r) for r in req], {k: MAX_VALUES[k] for k in ("stage", "model", "experiment")},
                    lambda g: g.requests)
    return StoreMetrics(
        requests=requests,
        latency=_latency(requests, len(buckets)),
        tools=_cap([ToolGroup(**r) for r in tools], {k: MAX_VALUES[k] for k in ("stage", "tool")}, lambda g: g.calls),
        errors=_cap([ErrorGroup(**r) for r in errors], {k: MAX_VALUES[k] for k in ("stage", "model")},
                    lambda g: g.errors),
        workflows=_cap([WorkflowGroup(**r) for r in workflows], {k: MAX_VALUES[k] for k in ("path", "experiment")},
                       lambda g: g.workflows),
        alerts=_sorted([AlertGroup(**r) for r in alerts]),
        latency_buckets=list(buckets),
        last_request_at=last[0] if last else None,
        seconds=round(time.monotonic() - start, 4),
    )
