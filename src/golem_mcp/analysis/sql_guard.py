"""Read-only SQL from agents: two walls, then row, size, time and memory caps.

The first wall is DuckDB's own, and does not depend on reading the SQL right:

- the statement runs in a ``READ ONLY`` transaction that is always rolled back
  (:meth:`Store.read_only_reader`): DuckDB refuses every write to the store inside it, wherever the
  write hides (``WITH x AS (DELETE ... RETURNING 1)``, ``nextval``, ``CREATE``);
- DuckDB's parser must find exactly one statement of type SELECT, and that parsed statement (not
  the text) is what runs: ``ROLLBACK; DELETE ...``, ``SET``, ``ATTACH``, ``PRAGMA`` never run;
- the database is opened with external access off (``Store._config``): files, the network and
  extensions are out of DuckDB's reach, and DuckDB refuses to turn that back on while it runs (the
  one setting the store changes later is its own memory limit, ``store/memory.py``).

The second wall is this module's reading of DuckDB's parse tree (``json_serialize_sql``), which
names what is refused so the agent knows what to change:

- every query node is a SELECT, a set operation or a CTE: INSERT, UPDATE and DELETE nodes (which
  DuckDB allows inside ``WITH``) are refused;
- every table it reads is a plain name (tables and views of the store, or its own CTEs): a quoted
  file name like ``'x.parquet'`` would be a replacement scan that reads a file;
- table functions only from a small allow-list (``read_csv``, ``glob``, ``query`` and the like
  read files, the network or run other SQL);
- no scalar function that reads the environment, files or settings or moves a sequence
  (``getenv``, ``read_text``, ``current_setting``, ``nextval``...), and no size past
  :data:`MAX_BUILT_SIZE` given to a function that builds a value that big (``repeat``, ``range``...):
  DuckDB computes such constants while planning, and builds one ``repeat`` value in one call, where
  neither the time limit nor its memory limit stops it (see :func:`_constant_sizes`).

A query then gets the time limit and a memory cap: it is interrupted after ``timeout_s``, or as soon
as the process grows past its memory budget (``memory_budget_mb``; DuckDB's own memory limit, three
quarters of it, stops most heavy queries earlier with an out-of-memory error). Rows, the answer's
characters and each value are capped, each with a note that says how to narrow the query.
"""

from __future__ import annotations

import collections
import datetime as _dt
import decimal
import json
import os
import threading
import time
import uuid
from typing import Any

import duckdb

from ..errors import InvalidInput, ReadOnlyViolation
from ..store.db import Store

ALLOWED_TABLE_FUNCTIONS = frozenset({
    "unnest", "range", "generate_series", "duckdb_columns", "duckdb_views", "duckdb_tables",
    "duckdb_functions", "duckdb_types", "duckdb_constraints", "duckdb_schemas", "duckdb_keywords",
    "pragma_table_info", "summary", "show", "describe",
})
DENIED_FUNCTIONS = frozenset({
    "getenv", "read_text", "read_blob", "current_setting", "query", "query_table", "load_extension",
    "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_json_objects", "read_ndjson",
    "read_parquet", "parquet_scan", "glob", "sniff_csv", "read_xlsx", "iceberg_scan", "delta_scan",
    "http_get", "http_post",
    # sequences and the session's random seed: state outside the query
    "nextval", "currval", "setval", "setseed",
})
# query nodes of DuckDB's parse tree that only read; INSERT_QUERY_NODE and the like write
READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
# functions whose literal arguments size what they build (a string, a list, rows)
SIZED_FUNCTIONS = frozenset({
    "repeat", "range", "generate_series", "lpad", "rpad", "list_resize", "array_resize", "list_pad", "array_pad",
})
MAX_BUILT_SIZE = 10_000_000
# sized functions that build one whole value in one call, which DuckDB can neither interrupt nor count
ONE_CALL_BUILDERS = frozenset({"repeat", "lpad", "rpad", "list_resize", "array_resize", "list_pad", "array_pad"})
STORED_TEXT_CHARS = 100_000  # what one stored text may hold, for repeat(column, n): n up to 100
ALLOWED_SCHEMAS = frozenset({"", "main", "information_schema", "pg_catalog", "memory", "temp"})
MAX_SQL_CHARS = 20_000
WATCH_INTERVAL_S = 0.01  # how often a running query's time and the process' memory are checked
# how long an interrupt takes to stop a query (DuckDB checks between chunks; on a loaded machine the
# watching thread also waits for a core): measured 0.1-0.33 s for a string_agg growing 0.1-0.7 GB/s
INTERRUPT_LANDS_S = 0.35


