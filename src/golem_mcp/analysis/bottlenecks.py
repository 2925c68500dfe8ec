"""Bottlenecks (seed 003's analyser): p50/p95 duration per dimension over a window, against a
configured baseline (seed 003's ``telemetry_thresholds`` table) or the dimension's own earlier history,
severity = observed / baseline.

Model and tool percentiles are read from the duration buckets of the rollups
(``rollup_request_durations`` / ``rollup_tool_durations``, whole days), those of stages, stage x
experiment, workflow paths and agents from the analysis cache's duration counts (the same buckets, per
day of their start: ``snapshot.DURATIONS``), and the rows of the days the window cuts through: each is
within 1 % of the exact one (0.5 ms under 1 ms), the counts exact. The span dimensions' are exact.

Spans of the tracing convention (``golem.kind`` handoff, phase, gate, subagent: see
``golem_mcp.tracing``) are their own dimensions, keyed by span name. Their ``duration_ms`` is execution
only; the wait before a span started (``queue_wait_ms``) is judged apart, so a phase that waits for a
worker is not mistaken for a phase that runs slowly, and the other way round.
"""

from __future__ import annotations

import bisect
import itertools
import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound
from ..formatting import duration_ms
from ..store import rollups
from ..store.db import Store, literal
from . import known
from .common import utcnow, window

# dimension -> SQL yielding (key, ts, dur_ms) samples. Stage/workflow durations come from the
# summary views so they match every other report; agent = one subagent instance's wall time.
# model, tool and agent read the fact tables: the views have exactly one row per fact (every join is
# on a unique key) and these columns pass through unresolved, so the answer is the same without
# resolving millions of rows' context. An agent's label is the resolver's (r_agent: its type), which
# agent_request_spans carries: no join of every agent with the agents table (~0.4 CPU-s at 10M requests).
SAMPLES: dict[str, str] = {
    "stage": "SELECT stage AS key, started_at AS ts, duration_seconds * 1000 AS dur FROM workflow_stage_summary",
    "stage_experiment": "SELECT stage AS key, experiment_id AS key2, started_at AS ts, "
                        "duration_seconds * 1000 AS dur FROM workflow_stage_summary",
    "workflow_path": "SELECT COALESCE(workflow_path, 'unknown') AS key, started_at AS ts, duration_seconds * 1000 AS dur "
                     "FROM workflow_summary",
    "agent": "SELECT agent_label AS key, first_at AS ts, epoch_ms(last_at - first_at) + COALESCE(last_duration_ms, 0) "
             "AS dur FROM agent_request_spans",
    "model": "SELECT model AS key, \"timestamp\" AS ts, duration_ms AS dur FROM api_requests",
    "tool": "SELECT tool_name AS key, \"timestamp\" AS ts, duration_ms AS dur FROM tool_calls",
    "span": "SELECT span_type || ':' || COALESCE(tool_name, name) AS key, start_time AS ts, duration_ms AS dur FROM spans "
            "WHERE span_type NOT IN ('handoff', 'phase', 'gate', 'subagent')",
}
# a key of two parts (key, key2) grouped as they are and named after: not a string built for every row
NAMED_AFTER = {"stage_experiment": "key || ' x ' || COALESCE(key2, '-')"}
# seed 003's span types (golem.kind of the tracing convention): execution and queue wait per span name
SPAN_KINDS = ("handoff", "phase", "gate", "subagent")
for _kind in SPAN_KINDS:
    SAMPLES[_kind] = (f"SELECT name AS key, start_time AS ts, duration_ms AS dur, queue_wait_ms AS wait "
                      f"FROM spans WHERE span_type = '{_kind}'")
# dimensions whose percentiles are read from a duration rollup (store/rollups.py SPECS key), not their rows
BUCKETED = {"model": "request_durations", "tool": "tool_durations"}
# ... and those read from the analysis cache's duration counts (analysis/snapshot.py DURATIONS: the
# durations of its summary rows and agent spans per day, key and bucket, kept with those rows): dimension
# -> the dimension whose counts it reads (stage sums stage_experiment's over the experiments)
CACHED = {"stage": "stage_experiment", "stage_experiment": "stage_experiment", "workflow_path": "workflow_path",
          "agent": "agent"}
# the view a counted dimension's samples read (the cache counts them from its table in front of it)
COUNTED_VIEW = {"stage_experiment": "workflow_stage_summary", "workflow_path": "workflow_summary",
                "agent": "agent_request_spans"}
