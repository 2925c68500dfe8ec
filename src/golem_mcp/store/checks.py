"""What a storable value is: every row the store writes passes these checks on its way to Arrow.

Every write path (OTLP and hooks over HTTP, the spool drain, the transcript watcher, ``golem-mcp
import``, agents' MCP records) ends in :meth:`Store.write`, which stages each table's rows through
:func:`stage`. So one wrongly typed, non-finite, absurd or oversized value costs only itself:

- a key, or a token count, that is bad rejects its row (a request with an unknown token count
  would make every total wrong);
- any other bad value is stored as NULL (a cost that is NaN falls back to the price table, a
  timestamp in the year 9999 leaves the fact without a day);
- a text longer than :data:`MAX_TEXT_CHARS` is cut to it;

and each is reported with the file and line (or batch index) the row came from
(:data:`~golem_mcp.store.batch.ORIGIN`), the rest of the batch lands.

Speed: Arrow converts the rows and so checks their types in C; the value rules run as vectorised
Arrow kernels. Only a batch Arrow refuses is walked in Python (:func:`_fix_types`), to find which
values it refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..redaction import redact_table
from .batch import ORIGIN, Batch, Skipped

MIN_TIME_US = 946_684_800_000_000     # 2000-01-01: no Claude Code session is older
MAX_TIME_US = 4_102_444_800_000_000   # 2100-01-01
MAX_TOKENS = 10**9                    # per request; the largest context windows are ~10^6
MAX_COST_USD = 10_000.0               # per request or stage record
MAX_ID_CHARS = 1024                   # ids are UUIDs and hashes: ~36-64 characters
MAX_PATH_CHARS = 4096                 # PATH_MAX
MAX_TEXT_CHARS = 64 * 1024            # longer texts are cut
MAX_JSON_CHARS = 1 << 20              # JSON cannot be cut and stay JSON: a larger one is left out
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)

Report = Callable[[dict, Skipped], None]
# a column a row may carry that its write sets itself (the change number a shard's rows carry)
CHANGE_COLUMN = "_change_seq"


@dataclass(frozen=True)
class Rule:
    """How one column's values are checked."""

    kind: str                  # str, json, int, float, bool, time, other
    lo: float | None = None    # numbers: smallest allowed (times: epoch microseconds)
    hi: float | None = None
    chars: int | None = None   # texts: most characters
    cut: bool = False          # texts over ``chars`` are cut instead of left out
    reject: bool = False       # a bad value rejects the row instead of being stored as NULL
    what: str = ""             # the rule in words, for reports

    def describe(self) -> str:
        return self.what or self.kind


def rule_for(column: str, sql_type: str, key: bool) -> Rule:
    """The rule of ``column`` (of SQL type ``sql_type``); the one place these rules are written."""
    if sql_type == "VARCHAR":
        if key:
            n = MAX_PATH_CHARS if column == "path" else MAX_ID_CHARS
            return Rule("str", chars=n, reject=True, what=f"a text of at most {n} characters")
        if column.endswith("_id"):
            return Rule("str", chars=MAX_ID_CHARS, what=f"an id of at most {MAX_ID_CHARS} characters")
        if column in ("cwd", "transcript_path", "path"):
            return Rule("str", chars=MAX_PATH_CHARS, what=f"a path of at most {MAX_PATH_CHARS} characters")
        return Rule("str", chars=MAX_TEXT_CHARS, cut=True, what="a text")
    if sql_type == "JSON":
        return Rule("json", chars=MAX_JSON_CHARS, what=f"JSON text of at most {MAX_JSON_CHARS} characters")
    if sql_type in ("BIGINT", "INTEGER", "UTINYINT"):
        lo, hi = {"BIGINT": INT64, "INTEGER": INT32, "UTINYINT": (0, 255)}[sql_type]
        if column.endswith("_tokens"):
            return Rule("int", 0, MAX_TOKENS, reject=True, what=f"a token count from 0 to {MAX_TOKENS:,}")
        if column.endswith("_bytes") or column == "size":
            return Rule("int", 0, None, reject=key, what="a size of 0 or more")
        # the storage type's range is all there is to check, and Arrow checks it
        return Rule("int", reject=key, what=f"an integer from {lo} to {hi}")
    if sql_type == "DOUBLE":
        if column.endswith("cost_usd"):
            return Rule("float", 0.0, MAX_COST_USD, what=f"a cost from 0 to {MAX_COST_USD:,.0f} USD")
        if column.endswith("_ms"):
            return Rule("float", 0.0, math.inf, what="a finite duration of 0 ms or more")
        return Rule("float", -math.inf, math.inf, what="a finite number")
    if sql_type == "BOOLEAN":
        return Rule("bool", what="true or false")
    if sql_type == "TIMESTAMP":
        if key:  # workflow_links.valid_from: 0 means "from the session's start"
            return Rule("time", reject=True, what="a time")
        return Rule("time", MIN_TIME_US, MAX_TIME_US, what="a time from 2000 to 2100")
    return Rule("other", reject=key, what=sql_type)