def _walk(node: Any, found: dict[str, list[str]]) -> None:
    if isinstance(node, dict):
        t = node.get("type")
        if isinstance(t, str) and t.endswith("_NODE"):
            found["nodes"].append(t)
        if t == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            found["table_functions"].append(str(fn.get("function_name", "")).lower())
            if isinstance(fn, dict):
                fn["_table_function"] = True
        elif t == "BASE_TABLE":
            found["tables"].append(json.dumps([node.get("catalog_name", ""), node.get("schema_name", ""),
                                               node.get("table_name", "")]))
        if node.get("class") == "FUNCTION" and "function_name" in node:
            name = str(node["function_name"]).lower()
            found["functions"].append(name)
            # a table function (FROM range(...)) streams its rows while the query runs, under its limits
            if name in SIZED_FUNCTIONS and not node.get("_table_function"):
                args = node.get("arguments") if "arguments" in node else node.get("children")  # DuckDB 2 / 1.5
                found["sizes"].extend(f"{name}({n})" for n in _constant_sizes(name, args))
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def _constant_sizes(name: str, args: Any) -> list[int]:
    """What a sized function's arguments let it build, checked against :data:`MAX_BUILT_SIZE`.

    Each integer literal is a size (``repeat('x', 2000000000)``); ``repeat`` builds its first
    argument's length times the count. A size computed from literals alone (``40000 * 40000``) is
    folded by DuckDB into one constant while planning, where no limit applies: counted as over. A
    size read from rows is refused for the functions that build one whole value per call
    (:data:`ONE_CALL_BUILDERS`): one ``repeat('x', n)`` of 1.6 GB ran 40 s past the time limit,
    uninterruptible; ``range`` over rows builds its lists in DuckDB's managed memory, under its limit."""
    out = []
    base, counts = 1, 1
    for i, a in enumerate(args or []):
        e = a.get("expression", a) if isinstance(a, dict) else None
        if not isinstance(e, dict):
            continue
        if e.get("class") == "CAST" and isinstance(e.get("child"), dict) and e["child"].get("class") == "CONSTANT":
            e = e["child"]  # DATE '2026-01-01', '5'::INT: the literal decides
        lit = _literal_text(e) if e.get("class") == "CONSTANT" else None
        if name in ONE_CALL_BUILDERS and i == 0:  # what is repeated, padded or resized
            if lit is not None:
                base = max(1, len(lit))
            elif _reads_rows(e):
                base = STORED_TEXT_CHARS
            else:  # a literal list or expression: no longer than the SQL, unless it builds something itself
                base = MAX_BUILT_SIZE + 1 if _builds(e) else MAX_SQL_CHARS
            continue
        if lit is not None:
            try:
                n = abs(int(lit.replace("_", "")))
            except ValueError:
                continue  # a string, a date or a decimal: not a count
            out.append(n)
            counts *= max(n, 1)
        elif not _reads_rows(e) or name in ONE_CALL_BUILDERS:
            out.append(MAX_BUILT_SIZE + 1)
    if name == "repeat":
        out.append(base * counts)
    return out


def _literal_text(e: dict[str, Any]) -> str | None:
    """A constant's text as written, in either parse-tree shape: DuckDB 2's ``literal: {text}`` or
    DuckDB 1.5's ``value: {type, is_null, value}`` (NULL: None)."""
    lit = e.get("literal")
    if isinstance(lit, dict):
        return str(lit.get("text", ""))
    val = e.get("value")
    if isinstance(val, dict) and "value" in val:
        return None if val.get("is_null") else str(val["value"])
    return None