DEFAULT_MULTIPLIER = 2.0
# a learned queue-wait baseline is at least this: a wait going from 5 ms to 40 ms is no bottleneck
MIN_QUEUE_BASELINE_MS = 1000.0


def bucket_rows(dim: str, source: str | None = None) -> str:
    """SQL of ``dim``'s samples with a time, a duration and a key: key, key2 (NULL for a key of one part),
    ts, its day and its duration's bucket (``rollups.duration_bucket``). ``source``: a table (or
    subquery) read instead of the dimension's view (``COUNTED_VIEW``), with the view's columns."""
    sql = SAMPLES[dim]
    if source is not None:
        view = f"FROM {COUNTED_VIEW[dim]}"
        assert sql.count(view) == 1, sql
        sql = sql.replace(view, f"FROM {source}")
    key2 = "key2" if dim in NAMED_AFTER else "NULL::VARCHAR"
    return (f"SELECT key, {key2} AS key2, ts, CAST(ts AS DATE) AS day, {rollups.duration_bucket('dur', zero=True)} AS bucket "
            f"FROM ({sql}) WHERE ts IS NOT NULL AND dur IS NOT NULL AND key IS NOT NULL")


class Bottleneck(BaseModel):
    dimension: str = Field(description="stage, stage_experiment, workflow_path, agent, model, tool, span, or a "
                                       "span kind: handoff, phase, gate, subagent")
    key: str = Field(description="the value of the dimension, e.g. 'implementer'")
    p50_ms: float = Field(description="median duration in the window, milliseconds")
    p95_ms: float | None = Field(default=None, description="95th percentile in the window, milliseconds")
    samples: int = Field(description="durations observed in the window")
    baseline_p50_ms: float = Field(description="configured or learned baseline median")
    baseline_source: str = Field(description="'configured' (thresholds table) or 'history' (learned)")
    multiplier: float = Field(description="flag when p50 > baseline x multiplier")
    severity: float = Field(description="p50 / baseline")
    part: str = Field(default="execution", description="'execution' (the span's own run time) or 'queue_wait' "
                                                      "(the wait before it started)")
    queue_wait_p50_ms: float | None = Field(default=None, description="median wait before start (spans that report it)")

    def line(self) -> str:
        what = " queue wait" if self.part == "queue_wait" else ""
        wait = (f", waited {duration_ms(self.queue_wait_p50_ms)} before" if self.part == "execution"
                and self.queue_wait_p50_ms else "")
        return (f"{self.severity:.1f}x {self.dimension}:{self.key}{what} "
                f"(p50={duration_ms(self.p50_ms)} vs baseline={duration_ms(self.baseline_p50_ms)}{wait})")


class WorkflowBottleneck(BaseModel):
    """Seed 004's ``bottleneck_phase`` and ``idle_time_seconds`` of one workflow, with queue wait apart."""
    workflow_id: str
    started_at: datetime = Field(description="when its first stage started")
    wall_ms: float = Field(description="first stage's start to last stage's end, milliseconds")
    stages: int
    bottleneck_stage: str = Field(description="the stage that ran longest (execution, without its queue wait)")
    bottleneck_ms: float = Field(description="that stage's execution time, start to end")
    bottleneck_share: float = Field(description="bottleneck_ms / wall_ms")
    bottleneck_queue_wait_ms: float | None = Field(default=None, description="the wait before it started, when reported")
    queue_wait_ms: float | None = Field(default=None, description="all stages' reported waits before they started")
    longest_wait_stage: str | None = Field(default=None, description="the stage that waited longest before starting")
    idle_ms: float = Field(description="time in the workflow's span when none of its stages ran")
    idle_share: float = Field(description="idle_ms / wall_ms")
    idle_gaps: int = Field(description="stretches when no stage ran")
    largest_gap_ms: float | None = Field(default=None, description="the longest of them")
    largest_gap_before: str | None = Field(default=None, description="the stage that started after the longest gap")


