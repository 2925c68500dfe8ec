"""Token leaks and anomalies (seed 001's "Stage Y had 5x normal tokens"): each stage run and each
workflow against the median of its peers, with a robust spread (MAD) so one outlier cannot hide itself.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..store.db import Store
from . import known
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
    A ``workflow_id`` the store has never seen is an error naming the closest (:mod:`.known`).
    """
    from .snapshot import summaries

    known.require(store, "workflow_id", workflow_id)

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
    value = "CASE g.metric " + " ".join(f"WHEN '{m}' THEN CAST(h.{m} AS DOUBLE)" for m in METRICS) + " END"
    out: list[Anomaly] = []
    insufficient: list[str] = []
    for level, src, stage_expr in (("stage", "workflow_stage_summary", "stage"),
                                    ("workflow", "workflow_summary", "NULL::VARCHAR")):
        peers = memo.get(level, hist_start, end) if memo else None
        if peers is None:
            kept = getattr(store, "peer_days", None)  # the cache's values per day and bucket
            peers = _peers_from_buckets(store, kept, level, src, stage_expr, hist_start, end) if kept else None
            if peers is None:
                groups = store.query(f"SELECT stage, {meds}, count(*) AS n FROM {_hist(store, src, stage_expr)} "
                                     "GROUP BY stage", {"hist_start": hist_start, "end": end})
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
        # the metrics some run of the window can be a candidate for: with the cache's buckets, those whose
        # highest value in the window's days reaches min_ratio x its group's median (most calls: none,
        # and the window's runs, 1M at 10M requests, are not read for them)
        metrics = _reachable(store, peers, start, end, ratio) if peers.get("ctx") is not None else METRICS
        # the window's runs that are a candidate for some metric (c's tests at once: one filter over the
        # join, not three passes of it; most runs are none)
        any_cand = " OR ".join(f"(nw.{m} > 0 AND CAST(s.{m} AS DOUBLE) >= nw.{m} * $ratio)" for m in metrics)
        cands = " UNION ALL ".join(f"SELECT workflow_id, stage, '{m}' AS metric, {m} AS v, med_{m} AS med, n FROM w "
                                   f"WHERE n >= $min_history AND med_{m} > 0 AND {m} >= med_{m} * $ratio" for m in metrics)
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
            """, {**params, "ratio": ratio}) if metrics else []
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
        if need and peers.get("buckets") is not None:
            spread.update(_spread_from_buckets(store, peers, need))
        elif need:
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


# The peer groups from value buckets. A median (and a MAD) is an order statistic: the k-th smallest
# value of the group's history. The analysis cache counts the summary rows per level, stage, day of
# their start, metric and value bucket, and keeps each such bucket's values (``peer_day_rows``;
# snapshot.PEER_DAYS, kept up to date with the summary rows). A call sums the counts of the history's
# whole days and adds the rows of the (at most two) days its ends cut through, then finds which buckets
# can hold the k-th value and reads the values of those buckets only (~2 % of a group at 10M requests),
# so a write that moves the history's bounds costs no sort of every value again. The same value: DuckDB's median of the two middle
# values (the k-th smallest ones) is that of the whole group, interpolated alike. The rule is still
# median() and median(abs(v - median)) over the group: the SQL path above, which a reader without the
# cache's counts takes, and which the tests hold this path to.
PEER_BUCKETS = 1024  # value buckets per doubling (~0.07 % of a value wide)
_OFFSET = 200_000  # bucket of v > 0: _OFFSET + floor(log2(v) * PEER_BUCKETS) (> 0 for every finite double)
NONFINITE = 2_000_000_000  # the bucket of infinities and NaN: a group with one is computed the SQL way


def peer_bucket(v: str) -> str:
    """The SQL bucket of DOUBLE expression ``v``: 0 for 0, positive (negative) and growing with the
    value for positive (negative) values, NULL for NULL."""
    pos = f"{_OFFSET} + CAST(floor(log2({v}) * {PEER_BUCKETS}) AS INTEGER)"
    neg = f"-({_OFFSET} + CAST(floor(log2(-({v})) * {PEER_BUCKETS}) AS INTEGER))"
    return (f"(CASE WHEN {v} IS NULL THEN NULL WHEN {v} = 0 THEN 0 WHEN {v} > 0 AND {v} < 'inf'::DOUBLE THEN {pos} "
            f"WHEN {v} < 0 AND {v} > '-inf'::DOUBLE THEN {neg} ELSE {NONFINITE} END)")


def _peer_values(rows: str, stage_expr: str) -> str:
    """A SELECT of summary ``rows``' (a subquery's) values, one row per row and metric: (stage, day of
    its start, metric, bucket, v: the value as DOUBLE); metric 'rows' once per row (bucket 0, no value),
    NULL values left out. Rows without a start are in no history."""
    items = ", ".join(["{'metric': 'rows', 'bucket': 0, 'v': NULL::DOUBLE}",
                       *(f"{{'metric': '{m}', 'bucket': {peer_bucket(f'CAST({m} AS DOUBLE)')}, "
                         f"'v': CAST({m} AS DOUBLE)}}" for m in METRICS)])
    return (f"SELECT stage, day, p.metric AS metric, p.bucket AS bucket, p.v AS v FROM "
            f"(SELECT {stage_expr} AS stage, CAST(started_at AS DATE) AS day, unnest([{items}]) AS p FROM {rows} "
            "WHERE started_at IS NOT NULL) WHERE p.bucket IS NOT NULL")


def peer_day_rows(rows: str, level: str, stage_expr: str) -> str:
    """A SELECT of summary ``rows``' (a subquery's) values per day of their start, metric and bucket
    (``peer_bucket`` of the value as DOUBLE): (level, stage, day, metric, bucket, n, vals: the values,
    sorted); metric 'rows' counts the rows (bucket 0, no values)."""
    return (f"SELECT '{level}' AS level, stage, day, metric, bucket, count(*) AS n, "
            f"list_sort(list(v) FILTER (WHERE v IS NOT NULL)) AS vals FROM ({_peer_values(rows, stage_expr)}) "
            "GROUP BY level, stage, day, metric, bucket")


def _bucket_values(b: int, integer: bool = False) -> tuple[float, float]:
    """An interval holding every value of bucket ``b`` (a hair wider than the bucket: log2 rounds); of
    an ``integer`` column's values, one value when the interval holds one integer only."""
    if b == 0:
        return 0.0, 0.0
    e = abs(b) - _OFFSET
    if e < -1000 * PEER_BUCKETS:  # tiny values (down to the subnormals): from 0
        lo, hi = 0.0, 2.0 ** -990
    else:
        lo = 2.0 ** (e / PEER_BUCKETS) * (1 - 1e-9)
        try:
            hi = 2.0 ** ((e + 1) / PEER_BUCKETS) * (1 + 1e-9)
        except OverflowError:
            hi = math.inf
    lo, hi = (lo, hi) if b > 0 else (-hi, -lo)
    if integer and math.isfinite(hi) and math.ceil(lo) == math.floor(hi):
        return float(math.ceil(lo)), float(math.ceil(lo))
    return lo, hi