def _builds(node: Any) -> bool:
    """Whether an expression calls a sized function."""
    if isinstance(node, dict):
        if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in SIZED_FUNCTIONS:
            return True
        return any(_builds(v) for v in node.values())
    if isinstance(node, list):
        return any(_builds(v) for v in node)
    return False


def _reads_rows(node: Any) -> bool:
    """Whether an expression depends on a column or a subquery (so it is computed while the query
    runs, under the time and memory limits, not folded while planning)."""
    if isinstance(node, dict):
        if node.get("class") in ("COLUMN_REF", "SUBQUERY") or node.get("type") in ("COLUMN_REF", "SUBQUERY"):
            return True
        return any(_reads_rows(v) for v in node.values())
    if isinstance(node, list):
        return any(_reads_rows(v) for v in node)
    return False


def check_read_only(store: Store, sql: str) -> None:
    """Raise ReadOnlyViolation (saying what is allowed) unless ``sql`` is one safe query."""
    if not sql or not sql.strip():
        raise InvalidInput("sql is empty; write one SELECT over the views (see describe_schema)")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(f"sql is {len(sql):,} characters; the limit is {MAX_SQL_CHARS:,}")
    raw = store.scalar("SELECT json_serialize_sql(?::VARCHAR)", [sql])
    tree = json.loads(raw)
    if tree.get("error"):
        msg = str(tree.get("error_message", ""))
        if "Only SELECT" in msg or "CTE needs a SELECT" in msg:  # DuckDB 1.5 refuses a writing CTE while parsing
            raise ReadOnlyViolation("only read-only queries are allowed (SELECT, WITH ... SELECT, FROM ...): "
                                    "writes, ATTACH, COPY, INSTALL/LOAD, PRAGMA, SET and EXPORT are refused")
        raise InvalidInput(f"the SQL does not parse: {msg}")
    stmts = tree.get("statements") or []
    if len(stmts) != 1:
        raise ReadOnlyViolation(f"send exactly one statement (got {len(stmts)})")
    found: dict[str, list[str]] = {"nodes": [], "table_functions": [], "tables": [], "functions": [], "sizes": []}
    _walk(stmts[0], found)
    bad_nodes = sorted({n for n in found["nodes"] if n not in READ_NODES})
    if bad_nodes:
        kinds = ", ".join(n.removesuffix("_QUERY_NODE").removesuffix("_NODE") for n in bad_nodes)
        raise ReadOnlyViolation(f"only read-only queries are allowed: {kinds} inside the query is refused (also "
                                "inside WITH). Select what you want to see instead")
    bad_tf = sorted({f for f in found["table_functions"] if f not in ALLOWED_TABLE_FUNCTIONS})
    if bad_tf:
        raise ReadOnlyViolation(f"table function(s) {', '.join(bad_tf)} are not allowed: files, the network and "
                                "nested SQL are off limits. Query the views instead (describe_schema lists them)")
    bad_fn = sorted({f for f in found["functions"] if f in DENIED_FUNCTIONS})
    if bad_fn:
        raise ReadOnlyViolation(f"function(s) {', '.join(bad_fn)} are not allowed in query_sql: they read files, "
                                "settings or the environment, or change a sequence")
    for t in found["tables"]:
        catalog, schema, name = json.loads(t)
        if schema.lower() not in ALLOWED_SCHEMAS or (catalog and catalog.lower() not in ALLOWED_SCHEMAS | {"system"}
                                                      and not _is_own_catalog(store, catalog)):
            raise ReadOnlyViolation(f"table {'.'.join(p for p in (catalog, schema, name) if p)} is outside the store")
        if not name.replace("_", "a").isalnum():
            raise ReadOnlyViolation(f"{name!r} is not a table or view name (reading files is not allowed); "
                                    "use the views listed by describe_schema")
    big = [s for s in found["sizes"] if int(s[s.index("(") + 1:-1]) > MAX_BUILT_SIZE]
    if big:
        raise InvalidInput(f"{big[0].split('(')[0]} with a size over {MAX_BUILT_SIZE:,}, computed, or read from "
                           "rows could build a value past the memory budget; give it a plain number (a result up to "
                           f"{MAX_BUILT_SIZE:,} characters or elements), use bar() for bars, or aggregate instead")