class BottleneckReport(BaseModel):
    window_start: datetime
    window_end: datetime
    bottlenecks: list[Bottleneck] = Field(description="worst first")
    dimensions_evaluated: int = Field(description="(dimension, key) pairs with enough samples")
    samples_scanned: int
    no_baseline: list[str] = Field(default_factory=list,
                                   description="dimension:key pairs without configured baseline or enough history")
    workflows: list[WorkflowBottleneck] = Field(default_factory=list, description=(
        "per workflow: its bottleneck stage and the idle time between its stages, longest workflows first "
        "(filled when asked for: find_bottlenecks(per_workflow=True))"))
    # kept out of dumps (the CLI's tables and JSON stay as they were); the MCP answer reads them directly
    workflows_total: int = Field(default=0, exclude=True, description="workflows of the window (per_workflow)")
    durations: list[dict] = Field(default_factory=list, exclude=True, description=(
        "every (dimension, key) with enough samples: p50/p95/p99 ms and the baseline used, or why there is none"))


def find_bottlenecks(store: Store, days: float = 7, now: datetime | None = None, history_days: float = 28,
                     dimensions: list[str] | None = None, min_samples: int = 3, min_history: int = 5,
                     multiplier: float = DEFAULT_MULTIPLIER, per_workflow: bool = False,
                     workflow_id: str | None = None, workflow_limit: int | None = None,
                     buckets: bool = True) -> BottleneckReport:
    """Dimensions whose p50 duration in the last ``days`` exceeds baseline x multiplier; with
    ``per_workflow``, also each workflow's bottleneck stage and idle time (``workflow_bottlenecks``; of
    ``workflow_id`` alone when given; the longest ``workflow_limit`` of them when given, and
    ``workflows_total`` says how many there are). ``buckets=False`` reads model and tool percentiles from
    every row too (exact; the reference the bucketed ones are tested against). A ``workflow_id`` the
    store has never seen is an error naming the closest (:mod:`.known`).

    Example: ``find_bottlenecks(store, days=7).bottlenecks[0].line()`` -> ``'3.1x stage:implementer (...)'``
    """
    dims = dimensions or list(SAMPLES)
    bad = [d for d in dims if d not in SAMPLES]
    if bad:
        raise InvalidInput(f"unknown dimension {', '.join(bad)}; choose from {', '.join(SAMPLES)}")
    from .snapshot import summaries

    known.require(store, "workflow_id", workflow_id)

    with summaries(store) as reader:  # summary views, agent spans and fact tables; no rows of the views
        rep = _find(reader, days, now, history_days, dims, min_samples, min_history, multiplier, buckets)
        if per_workflow:
            rep.workflows, rep.workflows_total = longest_workflows(reader, days, now, workflow_id, workflow_limit)
        return rep


# Stage intervals are task_logs' (stage_phases: seed 004's phases, a stage's first start to its last end,
# timed by its phase span when the tracing convention sent one), so the idle time here is workflow_history's
# idle_time_seconds. A span's start is after its queue wait: the wait is not execution, it lies in the
# idle time before the stage (or before the workflow's first stage).
LONGEST_SQL = """
WITH st AS (
    SELECT workflow_id, started_at AS s, completed_at AS e FROM stage_phases
    WHERE workflow_id IS NOT NULL AND started_at IS NOT NULL AND completed_at >= started_at
      AND (CAST(? AS VARCHAR) IS NULL OR workflow_id = ?)
), w_all AS (
    -- the workflows whose first stage started in the window
    SELECT workflow_id, min(s) AS first_start, max(e) AS last_end, count(*) AS stages FROM st
    GROUP BY workflow_id HAVING min(s) >= ? AND min(s) < ?
)
-- the longest first (the order of the answer), the first ? of them when asked, and how many there are
-- (a subquery, not count(*) OVER (): DuckDB 1.5's window over an input with empty blocks, which a UNION
-- ALL with an empty side gives, fails at random with "Attempted to access index 0 within vector of
-- size 0" and invalidates the database; duckdb/duckdb#22352, fixed after 1.5)
SELECT *, (SELECT count(*) FROM w_all) AS workflows_total FROM w_all
ORDER BY epoch_ms(last_end) - epoch_ms(first_start) DESC, workflow_id LIMIT ?
"""
# The same from the analysis cache (a reader's ``workflow_spans``: its workflow summary rows keep each
# workflow's span over its stage rows, analysis/snapshot.py): a workflow with phase spans (which
# stage_phases times by those: LONGEST_PHASED) is ranked from its stage_phases rows, every other one
# from its row.
LONGEST_CACHED_SQL = """
WITH w_all AS (
    SELECT workflow_id, span_first_start AS first_start, span_last_end AS last_end, span_stages AS stages
    FROM {spans}
    WHERE span_first_start >= $start AND span_first_start < $end AND workflow_id IS NOT NULL AND span_stages > 0
      AND NOT list_contains($ids, workflow_id) AND ($wf IS NULL OR workflow_id = $wf)
    {phased}
)
SELECT *, (SELECT count(*) FROM w_all) AS workflows_total FROM w_all
ORDER BY epoch_ms(last_end) - epoch_ms(first_start) DESC, workflow_id LIMIT $limit
"""
LONGEST_PHASED = """UNION ALL
    SELECT workflow_id, min(started_at), max(completed_at), count(*) FROM stage_phases
    WHERE workflow_id IN ({ids}) AND started_at IS NOT NULL AND completed_at >= started_at
    GROUP BY workflow_id HAVING min(started_at) >= $start AND min(started_at) < $end"""
