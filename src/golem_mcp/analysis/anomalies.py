"""Token leaks and anomalies (seed 001's "Stage Y had 5x normal tokens"): each stage run and each
workflow against the median of its peers, with a robust spread (MAD) so one outlier cannot hide itself.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..store.db import Store
from .common import window

METRICS = ("total_tokens", "total_cost", "tool_calls")


class Anomaly(BaseModel):
    level: str = Field(description="'stage' (one stage of one workflow) or 'workflow'")
    workflow_id: str
    stage: str | None = None
    metric: str = Field(description="total_tokens, total_cost or tool_calls")
    value: float
    normal: float = Field(description="median of the peers (same stage / all workflows)")
    ratio: float = Field(description="value / normal")
    robust_z: float | None = Field(default=None, description="(value - median) / (1.4826 x MAD); None when MAD is 0")
    peers: int = Field(description="how many runs the normal was computed from")


class AnomalyReport(BaseModel):
    anomalies: list[Anomaly] = Field(description="largest ratio first")
    insufficient_history: list[str] = Field(default_factory=list,
                                            description="stages with too few runs to judge; not flagged")
    note: str | None = None


def _flag(rows: list[dict], level: str, min_ratio: float, min_z: float) -> list[Anomaly]:
    out = []
    for r in rows:
        med, mad, v = r["med"], r["mad"], r["v"]
        if v is None or not med or med <= 0:
            continue
        ratio = v / med
        z = (v - med) / (1.4826 * mad) if mad else None
        # MAD = 0 means the peers agree exactly: the ratio alone decides
        if ratio >= min_ratio and (z is None or z >= min_z):
            out.append(Anomaly(level=level, workflow_id=r["workflow_id"], stage=r.get("stage"), metric=r["metric"],
                               value=v, normal=med, ratio=round(ratio, 2), robust_z=round(z, 1) if z is not None else None,
                               peers=r["n"]))
    return out


def detect_anomalies(store: Store, days: float = 30, now: datetime | None = None, history_days: float = 90,
                     min_history: int = 5, min_ratio: float = 2.0, min_z: float = 3.5,
                     workflow_id: str | None = None) -> AnomalyReport:
    """Stage runs and workflows from the last ``days`` whose tokens, cost or tool calls are ``min_ratio``
    times their peers' median (and robustly far from it). Peers = the same stage over ``history_days``.
    """
    from .snapshot import summaries

    with summaries(store) as reader:  # the summary views only
        return _detect(reader, days, now, history_days, min_history, min_ratio, min_z, workflow_id)


def _detect(store: Store, days: float, now: datetime | None, history_days: float, min_history: int,
            min_ratio: float, min_z: float, workflow_id: str | None) -> AnomalyReport:
    start, end = window(now, days)
    hist_start, _ = window(now, history_days)
    # The metrics side by side: each one's median per peer group in one pass over the history's
    # numbers (in their own type, or INTEGER when every value fits (_narrow): DuckDB's median of an
    # integer column is that of its DOUBLE cast, values and interpolation alike, at about half the
    # cost, and a third less again as INTEGER than as BIGINT), the window's runs held against them
    # in one join, and only the candidates as one row per metric. The history is read by scans, not
    # kept as a table of its rows with their workflow ids: only the window's runs carry those.
    meds = ", ".join(f"median({m}) AS {m}" for m in METRICS)
    against = ", ".join(f"CAST(s.{m} AS DOUBLE) AS {m}, nw.{m} AS med_{m}" for m in METRICS)
    cands = " UNION ALL ".join(f"SELECT workflow_id, stage, '{m}' AS metric, {m} AS v, med_{m} AS med, n FROM w "
                               f"WHERE n >= $min_history AND med_{m} > 0 AND {m} >= med_{m} * $ratio" for m in METRICS)
    value = "CASE g.metric " + " ".join(f"WHEN '{m}' THEN CAST(h.{m} AS DOUBLE)" for m in METRICS) + " END"
    out: list[Anomaly] = []
    insufficient: list[str] = []
    for level, src, stage_expr in (("stage", "workflow_stage_summary", "stage"),
                                    ("workflow", "workflow_summary", "NULL::VARCHAR")):
        hist = f"(SELECT {stage_expr} AS stage, {_narrow(store, src)} FROM {src} " \
               f"WHERE started_at >= $hist_start AND started_at < $end)"
        # Only candidates come back to Python: runs at min_ratio x normal or more (with enough
        # peers), and one row per peer group too small to judge. _flag decides on the candidates
        # with the same arithmetic; the SQL bound is a hair looser so rounding cannot drop one.
        # The spread (MAD: the median distance from the median) is computed for the groups with a
        # candidate only: most groups have none, and it costs a second sort of the group's values.
        rows = store.query(f"""
            WITH nw AS (SELECT stage, {meds}, count(*) AS n FROM {hist} GROUP BY stage),
            w AS (SELECT s.workflow_id, s.stage, {against}, nw.n
                  FROM (SELECT workflow_id, {stage_expr} AS stage, {', '.join(METRICS)} FROM {src}
                        WHERE started_at >= $start AND started_at >= $hist_start AND started_at < $end
                          AND ($wf IS NULL OR workflow_id = $wf)) s
                  JOIN nw ON nw.stage IS NOT DISTINCT FROM s.stage),
            c AS ({cands}),
            g AS (SELECT DISTINCT stage, metric, med FROM c),
            spread AS (SELECT g.stage, g.metric, median(abs({value} - g.med)) AS mad FROM {hist} h
                       JOIN g ON g.stage IS NOT DISTINCT FROM h.stage GROUP BY ALL)
            SELECT c.workflow_id, c.stage, c.metric, c.v, c.med, spread.mad, c.n FROM c
            JOIN spread ON spread.metric = c.metric AND spread.stage IS NOT DISTINCT FROM c.stage
            UNION ALL
            SELECT DISTINCT NULL, stage, NULL, NULL, NULL, NULL, n FROM w WHERE n < $min_history
            ORDER BY stage NULLS FIRST, n, metric, v DESC, workflow_id
            """, {"hist_start": hist_start, "end": end, "start": start, "wf": workflow_id, "min_history": min_history,
                  "ratio": min_ratio * (1 - 1e-9)})
        enough = [r for r in rows if r["n"] >= min_history]
        for r in rows:
            if r["n"] < min_history:
                label = f"{level}:{r['stage'] or 'all'} ({r['n']} runs)"
                if label not in insufficient:
                    insufficient.append(label)
        out.extend(_flag(enough, level, min_ratio, min_z))
    out.sort(key=lambda a: a.ratio, reverse=True)
    note = None
    if insufficient:
        note = (f"fewer than {min_history} runs for {len(insufficient)} stage(s)/levels: too little history to tell "
                "a leak from normal variation, so they are not flagged")
    return AnomalyReport(anomalies=out, insufficient_history=insufficient, note=note)


def _narrow(store: Store, src: str) -> str:
    """The metrics as the history's columns: the integer ones as INTEGER when all of ``src``'s values
    fit (DuckDB sorts 4-byte values faster; at 10M requests the medians are most of the answer)."""
    ints = [m for m in METRICS if m != "total_cost"]
    (r,) = store.query(f"SELECT {', '.join(f'min({m}) AS lo_{m}, max({m}) AS hi_{m}' for m in ints)} FROM {src}")
    fits = {m for m in ints if r[f"lo_{m}"] is None or (r[f"lo_{m}"] > -2**31 and r[f"hi_{m}"] < 2**31)}
    return ", ".join(f"CAST({m} AS INTEGER) AS {m}" if m in fits else m for m in METRICS)