def _ranks(n: int) -> tuple[int, int]:
    """The (1-based) ranks of the values DuckDB's median of ``n`` values interpolates between."""
    rn = (n - 1) * 0.5
    return math.floor(rn) + 1, math.ceil(rn) + 1


def _choose(buckets: list[tuple[int, int, float, float]], k1: int, k2: int) -> tuple[int, list[int]]:
    """Which buckets to read for the k1-th and k2-th smallest keys, given each bucket's count and an
    interval holding its keys: (bucket, n, key_lo, key_hi). Returns how many keys lie in buckets wholly
    below the k1-th (so the k-th key overall is the (k - that)-th of the buckets read) and the buckets
    to read: every other bucket that can hold a key up to the k2-th."""
    cum, below_at = 0, -math.inf
    for _, n, lo, _ in sorted(buckets, key=lambda b: b[2]):
        cum += n
        if cum >= k1:  # fewer than k1 keys lie below ``lo``: the k1-th key is ``lo`` or more
            below_at = lo
            break
    cum, top = 0, math.inf
    for _, n, _, hi in sorted(buckets, key=lambda b: b[3]):
        cum += n
        if cum >= k2:  # k2 keys or more are ``hi`` or less: the k2-th key is ``hi`` or less
            top = hi
            break
    below = sum(n for _, n, _, hi in buckets if hi < below_at)
    return below, [b for b, _, lo, hi in buckets if hi >= below_at and lo <= top]


# the rows of the days the history's ends cut through: [hist_start, e1) and [e2, end)
_EDGES = ("(SELECT * FROM {src} WHERE (started_at >= $hist_start AND started_at < $e1) "
          "OR (started_at >= $e2 AND started_at < $end))")