# more workflows with phase spans than this: LONGEST_SQL (their ids are constants in LONGEST_CACHED_SQL)
MAX_PHASED = 1000
# ... and only those are taken apart stage by stage (w: LONGEST_SQL's rows), from ``{stages}``: stage_phases,
# or, when none of them has a phase span, the stage rows it would give them (a filter of the workflows
# stays above stage_phases' full join: every stage of the store was joined to find five workflows' stages)
STAGE_ROWS = "(SELECT workflow_id, stage, started_at, ended_at AS completed_at FROM workflow_stage_summary)"
WORKFLOW_SQL = """
WITH w AS (
    SELECT * FROM (SELECT unnest(?::VARCHAR[]) AS workflow_id, unnest(?::TIMESTAMP[]) AS first_start,
                          unnest(?::TIMESTAMP[]) AS last_end, unnest(?::BIGINT[]) AS stages)
), st AS (
    -- (the ids as constants: the planner filters the view's parts by them before joining them, where a
    -- semi join read every stage of the store)
    SELECT workflow_id, stage, started_at AS s, completed_at AS e FROM {stages}
    WHERE workflow_id IN ({ids}) AND started_at IS NOT NULL AND completed_at >= started_at
), o AS (
    SELECT st.*, max(st.e) OVER (PARTITION BY st.workflow_id ORDER BY st.s, st.e, st.stage
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM st
), qw AS (
    SELECT workflow_id, COALESCE(stage, span_name) AS stage, sum(queue_wait_ms) AS wait_ms
    FROM workflow_trace_log
    WHERE span_type = 'phase' AND workflow_id IN ({ids}) AND queue_wait_ms IS NOT NULL
    GROUP BY ALL
), g AS (
    SELECT o.workflow_id, o.stage, epoch_ms(o.e) - epoch_ms(o.s) AS exec_ms, qw.wait_ms,
           greatest(0, epoch_ms(o.s) - epoch_ms(o.prev_end)) AS gap_ms
    FROM o LEFT JOIN qw USING (workflow_id, stage)
)
SELECT g.workflow_id, w.first_start AS started_at, epoch_ms(w.last_end) - epoch_ms(w.first_start) AS wall_ms,
       w.stages, first(g.stage ORDER BY g.exec_ms DESC, g.stage) AS bottleneck_stage, max(g.exec_ms) AS bottleneck_ms,
       first(g.wait_ms ORDER BY g.exec_ms DESC, g.stage) AS bottleneck_queue_wait_ms,
       sum(g.wait_ms) AS queue_wait_ms,
       first(g.stage ORDER BY g.wait_ms DESC NULLS LAST, g.stage) FILTER (WHERE g.wait_ms > 0) AS longest_wait_stage,
       sum(g.gap_ms) AS idle_ms, count(*) FILTER (WHERE g.gap_ms > 0) AS idle_gaps,
       max(g.gap_ms) FILTER (WHERE g.gap_ms > 0) AS largest_gap_ms,
       first(g.stage ORDER BY g.gap_ms DESC, g.stage) FILTER (WHERE g.gap_ms > 0) AS largest_gap_before
FROM g JOIN w USING (workflow_id)
GROUP BY g.workflow_id, w.first_start, w.last_end, w.stages
ORDER BY wall_ms DESC, g.workflow_id
"""


def workflow_bottlenecks(store: Store, days: float = 30, now: datetime | None = None,
                         workflow_id: str | None = None) -> list[WorkflowBottleneck]:
    """Each workflow started in the last ``days``: the stage that ran longest and its share of the
    workflow's wall time, queue wait apart, and the idle gaps when none of its stages ran (the union of
    the stages' intervals against the workflow's span), longest workflows first.

    Example: ``workflow_bottlenecks(store, days=7)[0].bottleneck_stage`` -> ``'implementer'``
    """
    return longest_workflows(store, days, now, workflow_id)[0]


