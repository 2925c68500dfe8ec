"""Rollups: the resolved facts summed per day and dimension, kept current on every write (issue 10).

Three tables (``sql/008_rollups.sql``): ``rollup_requests``, ``rollup_tools``, ``rollup_errors``. Each
row is one group: a day and the dimensions the tools, the dashboard and ``/metrics`` group by, with
additive measures (counts, token and cost sums, latency bucket counts) and the group's first and
last fact time.

How they stay equal to a ``GROUP BY`` over the resolved facts, without ever rebuilding them: a write
that changes facts (new rows, merged rows, rows whose resolved context changed) calls
:meth:`Maintainer.before` with the keys it is about to change, then changes them, then calls
:meth:`Maintainer.after` with the same keys. ``before`` records the old contribution of exactly those
facts (their groups' sums, negated), ``after`` adds their new contribution and folds the net change
into the tables in one upsert per table (``+=``); groups left without facts are deleted. Sums are
exact under subtraction; the first and last time of a group are not, so a group that lost its
earliest or latest fact without gaining an earlier / later one has them read again from its facts
(one day's facts of that group).

The resolved facts are read from :data:`SPECS`' ``source`` relations: one place to point at the
resolved fact tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

# upper bounds of the /metrics request latency histogram, in ms (rollup_requests.lat_le_N)
LATENCY_BUCKETS_MS: tuple[int, ...] = (500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000, 300000)

_FAILURE_CATEGORY_TOOL = ("CASE WHEN success = false THEN golem_error_category(NULL::INTEGER, "
                          "lower(COALESCE(error, '')), error_type) END")
_FAILURE_CATEGORY_API = "golem_error_category(status_code, lower(COALESCE(error, '')), NULL::VARCHAR)"


@dataclass(frozen=True)
class Spec:
    """One rollup table: which facts it sums, by what, and how."""

    table: str                  # the rollup table
    fact: str                   # the fact table whose keys a write reports
    key: str                    # the fact table's key column
    source: str                 # relation of resolved facts (key, dimensions, measures' inputs, "timestamp")
    dims: dict[str, str]        # rollup column -> expression over ``source``
    sums: dict[str, str]        # rollup column -> per-fact expression summed (NULL counts as 0)
    count: str                  # the column counting the group's facts (0: the group is dropped)
    ts: str = '"timestamp"'
    nullable_sums: dict[str, str] = field(default_factory=dict)  # sum column -> its *_n count column

    @property
    def measure_cols(self) -> list[str]:
        return list(self.sums)

    @property
    def dim_cols(self) -> list[str]:
        return list(self.dims)


def _req_sums() -> dict[str, str]:
    sums = {
        "requests": "1",
        "input_tokens": "input_tokens", "output_tokens": "output_tokens",
        "cache_read_tokens": "cache_read_tokens", "cache_creation_tokens": "cache_creation_tokens",
        "cost_usd": "cost_usd", "cost_n": "CAST(cost_usd IS NOT NULL AS INTEGER)",
        "recorded_cost_usd": "recorded_cost_usd", "recorded_n": "CAST(recorded_cost_usd IS NOT NULL AS INTEGER)",
        "calculated_cost_usd": "calculated_cost_usd",
        "calculated_n": "CAST(calculated_cost_usd IS NOT NULL AS INTEGER)",
        "retries": "attempt - 1", "retried_requests": "CAST(attempt > 1 AS INTEGER)",
        "failed_requests": "CAST(success = false AS INTEGER)",
        "timed_requests": "CAST(duration_ms IS NOT NULL AS INTEGER)", "duration_ms": "duration_ms",
    }
    for b in LATENCY_BUCKETS_MS:
        sums[f"lat_le_{b}"] = f"CAST(duration_ms <= {b} AS INTEGER)"
    return sums


SPECS: dict[str, Spec] = {
    "api_requests": Spec(
        table="rollup_requests", fact="api_requests", key="request_id", source="requests",
        dims={"day": 'CAST("timestamp" AS DATE)', "workflow_id": "workflow_id", "stage": "stage",
              "top_stage": "top_stage", "agent": "agent", "model": "model", "task_id": "task_id",
              "experiment_id": "experiment_id", "workflow_path": "workflow_path", "complexity": "complexity",
              "project": "project", "git_branch": "git_branch", "cost_source": "cost_source"},
        sums=_req_sums(), count="requests",
        nullable_sums={"cost_usd": "cost_n", "recorded_cost_usd": "recorded_n", "calculated_cost_usd": "calculated_n"}),
    "tool_calls": Spec(
        table="rollup_tools", fact="tool_calls", key="tool_use_id", source="tools",
        dims={"day": 'CAST("timestamp" AS DATE)', "workflow_id": "workflow_id", "stage": "stage", "agent": "agent",
              "task_id": "task_id", "experiment_id": "experiment_id", "tool_name": "tool_name",
              "category": _FAILURE_CATEGORY_TOOL},
        sums={"calls": "1", "failures": "CAST(success = false AS INTEGER)",
              "timed_calls": "CAST(duration_ms IS NOT NULL AS INTEGER)", "duration_ms": "duration_ms"},
        count="calls"),
    "api_errors": Spec(
        table="rollup_errors", fact="api_errors", key="error_key", source="errors",
        dims={"day": 'CAST("timestamp" AS DATE)', "workflow_id": "workflow_id", "stage": "stage", "agent": "agent",
              "task_id": "task_id", "experiment_id": "experiment_id", "model": "model",
              "status_code": "status_code", "category": _FAILURE_CATEGORY_API},
        sums={"errors": "1"}, count="errors"),
}
TABLES = tuple(s.table for s in SPECS.values())
MIGRATION = 8  # sql/008_rollups.sql: the tables; built whole once when it is applied


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _gkey(exprs: Iterable[str]) -> str:
    """The group's identity from its dimension values (NULLs included): 128 bits of md5 of their JSON."""
    return "md5_number(to_json([" + ", ".join(f"CAST({e} AS VARCHAR)" for e in exprs) + "]))"


