"""Rollups: the resolved facts summed per day and dimension, kept current on every write (issue 10).

The tables (``sql/008_rollups.sql``): ``rollup_requests``, ``rollup_tools``, ``rollup_errors``; ``rollup_calls``
(``sql/019_rollup_calls.sql``): identical tool calls, for loops; and
``rollup_requests_coarse`` (``sql/018_rollup_requests_coarse.sql``): the requests without the workflow,
agent and task, for questions over a whole window of the store, and ``rollup_request_durations`` /
``rollup_tool_durations`` (``sql/020_rollup_durations.sql``): requests (tool calls) counted per day, model
(tool) and duration bucket (:data:`DURATION_BUCKET`), the percentiles of a window. Each row is one group: a day and the dimensions the tools, the dashboard and ``/metrics`` group by, with
additive measures (counts, token and cost sums, latency bucket counts) and the group's first and
last fact time.

How they stay equal to a ``GROUP BY`` over the resolved facts without ever being rebuilt: the
resolver leaves every write's change set (``store/resolve.py``: ``golem_delta_old_T``, the changed
facts as they were stored before the write, and ``golem_delta_new_T``, the inserted and changed facts
as they are now), and :func:`on_fact_changes`, called in the write's transaction, subtracts the old
rows' contribution per group, adds the new rows', folds the net change into the table in one upsert
(``+=``) and drops the groups left without facts. Sums are exact under subtraction; a group's first
and last time are not, so a group that lost its earliest or latest fact without gaining one as early
(late) has them read again from its facts (only that group's days).

Measures are sums over the fact tables' own columns: ``sum()`` skips NULLs, so they equal the same sums
over the ``requests``/``tools``/``errors`` views, which read NULL tokens as 0, a NULL attempt as 1 and
a NULL success as true. Dimensions are the resolver's ``r_`` columns.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

# upper bounds of the /metrics request latency histogram, in ms (rollup_requests.lat_le_N)
LATENCY_BUCKETS_MS: tuple[int, ...] = (500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000, 300000)

# A duration's bucket (rollup_*_durations.bucket): log-spaced, each bucket [1.02^b, 1.02^(b+1)) ms, so a
# bucket's middle (:func:`bucket_ms`) is within 1 % of every duration in it; under 1 ms (and the odd
# negative duration) bucket -1, read as 0.5 ms. NULL when the duration is. Where durations of 0 are
# common (the analysis cache's stage and agent durations: a stage of one request), they have a bucket of
# their own, ZERO_BUCKET, read as 0 (``duration_bucket(..., zero=True)``).
BUCKET_WIDTH = 1.02
ZERO_BUCKET = -2


def duration_bucket(ms: str, zero: bool = False) -> str:
    """SQL of the bucket of the duration (ms) ``ms`` evaluates to; also the analysis cache's durations'
    (analysis/bottlenecks.py ``bucket_rows``), so every bucketed percentile is read the same way.
    ``zero``: durations of 0 or less in ZERO_BUCKET (the rollups count them in -1)."""
    zeros = f"WHEN {ms} <= 0 THEN {ZERO_BUCKET} " if zero else ""
    return f"CAST(CASE {zeros}WHEN {ms} < 1 THEN -1 ELSE floor(ln({ms}) / ln({BUCKET_WIDTH})) END AS INTEGER)"


DURATION_BUCKET = duration_bucket("duration_ms")


def bucket_ms(bucket: int) -> float:
    """The duration a bucket stands for (ms): the geometric middle of its bounds, within 1 % of each
    duration in it (0.5 ms for the bucket under 1 ms: within 0.5 ms; 0 for ZERO_BUCKET)."""
    return 0.0 if bucket <= ZERO_BUCKET else 0.5 if bucket < 0 else float(BUCKET_WIDTH ** (bucket + 0.5))


_FAILURE_CATEGORY_TOOL = ("CASE WHEN success = false THEN golem_error_category(NULL::INTEGER, "
                          "lower(COALESCE(error, '')), error_type) END")
_FAILURE_CATEGORY_API = "golem_error_category(status_code, lower(COALESCE(error, '')), NULL::VARCHAR)"
_DAY = 'CAST("timestamp" AS DATE)'
# a tool call's identity for loops (analysis/loops.py): the same call made again, hashed
CALL_KEY = "r_workflow_id, r_stage, session_id, agent_id, tool_name, CAST(tool_parameters AS VARCHAR)"
CALL_HASH = f"hash({CALL_KEY})"
_CONTEXT = {"workflow_id": "r_workflow_id", "stage": "r_stage", "agent": "r_agent", "task_id": "r_task_id",
            "experiment_id": "r_experiment_id"}


@dataclass(frozen=True)
class Spec:
    """One rollup table: which facts it sums, by what, and how."""

    table: str                  # the rollup table
    fact: str                   # the fact table
    dims: dict[str, str]        # rollup column -> expression over the fact table's columns
    sums: dict[str, str]        # rollup column -> per-fact expression summed (NULLs skipped)
    count: str                  # the column counting the group's facts (0: the group is dropped)
    ts: str = '"timestamp"'
    # the dimension (also a fact column, or "day") whose values hold a group's facts: a group's times
    # are read again from the facts of those values only; without a day, a group may span build runs
    part: str = "day"

    @property
    def reads_context(self) -> bool:
        """Whether a dimension or a sum reads a resolved (``r_``) column: if not, re-resolving facts
        (``Changes.resolved_only``) leaves this rollup as it is."""
        return any(re.search(r"\br_\w+", e) for e in (*self.dims.values(), *self.sums.values()))

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
        "cost_usd": "r_cost_usd", "cost_n": "CAST(r_cost_usd IS NOT NULL AS INTEGER)",
        "recorded_cost_usd": "recorded_cost_usd", "recorded_n": "CAST(recorded_cost_usd IS NOT NULL AS INTEGER)",
        "calculated_cost_usd": "r_calculated_cost_usd",
        "calculated_n": "CAST(r_calculated_cost_usd IS NOT NULL AS INTEGER)",
        "retries": "attempt - 1", "retried_requests": "CAST(attempt > 1 AS INTEGER)",
        "failed_requests": "CAST(success = false AS INTEGER)",
        "timed_requests": "CAST(duration_ms IS NOT NULL AS INTEGER)", "duration_ms": "duration_ms",
    }
    for b in LATENCY_BUCKETS_MS:
        sums[f"lat_le_{b}"] = f"CAST(duration_ms <= {b} AS INTEGER)"
    return sums


# rollup name (the fact's name for the first of each fact) -> its spec
SPECS: dict[str, Spec] = {
    "api_requests": Spec(
        table="rollup_requests", fact="api_requests",
        dims={"day": _DAY, **_CONTEXT, "top_stage": "r_top_stage", "model": "model",
              "workflow_path": "r_workflow_path", "complexity": "r_complexity", "project": "r_project",
              "git_branch": "r_git_branch", "cost_source": "r_cost_source", "machine_id": "machine_id"},
        sums=_req_sums(), count="requests"),
    # the same less the workflow, agent and task: its groups do not grow with the workflows
    "rollup_requests_coarse": Spec(
        table="rollup_requests_coarse", fact="api_requests",
        dims={"day": _DAY, "stage": "r_stage", "top_stage": "r_top_stage", "model": "model",
              "experiment_id": "r_experiment_id", "workflow_path": "r_workflow_path", "complexity": "r_complexity",
              "project": "r_project", "git_branch": "r_git_branch", "cost_source": "r_cost_source",
              "machine_id": "machine_id"},
        sums=_req_sums(), count="requests"),
    "tool_calls": Spec(
        table="rollup_tools", fact="tool_calls",
        dims={"day": _DAY, **_CONTEXT, "tool_name": "tool_name", "category": _FAILURE_CATEGORY_TOOL,
              "machine_id": "machine_id"},
        sums={"calls": "1", "failures": "CAST(success = false AS INTEGER)",
              "timed_calls": "CAST(duration_ms IS NOT NULL AS INTEGER)", "duration_ms": "duration_ms"},
        count="calls"),
    "api_errors": Spec(
        table="rollup_errors", fact="api_errors",
        dims={"day": _DAY, **_CONTEXT, "model": "model", "status_code": "status_code",
              "category": _FAILURE_CATEGORY_API, "machine_id": "machine_id"},
        sums={"errors": "1"}, count="errors"),
    # durations per day, model (tool) and bucket: the percentiles of a window without its rows
    "request_durations": Spec(
        table="rollup_request_durations", fact="api_requests",
        dims={"day": _DAY, "model": "model", "bucket": DURATION_BUCKET}, sums={"requests": "1"}, count="requests"),
    "tool_durations": Spec(
        table="rollup_tool_durations", fact="tool_calls",
        dims={"day": _DAY, "tool_name": "tool_name", "bucket": DURATION_BUCKET}, sums={"calls": "1"}, count="calls"),
    # identical tool calls (analysis/loops.py): per session, the calls of one hash of their identity,
    # over all time (no day: a loop across midnight is one group); a call without parameters is no loop
    "rollup_calls": Spec(
        table="rollup_calls", fact="tool_calls",
        dims={"session_id": "session_id", "call_hash": f"CASE WHEN tool_parameters IS NOT NULL THEN {CALL_HASH} END"},
        sums={"calls": "1"}, count="calls", part="session_id"),
}
TABLES = tuple(s.table for s in SPECS.values())
FACTS = tuple(dict.fromkeys(s.fact for s in SPECS.values()))  # the fact tables the rollups sum


def of_facts(facts: Iterable[str]) -> list[str]:
    """The rollups (SPECS keys) that sum any of ``facts``."""
    wanted = set(facts)
    return [name for name, spec in SPECS.items() if spec.fact in wanted]


MIGRATION = 8  # sql/008_rollups.sql: the tables; built whole once when it is applied
# migrations adding rollups to a store that has the others, or changing how their rows are keyed:
# those rollups (SPECS keys) built once, whole (023: the day in the key, :func:`_gkey`)
ADDED: dict[int, tuple[str, ...]] = {18: ("rollup_requests_coarse",), 19: ("rollup_calls",),
                                     20: ("request_durations", "tool_durations"),
                                     23: ("api_requests", "rollup_requests_coarse", "tool_calls", "api_errors",
                                          "request_durations", "tool_durations")}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _gkey(spec: Spec, exprs: dict[str, str]) -> str:
    """The group's identity from its dimension values (``exprs``: dimension -> SQL of its value; NULLs
    included): md5 of their JSON, 128 bits. A rollup with a day keeps the day in the key's top 32 bits
    (days since 1970 plus 2^31; 0 for no day) above 96 bits of the md5, so the key index (the table's
    PRIMARY KEY) holds a day's groups together: a write's groups, nearly all of today, read and grow
    that day's part of the index only. With the md5 alone a few thousand new groups touched nearly
    every node of an index of millions, and DuckDB loaded it whole into memory, where it stays (~220 MB
    for 6 M groups; an analysis run at 10 M requests peaked at 1.7 GB of which 0.58 GB was such indexes)."""
    md5 = "md5_number(to_json([" + ", ".join(f"CAST({exprs[c]} AS VARCHAR)" for c in spec.dims) + "]))"
    if "day" not in spec.dims:
        return md5
    day = f"CAST(COALESCE(({exprs['day']}) - DATE '1970-01-01', -2147483648) + 2147483648 AS UHUGEINT)"
    return f"(({day} << 96) | ({md5} >> 32))"


def _net(spec: Spec, new: str, old: str) -> str:
    """Per group, the net change of the facts in ``new`` (added) less those in ``old`` (taken away),
    with the times that came (add_) and left (sub_). One GROUP BY over both, the key from each group's
    dimensions: every dimension's expression is planned once (the failure category's dozen regular
    expressions are compiled when a statement is planned, ~1.7 ms a copy), where a GROUP BY for each
    side, each with the key's own copy of the dimensions, planned them four times."""
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    sums = [f"COALESCE(sum(_sign * ({e})), 0) AS {_q(c)}" for c, e in spec.sums.items()]
    ts = spec.ts
    times = ", ".join(f"{f}({ts}) FILTER (WHERE _sign {op} 0) AS {side}_{f}"
                      for side, op in (("add", ">"), ("sub", "<")) for f in ("min", "max"))
    both = f"(SELECT *, 1 AS _sign FROM {new} UNION ALL SELECT *, -1 AS _sign FROM {old})"
    return (f"SELECT {_gkey(spec, {c: _q(c) for c in spec.dims})} AS gkey, * FROM "
            f"(SELECT {', '.join(dims)}, {', '.join(sums)}, {times} FROM {both} GROUP BY ALL)")