def longest_workflows(store: Store, days: float = 30, now: datetime | None = None, workflow_id: str | None = None,
                      limit: int | None = None) -> tuple[list[WorkflowBottleneck], int]:
    """``workflow_bottlenecks``' first ``limit`` rows (all when None), and how many workflows it has:
    only those rows' workflows are taken apart stage by stage (an answer showing five of 250k workflows
    reads each one's span, not each one's stages)."""
    start, end = window(now, days)
    # in two steps: the window's stages grouped per workflow once (the longest and how many), then the
    # stages of the longest alone (one statement kept every stage of the window and read it twice)
    spans = getattr(store, "workflow_spans", None)
    phased = [] if spans is None else [r["workflow_id"] for r in store.query(
        "SELECT DISTINCT workflow_id FROM workflow_trace_log WHERE span_type = 'phase' AND workflow_id IS NOT NULL "
        "AND (CAST(? AS VARCHAR) IS NULL OR workflow_id = ?) LIMIT ?", [workflow_id, workflow_id, MAX_PHASED + 1])]
    if spans is not None and len(phased) <= MAX_PHASED:
        ids = ", ".join(literal(w) for w in phased)
        top = store.query(LONGEST_CACHED_SQL.format(spans=spans, phased=LONGEST_PHASED.format(ids=ids) if ids else ""),
                          {"start": start, "end": end, "ids": phased, "wf": workflow_id, "limit": limit})
    else:
        top = store.query(LONGEST_SQL, [workflow_id, workflow_id, start, end, limit])
    if not top:
        return [], 0
    total = top[0]["workflows_total"]
    out = []
    ids = ", ".join(literal(w["workflow_id"]) for w in top)
    cols = ("workflow_id", "first_start", "last_end", "stages")
    plain = spans is not None and len(phased) <= MAX_PHASED and not {w["workflow_id"] for w in top} & set(phased)
    for r in store.query(WORKFLOW_SQL.format(ids=ids, stages=STAGE_ROWS if plain else "stage_phases"),
                         [[w[c] for w in top] for c in cols]):
        wall = float(r["wall_ms"])
        out.append(WorkflowBottleneck(**{**r, "bottleneck_share": round(r["bottleneck_ms"] / wall, 4) if wall else 1.0,
                                         "idle_share": round(r["idle_ms"] / wall, 4) if wall else 0.0}))
    return out, total