def show(v: Any) -> str:
    """A value for a report: short whatever its size (a 1 MB id is not repeated in the log)."""
    if isinstance(v, str):
        return repr(v[:40] + "...") + f" ({len(v):,} characters)" if len(v) > 40 else repr(v)
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def origin(row: dict, table: str, index: int) -> tuple[str, int | None]:
    at = row.get(ORIGIN)
    return at if isinstance(at, tuple) else (f"{table} row", index + 1)


def _report(report: Report, table: str, col: str, row: dict, index: int, value: Any, rule: Rule,
            outcome: str) -> None:
    src, line = origin(row, table, index)
    dropped = outcome == "rejected"
    consequence = f"the {table} record was not stored" if dropped else outcome
    report(row, Skipped(src, line, f"{table}.{col}: {show(value)} is not {rule.describe()}; {consequence}",
                        dropped=dropped))


# --- the Python side: which values Arrow cannot take (only for a batch it refused) -------------

def _type_ok(v: Any, rule: Rule, arrow_type: Any) -> bool:
    kind = rule.kind
    if kind in ("str", "json"):
        if not isinstance(v, str):
            return False
        try:
            v.encode()
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, Arrow refuses it
            return False
        return True
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        lo, hi = _storage_range(arrow_type)
        if isinstance(v, bool):
            return False
        if isinstance(v, int):
            return lo <= v <= hi
        return isinstance(v, float) and math.isfinite(v) and float(v).is_integer() and lo <= v <= hi
    if kind == "float":
        if isinstance(v, float):
            return True  # NaN and infinities are the value rules' business
        return isinstance(v, int) and abs(v) < 1e308
    if kind == "time":
        if isinstance(v, datetime):
            return True
        return isinstance(v, int) and not isinstance(v, bool) and INT64[0] <= v <= INT64[1]
    import pyarrow as pa

    try:
        pa.array([v], type=arrow_type)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return False
    return True


def _storage_range(arrow_type: Any) -> tuple[int, int]:
    import pyarrow as pa

    if arrow_type == pa.int32():
        return INT32
    if arrow_type == pa.uint8():
        return (0, 255)
    return INT64


def _fix_types(table: str, rows: list[dict], cols: list[str], rules: dict[str, Rule], arrow: dict[str, Any],
               report: Report) -> list[dict]:
    """Rows with every value Arrow cannot take set to NULL (or the row left out, for keys and token
    counts); the caller's row dicts are copied, never changed."""
    out = []
    cols = sorted(cols, key=lambda c: not rules[c].reject)  # a rejected row needs no other report
    for i, row in enumerate(rows):
        fixed = row
        keep = True
        for c in cols:
            v = row.get(c)
            if v is None or _type_ok(v, rules[c], arrow[c]):
                continue
            if rules[c].reject:
                _report(report, table, c, row, i, v, rules[c], "rejected")
                keep = False
                break
            _report(report, table, c, row, i, v, rules[c], "stored as NULL")
            if fixed is row:
                fixed = dict(row)
            fixed[c] = None
        if keep:
            out.append(fixed)
    return out


# --- staging: rows -> a checked Arrow table ------------------------------------------------------

