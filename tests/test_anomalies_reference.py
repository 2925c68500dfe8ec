"""Token leaks on random peer groups equal a plain reference: per peer group and metric DuckDB's own
median, MAD and count over the history, every run of the window held against them one by one.

The detection reads the history in scans and takes medians of the metrics in their own types (or as
INTEGER when every value fits); the reference takes them of the DOUBLE casts, group by group, so the
two agree only when neither drops, adds or reorders a leak (ties, NULL metrics, NULL stages, small
groups, integer and HUGEINT columns, tokens within and beyond INTEGER's range).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pytest

from golem_mcp.analysis.anomalies import METRICS, _detect, peer_day_rows
from golem_mcp.store.db import dict_rows

NOW = datetime(2030, 6, 1)


class _Reader:
    """What the detection reads: ``query`` on a connection holding the two summary tables (and, with
    ``buckets``, their rows counted per day and value bucket as the analysis cache keeps them: the
    medians and MADs are then found from the counts and the middle buckets' rows)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, buckets: bool = False) -> None:
        self.con = con
        self.peer_days = None
        if buckets:
            con.execute("CREATE OR REPLACE TABLE peer_days AS "
                        + peer_day_rows("workflow_stage_summary", "stage", "stage") + " UNION ALL "
                        + peer_day_rows("workflow_summary", "workflow", "NULL::VARCHAR"))
            self.peer_days = "peer_days"

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return dict_rows(self.con, sql, params)


def _random_summaries(seed: int, scale: int = 1) -> duckdb.DuckDBPyConnection:
    rnd = random.Random(seed)
    con = duckdb.connect()
    for table, tokens in (("workflow_stage_summary", "HUGEINT"), ("workflow_summary", "BIGINT")):
        con.execute(f"CREATE TABLE {table} (workflow_id VARCHAR, stage VARCHAR, started_at TIMESTAMP, "
                    f"total_tokens {tokens}, total_cost DOUBLE, tool_calls BIGINT)")
    stages = ["implementer", "reviewer", "planner", None, "tiny"]
    rows = []
    for i in range(3000):
        stage = rnd.choice(stages)
        if stage == "tiny" and rnd.random() < 0.95:
            stage = "planner"  # a group too small to judge in some windows
        big = rnd.random() < 0.03  # the leaks
        tokens = None if rnd.random() < 0.02 else (rnd.choice([1000, 2000, 2000, 5000]) * (8 if big else 1) + rnd.randint(0, 3)) * scale
        cost = None if rnd.random() < 0.02 else round(rnd.uniform(0.01, 2.0) * (6 if big else 1), rnd.choice([2, 6]))
        calls = None if rnd.random() < 0.05 else rnd.choice([0, 0, 3, 4, 4, 5]) * (5 if big else 1)
        started = NOW - timedelta(days=rnd.uniform(-1, 120))
        rows.append((f"wf-{i % 900}", stage, started, tokens, cost, calls))
    con.executemany("INSERT INTO workflow_stage_summary VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("INSERT INTO workflow_summary SELECT workflow_id, NULL, min(started_at), sum(total_tokens), "
                "sum(total_cost), sum(tool_calls) FROM workflow_stage_summary GROUP BY workflow_id")
    return con


def _reference(con: duckdb.DuckDBPyConnection, days: float, history_days: float, min_history: int,
               min_ratio: float, min_z: float, workflow_id: str | None,
               now: datetime = NOW) -> tuple[list[dict[str, Any]], list[str]]:
    end, start, hist_start = now, now - timedelta(days=days), now - timedelta(days=history_days)
    found: list[tuple[Any, ...]] = []
    small: list[tuple[Any, ...]] = []
    for li, (level, src) in enumerate((("stage", "workflow_stage_summary"), ("workflow", "workflow_summary"))):
        for (stage,) in con.execute(f"SELECT DISTINCT stage FROM {src}").fetchall():
            peers = f"FROM {src} WHERE stage IS NOT DISTINCT FROM ? AND started_at >= ? AND started_at < ?"
            n, in_window = con.execute(f"SELECT count(*), count(*) FILTER (WHERE started_at >= ? AND (CAST(? AS VARCHAR) "
                                       f"IS NULL OR workflow_id = ?)) {peers}",
                                       [start, workflow_id, workflow_id, stage, hist_start, end]).fetchone()  # type: ignore[misc]
            if n < min_history:
                if in_window:
                    small.append((li, stage is not None, stage or "", n, f"{level}:{stage or 'all'} ({n} runs)"))
                continue
            for metric in METRICS:
                med, mad = con.execute(f"SELECT median(CAST({metric} AS DOUBLE)), mad(CAST({metric} AS DOUBLE)) {peers}",
                                       [stage, hist_start, end]).fetchone()  # type: ignore[misc]
                if not med or med <= 0:
                    continue
                runs = con.execute(f"SELECT workflow_id, CAST({metric} AS DOUBLE) {peers} AND started_at >= ? "
                                   "AND (CAST(? AS VARCHAR) IS NULL OR workflow_id = ?)",
                                   [stage, hist_start, end, start, workflow_id, workflow_id]).fetchall()
                for wf, v in runs:
                    if v is None:
                        continue
                    z = (v - med) / (1.4826 * mad) if mad else None
                    if v / med >= min_ratio and (z is None or z >= min_z):
                        found.append((li, stage is not None, stage or "", n, metric, -v, wf, {
                            "level": level, "workflow_id": wf, "stage": stage, "metric": metric, "value": v,
                            "normal": med, "ratio": round(v / med, 2), "robust_z": round(z, 1) if z is not None else None,
                            "peers": n}))
    # the detection's order: level, then its SQL order (stage NULLS FIRST, n, metric, value DESC,
    # workflow), then largest ratio first (a stable sort)
    out = [f[-1] for f in sorted(found, key=lambda f: f[:-1])]
    return sorted(out, key=lambda a: a["ratio"], reverse=True), [s[-1] for s in sorted(small)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("args", [(30, 90, 5, 2.0, 3.5, None), (30, 90, 5, 1.2, 0.0, None),
                                  (7, 20, 5, 1.05, -9.0, None), (120, 90, 40, 1.3, 0.0, None),
                                  (30, 90, 5, 1.2, 0.0, "wf-7")])
@pytest.mark.parametrize("scale", [1, 10**6])  # tokens that fit in INTEGER (sorted as such), and not
@pytest.mark.parametrize("buckets", [False, True])  # the medians of all values, or from the bucket counts
def test_leaks_equal_the_reference(seed: int, args: tuple[Any, ...], scale: int, buckets: bool) -> None:
    con = _random_summaries(seed, scale)
    days, history_days, min_history, min_ratio, min_z, wf = args
    got = _detect(_Reader(con, buckets), days, NOW, history_days, min_history, min_ratio, min_z, wf)  # type: ignore[arg-type]
    want, small = _reference(con, days, history_days, min_history, min_ratio, min_z, wf)
    assert [a.model_dump() for a in got.anomalies] == want
    assert got.insufficient_history == small
    if min_ratio < 2 and wf is None:
        assert want  # the case has leaks to compare


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("args", [(30, 90, 5, 1.2, 0.0, None), (7, 20, 5, 1.05, -9.0, None), (0.4, 90, 5, 1.05, -9.0, None)])
@pytest.mark.parametrize("buckets", [False, True])
def test_leaks_equal_the_reference_at_an_hour_inside_a_day(seed: int, args: tuple[Any, ...], buckets: bool) -> None:
    """The same with the window's and the history's ends inside days (the rows of the days they cut
    through are read apart from the whole days' buckets, and the window's last day counts)."""
    con = _random_summaries(seed)
    now = NOW + timedelta(hours=13, minutes=7)
    days, history_days, min_history, min_ratio, min_z, wf = args
    got = _detect(_Reader(con, buckets), days, now, history_days, min_history, min_ratio, min_z, wf)  # type: ignore[arg-type]
    want, small = _reference(con, days, history_days, min_history, min_ratio, min_z, wf, now)
    assert [a.model_dump() for a in got.anomalies] == want
    assert got.insufficient_history == small
    assert want


@pytest.mark.parametrize("buckets", [False, True])
def test_kept_peer_groups_equal_the_reference(buckets: bool) -> None:
    """The peer groups' medians, counts and MADs kept between calls (PeerMemo) under their history's
    bounds: calls with other windows, histories and bounds, and the same calls again, read them from
    the memo and still equal the reference."""
    from collections import OrderedDict

    from golem_mcp.analysis.anomalies import PeerMemo

    con = _random_summaries(4)
    seen: list[str] = []

    class Counting(_Reader):
        def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
            seen.append(sql)
            return super().query(sql, params)

    memo = PeerMemo(OrderedDict(), ("state",))
    cases = [(30, 90, 5, 1.2, 0.0, None), (7, 20, 5, 1.05, -9.0, None), (30, 90, 5, 2.0, 3.5, None),
             (120, 90, 40, 1.3, 0.0, None), (30, 90, 5, 1.2, 0.0, "wf-7"), (7, 20, 5, 1.1, 0.0, None)]
    for rnd in range(2):
        seen.clear()
        for days, history_days, min_history, min_ratio, min_z, wf in cases:
            got = _detect(Counting(con, buckets), days, NOW, history_days, min_history, min_ratio, min_z, wf, memo)  # type: ignore[arg-type]
            want, small = _reference(con, days, history_days, min_history, min_ratio, min_z, wf)
            assert [a.model_dump() for a in got.anomalies] == want
            assert got.insufficient_history == small
        medians = [s for s in seen if "count(*) AS n" in s or "sum(n)" in s]
        spreads = [s for s in seen if "abs(" in s or "t.center" in s]
        # two histories, two levels: their groups computed once, then only read
        assert (len(medians), bool(spreads)) == ((4, True) if rnd == 0 else (0, False))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_bucket_order_statistics_equal_duckdbs_median_and_mad(seed: int) -> None:
    """The medians and MADs found from the bucket counts and the middle buckets' values equal DuckDB's
    median() and mad() on groups made to be hard for it: even counts whose two middle values differ
    (4s and 5s), ties across the middle, every value alike, values within one bucket (the MAD far
    narrower than a bucket), zeros, negative values, and a history whose ends cut through days."""
    from golem_mcp.analysis.anomalies import _peers_from_buckets, _spread_from_buckets

    rnd = random.Random(seed)
    con = duckdb.connect()
    con.execute("CREATE TABLE workflow_stage_summary (workflow_id VARCHAR, stage VARCHAR, started_at TIMESTAMP, "
                "total_tokens BIGINT, total_cost DOUBLE, tool_calls BIGINT)")
    makers = {
        "fours-fives": lambda i: (4 + i % 2, 4.0 + i % 2, 4 + i % 2),
        "ties": lambda i: (rnd.choice([7, 7, 7, 8]), rnd.choice([0.5, 0.5, 0.25]), rnd.choice([0, 3, 3])),
        "alike": lambda i: (1000, 1.5, 3),
        "narrow": lambda i: (10**6 + rnd.randint(0, 40), 1.0 + rnd.randint(0, 60) * 1e-7, 50 + rnd.randint(0, 1)),
        "signed": lambda i: (rnd.randint(-50, 50), rnd.uniform(-2, 2) if i % 7 else 0.0, rnd.choice([-3, 0, 2])),
        "spread": lambda i: (rnd.randint(1, 10**7), rnd.uniform(0, 100) ** 2, rnd.randint(0, 40)),
    }
    rows = []
    for stage, make in makers.items():
        for i in range(rnd.randint(20, 61)):
            rows.append((f"wf-{stage}-{i}", stage, NOW - timedelta(hours=rnd.uniform(0, 24 * 12)), *make(i)))
    con.executemany("INSERT INTO workflow_stage_summary VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TABLE workflow_summary AS SELECT * FROM workflow_stage_summary WHERE false")
    reader = _Reader(con, buckets=True)
    for history in (timedelta(days=10, hours=5), timedelta(hours=30), timedelta(days=20)):
        hist = NOW - history
        peers = _peers_from_buckets(reader, "peer_days", "stage", "workflow_stage_summary", "stage",  # type: ignore[arg-type]
                                    hist, NOW)
        assert peers is not None
        g = peers["groups"]
        need = [(s, m, g[m][i]) for i, s in enumerate(g["stage"]) for m in METRICS if g[m][i] is not None]
        mads = _spread_from_buckets(reader, peers, need)  # type: ignore[arg-type]
        cols = ", ".join(f"median(CAST({m} AS DOUBLE)) AS {m}, mad(CAST({m} AS DOUBLE)) AS mad_{m}" for m in METRICS)
        want = con.execute(f"SELECT stage, count(*), {cols} FROM workflow_stage_summary WHERE started_at >= ? "
                           "AND started_at < ? GROUP BY stage ORDER BY stage", [hist, NOW]).fetchall()
        got = sorted((s, g["n"][i], *(x for m in METRICS for x in (g[m][i], mads.get((s, m)))))
                     for i, s in enumerate(g["stage"]))
        assert got == [tuple(w) for w in want]