def _find(store: Store, days: float, now: datetime | None, history_days: float, dims: list[str], min_samples: int,
          min_history: int, multiplier: float, buckets: bool = True) -> BottleneckReport:
    start, end = window(now, days)
    hist_start = start - timedelta(days=history_days)
    configured = {(r["dimension_type"], r["dimension_key"]): r for r in store.query(
        "SELECT dimension_type, dimension_key, baseline_p50_ms, multiplier FROM telemetry_thresholds WHERE is_active")}
    out: list[Bottleneck] = []
    evaluated = scanned = 0
    no_baseline: list[str] = []
    durations: list[dict] = []
    memo: dict[str, list[dict]] = {}
    for dim in dims:
        wait = dim in SPAN_KINDS
        rows = _bucketed(store, dim, hist_start, start, end, memo) if buckets and (dim in BUCKETED or dim in CACHED) \
            else store.query(f"""
            WITH s AS ({SAMPLES[dim] if wait else f"SELECT *, NULL::DOUBLE AS wait FROM ({SAMPLES[dim]})"})
            SELECT {NAMED_AFTER.get(dim, "key")} AS key, q[1] AS p50, q[2] AS p95, q[3] AS p99, n, hist_p50, hist_n,
                   wait_p50, wait_n, hist_wait_p50, hist_wait_n
            FROM (SELECT {"key, key2" if dim in NAMED_AFTER else "key"},
                         -- the three of the window in one sort (one quantile_cont each sorted it three times)
                         quantile_cont(dur, [0.5, 0.95, 0.99]) FILTER (WHERE ts >= ?) AS q,
                         count(*) FILTER (WHERE ts >= ?) AS n,
                         quantile_cont(dur, 0.5) FILTER (WHERE ts < ?) AS hist_p50,
                         count(*) FILTER (WHERE ts < ?) AS hist_n,
                         quantile_cont(wait, 0.5) FILTER (WHERE ts >= ?) AS wait_p50,
                         count(wait) FILTER (WHERE ts >= ?) AS wait_n,
                         quantile_cont(wait, 0.5) FILTER (WHERE ts < ?) AS hist_wait_p50,
                         count(wait) FILTER (WHERE ts < ?) AS hist_wait_n
                  FROM s WHERE ts >= ? AND ts < ? AND dur IS NOT NULL AND key IS NOT NULL
                  GROUP BY ALL)""", [start] * 8 + [hist_start, end])
        for r in rows:
            scanned += r["n"] + r["hist_n"]
            if r["n"] < min_samples or r["p50"] is None:
                continue
            evaluated += 1
            conf = configured.get((dim, r["key"]))
            seen = {"dimension": dim, "key": r["key"], "samples": r["n"], "p50_ms": r["p50"], "p95_ms": r["p95"],
                    "p99_ms": r["p99"]}
            if conf and conf["baseline_p50_ms"]:
                base, mult, src = conf["baseline_p50_ms"], conf["multiplier"] or multiplier, "configured"
            elif r["hist_n"] >= min_history and r["hist_p50"]:
                base, mult, src = r["hist_p50"], multiplier, "history"
            else:
                no_baseline.append(f"{dim}:{r['key']}")
                durations.append({**seen, "baseline": f"none: {r['hist_n']} earlier samples (need {min_history}) "
                                                      "and no configured threshold"})
                continue
            durations.append({**seen, "baseline_p50_ms": base,
                              "baseline": f"{src} p50 {base:.0f} ms x {mult:g}",
                              "severity": round(r["p50"] / base, 2) if base > 0 else None})
            wait_p50 = r["wait_p50"] if r["wait_n"] else None
            if base > 0 and r["p50"] > base * mult:
                out.append(Bottleneck(dimension=dim, key=r["key"], p50_ms=r["p50"], p95_ms=r["p95"], samples=r["n"],
                                      baseline_p50_ms=base, baseline_source=src, multiplier=mult,
                                      severity=round(r["p50"] / base, 2), queue_wait_p50_ms=wait_p50))
            if wait_p50 is None or r["wait_n"] < min_samples:
                continue
            # the wait before a span ran: against the time the span is allowed to take when configured
            # (waiting longer than the work may take), else against the span's own earlier waits
            if src == "configured":
                wbase = base
            elif r["hist_wait_n"] >= min_history:
                wbase = max(r["hist_wait_p50"] or 0.0, MIN_QUEUE_BASELINE_MS)
            else:
                continue
            if wait_p50 > wbase * mult:
                out.append(Bottleneck(dimension=dim, key=r["key"], p50_ms=wait_p50, samples=r["wait_n"],
                                      baseline_p50_ms=wbase, baseline_source=src, multiplier=mult,
                                      severity=round(wait_p50 / wbase, 2), part="queue_wait",
                                      queue_wait_p50_ms=wait_p50))
    out.sort(key=lambda b: b.severity, reverse=True)
    return BottleneckReport(window_start=start, window_end=end, bottlenecks=out, dimensions_evaluated=evaluated,
                            samples_scanned=scanned, no_baseline=sorted(no_baseline)[:50],
                            durations=sorted(durations, key=lambda d: (d["dimension"], -d["p50_ms"])))


