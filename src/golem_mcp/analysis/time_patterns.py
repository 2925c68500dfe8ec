"""When work happens and when it fails (seed 004's hour-of-day / day-of-week patterns).

Requests, cost and failures per hour of the day and per day of the week, and the slots whose error
rate or cost per operation stands out from the other slots' median: "tool failures triple at 14:00"
is a scheduled job competing for the machine, a nightly rate limit, a flaky service's maintenance.
Hours are UTC unless ``utc_offset_hours`` says otherwise (timestamps are stored in UTC).
"""

from __future__ import annotations

import statistics
from datetime import datetime

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from .common import window

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Slot(BaseModel):
    slot: str = Field(description="hour of day ('14') or weekday ('Tue')")
    operations: int = Field(description="API requests + tool calls")
    requests: int
    cost_usd: float
    failures: int = Field(description="failed tool calls + API errors + retries")
    error_rate: float | None


class Spike(BaseModel):
    kind: str = Field(description="hour | weekday")
    slot: str
    metric: str = Field(description="error_rate | cost_per_operation")
    value: float
    normal: float = Field(description="median of the same metric over the other active slots")
    ratio: float | None = Field(description="value / normal; null when the other slots are at zero")


class TimePatternReport(BaseModel):
    hours: list[Slot]
    weekdays: list[Slot]
    spikes: list[Spike]
    utc_offset_hours: float
    note: str | None = None


def time_patterns(store: Store, days: float = 30, now: datetime | None = None, utc_offset_hours: float = 0,
                  min_ratio: float = 2.5, min_operations: int = 20) -> TimePatternReport:
    """Activity, cost and failures by hour of day and day of week over the last ``days``, with spikes.

    Example: ``time_patterns(store).spikes[0]`` -> hour 14, error_rate 0.62 vs 0.05 normally.
    """
    if not -14 <= utc_offset_hours <= 14:
        raise InvalidInput("utc_offset_hours must be between -14 and 14")
    start, end = window(now, days)
    shift = int(round(utc_offset_hours * 3600))
    out: dict[str, list[Slot]] = {}
    for kind, expr in (("hour", "hour(ts)"), ("weekday", "isodow(ts) - 1")):
        rows = store.query(f"""
            WITH r AS (SELECT "timestamp" + to_seconds(?) AS ts, cost_usd, attempt - 1 AS retries FROM requests
                       WHERE "timestamp" >= ? AND "timestamp" < ?),
            t AS (SELECT "timestamp" + to_seconds(?) AS ts, success FROM tools WHERE "timestamp" >= ? AND "timestamp" < ?),
            e AS (SELECT "timestamp" + to_seconds(?) AS ts FROM errors WHERE "timestamp" >= ? AND "timestamp" < ?),
            rs AS (SELECT {expr} AS k, count(*) AS n, sum(cost_usd) AS cost, sum(retries) AS retries FROM r GROUP BY 1),
            ts AS (SELECT {expr} AS k, count(*) AS n, count(*) FILTER (WHERE NOT success) AS fails FROM t GROUP BY 1),
            es AS (SELECT {expr} AS k, count(*) AS n FROM e GROUP BY 1)
            SELECT k, COALESCE(rs.n, 0) AS requests, COALESCE(ts.n, 0) AS calls, COALESCE(rs.cost, 0) AS cost,
                   COALESCE(ts.fails, 0) + COALESCE(es.n, 0) + COALESCE(rs.retries, 0) AS failures
            FROM rs FULL JOIN ts USING (k) FULL JOIN es USING (k) ORDER BY k""",
            [shift, start, end] * 3)
        slots = []
        for r in rows:
            ops = r["requests"] + r["calls"]
            slots.append(Slot(slot=WEEKDAYS[r["k"]] if kind == "weekday" else f"{r['k']:02d}", operations=ops,
                              requests=r["requests"], cost_usd=round(float(r["cost"]), 4), failures=r["failures"],
                              error_rate=round(r["failures"] / ops, 3) if ops else None))
        out[kind] = slots
    spikes: list[Spike] = []
    for kind, slots in out.items():
        active = [s for s in slots if s.operations >= min_operations]
        for metric in ("error_rate", "cost_per_operation"):
            vals = {s.slot: (s.error_rate or 0.0) if metric == "error_rate" else s.cost_usd / s.operations for s in active}
            for s in active:
                others = [v for k, v in vals.items() if k != s.slot]
                if len(others) < 3:
                    continue
                normal = statistics.median(others)
                v = vals[s.slot]
                # an absolute floor too: 2 % against 0.5 % is a ratio of 4 and still nothing to act on;
                # and failures far beyond chance (Poisson z >= 4 against the normal rate), or a slot's
                # few unlucky failures would be flagged in one of the 24 hours
                if metric == "error_rate":
                    expected = normal * s.operations
                    if v <= 0.05 or (s.failures - expected) / max(expected, 1.0) ** 0.5 < 4:
                        continue
                if v > 0 and v >= min_ratio * max(normal, 1e-9):
                    spikes.append(Spike(kind=kind, slot=s.slot, metric=metric, value=round(v, 4),
                                        normal=round(normal, 4), ratio=round(v / normal, 2) if normal else None))
    spikes.sort(key=lambda x: (x.ratio is None, x.ratio or 0.0), reverse=True)
    note = None
    if not any(s.operations >= min_operations for s in out["hour"]):
        note = f"fewer than {min_operations} operations in every hour: too little activity to find patterns"
    return TimePatternReport(hours=out["hour"], weekdays=out["weekday"], spikes=spikes,
                             utc_offset_hours=utc_offset_hours, note=note)