def _whole_days(hist_start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The history's whole days [lo, hi) (midnights; lo == hi: none)."""
    midnight = datetime.min.time()
    lo = datetime.combine(hist_start.date(), midnight)
    lo += timedelta(days=0 if lo == hist_start else 1)
    hi = datetime.combine(end.date(), midnight)
    return lo, max(lo, hi)


def _peers_from_buckets(store: Store, days: str, level: str, src: str, stage_expr: str, hist_start: datetime,
                        end: datetime) -> dict[str, Any] | None:
    """The peer groups (as _detect's SQL computes them) from the bucket counts in table ``days``; None
    when some value is not finite (the SQL way then)."""
    wlo, whi = _whole_days(hist_start, end)
    ctx: dict[str, Any] = {"days": days, "src": src, "stage_expr": stage_expr,
           "params": {"level": level, "dlo": wlo.date(), "dhi": whi.date(), "hist_start": hist_start,
                      "e1": min(wlo, end), "e2": whi, "end": end}}
    counts = store.query(f"""
        SELECT stage, metric, bucket, CAST(sum(n) AS BIGINT) AS n FROM (
            SELECT stage, metric, bucket, n FROM {days} WHERE level = $level AND day >= $dlo AND day < $dhi
            UNION ALL SELECT stage, metric, bucket, 1 AS n FROM ({_peer_values(_EDGES.format(src=src), stage_expr)}))
        GROUP BY ALL HAVING sum(n) <> 0""", ctx["params"])
    integer = _integer_metrics(store, src)
    sizes: dict[Any, int] = {}
    buckets: dict[tuple[Any, str], list[tuple[int, int]]] = {}
    for r in counts:
        if r["bucket"] == NONFINITE:
            return None
        if r["metric"] == "rows":
            sizes[r["stage"]] = r["n"]
        else:
            buckets.setdefault((r["stage"], r["metric"]), []).append((r["bucket"], r["n"]))
    tasks = []
    for (stage, metric), bs in buckets.items():
        with_values = [(b, n, *_bucket_values(b, metric in integer)) for b, n in bs]
        tasks.append({"stage": stage, "metric": metric, "center": None, "n": sum(n for _, n in bs),
                      "buckets": with_values})
    found = _order_stats(store, ctx, tasks)
    stages = list(sizes)
    groups: dict[str, list[Any]] = {"stage": stages, **{m: [found.get((s, m)) for s in stages] for m in METRICS},
                                    "n": [sizes[s] for s in stages]}
    return {"groups": groups, "mad": {}, "buckets": buckets, "integer": integer, "ctx": ctx}


def _reachable(store: Store, peers: dict[str, Any], start: datetime, end: datetime, ratio: float) -> tuple[str, ...]:
    """The metrics whose value in some run of the window [start, end) may reach ``ratio`` x its group's
    median, from the cache's buckets of the window's days (a superset of its runs): a group's highest
    bucket there bounds its runs' values from above."""
    ctx, g = peers["ctx"], peers["groups"]
    meds = {(s, m): g[m][i] for i, s in enumerate(g["stage"]) for m in METRICS}
    tops = store.query(f"SELECT stage, metric, max(bucket) AS top FROM {ctx['days']} WHERE level = $level "
                       "AND day >= $d0 AND day <= $d1 AND metric <> 'rows' GROUP BY ALL",
                       {"level": ctx["params"]["level"], "d0": start.date(), "d1": end.date()})
    found = set()
    for r in tops:
        med = meds.get((r["stage"], r["metric"]))
        if med is not None and med > 0 and (r["top"] == NONFINITE
                                            or _bucket_values(r["top"])[1] >= med * ratio * (1 - 1e-9)):
            found.add(r["metric"])
    return tuple(m for m in METRICS if m in found)


def _integer_metrics(store: Store, src: str) -> set[str]:
    """The metrics whose column in ``src`` holds integers (a bucket of small ones holds one value)."""
    kinds = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "UHUGEINT")
    return {r["column_name"] for r in store.query(f"DESCRIBE SELECT {', '.join(METRICS)} FROM {src}")
            if r["column_type"] in kinds}