def _bucketed(store: Store, dim: str, hist_start: datetime, start: datetime, end: datetime,
              memo: dict[str, list[dict]] | None = None) -> list[dict]:
    """``_find``'s rows of a dimension whose durations are counted per day and bucket: the bucket counts
    per key of the whole days (a duration rollup's for model and tool, the analysis cache's for the
    ``CACHED`` dimensions when ``store`` reads the cache: its ``durations`` table), those of the days the
    window and the history cut through (of every day without such a table) counted from the rows, and
    the percentiles from the counts (:func:`_quantiles`). ``memo``: counts read before in the same call
    (stage and stage_experiment read the same)."""
    from .cost import whole_days

    if dim in BUCKETED:
        spec = rollups.SPECS[BUCKETED[dim]]
        key = next(c for c in spec.dims if c not in ("day", "bucket"))
        table: str | None = (f"SELECT {key} AS key, NULL::VARCHAR AS key2, bucket, {spec.count} AS n FROM {spec.table} "
                             f"WHERE day >= ? AND day < ? AND bucket IS NOT NULL AND {key} IS NOT NULL")
        rows = (f"SELECT {spec.dims[key]} AS key, NULL::VARCHAR AS key2, {spec.dims['bucket']} AS bucket, 1 AS n "
                f"FROM {spec.fact} WHERE {spec.ts} >= ? AND {spec.ts} < ? AND duration_ms IS NOT NULL "
                f"AND {spec.dims[key]} IS NOT NULL")
    else:
        counted = CACHED[dim]
        durations = getattr(store, "durations", None)
        table = (f"SELECT key, key2, bucket, n FROM {durations} WHERE dim = '{counted}' AND day >= ? AND day < ?"
                 if durations else None)
        rows = f"SELECT key, key2, bucket, ts, 1 AS n FROM ({bucket_rows(counted)})"
    parts: list[str] = []
    params: list[Any] = []
    ranges: list[tuple[datetime, datetime]] = []  # the rows' time ranges
    for side, (a, b) in (("hist", (hist_start, start)), ("window", (start, end))):
        days, cuts = whole_days(a, b) if table else (None, [(a, b)] if a < b else [])
        if days is not None:
            parts.append(f"SELECT *, '{side}' AS side FROM ({table})")
            params += list(days)
        ranges += cuts
    if dim in BUCKETED:  # the facts, in time order: each range's row groups read alone
        for cut in ranges:
            parts.append(f"SELECT *, CASE WHEN ? THEN 'hist' ELSE 'window' END AS side FROM ({rows})")
            params += [cut[0] < start, *cut]
    elif ranges:  # the cache's rows, in no time order: one scan for every range
        within = " OR ".join("(ts >= ? AND ts < ?)" for _ in ranges)
        parts.append(f"SELECT key, key2, bucket, n, CASE WHEN ts < ? THEN 'hist' ELSE 'window' END AS side "
                     f"FROM ({rows}) WHERE {within}")
        params += [start, *(t for r in ranges for t in r)]
    rows_of = CACHED.get(dim, dim)  # the dimension whose keys are counted
    if memo is None or rows_of not in memo:
        got = store.query(f"SELECT key, key2, {NAMED_AFTER.get(rows_of, 'key')} AS name, side, bucket, "
                          f"CAST(sum(n) AS BIGINT) AS n FROM ({' UNION ALL '.join(parts)}) "
                          "GROUP BY key, key2, side, bucket ORDER BY key, key2, side, bucket", params)
        if memo is not None:
            memo[rows_of] = got
    else:
        got = memo[rows_of]
    # (stage: stage_experiment's counts summed over the experiments)
    one = dim not in NAMED_AFTER and rows_of in NAMED_AFTER
    counts: dict[tuple, dict[str, Any]] = {}
    for r in got:
        c = counts.setdefault((r["key"],) if one else (r["key"], r["key2"]),
                              {"name": r["key"] if one else r["name"], "hist": {}, "window": {}})
        c[r["side"]][r["bucket"]] = c[r["side"]].get(r["bucket"], 0) + r["n"]
    for c in counts.values():
        for side in ("hist", "window"):
            c[side] = sorted(c[side].items())
    out = []
    for c in counts.values():
        q, hist = _quantiles(c["window"], (0.5, 0.95, 0.99)), _quantiles(c["hist"], (0.5,))
        out.append({"key": c["name"], "p50": q[0], "p95": q[1], "p99": q[2], "n": sum(n for _, n in c["window"]),
                    "hist_p50": hist[0], "hist_n": sum(n for _, n in c["hist"]), "wait_p50": None, "wait_n": 0,
                    "hist_wait_p50": None, "hist_wait_n": 0})
    return out


def _quantiles(counts: list[tuple[int, int]], qs: tuple[float, ...]) -> list[float | None]:
    """``quantile_cont`` of the durations counted per bucket (``counts``: (bucket, count) by bucket):
    the same interpolation between the same ranks, each rank's duration its bucket's
    (``rollups.bucket_ms``), so within 1 % of the exact quantile (0.5 ms under 1 ms; rounded to 0.1 ms)."""
    n = sum(c for _, c in counts)
    if not n:
        return [None] * len(qs)
    ends = list(itertools.accumulate(c for _, c in counts))  # rank i (0-based) is in the first bucket whose end > i

    def at(i: int) -> float:
        return rollups.bucket_ms(counts[bisect.bisect_right(ends, i)][0])

    out: list[float | None] = []
    for q in qs:
        pos = (n - 1) * q
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        out.append(round(at(lo) + (pos - lo) * (at(hi) - at(lo)), 1))
    return out