def _grouped(spec: Spec, where: str, sign: int) -> str:
    """The contribution of the facts ``where`` selects, per group, times ``sign``."""
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    sums = [f"{sign} * COALESCE(sum({e}), 0) AS {_q(c)}" for c, e in spec.sums.items()]
    ts = spec.ts
    ext = ([f"min({ts}) AS add_min", f"max({ts}) AS add_max", "NULL::TIMESTAMP AS sub_min", "NULL::TIMESTAMP AS sub_max"]
           if sign > 0 else
           ["NULL::TIMESTAMP AS add_min", "NULL::TIMESTAMP AS add_max", f"min({ts}) AS sub_min", f"max({ts}) AS sub_max"])
    return (f"SELECT {_gkey(spec.dims.values())} AS gkey, {', '.join(dims)}, {', '.join(sums)}, {', '.join(ext)} "
            f"FROM {spec.source} WHERE {where} GROUP BY ALL")


def build(con: duckdb.DuckDBPyConnection, facts: Sequence[str] | None = None) -> dict[str, int]:
    """(Re)build the rollup tables whole from the resolved facts; returns groups per table.

    For a migration and for ``doctor --repair``: writes never call it (they maintain the tables)."""
    out = {}
    for fact in facts or SPECS:
        spec = SPECS[fact]
        cols = ["gkey", *spec.dim_cols, *spec.measure_cols, "first_at", "last_at"]
        dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
        sums = [f"COALESCE(sum({e}), 0) AS {_q(c)}" for c, e in spec.sums.items()]
        con.execute(f"DELETE FROM {spec.table}")
        con.execute(f"INSERT INTO {spec.table} ({', '.join(_q(c) for c in cols)}) "
                    f"SELECT {_gkey(spec.dims.values())}, {', '.join(dims)}, {', '.join(sums)}, "
                    f"min({spec.ts}), max({spec.ts}) FROM {spec.source} GROUP BY ALL")
        out[spec.table] = int(con.execute(f"SELECT count(*) FROM {spec.table}").fetchone()[0])  # type: ignore[index]
    return out


def expected(con: duckdb.DuckDBPyConnection, fact: str) -> str:
    """SQL of what ``SPECS[fact].table`` must hold: the GROUP BY over the resolved facts (for checks)."""
    spec = SPECS[fact]
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    sums = [f"COALESCE(sum({e}), 0) AS {_q(c)}" for c, e in spec.sums.items()]
    return (f"SELECT {', '.join(dims)}, {', '.join(sums)}, min({spec.ts}) AS first_at, max({spec.ts}) AS last_at "
            f"FROM {spec.source} GROUP BY ALL")