def _columns(spec: Spec) -> str:
    return ", ".join(_q(c) for c in ["gkey", *spec.dim_cols, *spec.measure_cols, "first_at", "last_at"])


def _groups(spec: Spec, source: str) -> str:
    """The groups of the facts in ``source``, shaped as the rollup table's rows (:func:`_columns`)."""
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    sums = [f"COALESCE(sum({e}), 0) AS {_q(c)}" for c, e in spec.sums.items()]
    # the key from each group's dimensions once, not from every fact's (~20% of a build's CPU)
    return (f"SELECT {_gkey(spec, {c: _q(c) for c in spec.dims})}, * FROM (SELECT {', '.join(dims)}, {', '.join(sums)}, "
            f"min({spec.ts}), max({spec.ts}) FROM {source} GROUP BY ALL)")


# facts summed per statement when building whole: a rollup group is one day's, so the facts go in
# runs of whole days of about this many rows and each run's GROUP BY holds only its own groups (one
# GROUP BY over 10 M requests held 7.75 M groups of wide keys at once, past the memory budget)
BUILD_ROWS = 1_000_000


def build(con: duckdb.DuckDBPyConnection, facts: Sequence[str] | None = None,
          part_rows: int = BUILD_ROWS, commit: Callable[[], None] | None = None,
          progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """(Re)build the rollup tables (``facts``: SPECS keys; None: all) whole from the resolved facts;
    returns groups per table.

    For the migration that adds them, a team replica built whole, a store whose facts were written
    around ``Store.write`` (the benchmarks' generated stores), and the write that brings a store's
    first facts (``Store._first_facts``); other writes fold their change sets in. The
    facts are summed a run of days at a time (:data:`BUILD_ROWS`); ``commit`` is called after each
    run (one transaction over a 10 M-request store's build held past the default memory budget: see
    ``Store._build_marked_rollups``, which makes a build cut short start again). ``progress`` is
    told of each run of a build in several."""
    out = {}
    for fact in facts or SPECS:
        spec = SPECS[fact]
        con.execute(f"DELETE FROM {spec.table}")
        # a workflow's groups stored together (a run's in workflow order): a workflow's question
        # then reads one or two row groups, not one per group (~31 at 10M requests)
        order = ' ORDER BY "workflow_id", "day"' if "workflow_id" in spec.dims else ""
        # groups without a day may span runs: a later run's part of one is added to it
        merge = f" ON CONFLICT (gkey) DO UPDATE SET {', '.join(_add_sets(spec))}" if spec.part != "day" else ""
        runs = _day_runs(con, spec, part_rows)
        start = time.monotonic()
        for i, (where, params) in enumerate(runs):
            source = f"(SELECT * FROM {spec.fact} WHERE {where})"
            con.execute(f"INSERT INTO {spec.table} ({_columns(spec)}) {_groups(spec, source)}{order}{merge}", params)
            if commit is not None:
                commit()
            if progress is not None and len(runs) > 1:
                progress(f"  {spec.table}: {i + 1}/{len(runs)} ({time.monotonic() - start:.0f} s)")
        out[spec.table] = int(con.execute(f"SELECT count(*) FROM {spec.table}").fetchone()[0])  # type: ignore[index]
    return out


def _day_runs(con: duckdb.DuckDBPyConnection, spec: Spec, part_rows: int) -> list[tuple[str, list[Any]]]:
    """Filters splitting ``spec``'s facts into runs of consecutive days of about ``part_rows`` facts
    (a day larger than that is a run of its own), and the facts without a time."""
    days = con.execute(f"SELECT CAST({spec.ts} AS DATE) AS d, count(*) FROM {spec.fact} "
                       "GROUP BY d ORDER BY d NULLS LAST").fetchall()
    runs: list[tuple[str, list[Any]]] = []
    first, n = None, 0
    for i, (day, rows) in enumerate(days):
        if day is None:
            runs.append((f"{spec.ts} IS NULL", []))
            continue
        first, n = (day if first is None else first), n + rows
        last = i + 1 == len(days) or days[i + 1][0] is None
        if n >= part_rows or last:
            runs.append((f"{spec.ts} >= ?::DATE AND {spec.ts} < ?::DATE + 1", [first, day]))
            first, n = None, 0
    return runs


def expected(fact: str) -> str:
    """SQL of what ``SPECS[fact].table`` (``fact``: a SPECS key) must hold: the GROUP BY over the resolved facts."""
    spec = SPECS[fact]
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    sums = [f"COALESCE(sum({e}), 0) AS {_q(c)}" for c, e in spec.sums.items()]
    return (f"SELECT {', '.join(dims)}, {', '.join(sums)}, min({spec.ts}) AS first_at, max({spec.ts}) AS last_at "
            f"FROM {spec.fact} GROUP BY ALL")


def differences(con: duckdb.DuckDBPyConnection, fact: str, tolerance: float = 1e-6,
                limit: int = 20) -> list[dict[str, Any]]:
    """Groups where the rollup and a GROUP BY over the resolved facts disagree (empty: they agree).

    Counts, token sums and times must be equal; float sums (costs, durations) may differ by rounding
    (``tolerance``, relative). For tests and ``doctor``."""
    spec = SPECS[fact]
    floats = {c for c, t in con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
        [spec.table]).fetchall() if t == "DOUBLE"}
    on = " AND ".join(f"r.{_q(c)} IS NOT DISTINCT FROM e.{_q(c)}" for c in spec.dim_cols)
    diff = []
    for c in [*spec.measure_cols, "first_at", "last_at"]:
        a, b = f"r.{_q(c)}", f"e.{_q(c)}"
        if c in floats:
            diff.append(f"abs({a} - {b}) > {tolerance} * greatest(1, abs({b}))")
        else:
            diff.append(f"{a} IS DISTINCT FROM {b}")
    n = _q(spec.count)
    sql = (f"WITH e AS ({expected(fact)}), r AS (SELECT * EXCLUDE (gkey) FROM {spec.table}) "
           f"SELECT CASE WHEN r.{n} IS NULL THEN 'missing' WHEN e.{n} IS NULL THEN 'extra' ELSE 'different' END "
           f"AS problem, {', '.join(f'COALESCE(r.{_q(c)}, e.{_q(c)}) AS {_q(c)}' for c in spec.dim_cols)}, "
           f"r.{n} AS rollup_{spec.count}, e.{n} AS facts_{spec.count} "
           f"FROM r FULL JOIN e ON {on} WHERE r.{n} IS NULL OR e.{n} IS NULL OR {' OR '.join(diff)} LIMIT {int(limit)}")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def on_fact_changes(con: duckdb.DuckDBPyConnection, changed: dict[str, int]) -> None:
    """The store's fact-change hook: fold a write's change set into the rollups (module docstring)."""
    olds: dict[str, int] = {}  # rows in each fact's golem_delta_old_T (asked once: a fact has several rollups)
    resolved_only: frozenset[str] = getattr(changed, "resolved_only", frozenset())
    for name, spec in SPECS.items():
        fact = spec.fact
        if not changed.get(fact) or (fact in resolved_only and not spec.reads_context):
            continue
        old = _q("golem_delta_old_" + fact)
        if fact not in olds:
            olds[fact] = con.execute(f"SELECT count(*) FROM {old}").fetchone()[0]  # type: ignore[index]
        if not olds[fact]:
            _add(con, spec, _q("golem_delta_new_" + fact))
            continue
        _fold(con, spec, f"_rollup_net_{name}", _net(spec, _q("golem_delta_new_" + fact), _q("golem_delta_old_" + fact)))


