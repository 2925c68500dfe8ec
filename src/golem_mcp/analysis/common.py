"""Small shared pieces of the analysis engine: time windows, writes under the store's lock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 60_000:
        return f"{ms / 60_000:.1f}min"
    if ms >= 1000:
        return f"{ms / 1000:.0f}s" if ms >= 10_000 else f"{ms / 1000:.1f}s"
    return f"{ms:.0f}ms"


SNAPSHOT_SCHEMA = "analysis_snapshot"
SNAPSHOT_VIEWS = ("requests", "tools", "errors", "workflow_stage_summary", "workflow_summary")


class _SnapshotReader:
    """The store, but reads resolve unqualified names in the snapshot schema first."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        cur = self._store.con.cursor()
        try:
            cur.execute(f"SET search_path = '{SNAPSHOT_SCHEMA},main'")
            res = cur.execute(sql, params) if params is not None else cur.execute(sql)
            names = [d[0] for d in res.description or ()]
            return [dict(zip(names, row, strict=False)) for row in res.fetchall()]
        finally:
            cur.close()

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params or [])
        return next(iter(rows[0].values())) if rows else None


@contextmanager
def snapshot(store: Store) -> Iterator[Any]:
    """Materialize the resolved views once for a whole analysis run; yields a reader over the copies.

    Each analysis reads the views several times, and every read re-resolves context (agent tree, ASOF
    joins, prices). A run copies them into plain tables of a side schema; the yielded reader puts that
    schema first on the search path, so the same SQL reads the copies. Writes still go to the store.
    """
    with store._lock:
        store.con.execute(f"CREATE SCHEMA IF NOT EXISTS {SNAPSHOT_SCHEMA}")
        cur = store.con.cursor()
        try:
            for v in SNAPSHOT_VIEWS:
                cur.execute(f"CREATE OR REPLACE TABLE {SNAPSHOT_SCHEMA}.{v} AS SELECT * FROM main.{v}")
        finally:
            cur.close()
    try:
        yield _SnapshotReader(store)
    finally:
        with store._lock:
            store.con.execute(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE")