def differences(con: duckdb.DuckDBPyConnection, fact: str, tolerance: float = 1e-6) -> list[dict[str, Any]]:
    """Groups where the rollup and a GROUP BY over the resolved facts disagree (empty: they agree).

    Integer measures and times must be equal; float sums (costs, durations) may differ by rounding
    (``tolerance``, relative)."""
    spec = SPECS[fact]
    floats = {c for c, t in con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
        [spec.table]).fetchall() if t == "DOUBLE"}
    on = " AND ".join(f"r.{_q(c)} IS NOT DISTINCT FROM e.{_q(c)}" for c in spec.dim_cols)
    diff = []
    for c in [*spec.measure_cols, "first_at", "last_at"]:
        a, b = f"r.{_q(c)}", f"e.{_q(c)}"
        if c in floats:
            diff.append(f"abs(COALESCE({a}, 0) - COALESCE({b}, 0)) > {tolerance} * greatest(1, abs(COALESCE({b}, 0)))")
        else:
            diff.append(f"{a} IS DISTINCT FROM {b}")
    sql = (f"WITH e AS ({expected(con, fact)}), r AS (SELECT * EXCLUDE (gkey) FROM {spec.table}) "
           f"SELECT CASE WHEN r.{_q(spec.count)} IS NULL THEN 'missing' WHEN e.{_q(spec.count)} IS NULL THEN 'extra' "
           f"ELSE 'different' END AS problem, COLUMNS(r.*) FROM r FULL JOIN e ON {on} "
           f"WHERE r.{_q(spec.count)} IS NULL OR e.{_q(spec.count)} IS NULL OR {' OR '.join(diff)}")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _delta_table(fact: str) -> str:
    return f"_rollup_delta_{fact}"


_IN_LIST_CHUNK = 2000  # bound keys per IN list (DuckDB answers an IN list of constants from the key index)


