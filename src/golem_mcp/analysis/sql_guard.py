"""Read-only SQL from agents: checked on DuckDB's own parse tree, run with row, size and time caps.

Why a parse tree and not a keyword list: DuckDB parses the text itself (``json_serialize_sql``), so
comments, quoting and odd spacing cannot hide a statement. The rules:

- exactly one statement, and it must be a query (DuckDB refuses to serialize INSERT, UPDATE,
  DELETE, CREATE, DROP, ATTACH, COPY, INSTALL, LOAD, PRAGMA, SET, EXPORT, CALL...);
- every table it reads is a plain name (tables and views of the store, or its own CTEs): a quoted
  file name like ``'x.parquet'`` would be a replacement scan that reads a file;
- table functions only from a small allow-list (``read_csv``, ``glob``, ``query`` and the like
  read files, the network or run other SQL);
- no scalar function that reads the environment or files (``getenv``, ``read_text``...).

``enable_external_access=false`` would be a second wall, but in DuckDB it is database-wide and
cannot be turned back on, and the daemon itself needs file access, so it is not used here.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import threading
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
})
ALLOWED_SCHEMAS = frozenset({"", "main", "information_schema", "pg_catalog", "memory", "temp"})
MAX_SQL_CHARS = 20_000


def _walk(node: Any, found: dict[str, list[str]]) -> None:
    if isinstance(node, dict):
        t = node.get("type")
        if t == "TABLE_FUNCTION":
            fn = (node.get("function") or {}).get("function_name", "")
            found["table_functions"].append(str(fn).lower())
        elif t == "BASE_TABLE":
            found["tables"].append(json.dumps([node.get("catalog_name", ""), node.get("schema_name", ""),
                                               node.get("table_name", "")]))
        if node.get("class") == "FUNCTION" and "function_name" in node:
            found["functions"].append(str(node["function_name"]).lower())
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


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
        if "Only SELECT" in msg:
            raise ReadOnlyViolation("only read-only queries are allowed (SELECT, WITH ... SELECT, FROM ...): "
                                    "writes, ATTACH, COPY, INSTALL/LOAD, PRAGMA, SET and EXPORT are refused")
        raise InvalidInput(f"the SQL does not parse: {msg}")
    stmts = tree.get("statements") or []
    if len(stmts) != 1:
        raise ReadOnlyViolation(f"send exactly one statement (got {len(stmts)})")
    found: dict[str, list[str]] = {"table_functions": [], "tables": [], "functions": []}
    _walk(stmts[0], found)
    bad_tf = sorted({f for f in found["table_functions"] if f not in ALLOWED_TABLE_FUNCTIONS})
    if bad_tf:
        raise ReadOnlyViolation(f"table function(s) {', '.join(bad_tf)} are not allowed: files, the network and "
                                "nested SQL are off limits. Query the views instead (describe_schema lists them)")
    bad_fn = sorted({f for f in found["functions"] if f in DENIED_FUNCTIONS})
    if bad_fn:
        raise ReadOnlyViolation(f"function(s) {', '.join(bad_fn)} are not allowed in query_sql")
    for t in found["tables"]:
        catalog, schema, name = json.loads(t)
        if schema.lower() not in ALLOWED_SCHEMAS or (catalog and catalog.lower() not in ALLOWED_SCHEMAS | {"system"}
                                                      and not _is_own_catalog(store, catalog)):
            raise ReadOnlyViolation(f"table {'.'.join(p for p in (catalog, schema, name) if p)} is outside the store")
        if not name.replace("_", "a").isalnum():
            raise ReadOnlyViolation(f"{name!r} is not a table or view name (reading files is not allowed); "
                                    "use the views listed by describe_schema")


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


def run_read_only(store: Store, sql: str, max_rows: int = 100, max_chars: int = 6000,
                  timeout_s: float = 10.0) -> dict[str, Any]:
    """Check, then run ``sql`` on its own cursor; cap rows and characters and interrupt after ``timeout_s``."""
    if not 1 <= max_rows <= 1000:
        raise InvalidInput("max_rows must be 1..1000")
    check_read_only(store, sql)
    with store.reader() as cur:
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            res = cur.execute(sql)
            columns = [d[0] for d in res.description or ()]
            raw_rows = res.fetchmany(max_rows + 1)
        except duckdb.InterruptException as e:
            raise InvalidInput(f"the query ran longer than {timeout_s:.0f} s and was stopped; aggregate or filter "
                               "more (e.g. by workflow_id or a time range), or add LIMIT") from e
        except duckdb.Error as e:
            raise InvalidInput(f"the query failed: {str(e).splitlines()[0]}. describe_schema lists the views "
                               "and columns") from e
        finally:
            timer.cancel()
    notes = []
    truncated = len(raw_rows) > max_rows
    rows = [[_jsonable(v) for v in r] for r in raw_rows[:max_rows]]
    if truncated:
        notes.append(f"more than {max_rows} rows: add LIMIT/OFFSET, filters or GROUP BY to see the rest")
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
