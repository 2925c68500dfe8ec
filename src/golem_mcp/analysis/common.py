"""Small shared pieces of the analysis engine: time windows, writes under the store's lock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from ..errors import InvalidInput
from ..store.db import Store


def utcnow() -> datetime:
    """Naive UTC now: the store keeps TIMESTAMP columns as naive UTC. ``$GOLEM_CLOCK`` (an ISO time, for
    benches and tests on stores dated elsewhere) stands still at that time instead: the analyses' windows
    ("the last 30 days", today's spend) and the times they record are then of that day."""
    fixed = os.environ.get("GOLEM_CLOCK")
    if fixed:
        try:
            return as_naive(datetime.fromisoformat(fixed))
        except ValueError:
            raise InvalidInput(f"GOLEM_CLOCK={fixed!r} is not an ISO time, e.g. 2031-01-01T00:00:00") from None
    return datetime.now(UTC).replace(tzinfo=None)


def as_naive(ts: datetime | None) -> datetime:
    if ts is None:
        return utcnow()
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def window(now: datetime | None, days: float) -> tuple[datetime, datetime]:
    end = as_naive(now)
    return end - timedelta(days=days), end


def execute(store: Store, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """A write on the store's connection, serialized with every other write."""
    with store._lock:  # the Store's single write lock; analyses write only their own tables
        res = store.con.execute(sql, params or [])
        try:
            return res.fetchall()
        except Exception:  # statements without a result set (UPDATE in some versions) have nothing to fetch
            return []


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o))



# --- compact answers ------------------------------------------------------------------------------

def rounded(name: str, value: Any) -> Any:
    """A float rounded to what matters for its field: USD to 4 decimals, rates and ratios to 3, others to 1."""
    if not isinstance(value, float):
        return value
    if name.endswith("usd") or name.endswith("_usd_per_hour"):
        return round(value, 4)
    if "rate" in name or "ratio" in name or name in ("severity", "p_value", "cliffs_delta", "relative_change"):
        return round(value, 3)
    return round(value, 1)


class Table(BaseModel):
    """Rows as columns + rows: each key once per answer instead of once per row."""

    columns: list[str]
    rows: list[list[Any]]


def table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    """``rows`` as a :class:`Table` of ``columns``, floats rounded per column (:func:`rounded`)."""
    def cell(c: str, v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else rounded(c, v)
    return Table(columns=columns, rows=[[cell(c, r.get(c)) for c in columns] for r in rows])

