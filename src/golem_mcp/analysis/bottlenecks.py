"""Bottlenecks (seed 003's analyser): p50/p95 duration per dimension over a window, against a
configured baseline (``thresholds``) or the dimension's own earlier history, severity = observed / baseline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from .common import fmt_ms, window

# dimension -> SQL yielding (key, ts, dur_ms) samples. Stage/workflow durations come from the
# summary views so they match every other report; agent = one subagent instance's wall time.
# model, tool and agent read the fact tables: the views have exactly one row per fact (every join is
# on a unique key) and these columns pass through unresolved, so the answer is the same without
# resolving millions of rows' context. An agent's label depends only on the agents table.
SAMPLES: dict[str, str] = {
    "stage": "SELECT stage AS key, started_at AS ts, duration_seconds * 1000 AS dur FROM workflow_stage_summary",
    "stage_experiment": "SELECT stage || ' x ' || COALESCE(experiment_id, '-') AS key, started_at AS ts, "
                        "duration_seconds * 1000 AS dur FROM workflow_stage_summary",
    "workflow_path": "SELECT COALESCE(workflow_path, 'unknown') AS key, started_at AS ts, duration_seconds * 1000 AS dur "
                     "FROM workflow_summary",
    "agent": "SELECT COALESCE(NULLIF(a.agent_type, 'custom'), 'subagent') AS key, r.first_at AS ts, "
             "epoch_ms(r.last_at - r.first_at) + COALESCE(r.last_duration_ms, 0) AS dur "
             "FROM agent_request_spans r LEFT JOIN agents a USING (agent_id)",
    "model": "SELECT model AS key, \"timestamp\" AS ts, duration_ms AS dur FROM api_requests",
    "tool": "SELECT tool_name AS key, \"timestamp\" AS ts, duration_ms AS dur FROM tool_calls",
    "span": "SELECT span_type || ':' || COALESCE(tool_name, name) AS key, start_time AS ts, duration_ms AS dur FROM spans",
}
DEFAULT_MULTIPLIER = 2.0


class Bottleneck(BaseModel):
    dimension: str = Field(description="stage, stage_experiment, workflow_path, agent, model, tool or span")
    key: str = Field(description="the value of the dimension, e.g. 'implementer'")
    p50_ms: float = Field(description="median duration in the window, milliseconds")
    p95_ms: float | None = Field(default=None, description="95th percentile in the window, milliseconds")
    samples: int = Field(description="durations observed in the window")
    baseline_p50_ms: float = Field(description="configured or learned baseline median")
    baseline_source: str = Field(description="'configured' (thresholds table) or 'history' (learned)")
    multiplier: float = Field(description="flag when p50 > baseline x multiplier")
    severity: float = Field(description="p50 / baseline")

    def line(self) -> str:
        return (f"{self.severity:.1f}x {self.dimension}:{self.key} "
                f"(p50={fmt_ms(self.p50_ms)} vs baseline={fmt_ms(self.baseline_p50_ms)})")


class BottleneckReport(BaseModel):
    window_start: datetime
    window_end: datetime
    bottlenecks: list[Bottleneck] = Field(description="worst first")
    dimensions_evaluated: int = Field(description="(dimension, key) pairs with enough samples")
    samples_scanned: int
    no_baseline: list[str] = Field(default_factory=list,
                                   description="dimension:key pairs without configured baseline or enough history")


def find_bottlenecks(store: Store, days: float = 7, now: datetime | None = None, history_days: float = 28,
                     dimensions: list[str] | None = None, min_samples: int = 3, min_history: int = 5,
                     multiplier: float = DEFAULT_MULTIPLIER) -> BottleneckReport:
    """Dimensions whose p50 duration in the last ``days`` exceeds baseline x multiplier.

    Example: ``find_bottlenecks(store, days=7).bottlenecks[0].line()`` -> ``'3.1x stage:implementer (...)'``
    """
    dims = dimensions or list(SAMPLES)
    bad = [d for d in dims if d not in SAMPLES]
    if bad:
        raise InvalidInput(f"unknown dimension {', '.join(bad)}; choose from {', '.join(SAMPLES)}")
    from .snapshot import summaries

    with summaries(store) as reader:  # summary views, agent spans and fact tables; no rows of the views
        return _find(reader, days, now, history_days, dims, min_samples, min_history, multiplier)


def _find(store: Store, days: float, now: datetime | None, history_days: float, dims: list[str], min_samples: int,
          min_history: int, multiplier: float) -> BottleneckReport:
    start, end = window(now, days)
    hist_start = start - timedelta(days=history_days)
    configured = {(r["dimension"], r["key"]): r for r in store.query(
        "SELECT dimension, key, baseline_p50_ms, multiplier FROM thresholds WHERE active")}
    out: list[Bottleneck] = []
    evaluated = scanned = 0
    no_baseline: list[str] = []
    for dim in dims:
        rows = store.query(f"""
            WITH s AS ({SAMPLES[dim]})
            SELECT key,
                   quantile_cont(dur, 0.5) FILTER (WHERE ts >= ?) AS p50,
                   quantile_cont(dur, 0.95) FILTER (WHERE ts >= ?) AS p95,
                   count(*) FILTER (WHERE ts >= ?) AS n,
                   quantile_cont(dur, 0.5) FILTER (WHERE ts < ?) AS hist_p50,
                   count(*) FILTER (WHERE ts < ?) AS hist_n
            FROM s WHERE ts >= ? AND ts < ? AND dur IS NOT NULL AND key IS NOT NULL
            GROUP BY key""", [start, start, start, start, start, hist_start, end])
        for r in rows:
            scanned += r["n"] + r["hist_n"]
            if r["n"] < min_samples or r["p50"] is None:
                continue
            evaluated += 1
            conf = configured.get((dim, r["key"]))
            if conf and conf["baseline_p50_ms"]:
                base, mult, src = conf["baseline_p50_ms"], conf["multiplier"] or multiplier, "configured"
            elif r["hist_n"] >= min_history and r["hist_p50"]:
                base, mult, src = r["hist_p50"], multiplier, "history"
            else:
                no_baseline.append(f"{dim}:{r['key']}")
                continue
            if base > 0 and r["p50"] > base * mult:
                out.append(Bottleneck(dimension=dim, key=r["key"], p50_ms=r["p50"], p95_ms=r["p95"], samples=r["n"],
                                      baseline_p50_ms=base, baseline_source=src, multiplier=mult,
                                      severity=round(r["p50"] / base, 2)))
    out.sort(key=lambda b: b.severity, reverse=True)
    return BottleneckReport(window_start=start, window_end=end, bottlenecks=out, dimensions_evaluated=evaluated,
                            samples_scanned=scanned, no_baseline=sorted(no_baseline)[:50])


def set_threshold(store: Store, dimension: str, key: str, baseline_p50_ms: float,
                  multiplier: float = DEFAULT_MULTIPLIER, active: bool = True) -> None:
    """Configure a baseline (seed 003's ``INSERT INTO telemetry_thresholds``)."""
    from .common import execute

    if dimension not in SAMPLES:
        raise InvalidInput(f"unknown dimension {dimension!r}; choose from {', '.join(SAMPLES)}")
    if baseline_p50_ms <= 0 or multiplier <= 0:
        raise InvalidInput("baseline_p50_ms and multiplier must be positive")
    execute(store, "INSERT OR REPLACE INTO thresholds (dimension, key, baseline_p50_ms, multiplier, active, updated_at) "
            "VALUES (?, ?, ?, ?, ?, current_timestamp)", [dimension, key, baseline_p50_ms, multiplier, active])
