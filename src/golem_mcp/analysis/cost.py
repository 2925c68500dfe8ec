"""Cost and tokens grouped by workflow, stage, agent, model, task, day, skill, plugin, MCP server, ..."""

from __future__ import annotations

from ..errors import InvalidInput

# the CLI checks `report --by` against DIMENSIONS without loading the store (DuckDB) or typing
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from ..store.db import Store

# dimension name -> expression over the ``requests`` view
DIMENSIONS: dict[str, str] = {
    "workflow": "workflow_id",
    "stage": "stage",
    "top_stage": "top_stage",
    "agent": "agent",
    "model": "model",
    "task": "task_id",
    "experiment": "experiment_id",
    "session": "session_id",
    "machine": "machine_id",
    "project": "project",
    "branch": "git_branch",
    "path": "workflow_path",
    "day": "CAST(\"timestamp\" AS DATE)",
    "week": "CAST(date_trunc('week', \"timestamp\") AS DATE)",
    # whom Claude Code made the request for, as its /usage breaks cost down (NULL: none of them)
    "skill": "skill_name",
    "plugin": "plugin_name",
    "mcp_server": "mcp_server_name",
}

FILTERS = {"workflow_id", "stage", "task_id", "experiment_id", "session_id", "model", "agent", "project",
           "git_branch", "machine_id"}


def cost_by(store: Store, by: list[str], filters: dict[str, Any] | None = None,
            since: datetime | None = None, until: datetime | None = None,
            order: str = "cost", limit: int | None = None) -> list[dict[str, Any]]:
    """Tokens, cost, cache hit rate, requests and duration per group.

    Example: ``cost_by(store, ["workflow", "stage"], {"workflow_id": "wf-001"})``
    """
    from ..store.db import ident

    unknown = [b for b in by if b not in DIMENSIONS]
    if unknown:
        raise InvalidInput(f"unknown grouping {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}")
    where, params = [], []
    for k, v in (filters or {}).items():
        if v is None:
            continue
        if k not in FILTERS:
            raise InvalidInput(f"unknown filter {k!r}; choose from {', '.join(sorted(FILTERS))}")
        where.append(f"{ident(k)} = ?")
        params.append(v)
    if since:
        where.append('"timestamp" >= ?')
        params.append(since)
    if until:
        where.append('"timestamp" < ?')
        params.append(until)
    sel = [f"{DIMENSIONS[b]} AS {ident(b)}" for b in by]
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(by)))}" if by else ""
    order_sql = {"cost": "round(sum(cost_usd), 6) DESC NULLS LAST", "tokens": "total_tokens DESC", "key": "1"}.get(order, "cost_usd DESC")
    if not by and order == "key":
        order_sql = "requests DESC"
    if by:  # ties (equal costs, sums that differ in the last bit) broken by the keys: the same order every run
        order_sql += "".join(f", {i + 1}" for i in range(len(by)))
    sql = f"""
        SELECT {"".join(s + ", " for s in sel)}
               count(*) AS requests,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
               sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS total_tokens,
               sum(cost_usd) AS cost_usd,
               sum(recorded_cost_usd) AS recorded_cost_usd,
               sum(calculated_cost_usd) AS calculated_cost_usd,
               count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_requests,
               list(DISTINCT model) FILTER (WHERE cost_source = 'unpriced') AS unpriced_models,
               golem_cache_hit_rate(sum(cache_read_tokens), sum(input_tokens), sum(cache_creation_tokens))
                   AS cache_hit_rate,
               sum(attempt - 1) AS retries,
               min("timestamp") AS first_at, max("timestamp") AS last_at,
               epoch(max("timestamp") - min("timestamp")) AS duration_seconds
        FROM requests
        {'WHERE ' + ' AND '.join(where) if where else ''}
        {group}
        ORDER BY {order_sql}
        {'LIMIT ' + str(int(limit)) if limit else ''}
    """
    return store.query(sql, params)