def _spread_from_buckets(store: Store, peers: dict[str, Any],
                         need: list[tuple[Any, str, float]]) -> dict[tuple[Any, str], float]:
    """The MADs (the median of abs(value - median)) of the groups and metrics ``need`` holds, from the
    bucket counts ``_peers_from_buckets`` kept: a bucket's distances from the median lie between those
    of its values' interval's ends (0 when it holds the median)."""
    tasks = []
    for stage, metric, med in need:
        with_keys = []
        for b, n in peers["buckets"].get((stage, metric), []):
            lo, hi = _bucket_values(b, metric in peers["integer"])
            dlo, dhi = abs(lo - med), abs(hi - med)
            with_keys.append((b, n, 0.0 if lo <= med <= hi else min(dlo, dhi), max(dlo, dhi)))
        tasks.append({"stage": stage, "metric": metric, "center": med, "n": sum(n for _, n, _, _ in with_keys),
                      "buckets": with_keys})
    return _order_stats(store, peers["ctx"], tasks)  # type: ignore[return-value]


def _order_stats(store: Store, ctx: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[tuple[Any, str], float | None]:
    """Per task (a group's metric, with its bucket counts and intervals of keys: the value, or its
    distance from ``center``), the median of its keys over the history's rows: the buckets that can
    hold the middle keys are chosen from the counts, and only their values read and ranked (the whole
    days' from the cache's lists, the edge days' from their rows)."""
    out: dict[tuple[Any, str], float | None] = {}
    reads: list[dict[str, Any]] = []
    for t in tasks:
        key = (t["stage"], t["metric"])
        if not t["n"]:
            out[key] = None
            continue
        k1, k2 = _ranks(t["n"])
        below, chosen = _choose(t["buckets"], k1, k2)
        spans = {b: (lo, hi) for b, _, lo, hi in t["buckets"]}
        if all(spans[b][0] == spans[b][1] == spans[chosen[0]][0] for b in chosen):
            out[key] = spans[chosen[0]][0]  # one key only (a group of zeros): nothing to read
            continue
        reads.append({**t, "key": key, "r1": k1 - below, "r2": k2 - below, "chosen": chosen})
    if not reads:
        return out
    params: dict[str, Any] = dict(ctx["params"])
    params.update({"t_id": list(range(len(reads))), "t_stage": [t["stage"] for t in reads],
                   "t_metric": [t["metric"] for t in reads], "t_center": [t["center"] for t in reads],
                   "t_r1": [t["r1"] for t in reads], "t_r2": [t["r2"] for t in reads],
                   "b_tid": [i for i, t in enumerate(reads) for _ in t["chosen"]],
                   "b_bucket": [b for t in reads for b in t["chosen"]]})
    rows = store.query(f"""
        WITH t AS (SELECT unnest(CAST($t_id AS INTEGER[])) AS tid, unnest(CAST($t_stage AS VARCHAR[])) AS stage,
                          unnest(CAST($t_metric AS VARCHAR[])) AS metric, unnest(CAST($t_center AS DOUBLE[])) AS center,
                          unnest(CAST($t_r1 AS BIGINT[])) AS r1, unnest(CAST($t_r2 AS BIGINT[])) AS r2),
        b AS (SELECT unnest(CAST($b_tid AS INTEGER[])) AS tid, unnest(CAST($b_bucket AS INTEGER[])) AS bucket),
        x AS (SELECT stage, metric, bucket, unnest(vals) AS v FROM {ctx["days"]}
              WHERE level = $level AND day >= $dlo AND day < $dhi AND list_contains($b_bucket, bucket)
              UNION ALL SELECT stage, metric, bucket, v FROM ({_peer_values(_EDGES.format(src=ctx["src"]), ctx["stage_expr"])})
              WHERE list_contains($b_bucket, bucket)),
        k AS (SELECT t.tid, t.r1, t.r2, CASE WHEN t.center IS NULL THEN x.v ELSE abs(x.v - t.center) END AS key
              FROM x JOIN t ON t.stage IS NOT DISTINCT FROM x.stage AND t.metric = x.metric
              JOIN b ON b.tid = t.tid AND b.bucket = x.bucket),
        r AS (SELECT tid, r1, r2, key, row_number() OVER (PARTITION BY tid ORDER BY key) AS r FROM k)
        -- DuckDB's median of the two middle keys is that of all of them (the same interpolation)
        SELECT tid, median(key) AS med FROM r WHERE r = r1 OR r = r2 GROUP BY tid""", params)
    got = {r["tid"]: r["med"] for r in rows}
    for i, t in enumerate(reads):
        out[t["key"]] = got[i]
    return out
