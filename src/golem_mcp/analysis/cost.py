"""Cost and tokens grouped by workflow, stage, agent, model, task, day, skill, plugin, MCP server, ..."""

from __future__ import annotations

from ..errors import InvalidInput

# the CLI checks `report --by` against DIMENSIONS without loading the store (DuckDB) or typing
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from datetime import date, datetime
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


# dimension name -> expression over rollup_requests (store/rollups.py); the session and whom Claude Code
# made a request for (skill, plugin, MCP server) are not rolled up: those questions read the facts
NOT_ROLLED_UP = ("session", "day", "week", "skill", "plugin", "mcp_server")
ROLLUP_DIMENSIONS: dict[str, str] = {
    **{k: v for k, v in DIMENSIONS.items() if k not in NOT_ROLLED_UP},
    "day": "day", "week": "CAST(date_trunc('week', day) AS DATE)",
}
ROLLUP_FILTERS = FILTERS - {"session_id"}
# rollup_requests_coarse has no workflow, agent or task: a question without them reads it (10 thousand
# groups for 10 M requests, where rollup_requests has 7.75 M)
NOT_COARSE = ("workflow", "agent", "task")
NOT_COARSE_FILTERS = ("workflow_id", "agent", "task_id")


# the totals over every group a page of them carries (cost_by's ``page``): name -> window aggregate
PAGE_TOTALS = {
    **{f"_total_{c}": f"sum({c}) OVER ()" for c in (
        "requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "total_tokens",
        "cost_usd", "recorded_cost_usd", "calculated_cost_usd", "unpriced_requests", "retries")},
    "_total_first_at": "min(first_at) OVER ()", "_total_last_at": "max(last_at) OVER ()",
    "_groups": "count(*) OVER ()",
}