def _is_own_catalog(store: Store, catalog: str) -> bool:
    return bool(store.scalar("SELECT current_database() = ?", [catalog]))


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return str(v)


def _rss_mb() -> float | None:
    """This process' resident memory in MB (Linux), None where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _Watch:
    """Interrupts a running query past its time limit, or when the process grows past its memory
    budget while the query runs (DuckDB's memory_limit covers its buffers, not every value it builds).

    One watching thread (:class:`_Watcher`) checks every running query; a query only registers while it
    runs. A thread of its own per query cost every ``query_sql`` call ~0.6 CPU-ms and ~0.9 ms of wall
    (start, then join: two waits for the scheduler), 40 % of a one-row query's time.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection, timeout_s: float, budget_mb: float) -> None:
        self.cur, self.timeout_s, self.budget_mb = cur, timeout_s, budget_mb
        self.stopped_for: str | None = None
        self.peak_mb = self.start_mb = _rss_mb() or 0.0
        self.deadline = 0.0
        self.recent: collections.deque[tuple[float, float]] = collections.deque()

    def __enter__(self) -> _Watch:
        self.deadline = time.monotonic() + self.timeout_s
        _WATCHER.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _WATCHER.remove(self)  # once it returns, this query's cursor is never interrupted

    def check(self, now: float, rss: float | None) -> bool:
        """Whether to stop the query now (``stopped_for`` says why)."""
        if rss is not None:
            self.peak_mb = max(self.peak_mb, rss)
        if now > self.deadline:
            self.stopped_for = "time"
        # where the process will be when an interrupt sent now lands, at the pace it grew over the
        # last fifth of a second, is past nine tenths of the budget, and this query is what grew (not
        # memory the process held before it)
        elif rss is not None and rss - self.start_mb > 64 and \
                self._projected_mb(self.recent, now, rss) > 0.9 * self.budget_mb:
            self.stopped_for = "memory"
        return self.stopped_for is not None

    @staticmethod
    def _projected_mb(recent: collections.deque[tuple[float, float]], now: float, rss: float) -> float:
        recent.append((now, rss))
        while now - recent[0][0] > 0.2:
            recent.popleft()
        t0, rss0 = recent[0]
        pace = (rss - rss0) / (now - t0) if now > t0 else 0.0  # MB/s
        return rss + max(0.0, pace) * INTERRUPT_LANDS_S


class _Watcher:
    """The one thread that checks the running queries every :data:`WATCH_INTERVAL_S` (started with the
    first query; it sleeps while none runs). Interrupts are sent under the lock that removing a query
    takes, so a query that has finished is never interrupted (nor the next statement on its cursor)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    def add(self, w: _Watch) -> None:
        with self._lock:
            self._running.add(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="query-sql-watch", daemon=True)
                self._thread.start()
            self._lock.notify()

    def remove(self, w: _Watch) -> None:
        with self._lock:
            self._running.discard(w)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._running:
                    self._lock.wait()
            time.sleep(WATCH_INTERVAL_S)
            now, rss = time.monotonic(), _rss_mb()
            with self._lock:
                for w in [w for w in self._running if w.check(now, rss)]:
                    w.cur.interrupt()
                    self._running.discard(w)


_WATCHER = _Watcher()


def _narrow(why: str) -> str:
    return (f"{why}; aggregate or filter more (e.g. by workflow_id or a time range), select fewer or shorter "
            "columns, or add LIMIT")


def execute_sandboxed(store: Store, sql: str, max_rows: int, timeout_s: float = 10.0,
                      budget_mb: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SELECT in a rolled-back READ ONLY transaction, with its time limit and memory cap
    (the first wall alone: :func:`run_read_only` checks the parse tree first). Returns the column
    names and up to ``max_rows + 1`` rows."""
    if budget_mb is None:
        budget_mb = store.settings.memory_budget_mb
    # an agent's SQL can be as heavy as an analysis: DuckDB gets the whole budget (store/memory.py)
    with store.memory.heavy(), store.read_only_reader() as cur:
        try:
            stmts = cur.extract_statements(sql)
        except duckdb.Error as e:
            raise InvalidInput(f"the SQL does not parse: {str(e).splitlines()[0]}") from e
        if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
            raise ReadOnlyViolation("send exactly one read-only query (SELECT, WITH ... SELECT, FROM ...)")
        watch = _Watch(cur, timeout_s, budget_mb)
        try:
            with watch:
                res = cur.execute(stmts[0])
                columns = [d[0] for d in res.description or ()]
                rows = res.fetchmany(max_rows + 1)
        except duckdb.InterruptException as e:
            if watch.stopped_for == "memory":
                raise InvalidInput(_narrow(f"the query took the server past its memory budget "
                                          f"({budget_mb:,.0f} MB) and was stopped")) from e
            raise InvalidInput(_narrow(f"the query ran longer than {timeout_s:.0f} s and was stopped")) from e
        except duckdb.OutOfMemoryException as e:
            raise InvalidInput(_narrow("the query needed more memory than the store allows "
                                       f"({store.memory_limit_mb:,} MB) and was stopped")) from e
        except duckdb.TransactionException as e:
            raise ReadOnlyViolation("only read-only queries are allowed: the query tried to change the store "
                                    f"({str(e).splitlines()[0]})") from e
        except duckdb.PermissionException as e:
            raise ReadOnlyViolation("files, the network and extensions are off limits to query_sql; query the "
                                    "views instead (describe_schema lists them)") from e
        except duckdb.Error as e:
            raise InvalidInput(f"the query failed: {str(e).splitlines()[0]}. describe_schema lists the views "
                               "and columns") from e
    return columns, rows


def _cut(v: Any, limit: int) -> tuple[Any, bool]:
    """``v`` with every string longer than ``limit`` cut to it; and whether anything was cut."""
    if isinstance(v, str) and len(v) > limit:
        return v[:limit] + "…", True
    if isinstance(v, list):
        parts = [_cut(x, limit) for x in v]
        return [p for p, _ in parts], any(c for _, c in parts)
    if isinstance(v, dict):
        items = {k: _cut(x, limit) for k, x in v.items()}
        return {k: p for k, (p, _) in items.items()}, any(c for _, c in items.values())
    return v, False


def run_read_only(store: Store, sql: str, max_rows: int = 100, max_chars: int = 6000,
                  timeout_s: float = 10.0) -> dict[str, Any]:
    """Check, then run ``sql`` (:func:`execute_sandboxed`); cap rows, characters and each value."""
    if not 1 <= max_rows <= 1000:
        raise InvalidInput("max_rows must be 1..1000")
    check_read_only(store, sql)
    columns, raw_rows = execute_sandboxed(store, sql, max_rows, timeout_s)
    notes = []
    truncated = len(raw_rows) > max_rows
    rows = []
    cut_values = False
    value_chars = max(100, max_chars // 4)  # a row with one long value still shows its other columns
    for raw in raw_rows[:max_rows]:
        cells = [_cut(_jsonable(v), value_chars) for v in raw]
        cut_values = cut_values or any(c for _, c in cells)
        rows.append([v for v, _ in cells])
    if truncated:
        notes.append(f"more than {max_rows} rows: add LIMIT/OFFSET, filters or GROUP BY to see the rest")
    if cut_values:
        truncated = True
        notes.append(f"values longer than {value_chars:,} characters were cut: select left(column, N), "
                     "length(column) or an aggregate instead")
    size = len(json.dumps(columns))
    kept: list[list[Any]] = []
    for r in rows:
        size += len(json.dumps(r, default=str)) + 1
        if size > max_chars:
            truncated = True
            notes.append(f"answer cut at {max_chars:,} characters after {len(kept)} rows: select fewer columns "
                         "or aggregate")
            break
        kept.append(r)
    return {"columns": columns, "rows": kept, "row_count": len(kept), "truncated": truncated,
            "note": "; ".join(notes) or None}