def _add(con: duckdb.DuckDBPyConnection, spec: Spec, source: str) -> None:
    """The common write: new facts only (nothing subtracted). Their sums per group are added in one
    upsert; no group can drop to zero facts or lose its first or last time, so :func:`_fold`'s
    other steps have nothing to do."""
    t = spec.table
    con.execute(f"INSERT INTO {t} ({_columns(spec)}) {_groups(spec, source)} "
                f"ON CONFLICT (gkey) DO UPDATE SET {', '.join(_add_sets(spec))}")


def _add_sets(spec: Spec) -> list[str]:
    """An upsert's SET list adding a group's sums and widening its time range."""
    t = spec.table
    return ([f"{_q(c)} = {t}.{_q(c)} + EXCLUDED.{_q(c)}" for c in spec.measure_cols]
            + [f"first_at = least({t}.first_at, EXCLUDED.first_at)", f"last_at = greatest({t}.last_at, EXCLUDED.last_at)"])


def _fold(con: duckdb.DuckDBPyConnection, spec: Spec, net: str, groups: str) -> None:
    """Fold ``groups`` (:func:`_net`: per group, the net change of every sum and the times that left
    (sub_) and came (add_)) into ``spec``'s table, through the temporary table ``net``."""
    dims, sums = spec.dim_cols, spec.measure_cols
    changed = " OR ".join(f"{_q(c)} <> 0" for c in sums)
    # a group whose sums net to zero and whose times are unchanged (a fact merged with nothing new,
    # re-resolved to the same group) is skipped
    rows = con.execute(f"""CREATE OR REPLACE TEMP TABLE {net} AS SELECT * FROM ({groups})
        WHERE {changed} OR sub_min IS DISTINCT FROM add_min OR sub_max IS DISTINCT FROM add_max""").fetchone()
    try:
        if not (rows and rows[0]):  # (CREATE TABLE AS answers with the rows it created)
            return
        t = spec.table
        con.execute(f"INSERT INTO {t} ({_columns(spec)}) "
                    f"SELECT gkey, {', '.join(_q(c) for c in dims + sums)}, add_min, add_max FROM {net} "
                    f"ON CONFLICT (gkey) DO UPDATE SET {', '.join(_add_sets(spec))}")
        con.execute(f"DELETE FROM {t} WHERE {_q(spec.count)} = 0 AND gkey IN (SELECT gkey FROM {net})")
        # a group that lost its earliest (latest) fact without gaining one as early (late): its times
        # again. (r's times are the stored ones widened by what came: a group whose removed facts all
        # came after its first (before its last) kept the fact that holds it, and is not read again;
        # re-resolving a session moved facts out of groups they shared with other sessions that day)
        stale = con.execute(f"""SELECT DISTINCT n.{_q(spec.part)} FROM {net} n JOIN {t} r USING (gkey)
            WHERE (n.sub_min <= r.first_at AND (n.add_min IS NULL OR n.add_min > n.sub_min))
               OR (n.sub_max >= r.last_at AND (n.add_max IS NULL OR n.add_max < n.sub_max))""").fetchall()
        if stale:
            _reread_times(con, spec, net, [r[0] for r in stale])
    finally:
        con.execute(f"DROP TABLE IF EXISTS {net}")