class Maintainer:
    """Keeps the rollups current across one transaction's changes; see the module docstring.

    Example (inside the write's transaction, on its connection)::

        m = Maintainer(con)
        m.before("api_requests", keys)    # old contribution of these facts
        ...                               # insert / merge / re-resolve them
        m.after("api_requests", keys)     # new contribution; the rollup tables updated
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._pending: dict[str, bool] = {}
        self._selected: dict[str, bool] = {}  # fact -> before() kept the keys it selected

    def _capture(self, fact: str, keys: Sequence[Any] | None, sign: int, where: str | None = None,
                 params: Sequence[Any] = ()) -> None:
        spec = SPECS[fact]
        table = _delta_table(fact)
        if not self._pending.get(fact):
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {_grouped(spec, 'false', 1)}")
            self._pending[fact] = True
        if where is not None:
            keys_table = f"{table}_keys"
            if sign < 0:  # the facts selected now are counted again afterwards, even when they leave ``where``
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {keys_table} AS SELECT {_q(spec.key)} AS k "
                                 f"FROM {spec.source} WHERE {where}", list(params))
            elif self._selected.pop(fact, False):
                where = f"({where}) OR {_q(spec.key)} IN (SELECT k FROM {keys_table})"
            self.con.execute(f"INSERT INTO {table} {_grouped(spec, where, sign)}", list(params))
            if sign < 0:
                self._selected[fact] = True
            return
        distinct = list(dict.fromkeys(k for k in keys or () if k is not None))
        for i in range(0, len(distinct), _IN_LIST_CHUNK):
            part = distinct[i:i + _IN_LIST_CHUNK]
            cond = f"{_q(spec.key)} IN ({', '.join('?' * len(part))})"
            self.con.execute(f"INSERT INTO {table} {_grouped(spec, cond, sign)}", part)

    def before(self, fact: str, keys: Sequence[Any] | None = None, where: str | None = None,
               params: Sequence[Any] = ()) -> None:
        """Record the current contribution of the facts ``keys`` (or ``where`` over the source) names,
        before the write changes them."""
        self._capture(fact, keys, -1, where, params)

    def after(self, fact: str, keys: Sequence[Any] | None = None, where: str | None = None,
              params: Sequence[Any] = (), apply: bool = True) -> None:
        """Add the new contribution of the same facts; with ``apply`` fold the change into the table."""
        self._capture(fact, keys, 1, where, params)
        if apply:
            self.apply(fact)

    def apply(self, fact: str | None = None) -> None:
        """Fold the recorded changes into the rollup tables (every fact with changes when ``fact`` is None)."""
        for f in [fact] if fact else list(self._pending):
            if self._pending.pop(f, False):
                _fold(self.con, SPECS[f], _delta_table(f))
                self.con.execute(f"DROP TABLE IF EXISTS {_delta_table(f)}_keys")


def _fold(con: duckdb.DuckDBPyConnection, spec: Spec, delta: str) -> None:
    dims, sums = spec.dim_cols, spec.measure_cols
    net = f"{delta}_net"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {net} AS
        SELECT gkey, {', '.join(f'any_value({_q(c)}) AS {_q(c)}' for c in dims)},
               {', '.join(f'sum({_q(c)}) AS {_q(c)}' for c in sums)},
               min(add_min) AS add_min, max(add_max) AS add_max, min(sub_min) AS sub_min, max(sub_max) AS sub_max
        FROM {delta} GROUP BY gkey""")
    # nothing changed for a group when every sum nets to zero and no time left it
    changed = " OR ".join(f"{_q(c)} <> 0" for c in sums)
    con.execute(f"DELETE FROM {net} WHERE NOT ({changed}) AND sub_min IS NOT DISTINCT FROM add_min "
                f"AND sub_max IS NOT DISTINCT FROM add_max")
    if not con.execute(f"SELECT count(*) FROM {net}").fetchone()[0]:  # type: ignore[index]
        con.execute(f"DROP TABLE {delta}; DROP TABLE {net}")
        return
    cols = ["gkey", *dims, *sums, "first_at", "last_at"]
    t = spec.table
    sets = [f"{_q(c)} = {t}.{_q(c)} + EXCLUDED.{_q(c)}" for c in sums]
    sets += [f"first_at = least({t}.first_at, EXCLUDED.first_at)", f"last_at = greatest({t}.last_at, EXCLUDED.last_at)"]
    con.execute(f"INSERT INTO {t} ({', '.join(_q(c) for c in cols)}) "
                f"SELECT gkey, {', '.join(_q(c) for c in dims + sums)}, add_min, add_max FROM {net} "
                f"ON CONFLICT (gkey) DO UPDATE SET {', '.join(sets)}")
    con.execute(f"DELETE FROM {t} WHERE {_q(spec.count)} = 0 AND gkey IN (SELECT gkey FROM {net})")
    # a group that lost its earliest or latest fact without gaining one as early / late: read its times again
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {net}_times AS
        SELECT n.gkey, n.day FROM {net} n JOIN {t} r USING (gkey)
        WHERE (n.sub_min IS NOT NULL AND (n.add_min IS NULL OR n.add_min > n.sub_min))
           OR (n.sub_max IS NOT NULL AND (n.add_max IS NULL OR n.add_max < n.sub_max))""")
    days = [r[0] for r in con.execute(f"SELECT DISTINCT day FROM {net}_times").fetchall()]
    if days:
        timed = sorted(d for d in days if d is not None)
        where = []
        params: list[Any] = []
        for lo, hi in _ranges(timed):
            where.append(f"({spec.ts} >= ?::DATE AND {spec.ts} < ?::DATE + 1)")
            params += [lo, hi]
        if None in days:
            where.append(f"{spec.ts} IS NULL")
        gk = _gkey(spec.dims.values())
        con.execute(f"""UPDATE {t} SET first_at = x.mn, last_at = x.mx FROM (
                SELECT {gk} AS gkey, min({spec.ts}) AS mn, max({spec.ts}) AS mx FROM {spec.source}
                WHERE ({' OR '.join(where)}) GROUP BY ALL) x
            WHERE {t}.gkey = x.gkey AND x.gkey IN (SELECT gkey FROM {net}_times)""", params)
    con.execute(f"DROP TABLE {net}_times; DROP TABLE {delta}; DROP TABLE {net}")


def _ranges(days: list[Any]) -> list[tuple[Any, Any]]:
    """Sorted days as runs of consecutive days [(first, last), ...]."""
    out: list[tuple[Any, Any]] = []
    for _, run in itertools.groupby(enumerate(days), key=lambda p: p[1].toordinal() - p[0]):
        r = [d for _, d in run]
        out.append((r[0], r[-1]))
    return out


# Context tables and the fact columns their rows decide: a row of one of these re-resolves the facts
# of its session (agent types and spawn links decide stage and top stage for the whole session's
# tree), of its agent, or of the workflow it describes.
_CONTEXT_SESSION_COLS = {"sessions": "session_id", "agents": "session_id", "workflow_links": "session_id",
                         "tool_calls": "session_id"}


def affected(rows: dict[str, list[dict]], fact: str) -> tuple[str, list[Any]]:
    """The facts of ``fact`` whose resolved values the batch ``rows`` (table -> rows) may change, as a
    WHERE clause over the resolved source and its bound values: its own rows, the facts of every
    session, agent and workflow the batch's context rows name. A superset is harmless (a fact whose
    values did not change nets to zero); a fact left out would leave the rollup wrong."""
    spec = SPECS[fact]
    keys = [r.get(spec.key) for r in rows.get(fact, ()) if r.get(spec.key) is not None]
    sessions = {r.get(c) for t, c in _CONTEXT_SESSION_COLS.items() for r in rows.get(t, ())} - {None}
    agents = {r.get("agent_id") for t in ("agents", "agent_context") for r in rows.get(t, ())} - {None}
    workflows = {r.get("workflow_id") for r in rows.get("workflows", ())} - {None}
    where, params = [], []
    for col, values in ((spec.key, keys), ("session_id", sessions), ("agent_id", agents),
                        ("workflow_id", workflows)):
        if values:
            where.append(f"list_contains(?, {_q(col)})")
            params.append(sorted(values) if col != spec.key else list(values))
    if agents:  # agent_context of a session's main thread is keyed by the session id
        where.append("(agent_id IS NULL AND list_contains(?, session_id))")
        params.append(sorted(agents))
    return (" OR ".join(where) or "false"), params