def stage(table: str, rows: list[dict], cols: list[str], types: dict[str, str], keys: tuple[str, ...],
          report: Report) -> tuple[Any, list[dict]]:
    """Convert ``rows`` to an Arrow table of ``cols``, every value checked against its column's rule.

    Returns the table and the rows it holds (in its order; bad rows left out). Problems go to
    ``report(row, Skipped)``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    _, types_of = arrow_types()
    arrow = {c: types_of.get(types[c], pa.string()) for c in cols}
    schema = pa.schema([(c, arrow[c]) for c in cols])
    rules = {c: _rule(table, c, types[c], c in keys) for c in cols}
    if _fractional(rows, [c for c in cols if rules[c].kind == "int"]):
        rows = _fix_types(table, rows, cols, rules, arrow, report)
    try:
        # from_pylist walks the dicts in C++ and refuses a value of the wrong type (but see _fractional)
        tbl = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        rows = _fix_types(table, rows, cols, rules, arrow, report)
        try:
            tbl = pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            rows = _convertible(table, rows, schema, report)
            tbl = pa.Table.from_pylist(rows, schema=schema)
    reject = None
    for c in cols:
        rule = rules[c]
        bad = _bad_mask(tbl.column(c), rule, pa, pc)
        if bad is None:
            continue
        idx = pc.indices_nonzero(bad).to_pylist()
        if rule.cut:
            for i in idx:
                v = rows[i].get(c)
                _report(report, table, c, rows[i], i, v, rule, f"cut to {rule.chars:,} characters")
            col = tbl.column(c)
            tbl = tbl.set_column(tbl.schema.get_field_index(c), c,
                                 pc.if_else(bad, pc.utf8_slice_codeunits(col, 0, rule.chars), col))
        elif rule.reject:
            for i in idx:
                _report(report, table, c, rows[i], i, rows[i].get(c), rule, "rejected")
            reject = bad if reject is None else pc.or_(reject, bad)
        else:
            for i in idx:
                _report(report, table, c, rows[i], i, rows[i].get(c), rule, "stored as NULL")
            tbl = tbl.set_column(tbl.schema.get_field_index(c), c,
                                 pc.if_else(bad, pa.scalar(None, type=arrow[c]), tbl.column(c)))
    if reject is not None:
        keep = pc.invert(reject)
        tbl = tbl.filter(keep)
        rows = [r for r, k in zip(rows, keep.to_pylist(), strict=True) if k]
    return tbl, rows


def _fractional(rows: list[dict], cols: list[str]) -> bool:
    """Whether a row holds a float that is no whole number in one of the integer columns ``cols``:
    Arrow's conversion takes 1.5 into an int64 column as 1 without a word, where the rule is to
    reject the row (a token count) or store NULL (~0.7 ms per 2,000 OTLP records)."""
    for c in cols:
        for r in rows:
            v = r.get(c)
            if type(v) is float and not v.is_integer():
                return True
    return False


_RULES: dict[tuple[str, str, str, bool], Rule] = {}


def _rule(table: str, column: str, sql_type: str, key: bool) -> Rule:
    k = (table, column, sql_type, key)
    r = _RULES.get(k)
    if r is None:
        r = _RULES[k] = rule_for(column, sql_type, key)
    return r


def _bad_mask(col: Any, rule: Rule, pa: Any, pc: Any) -> Any | None:
    """A boolean array: where ``col`` breaks ``rule`` (nulls never do); None when nowhere.

    Bounds go to the kernels as scalars of the column's type: given a Python number, pyarrow infers
    its type and, without python-dateutil installed, tries to import it each time (~50 us a
    comparison, against ~3)."""
    if col.null_count == len(col):
        return None
    kind = rule.kind
    if kind in ("str", "json"):
        if rule.chars is None:
            return None
        # bytes >= characters: a column whose longest value fits in bytes needs no character count
        if pc.max(pc.binary_length(col)).as_py() <= rule.chars:
            return None
        chars = pc.utf8_length(col)
        bad = pc.greater(chars, pa.scalar(rule.chars, chars.type))
    elif kind == "int":
        if rule.lo is None and rule.hi is None:
            return None
        if _within(pc.min_max(col), rule.lo, rule.hi):  # the common case, in one pass
            return None
        bad = pc.less(col, pa.scalar(int(rule.lo), col.type)) if rule.lo is not None else None
        if rule.hi is not None:
            over = pc.greater(col, pa.scalar(int(rule.hi), col.type))
            bad = over if bad is None else pc.or_(bad, over)
    elif kind == "float":
        bad = pc.invert(pc.is_finite(col))
        if rule.lo is not None and rule.lo > -math.inf:
            bad = pc.or_(bad, pc.less(col, pa.scalar(float(rule.lo), col.type)))
        if rule.hi is not None and rule.hi < math.inf:
            bad = pc.or_(bad, pc.greater(col, pa.scalar(float(rule.hi), col.type)))
    elif kind == "time":
        if rule.lo is None:
            return None
        us = pc.cast(col, pa.int64())
        if _within(pc.min_max(us), int(rule.lo), int(rule.hi or 0) - 1):
            return None
        bad = pc.or_(pc.less(us, pa.scalar(int(rule.lo or 0), pa.int64())),
                     pc.greater_equal(us, pa.scalar(int(rule.hi or 0), pa.int64())))
    else:
        return None
    bad = pc.fill_null(bad, False)
    return bad if pc.any(bad).as_py() else None


def _within(mm: Any, lo: float | None, hi: float | None) -> bool:
    """Whether a column's ``pc.min_max`` lies in [lo, hi] (None: unbounded on that side)."""
    least, most = mm["min"].as_py(), mm["max"].as_py()
    if least is None:  # nothing but nulls
        return True
    return (lo is None or least >= lo) and (hi is None or most <= hi)


