"""Small shared pieces of the analysis engine: time windows, writes under the store's lock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store.db import Store, ident


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


# The resolved columns every analysis reads from ``requests``, resolved as views.sql's ``requests``
# view does, less what no analysis reads (the agent tree's root for top_stage, session and workflow
# attributes): with the agent's own type instead of the recursive agent tree this costs a third.
# Keep in step with views.sql.
_SNAPSHOT_REQUESTS = """
WITH r AS (
    SELECT r.request_id, r.session_id, r.agent_id, r.model, r."timestamp", r.input_tokens, r.output_tokens,
           r.cache_read_tokens, r.cache_creation_tokens, r.cache_creation_5m_tokens, r.cache_creation_1h_tokens,
           r.recorded_cost_usd, r.duration_ms, r.attempt, r.success, r.workflow_id, r.stage, r.task_id,
           r.experiment_id, COALESCE(r."timestamp", TIMESTAMP '2262-01-01') AS _ts
    FROM {db}.main.api_requests r
), j AS (
    SELECT r.*, NULLIF(a.agent_type, 'custom') AS agent_type,
           ac.workflow_id AS ac_workflow_id, ac.stage AS ac_stage, ac.task_id AS ac_task_id,
           ac.experiment_id AS ac_experiment_id,
           wl.workflow_id AS wl_workflow_id, wl.task_id AS wl_task_id, wl.experiment_id AS wl_experiment_id
    FROM r
    LEFT JOIN {db}.main.agents a ON a.agent_id = r.agent_id
    LEFT JOIN {db}.main.agent_context ac ON ac.agent_id = COALESCE(r.agent_id, r.session_id)
    LEFT JOIN {db}.main.workflow_link_ranges wl
           ON wl.session_id = r.session_id AND r._ts >= wl.valid_from AND r._ts < wl.valid_to
), x AS (
    SELECT j.*, COALESCE(j.workflow_id, j.ac_workflow_id, j.wl_workflow_id) AS r_workflow_id,
           COALESCE(j.ac_stage, j.stage, CASE WHEN j.agent_id IS NULL THEN {db}.main.golem_main_stage()
                                              ELSE COALESCE(j.agent_type, 'subagent') END) AS r_stage,
           COALESCE(j.task_id, j.ac_task_id, j.wl_task_id) AS r_task_id,
           COALESCE(j.experiment_id, j.ac_experiment_id, j.wl_experiment_id) AS r_experiment_id
    FROM j
)
SELECT x.request_id, x.session_id, x.agent_id, x.model, x."timestamp",
       COALESCE(x.input_tokens, 0) AS input_tokens, COALESCE(x.output_tokens, 0) AS output_tokens,
       COALESCE(x.cache_read_tokens, 0) AS cache_read_tokens,
       COALESCE(x.cache_creation_tokens, 0) AS cache_creation_tokens,
       x.duration_ms, COALESCE(x.attempt, 1) AS attempt, COALESCE(x.success, true) AS success,
       x.r_workflow_id AS workflow_id, x.r_stage AS stage, x.r_task_id AS task_id,
       COALESCE(x.r_experiment_id, w.experiment_id) AS experiment_id,
       CASE WHEN x.agent_id IS NULL THEN {db}.main.golem_main_stage() ELSE COALESCE(x.agent_type, 'subagent') END AS agent,
       COALESCE(x.recorded_cost_usd,
                (COALESCE(x.input_tokens, 0) * p.input_per_mtok
                 + COALESCE(x.output_tokens, 0) * p.output_per_mtok
                 + COALESCE(x.cache_read_tokens, 0) * p.cache_read_per_mtok
                 + CASE WHEN x.cache_creation_5m_tokens IS NULL AND x.cache_creation_1h_tokens IS NULL
                        THEN COALESCE(x.cache_creation_tokens, 0) * p.cache_write_5m_per_mtok
                        ELSE COALESCE(x.cache_creation_5m_tokens, 0) * p.cache_write_5m_per_mtok
                             + COALESCE(x.cache_creation_1h_tokens, 0) * p.cache_write_1h_per_mtok END) / 1e6) AS cost_usd,
       CASE WHEN x.recorded_cost_usd IS NOT NULL THEN 'claude_code'
            WHEN p.model IS NOT NULL THEN 'price_table' ELSE 'unpriced' END AS cost_source
FROM x
LEFT JOIN {db}.main.workflows w ON w.workflow_id = x.r_workflow_id
LEFT JOIN {db}.main.model_prices p ON p.request_model = x.model"""

# what the analyses read from the other views (the summaries read every column of theirs)
_SNAPSHOT_TOOLS = ('tool_use_id, session_id, agent_id, request_id, tool_name, "timestamp", success, duration_ms, '
                   "error_type, error, tool_parameters, workflow_id, stage, task_id, experiment_id, agent")
_SNAPSHOT_ERRORS = ('session_id, agent_id, request_id, model, "timestamp", status_code, error, attempt, duration_ms, '
                    "workflow_id, stage, task_id, experiment_id, agent")


class _SnapshotReader:
    """The store, but reads go through one connection whose temporary tables shadow the views."""

    def __init__(self, store: Store, cur: Any) -> None:
        self._store = store
        self._cur = cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        res = self._cur.execute(sql, params) if params is not None else self._cur.execute(sql)
        names = [d[0] for d in res.description or ()]
        return [dict(zip(names, row, strict=False)) for row in res.fetchall()]

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params or [])
        return next(iter(rows[0].values())) if rows else None


@contextmanager
def snapshot(store: Store) -> Iterator[Any]:
    """Materialize the resolved views once for a whole analysis run; yields a reader over the copies.

    Each analysis reads the views several times, and every read re-resolves context (ASOF-like link
    ranges, agent context, prices). A run copies the columns the analyses read into TEMPORARY tables
    of one connection: they live in memory (nothing written to the database file or its WAL) and,
    DuckDB resolving unqualified names in the temporary catalog first, they shadow the views of the
    same name for every query on that connection, the summary views' own bodies included. So the
    summaries are aggregated from the copies instead of resolving every request a second and third
    time. Writes still go to the store.
    """
    cur = store.con.cursor()
    try:
        db = ident(str(cur.execute("SELECT current_database()").fetchone()[0]))  # type: ignore[index]
        # while the copies are taken no write may land between them (they must agree with each other)
        with store._lock:
            cur.execute("CREATE OR REPLACE TEMP TABLE requests AS " + _SNAPSHOT_REQUESTS.format(db=db))
            cur.execute(f"CREATE OR REPLACE TEMP TABLE tools AS SELECT {_SNAPSHOT_TOOLS} FROM {db}.main.tools")
            cur.execute(f"CREATE OR REPLACE TEMP TABLE errors AS SELECT {_SNAPSHOT_ERRORS} FROM {db}.main.errors")
        # the views' bodies, bound on this connection, read the temporary copies above
        for v in ("workflow_stage_summary", "workflow_summary"):
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {v} AS SELECT * FROM {db}.main.{v}")
        yield _SnapshotReader(store, cur)
    finally:
        cur.close()  # temporary tables go with their connection
