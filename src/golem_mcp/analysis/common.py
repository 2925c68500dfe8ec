"""Small shared pieces of the analysis engine: time windows, writes under the store's lock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store.db import Store


def utcnow() -> datetime:
    """Naive UTC now: the store keeps TIMESTAMP columns as naive UTC."""
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