def _convertible(table: str, rows: list[dict], schema: Any, report: Report) -> list[dict]:
    """Last resort, for a value the type rules let through and Arrow still refused: rows one by one."""
    import pyarrow as pa

    out = []
    for i, r in enumerate(rows):
        try:
            pa.Table.from_pylist([r], schema=schema)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
            src, line = origin(r, table, i)
            report(r, Skipped(src, line, f"{table}: a value could not be stored ({str(e)[:120]}); "
                                         f"the {table} record was not stored"))
            continue
        out.append(r)
    return out


def arrow_types() -> tuple[Any, dict[str, Any]]:
    # pyarrow costs ~90 ms to import: only the write path needs it, read-only commands never load it
    import pyarrow as pa

    scalar = {
        "VARCHAR": pa.string(), "JSON": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(),
        "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us"), "UTINYINT": pa.uint8(),
    }
    # MAP columns (review_reports.categories) are staged as arrow maps, given as Python dicts
    maps = {f"MAP({k}, {v})": pa.map_(scalar[k], scalar[v]) for k in ("VARCHAR",) for v in ("INTEGER", "BIGINT", "VARCHAR")}
    return pa, scalar | maps


@dataclass(frozen=True)
class TableSpec:
    """What checking one table's rows needs of the store (``Store.check_specs``): its columns' SQL
    types, its key, whether the resolver sets its ``r_`` columns, whether its texts are redacted and
    whether hook payloads are kept. Plain data, so a process without the store (an OTLP decoding
    worker) checks rows exactly as the store's write does."""

    table: str
    types: dict[str, str]
    keys: tuple[str, ...]
    resolved: bool
    redacted: bool
    keep_payload: bool


def checked(spec: TableSpec, rows: list[dict],
            report: Report) -> tuple[list[str], Any, list[dict], list[Any]] | None:
    """``rows`` of ``spec.table`` checked and redacted: (columns, Arrow table, rows kept, their keys);
    None: no row to write. What every write does to its rows first (Store._stage), and what landing
    a batch in the write inbox does before the answer (:func:`land`)."""
    table, types, keys = spec.table, spec.types, spec.keys
    present: set[str] = set()
    for r in rows:
        present.update(r)
    present.discard(ORIGIN)
    present.discard(CHANGE_COLUMN)  # set by the write itself (rows read back from a shard carry one)
    if spec.resolved:  # the resolver's columns: resolved by the write, whatever a row carries
        present -= {c for c in present if c.startswith("r_")}
    if table == "hook_events" and not spec.keep_payload:
        present.discard("payload")  # only the typed columns, unless the user opted in
    extra = present - set(types)
    if extra:
        raise ValueError(f"unknown columns for {table}: {sorted(extra)}")
    cols = [c for c in types if c in present or c in keys]
    # a row without its full key cannot be merged with anything: dropped, as before
    if len(keys) == 1:
        k0 = keys[0]
        kept = [r for r in rows if r.get(k0) is not None]
    else:
        kept = [r for r in rows if all(r.get(k) is not None for k in keys)]
    if not kept:
        return None
    # every value checked on the way (from_pylist walks the dicts in C++; a Python list per
    # column cost several times more); rows with a bad key or token count are left out
    stg, kept = stage(table, kept, cols, types, keys, report)
    if not kept:
        return None
    if len(keys) == 1:
        kv: list[Any] = [r[k0] for r in kept]
    else:
        kv = [tuple(r[k] for k in keys) for r in kept]
    if spec.redacted:
        # the privacy wall: whatever path a row came by, its texts are redacted here
        stg, changed = redact_table(stg, {c for c in cols if types[c] == "JSON"})
        if changed.intersection(keys):  # a key held a secret: match on the redacted keys
            key_cols = [stg.column(k).to_pylist() for k in keys]
            kv = key_cols[0] if len(keys) == 1 else list(zip(*key_cols, strict=True))
    return cols, stg, kept, kv


def land(batch: Batch, specs: dict[str, TableSpec]) -> list[tuple[str, bytes]]:
    """Check and redact every table of ``batch`` (:func:`checked`) for the write inbox: the rows
    kept stay in ``batch`` with their Arrow tables in ``batch.staged``, problems go to
    ``batch.skipped``; returns each table's rows as inbox bytes (:func:`.inbox.encode`)."""
    from . import inbox

    def report(row: dict, problem: Skipped) -> None:
        batch.skipped.append(problem)

    blobs: list[tuple[str, bytes]] = []
    for t in list(batch.rows):
        if not batch.rows[t]:
            continue
        if t not in specs:
            raise ValueError(f"unknown table {t}")
        got = checked(specs[t], batch.rows[t], report)
        if got is None:
            batch.rows[t] = []
            continue
        _, stg, kept, _ = got
        batch.rows[t] = kept  # the rows the checks kept, in the table's order (their fixes are in it)
        batch.staged[t] = [stg]
        blobs.append((t, inbox.encode(stg)))
    return blobs