def cost_by(store: Store, by: list[str], filters: dict[str, Any] | None = None,
            since: datetime | None = None, until: datetime | None = None,
            order: str = "cost", limit: int | None = None, *, rollups: bool = True,
            page: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Tokens, cost, cache hit rate, requests and duration per group.

    Whole days come from the rollups (``rollup_requests``; ``rollup_requests_coarse`` when neither the
    groups nor the filters name a workflow, agent or task), the parts of days a window cuts through
    from the resolved requests; grouping or filtering by session reads the requests alone, as does
    ``rollups=False`` (the reference the rollup answers are tested against).

    ``page`` (offset, limit): only those groups, in order, each carrying the totals over every group
    (:data:`PAGE_TOTALS`, ``_top``: the keys of the group with the most tokens): the last 30 days by
    workflow or session at 10M requests are ~250,000 groups, which took ~2 s to hand to Python whole.

    Example: ``cost_by(store, ["workflow", "stage"], {"workflow_id": "wf-001"})``
    """
    from ..store.db import ident

    unknown = [b for b in by if b not in DIMENSIONS]
    if unknown:
        raise InvalidInput(f"unknown grouping {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}")
    used = _filters(filters)
    rolled = rollups and all(b in ROLLUP_DIMENSIONS for b in by) and all(k in ROLLUP_FILTERS for k in used)
    from ..store.db import Store as PlainStore

    if rolled and type(store) is PlainStore and (since is not None or until is not None):
        # the cut days' check (_whole_when_inside) and the answer read one state of the store: a request
        # landing between them after ``until`` would otherwise be counted in a day read whole
        from .snapshot import _CursorReader

        with store.reader() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                return cost_by(_CursorReader(store, cur), by, filters, since, until, order, limit,  # type: ignore[arg-type]
                               rollups=rollups, page=page)
            finally:
                cur.execute("COMMIT")
    keys = [f"{ident(b)}" for b in by]
    params: list[Any] = []
    if not rolled:
        where, params = _where(used, since, until)
        source = _facts_part(by, where)
    else:
        days, cuts = _whole_when_inside(store, *whole_days(since, until))
        coarse = not any(b in NOT_COARSE for b in by) and not any(k in NOT_COARSE_FILTERS for k in used)
        parts = [_rollup_part(by, used, days, params, "rollup_requests_coarse" if coarse else "rollup_requests")]
        if cuts:
            where, cut_params = _where(used, None, None)
            where.append("(" + " OR ".join('("timestamp" >= ? AND "timestamp" < ?)' for _ in cuts) + ")")
            parts.append(_facts_part(by, where))
            params += cut_params + [t for c in cuts for t in c]
        source = " UNION ALL ".join(parts)
    group = f"GROUP BY {', '.join(keys)}" if by else ""
    # over the groups' own columns (cost_usd, total_tokens are their sums), outside the GROUP BY
    order_sql = {"cost": "round(cost_usd, 6) DESC NULLS LAST", "tokens": "total_tokens DESC", "key": "1"}.get(order, "cost_usd DESC")
    if not by and order == "key":
        order_sql = "requests DESC"
    if by:  # ties (equal costs, sums that differ in the last bit) broken by the keys: the same order every run
        order_sql += "".join(f", {i + 1}" for i in range(len(by)))
    grouped = f"""
        SELECT {"".join(k + ", " for k in keys)}
               CAST(sum(requests) AS BIGINT) AS requests,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
               sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS total_tokens,
               sum(cost_usd) AS cost_usd,
               sum(recorded_cost_usd) AS recorded_cost_usd,
               sum(calculated_cost_usd) AS calculated_cost_usd,
               CAST(sum(requests) FILTER (WHERE cost_source = 'unpriced') AS BIGINT) AS unpriced_requests,
               list(DISTINCT model) FILTER (WHERE cost_source = 'unpriced') AS unpriced_models,
               golem_cache_hit_rate(sum(cache_read_tokens), sum(input_tokens), sum(cache_creation_tokens))
                   AS cache_hit_rate,
               sum(retries) AS retries,
               min(first_at) AS first_at, max(last_at) AS last_at,
               epoch(max(last_at) - min(first_at)) AS duration_seconds
        FROM ({source}) g
        {group}"""
    if page is not None and by:
        top = "[" + ", ".join(f"CAST({k} AS VARCHAR)" for k in keys) + "]"
        totals = "".join(f", {e} AS {n}" for n, e in PAGE_TOTALS.items())
        sql = (f"SELECT *{totals}, arg_max({top}, total_tokens) OVER () AS _top FROM ({grouped}) "
               f"ORDER BY {order_sql} LIMIT {int(page[1])} OFFSET {int(page[0])}")
    else:
        sql = f"SELECT * FROM ({grouped}) ORDER BY {order_sql} {'LIMIT ' + str(int(limit)) if limit else ''}"
    rows = store.query(sql, params)
    for r in rows:  # sums of BIGINT columns come back as HUGEINT: plain ints either way
        if r.get("unpriced_requests") is None:
            r["unpriced_requests"] = 0
    return rows


def report(store: Store, by: list[str], filters: dict[str, Any] | None = None, since: datetime | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """``golem-mcp report``'s rows (through the daemon or not): :func:`cost_by`, and with ``workflow``
    among the groupings each row's ``workflow_name`` (the store's ``workflow_labels``; None for a
    workflow without a name). A workflow, stage, task or experiment the store has never seen is an
    error naming the closest known ones (:mod:`.known`'s rule, as the tools apply it), not an empty
    report that reads like "nothing was spent"."""
    from . import known  # here, not at the top: the CLI checks --by without loading DuckDB

    used = _filters(filters)
    known.require_all(store, **{k: used.get(k) for k in known.KINDS})
    rows = cost_by(store, by, filters, since=since, limit=limit)
    if "workflow" in by:
        ids = sorted({r["workflow"] for r in rows if r.get("workflow") is not None})
        names = dict((r["workflow_id"], r["name"]) for r in store.query(
            "SELECT workflow_id, name FROM workflow_labels WHERE workflow_id IN (SELECT unnest(?::VARCHAR[]))", [ids])) if ids else {}
        rows = [{**r, "workflow_name": names.get(r.get("workflow"))} for r in rows]
    return rows


def _filters(filters: dict[str, Any] | None) -> dict[str, str]:
    """The filters given (None: not given), each a known name with a string value (an id, a model)."""
    used = {k: v for k, v in (filters or {}).items() if v is not None}
    for k, v in used.items():
        if k not in FILTERS:
            raise InvalidInput(f"unknown filter {k!r}; choose from {', '.join(sorted(FILTERS))}")
        if not isinstance(v, str):
            raise InvalidInput(f"filter {k!r} must be a string, not {type(v).__name__} {v!r:.60}")
    return used


def _where(used: dict[str, Any], since: datetime | None, until: datetime | None) -> tuple[list[str], list[Any]]:
    """Filters and the time window over the resolved requests, with their bound values."""
    from ..store.db import ident

    ts = '"timestamp"'
    where: list[str] = []
    params: list[Any] = []
    for k, v in used.items():
        where.append(f"{ident(k)} = ?")
        params.append(v)
    if since:
        where.append(f"{ts} >= ?")
        params.append(since)
    if until:
        where.append(f"{ts} < ?")
        params.append(until)
    return where, params


def _facts_part(by: list[str], where: list[str]) -> str:
    """Per-request rows of the resolved requests in the shape of the rollup part."""
    from ..store.db import ident

    dims = "".join(f"{DIMENSIONS[b]} AS {ident(b)}, " for b in by)
    return (f"SELECT {dims}1 AS requests, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, "
            "cost_usd, recorded_cost_usd, calculated_cost_usd, model, cost_source, attempt - 1 AS retries, "
            '"timestamp" AS first_at, "timestamp" AS last_at FROM requests'
            + (" WHERE " + " AND ".join(where) if where else ""))


def _rollup_part(by: list[str], used: dict[str, Any], days: tuple[date | None, date | None] | None,
                 params: list[Any], table: str = "rollup_requests") -> str:
    """The groups of ``table`` (a requests rollup) of the whole days ``days`` ([first, end), None:
    unbounded; ``days`` None: every group, facts without a time included), in the shape of
    :func:`_facts_part`; its bound values are appended to ``params``."""
    from ..store.db import ident

    where = []
    for k, v in used.items():
        where.append(f"{ident(k)} = ?")
        params.append(v)
    if days is not None:
        lo, hi = days
        where.append("day IS NOT NULL")
        if lo is not None:
            where.append("day >= ?")
            params.append(lo)
        if hi is not None:
            where.append("day < ?")
            params.append(hi)
    dims = "".join(f"{ROLLUP_DIMENSIONS[b]} AS {ident(b)}, " for b in by)
    return (f"SELECT {dims}requests, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, "
            "CASE WHEN cost_n > 0 THEN cost_usd END AS cost_usd, "
            "CASE WHEN recorded_n > 0 THEN recorded_cost_usd END AS recorded_cost_usd, "
            "CASE WHEN calculated_n > 0 THEN calculated_cost_usd END AS calculated_cost_usd, "
            f"model, cost_source, retries, first_at, last_at FROM {table}"
            + (" WHERE " + " AND ".join(where) if where else ""))


def whole_days(since: datetime | None, until: datetime | None
                ) -> tuple[tuple[date | None, date | None] | None, list[tuple[datetime, datetime]]]:
    """The whole days inside [since, until) and the time ranges of the days it cuts through."""
    from datetime import timedelta

    if since is None and until is None:
        return None, []
    lo = None if since is None else (since.date() if since == _midnight(since) else since.date() + timedelta(days=1))
    hi = None if until is None else until.date()
    if lo is not None and hi is not None and lo >= hi:  # inside one day, or two partial ones
        return (lo, lo), [(since, until)] if since is not None and until is not None and since < until else []
    cuts = []
    if since is not None and lo is not None and since < _at(lo):
        cuts.append((since, _at(lo)))
    if until is not None and hi is not None and _at(hi) < until:
        cuts.append((_at(hi), until))
    return (lo, hi), cuts


def _whole_when_inside(store: Store, days: tuple[date | None, date | None] | None, cuts: list[tuple[datetime, datetime]]
                       ) -> tuple[tuple[date | None, date | None] | None, list[tuple[datetime, datetime]]]:
    """:func:`whole_days`' split, with a day the window cuts through read from the rollups as a whole
    day when every request of that day lies inside the window: the window up to the newest request
    (every answer's default) cuts its last day after all of that day's requests, and its rows were
    read for nothing (~40 CPU-ms of the 30-day question at 10M requests). Whether they do is the day's
    first and last request time, which the rollup keeps exactly."""
    from datetime import timedelta

    if days is None or not cuts:
        return days, cuts
    lo, hi = days
    if lo is None or hi is None or lo >= hi:
        return days, cuts
    edge = {c[0].date() for c in cuts}  # the days cut: each cut is the part of one day
    spans = {r["day"]: (r["first_at"], r["last_at"]) for r in store.query(
        "SELECT day, min(first_at) AS first_at, max(last_at) AS last_at FROM rollup_requests_coarse "
        "WHERE list_contains(?::DATE[], day) GROUP BY day", [sorted(edge)])}
    kept = []
    for a, b in cuts:
        first, last = spans.get(a.date(), (None, None))
        if first is not None and last is not None and a <= first and last < b:
            if a.date() == lo - timedelta(days=1):
                lo = a.date()
                continue
            if a.date() == hi:
                hi = hi + timedelta(days=1)
                continue
        kept.append((a, b))
    return (lo, hi), kept


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _at(d: date) -> datetime:
    from datetime import datetime

    return datetime(d.year, d.month, d.day)
