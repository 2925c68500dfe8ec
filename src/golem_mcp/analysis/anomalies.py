"""Token leaks and anomalies (seed 001's "Stage Y had 5x normal tokens"): each stage run and each
workflow against the median of its peers, with a robust spread (MAD) so one outlier cannot hide itself.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any

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
        return _detect(reader, days, now, history_days, min_history, min_ratio, min_z, workflow_id,
                       PeerMemo.of(reader))


class PeerMemo:
    """The peer groups' medians, counts and MADs of one store, kept between calls under what they were
    computed from: the history's bounds and the analysis cache's state (its rows' version, the change
    number they hold and when they were last written: ``snapshot`` writes a new time whenever the
    summary rows may have changed, and only then). A second call over the same history of an unchanged
    store reads only the window's runs; once a write lands (and the newest request moves the window's
    end) the groups are computed again. Exact: the same values from the same rows.

    Kept only for a reader of the cache's rows (``snapshot.CacheReader``): its transaction sees one
    state of them. A few histories per store (the windows agents ask differ in their ``days``, not in
    the 90-day history)."""

    KEEP = 4
    _lock = threading.Lock()
    _stores: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[Any, ...], dict[str, Any]]] = weakref.WeakKeyDictionary()

    def __init__(self, groups: OrderedDict[tuple[Any, ...], dict[str, Any]], state: tuple[Any, ...]) -> None:
        self._groups = groups
        self.state = state

    @classmethod
    def of(cls, reader: Any) -> PeerMemo | None:
        from .snapshot import CacheReader

        if not isinstance(reader, CacheReader):
            return None
        state = tuple(tuple(r.values()) for r in reader.query(
            "SELECT name, version, seen_seq, built_at FROM analysis_cache_state ORDER BY name"))
        with cls._lock:
            groups = cls._stores.setdefault(reader._store, OrderedDict())
        return cls(groups, state)

    def get(self, *key: Any) -> dict[str, Any] | None:
        with self._lock:
            found = self._groups.get((self.state, *key))
            if found is not None:
                self._groups.move_to_end((self.state, *key))
            return found

    def put(self, peers: dict[str, Any], *key: Any) -> None:
        with self._lock:
            self._groups[(self.state, *key)] = peers
            while len(self._groups) > self.KEEP:
                self._groups.popitem(last=False)


def _detect(store: Store, days: float, now: datetime | None, history_days: float, min_history: int,
            min_ratio: float, min_z: float, workflow_id: str | None, memo: PeerMemo | None = None) -> AnomalyReport:
    start, end = window(now, days)
    hist_start, _ = window(now, history_days)
    # Each peer group's medians (of the metrics side by side, in one pass over the history's numbers, in
    # their own type, or INTEGER when every value fits (_narrow): DuckDB's median of an integer column
    # is that of its DOUBLE cast, values and interpolation alike, at about half the cost, and a third
    # less again as INTEGER than as BIGINT) and count; then the window's runs held against them in one
    # join, only the candidates coming back, one row per metric; then the spread of the groups with a
    # candidate. The groups' figures are kept in ``memo`` (PeerMemo): a call over the same history of
    # an unchanged store reads only the window's runs.
    meds = ", ".join(f"median({m}) AS {m}" for m in METRICS)
    against = ", ".join(f"CAST(s.{m} AS DOUBLE) AS {m}, nw.{m} AS med_{m}" for m in METRICS)
    cands = " UNION ALL ".join(f"SELECT workflow_id, stage, '{m}' AS metric, {m} AS v, med_{m} AS med, n FROM w "
                               f"WHERE n >= $min_history AND med_{m} > 0 AND {m} >= med_{m} * $ratio" for m in METRICS)
    value = "CASE g.metric " + " ".join(f"WHEN '{m}' THEN CAST(h.{m} AS DOUBLE)" for m in METRICS) + " END"
    out: list[Anomaly] = []
    insufficient: list[str] = []
    for level, src, stage_expr in (("stage", "workflow_stage_summary", "stage"),
                                    ("workflow", "workflow_summary", "NULL::VARCHAR")):
        peers = memo.get(level, hist_start, end) if memo else None
        if peers is None:
            groups = store.query(f"SELECT stage, {meds}, count(*) AS n FROM {_hist(store, src, stage_expr)} GROUP BY stage",
                                 {"hist_start": hist_start, "end": end})
            peers = {"groups": {col: [g[col] for g in groups] for col in ("stage", *METRICS, "n")}, "mad": {}}
            if memo:
                memo.put(peers, level, hist_start, end)
        g = peers["groups"]
        if not g["stage"]:
            continue
        nw = ", ".join(["unnest(CAST($g_stage AS VARCHAR[])) AS stage",
                        *(f"unnest(CAST($g_{m} AS DOUBLE[])) AS {m}" for m in METRICS),
                        "unnest(CAST($g_n AS BIGINT[])) AS n"])
        ratio = min_ratio * (1 - 1e-9)
        judged = [n for n in g["n"] if n >= min_history]
        # the window's runs that are a candidate for some metric (c's tests at once: one filter over the
        # join, not three passes of it; most runs are none)
        any_cand = " OR ".join(f"(nw.{m} > 0 AND CAST(s.{m} AS DOUBLE) >= nw.{m} * $ratio)" for m in METRICS)
        runs = (f"(SELECT workflow_id, {stage_expr} AS stage, {', '.join(METRICS)} FROM {src} "
                "WHERE started_at >= $start AND started_at >= $hist_start AND started_at < $end "
                "AND ($wf IS NULL OR workflow_id = $wf))")
        params = {"hist_start": hist_start, "end": end, "start": start, "wf": workflow_id,
                  "min_history": min_history, **{f"g_{k}": v for k, v in g.items()}}
        # Only candidates come back to Python: runs at min_ratio x normal or more (with enough
        # peers). _flag decides on the candidates with the same arithmetic; the SQL bound is a hair
        # looser so rounding cannot drop one.
        rows = store.query(f"""
            WITH nw AS (SELECT {nw}),
            w AS (SELECT s.workflow_id, s.stage, {against}, nw.n FROM {runs} s
                  JOIN nw ON nw.stage IS NOT DISTINCT FROM s.stage WHERE nw.n >= $min_history AND ({any_cand}))
            {cands}
            ORDER BY stage NULLS FIRST, n, metric, v DESC, workflow_id
            """, {**params, "ratio": ratio})
        # and one row per peer group too small to judge that has a run in the window
        if len(judged) < len(g["n"]):
            small = store.query(f"""
                WITH nw AS (SELECT {nw})
                SELECT DISTINCT s.stage, nw.n FROM {runs} s
                JOIN nw ON nw.stage IS NOT DISTINCT FROM s.stage WHERE nw.n < $min_history
                ORDER BY s.stage NULLS FIRST, nw.n""", params)
            for r in small:
                label = f"{level}:{r['stage'] or 'all'} ({r['n']} runs)"
                if label not in insufficient:
                    insufficient.append(label)
        enough = [r for r in rows if r["n"] >= min_history]
        # The spread (MAD: the median distance from the median) of the groups with a candidate only:
        # most groups have none, and it costs a second sort of the group's values.
        spread = peers["mad"]
        need = sorted({(r["stage"], r["metric"], r["med"]) for r in enough if (r["stage"], r["metric"]) not in spread},
                      key=lambda k: (k[0] is not None, k[0] or "", k[1]))
        if need:
            for r in store.query(f"""
                    WITH g AS (SELECT unnest(CAST($stage AS VARCHAR[])) AS stage, unnest($metric) AS metric,
                                      unnest(CAST($med AS DOUBLE[])) AS med)
                    SELECT g.stage, g.metric, median(abs({value} - g.med)) AS mad FROM {_hist(store, src, stage_expr)} h
                    JOIN g ON g.stage IS NOT DISTINCT FROM h.stage GROUP BY ALL""",
                    {"hist_start": hist_start, "end": end, "stage": [k[0] for k in need],
                     "metric": [k[1] for k in need], "med": [k[2] for k in need]}):
                spread[(r["stage"], r["metric"])] = r["mad"]
        for r in enough:
            r["mad"] = spread[(r["stage"], r["metric"])]
        out.extend(_flag(enough, level, min_ratio, min_z))
    out.sort(key=lambda a: a.ratio, reverse=True)
    note = None
    if insufficient:
        note = (f"fewer than {min_history} runs for {len(insufficient)} stage(s)/levels: too little history to tell "
                "a leak from normal variation, so they are not flagged")
    return AnomalyReport(anomalies=out, insufficient_history=insufficient, note=note)


def _hist(store: Store, src: str, stage_expr: str) -> str:
    """The history's runs of ``src`` as a subquery: the peer group and the metrics (see _narrow)."""
    return (f"(SELECT {stage_expr} AS stage, {_narrow(store, src)} FROM {src} "
            f"WHERE started_at >= $hist_start AND started_at < $end)")


def _narrow(store: Store, src: str) -> str:
    """The metrics as the history's columns: the integer ones as INTEGER when all of ``src``'s values
    fit (DuckDB sorts 4-byte values faster; at 10M requests the medians are most of the answer)."""
    ints = [m for m in METRICS if m != "total_cost"]
    (r,) = store.query(f"SELECT {', '.join(f'min({m}) AS lo_{m}, max({m}) AS hi_{m}' for m in ints)} FROM {src}")
    fits = {m for m in ints if r[f"lo_{m}"] is None or (r[f"lo_{m}"] > -2**31 and r[f"hi_{m}"] < 2**31)}
    return ", ".join(f"CAST({m} AS INTEGER) AS {m}" if m in fits else m for m in METRICS)