class Threshold(BaseModel):
    dimension_type: str = Field(description="a bottleneck dimension: phase, gate, subagent, handoff, stage, agent, ...")
    dimension_key: str = Field(description="its value, e.g. PLAN or implementer")
    baseline_p50_ms: float = Field(description="expected median duration, milliseconds")
    multiplier: float = Field(description="flagged when the observed p50 > baseline x multiplier")
    is_active: bool
    updated_at: datetime | None = None
    note: str | None = Field(default=None, description="set when the analysis does not use this row, and why")


def _check_dimension(dimension: str) -> None:
    if dimension not in SAMPLES:
        raise InvalidInput(f"unknown dimension {dimension!r}; choose from {', '.join(SAMPLES)}")


def list_thresholds(store: Store, include_inactive: bool = True) -> list[Threshold]:
    """The configured baselines (seed 003's ``SELECT * FROM telemetry_thresholds``), by dimension and key."""
    rows = store.query("SELECT dimension_type, dimension_key, baseline_p50_ms, COALESCE(multiplier, ?) AS multiplier, "
                       "COALESCE(is_active, true) AS is_active, updated_at FROM telemetry_thresholds "
                       "WHERE ? OR is_active ORDER BY dimension_type, dimension_key",
                       [DEFAULT_MULTIPLIER, include_inactive])
    out = []
    for r in rows:
        note = None
        if r["dimension_type"] not in SAMPLES:
            note = f"not a dimension the analysis has; use one of {', '.join(SAMPLES)}"
        out.append(Threshold(**r, note=note))
    return out


def set_threshold(store: Store, dimension: str, key: str, baseline_p50_ms: float | None = None,
                  multiplier: float | None = None, active: bool = True) -> Threshold:
    """Configure or change a baseline (seed 003's ``INSERT INTO telemetry_thresholds`` / ``UPDATE``).

    A new row needs ``baseline_p50_ms``; on an existing row, what is not given stays as it was (and
    setting it switches the row back on). Example: ``set_threshold(store, "phase", "PLAN", 60000, 1.8)``.
    """
    from .common import execute

    _check_dimension(dimension)
    if not key or not key.strip():
        raise InvalidInput("give the dimension's key, e.g. PLAN or implementer")
    if baseline_p50_ms is not None and baseline_p50_ms <= 0 or multiplier is not None and multiplier <= 0:
        raise InvalidInput("baseline_p50_ms and multiplier must be positive")
    with store._lock:  # read and write as one step against other writers
        old = {(t.dimension_type, t.dimension_key): t for t in list_thresholds(store)}.get((dimension, key))
        if old is None and baseline_p50_ms is None:
            raise InvalidInput(f"no threshold for {dimension}:{key} yet; give its baseline p50 in milliseconds")
        base = baseline_p50_ms if baseline_p50_ms is not None else old.baseline_p50_ms  # type: ignore[union-attr]
        mult = multiplier if multiplier is not None else (old.multiplier if old else DEFAULT_MULTIPLIER)
        execute(store, "INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier, "
                "is_active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dimension_type, dimension_key) DO UPDATE SET baseline_p50_ms = EXCLUDED.baseline_p50_ms, "
                "multiplier = EXCLUDED.multiplier, is_active = EXCLUDED.is_active, updated_at = EXCLUDED.updated_at",
                [dimension, key, base, mult, active, utcnow(), utcnow()])
    return next(t for t in list_thresholds(store) if (t.dimension_type, t.dimension_key) == (dimension, key))


def switch_off_threshold(store: Store, dimension: str, key: str) -> Threshold:
    """Stop flagging against a configured baseline (seed 003's ``SET is_active = false``); the row stays,
    and the analysis goes back to the key's own history. ``set_threshold`` switches it on again."""
    from .common import execute

    if not execute(store, "UPDATE telemetry_thresholds SET is_active = false, updated_at = ? "
                   "WHERE dimension_type = ? AND dimension_key = ? RETURNING dimension_key", [utcnow(), dimension, key]):
        raise NotFound(f"no threshold for {dimension}:{key}; `golem-mcp thresholds list` shows the configured ones")
    return next(t for t in list_thresholds(store) if (t.dimension_type, t.dimension_key) == (dimension, key))