def _reread_times(con: duckdb.DuckDBPyConnection, spec: Spec, net: str, days: list[Any]) -> None:
    """first_at / last_at of the groups in ``net`` read again from their facts (of ``days`` only: the
    values of the spec's ``part``, days or, say, sessions)."""
    where: list[str] = []
    params: list[Any] = []
    if spec.part == "day":
        for lo, hi in _ranges(sorted(d for d in days if d is not None)):
            where.append(f"({spec.ts} >= ?::DATE AND {spec.ts} < ?::DATE + 1)")
            params += [lo, hi]
        if None in days:
            where.append(f"{spec.ts} IS NULL")
    else:
        col = spec.dims[spec.part]
        if [d for d in days if d is not None]:
            where.append(f"{col} IN (SELECT unnest(?))")
            params.append([d for d in days if d is not None])
        if None in days:
            where.append(f"{col} IS NULL")
    t = spec.table
    # only the facts that can be in the groups of ``net``: of their days and, where the rollup has a
    # workflow, of their workflows (the set holds every fact of those groups), so the GROUP BY below
    # and the failure category's regular expressions see a few workflows' facts, not a whole day's.
    # Three groups of the 10M store's last day: rollup_tools 49-56 -> 9-10 ms, rollup_requests
    # 33-35 -> 7-8 ms; filtering by stage and model as well made the coarse rollup's re-read slower.
    wf = spec.dims.get("workflow_id")
    narrow = (f" AND ({wf} IN (SELECT workflow_id FROM {net}) OR ({wf} IS NULL AND "
              f"EXISTS (SELECT 1 FROM {net} WHERE workflow_id IS NULL)))" if wf else "")
    # the key from each group's dimensions, not from each fact's: a day of a 10M store is ~30,000 requests
    dims = [f"{e} AS {_q(c)}" for c, e in spec.dims.items()]
    con.execute(f"""UPDATE {t} SET first_at = x.mn, last_at = x.mx FROM (
            SELECT {_gkey(spec, {c: _q(c) for c in spec.dims})} AS gkey, mn, mx FROM (
                SELECT {', '.join(dims)}, min({spec.ts}) AS mn, max({spec.ts}) AS mx
                FROM {spec.fact} WHERE ({' OR '.join(where)}){narrow} GROUP BY ALL)) x
        WHERE {t}.gkey = x.gkey AND x.gkey IN (SELECT gkey FROM {net})""", params)



def _ranges(days: list[Any]) -> list[tuple[Any, Any]]:
    """Sorted days as runs of consecutive days [(first, last), ...]."""
    out: list[tuple[Any, Any]] = []
    for _, run in itertools.groupby(enumerate(days), key=lambda p: p[1].toordinal() - p[0]):
        r = [d for _, d in run]
        out.append((r[0], r[-1]))
    return out
