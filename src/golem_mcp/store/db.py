"""The Store: owns a DuckDB connection, applies migrations, writes batches, answers queries.

All SQL of golem-mcp lives in this package (``sql/*.sql`` and the statements here); analyses and
interfaces call methods or pass bound parameters. Values are always bound; identifiers only ever
come from the fixed table definitions below and go through :func:`ident`.

Change tracking, for whatever sends rows elsewhere (``export`` shards, ``push`` to a team store):
every row of a table in ``CHANGE_TABLES`` has ``_change_seq``, the number of the write that last
inserted or changed it (see the comment at ``CHANGE_TABLES``; an UPDATE must set it too).
``high = store.change_high()`` is the highest committed number; ``store.changes_since(table, seq,
upto=high)`` the rows changed in (seq, high] as a ``pyarrow.Table`` (``local_only=True`` leaves out
rows last changed by merging a shard); ``store.watermark(dest, table)`` / ``set_watermark(dest,
table, high)`` keep how far each destination has got. Facts carry ``machine_id`` (``MACHINE_TABLES``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from .. import home
from ..config import Settings
from ..errors import GolemError, StoreBusy
from ..redaction import redact
from . import checks, inbox, resolve, rollups
from .batch import MCP_PLACEHOLDER, Batch, Skipped
from .memory import MemoryLimit
from .writer import WriteQueue

log = logging.getLogger("golem_mcp.store")


class _NoPandas:
    """DuckDB 1.5's Python binding tries ``import pandas`` for each value of a list parameter (twice)
    to see whether it is a pandas object. Without pandas installed, every try walks ``sys.path``
    again (a failed import is not remembered): ~70 us a value, 7 CPU-s for a list of 100,000 keys,
    most of a first import's write. This finder, first on ``sys.meta_path``, fails those tries at
    once (``importlib.util.find_spec("pandas")`` raises too, as an import would). It is installed only
    when pandas is not installed (then DuckDB's first import is kept and reused), and it answers for
    nothing else."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")


def _no_pandas_probe() -> None:
    import importlib.util
    import sys

    if (not any(isinstance(f, _NoPandas) for f in sys.meta_path) and "pandas" not in sys.modules
            and importlib.util.find_spec("pandas") is None):
        sys.meta_path.insert(0, _NoPandas())  # type: ignore[arg-type]


_no_pandas_probe()


def _migrations() -> list[tuple[int, str]]:
    """``sql/NNN_name.sql`` files, in order; adding a file is adding a migration."""
    out = []
    for f in resources.files("golem_mcp.store").joinpath("sql").iterdir():
        name = f.name
        if name.endswith(".sql") and name[:3].isdigit():
            out.append((int(name[:3]), name))
    return sorted(out)


SCHEMA_VERSION = max(v for v, _ in _migrations())
MACHINE_MIGRATION = 9  # machine_id and _change_seq (009_machines_changes.sql)
# Migrations that make a table a resolved fact (resolve.FACTS): an existing store's rows of it are
# resolved in the migration's transaction (few rows: no parts, no pending mark as 007's backfill has)
FACT_MIGRATIONS = {12: ("compaction_events",)}
# Migrations that add a column the resolver reads (resolve.sql). A store upgraded across 007 or 012
# resolves its facts before its later migrations have run, so their SQL (idempotent: ADD COLUMN IF
# NOT EXISTS) runs first there (Store._resolver_macros); the migration itself then finds it done.
RESOLVER_INPUT_MIGRATIONS = ("024_link_stage.sql",)

# How a column merges when the same fact arrives again (another source, a re-import, a resumed
# session): keep = first non-null stays; new = latest non-null wins; max/min; or = bitwise OR;
# typed = a real agent type beats OTel's 'custom'; and = a failure seen by any source stays a failure;
# patch = JSON objects merged key by key (the newer value of a key wins); machine_id of a fact
# merges by the rule at SOURCE_RANK (``column_policy``).
KEYS: dict[str, tuple[str, ...]] = {
    "api_requests": ("request_id",),
    "tool_calls": ("tool_use_id",),
    "api_errors": ("error_key",),
    "spans": ("span_id",),
    "otel_events": ("event_key",),
    "metric_points": ("point_key",),
    "hook_events": ("event_key",),
    "sessions": ("session_id",),
    "agents": ("agent_id",),
    "workflows": ("workflow_id",),
    "workflow_links": ("session_id", "valid_from"),
    "agent_context": ("agent_id",),
    "review_reports": ("report_id",),
    "review_issues": ("report_id", "idx"),
    "ingest_files": ("path",),
    "stage_records": ("id",),
    "machines": ("machine_id",),
    "compaction_events": ("event_key",),
    "agent_tasks": ("task_key",),
}
POLICY: dict[str, dict[str, str]] = {
    "api_requests": {"output_tokens": "max", "source_mask": "or", "timestamp": "min", "attempt": "max",
                     "recorded_cost_usd": "new", "duration_ms": "new", "ttft_ms": "new", "success": "and"},
    "tool_calls": {"success": "and", "timestamp": "min", "source_mask": "or", "duration_ms": "new",
                   "tool_name": "named"},
    "agents": {"agent_type": "typed", "started_at": "min", "ended_at": "max", "model": "new"},
    "sessions": {"first_seen": "min", "last_seen": "max", "end_reason": "new"},
    "workflows": {"started_at": "min", "updated_at": "max", "path": "new", "complexity": "new",
                  "spec_completeness": "new", "status": "new", "ended_at": "new", "attributes": "patch",
                  "parent_workflow_id": "new"},
    "agent_context": {"workflow_id": "new", "stage": "new", "task_id": "new", "experiment_id": "new",
                      "source": "new", "updated_at": "new"},
    "agent_tasks": {"created_at": "min", "completed_at": "max"},
    "ingest_files": {"kind": "new", "size": "new", "mtime_ns": "new", "offset": "new", "lines": "new",
                     "skipped": "new", "updated_at": "new"},
    "machines": {"label": "new", "first_seen": "min", "last_seen": "max"},
}
# tables written in this order so that facts and their context land in one transaction
WRITE_ORDER = ("machines", "sessions", "agents", "workflows", "workflow_links", "agent_context", "api_requests",
               "tool_calls", "api_errors", "spans", "otel_events", "metric_points", "hook_events",
               "review_reports", "review_issues", "stage_records", "compaction_events", "agent_tasks",
               "ingest_files")
# Facts whose changed days are stamped into fact_changes (003) for the analysis' aggregate cache.
# A row without a time counts as this day (the analysis' "no time" sorts after every real one).
FACT_TABLES = ("api_requests", "tool_calls", "api_errors")
NO_DAY = date(2262, 1, 1)
FACT_DAY_SQL = "CAST(COALESCE(\"timestamp\", TIMESTAMP '2262-01-01') AS DATE)"  # a fact row's day, NO_DAY without a time
# Every text column of every write is redacted (golem_mcp.redaction), except ingest_files: the
# paths of files this machine read, matched by the importer to resume them (a redacted path would
# never match, and the file would be read again on every scan).
NOT_REDACTED = frozenset({"ingest_files"})
# settings key present while migration 007's resolution of an existing store's facts is unfinished
_BACKFILL_PENDING = "resolve_backfill_pending"
# settings key naming the rollups (SPECS keys, comma-separated) to build whole: set in the transaction
# that made them stale or added them, gone with the last run of their build (Store._build_marked_rollups)
_ROLLUPS_PENDING = "rollups_pending"

# -- Many machines (migration 009) -----------------------------------------------------------------
# Machine identity: the rows of these tables that Store.write stores without a machine_id get this
# store's machine (golem_mcp.home.machine()); rows that carry one (imported shards) keep theirs.
# A table a later migration adds gets the columns at the next open (``_ensure_tracking``): list it here.
MACHINE_TABLES = ("api_requests", "tool_calls", "api_errors", "spans", "otel_events", "metric_points",
                  "hook_events", "sessions", "agents", "compaction_events", "agent_tasks")
# Which machine a fact names when more than one machine saw it (m1 read the session's transcripts,
# m3 received the same requests as OTel; a shard of another machine's facts imported here). It must
# not depend on the order the sightings meet in (which push merged first, which shard came first), so
# ``machine_id`` of these tables merges by this one rule (policy "machine", ``column_policy``) in
# every place facts meet: the local upsert (a fact arriving again, a shard), a push's MERGE into the
# lake (team.push, the same SET items) and the replica's refresh (Store.write); the replica's whole
# build copies the lake's one row per fact, already merged by it.
# The rule: the machine whose sighting came by the most authoritative source, then the least
# machine_id. Transcripts are files on the disk of the machine Claude Code ran on and hooks run
# there too; an agent's own record comes from the MCP server beside it; OTel goes wherever its
# exporter points (a team's collector receives every machine's), so it names a machine last (its
# log events, which carry the request's figures, before its spans). A sighting ranks by the best
# source in its source_mask. A stored row's mask is the OR of every sighting merged into it
# (POLICY), so it ranks as the best of them: the one its machine was chosen for. Merging is thus a
# maximum over (rank, least machine_id): commutative, associative, and idempotent (a resent push
# changes nothing). Tables without a source_mask (errors, spans, sessions, ...): the least machine_id.
SOURCE_RANK = ((1, 5), (8, 4), (16, 3), (2, 2), (4, 1))  # source_mask bit -> rank: transcript, hook, agent, OTel log, span
MACHINE_POLICY = "machine"


def column_policy(table: str, col: str) -> str:
    """How ``col`` of ``table`` merges when the same fact arrives again (POLICY; machine_id: the rule above)."""
    if col == "machine_id" and table in MACHINE_TABLES:
        return MACHINE_POLICY
    return POLICY.get(table, {}).get(col, "keep")


def _ranked(table: str) -> bool:
    """Whether ``table``'s facts rank their machine by source_mask (it must merge by OR: see SOURCE_RANK)."""
    return POLICY.get(table, {}).get("source_mask") == "or"


def source_rank(mask: str) -> str:
    """SQL: the rank of the sighting whose source_mask is the expression ``mask`` (0: none known)."""
    return "CASE " + " ".join(f"WHEN ({mask} & {bit}) <> 0 THEN {rank}" for bit, rank in SOURCE_RANK) + " ELSE 0 END"


# Change tracking: every row of these tables has ``_change_seq``, the change number of the write that
# last inserted or changed it. Store.write takes one number per write (``_change_number()``, from the
# sequence change_seq, under the write lock, so numbers commit in order) and sets it on each row it
# inserts, and on each row its merge actually changes (a merge that changes nothing keeps the old
# number: importing a shard twice sends nothing new on). ANY OTHER STATEMENT THAT INSERTS OR UPDATES
# A ROW OF THESE TABLES (the resolver's re-resolution UPDATEs) MUST SET ``_change_seq =
# self._change_number()`` inside Store.write's transaction, or the change is never exported or pushed.
# (A row inserted without it still gets a fresh number from the column's default.)
# Readers: ``Store.changes_since(table, seq)`` (the rows changed after ``seq``, as Arrow) and the
# per-destination watermarks ``watermark(dest, table)`` / ``set_watermark(dest, table, seq)``.
CHANGE_TABLES = ("machines", "sessions", "agents", "workflows", "workflow_links", "agent_context",
                 "api_requests", "tool_calls", "api_errors", "spans", "otel_events", "metric_points",
                 "hook_events", "review_reports", "review_issues", "compaction_events", "agent_tasks")
CHANGE_COLUMN = checks.CHANGE_COLUMN


def ident(name: str) -> str:
    """Quote an identifier (the one place identifiers are put into SQL)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal (the one place values are put into SQL text: where a statement takes no
    bound parameters (ATTACH, a view's body), or a constant list the planner pushes into a view)."""
    return "'" + value.replace("'", "''") + "'"


def _sql(name: str) -> str:
    return resources.files("golem_mcp.store").joinpath("sql", name).read_text()


def dict_rows(cur: duckdb.DuckDBPyConnection, sql: str,
              params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run ``sql`` on ``cur``; its rows as dicts by column name."""
    res = cur.execute(sql, params) if params is not None else cur.execute(sql)
    names = [d[0] for d in res.description or ()]
    return [dict(zip(names, row, strict=False)) for row in res.fetchall()]


def column_arrays(cur: duckdb.DuckDBPyConnection, sql: str,
                  params: Sequence[Any] | dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``sql`` on ``cur``; its columns as numpy arrays by name (many numbers without a Python object each)."""
    res = cur.execute(sql, params) if params is not None else cur.execute(sql)
    return dict(res.fetchnumpy())


# The tables a write stages together and looks up in one statement (Store._prefetch), when several of
# them follow one another in WRITE_ORDER: the facts and the raw events, many keys each.
_PREFETCHED = frozenset({*resolve.FACTS, "otel_events", "metric_points", "hook_events"})


@dataclass
class _Staged:
    """One table's rows of a write, checked, redacted and registered as ``name`` (Store._stage)."""

    table: str
    cols: list[str]
    stg: Any  # the Arrow table
    kept: list[dict]
    kv: list[Any]  # each row's key (a tuple for several key columns)
    n_keys: int
    name: str
    existing: set[Any] | None = None  # keys already stored, when looked up with other tables


def _sessions(staged: Any) -> list[str] | None:
    """The distinct session ids of a staged (Arrow) batch, as stored (after redaction); None when it
    has no such column or more than the resolver binds (see resolve.WriteResolution.insert)."""
    if "session_id" not in staged.column_names:
        return None
    import pyarrow.compute as pc

    ids = pc.unique(staged.column("session_id").drop_null())
    return ids.to_pylist() if len(ids) <= resolve._BOUND_SESSIONS else None


def _agg(col: str, policy: str, table: str = "", cols: Sequence[str] = ()) -> str:
    """The value ``col`` of rows sharing a key in one batch folds to (``cols``: the batch's columns)."""
    c = ident(col)
    if policy == MACHINE_POLICY:
        rank = source_rank(ident("source_mask")) if _ranked(table) and "source_mask" in cols else "0"
        return f"first({c} ORDER BY {rank} DESC, {c}) FILTER (WHERE {c} IS NOT NULL)"
    return {
        "max": f"max({c})", "min": f"min({c})", "or": f"bit_or({c})", "and": f"bool_and({c})",
        "typed": f"COALESCE(any_value(NULLIF({c}, 'custom')), any_value({c}))",
        "new": f"last({c} ORDER BY _golem_seq) FILTER (WHERE {c} IS NOT NULL)",
        "patch": f"list_reduce(list({c} ORDER BY _golem_seq) FILTER (WHERE {c} IS NOT NULL), "
                 "lambda x, y: json_merge_patch(x, y))",
        "named": f"COALESCE(first({c} ORDER BY _golem_seq) FILTER (WHERE {c} IS NOT NULL AND {c} <> '{MCP_PLACEHOLDER}'), "
                 f"first({c} ORDER BY _golem_seq) FILTER (WHERE {c} IS NOT NULL))",
    }.get(policy, f"first({c} ORDER BY _golem_seq) FILTER (WHERE {c} IS NOT NULL)")


def _merge(table: str, col: str, policy: str, cols: Sequence[str]) -> str:
    return f"{ident(col)} = {_merged(table, col, policy, cols)}"


def _merged(table: str, col: str, policy: str, cols: Sequence[str]) -> str:
    """The value ``col`` of a stored row takes when the same fact arrives again (``EXCLUDED``, whose
    columns are ``cols``)."""
    c, t = ident(col), f"{ident(table)}.{ident(col)}"
    e = f"EXCLUDED.{c}"
    if policy == MACHINE_POLICY:  # the stored row's source_mask as it was: SET items read the row before the update
        if not _ranked(table):
            return f"least({t}, {e})"
        rt = source_rank(f"{ident(table)}.{ident('source_mask')}")
        re_ = source_rank(f"EXCLUDED.{ident('source_mask')}") if "source_mask" in cols else "0"
        return (f"CASE WHEN {e} IS NULL THEN {t} WHEN {t} IS NULL THEN {e} "
                f"WHEN ({re_}) > ({rt}) OR (({re_}) = ({rt}) AND {e} < {t}) THEN {e} ELSE {t} END")
    if policy == "max":
        return f"greatest({t}, {e})"
    if policy == "min":
        return f"least({t}, {e})"
    if policy == "or":
        return f"COALESCE({t}, 0) | COALESCE({e}, 0)"
    if policy == "and":
        return f"CASE WHEN {t} IS NULL THEN {e} WHEN {e} IS NULL THEN {t} ELSE {t} AND {e} END"
    if policy == "typed":
        return f"CASE WHEN {e} IS NOT NULL AND {e} <> 'custom' THEN {e} ELSE COALESCE({t}, {e}) END"
    if policy == "new":
        return f"COALESCE({e}, {t})"
    if policy == "patch":  # JSON objects: the new one's keys over the old one's (a native run's name and counts)
        return f"CASE WHEN {e} IS NULL THEN {t} WHEN {t} IS NULL THEN {e} ELSE json_merge_patch({t}, {e}) END"
    if policy == "named":  # a real tool name replaces Claude Code's redacted placeholder, never the reverse
        return f"CASE WHEN {t} IS NULL OR ({t} = '{MCP_PLACEHOLDER}' AND {e} IS NOT NULL) THEN {e} ELSE {t} END"
    return f"COALESCE({t}, {e})"


def _change_merge(table: str, cols: list[str], staged: Sequence[str]) -> str:
    """``_change_seq`` of a merged row: the write's number when the merge changes any column, else its own."""
    t = f"{ident(table)}.{ident(CHANGE_COLUMN)}"
    changed = " OR ".join(f"({_merged(table, c, column_policy(table, c), staged)}) IS DISTINCT FROM {ident(table)}.{ident(c)}"
                          for c in cols)
    return f"{ident(CHANGE_COLUMN)} = CASE WHEN {changed} THEN EXCLUDED.{ident(CHANGE_COLUMN)} ELSE {t} END"


def _owned(lock: Any) -> bool:
    """Whether the calling thread holds ``lock`` (a ``threading.RLock``)."""
    return bool(lock._is_owned())


def _release(writes: WriteQueue, memory: MemoryLimit) -> None:
    memory.close()
    writes.close(0)


class Store:
    """One DuckDB database. Writes go through :meth:`write` under a lock; reads use cursors."""

    # whether this machine's facts are recorded here (the team replica only reads the lake's)
    records_facts = True

    def __init__(self, path: str | Path, read_only: bool = False, settings: Settings | None = None,
                 machine: tuple[str, str] | None = None) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.settings = settings or Settings.load()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = self._open(read_only)
        # DuckDB's limit: the whole budget while heavy work runs, low otherwise (.memory)
        self.memory = MemoryLimit(self.con.cursor, self.memory_limit_mb,
                                  enabled=not read_only and self.path != ":memory:")
        self._lock = threading.RLock()
        self._writes = WriteQueue(self.write)  # the one writer behind submit()
        self._readers: set[Any] = set()  # cursors handed out by reader(): interrupted on close
        self._readers_lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}
        # rows per table, fetched when first needed and again every _ESTIMATE_WRITES writes (only a
        # choice of lookup rests on it: asking each write cost a statement, ~2 CPU-ms)
        self._estimates: dict[str, int] | None = None
        self._estimate_writes = 0
        self._changed: dict[str, set[Any]] = {}  # per write: fact table -> days its rows landed on
        self._stamped: set[tuple[str, Any]] | None = None  # (fact, day) rows in fact_changes, once read
        self._change: int | None = None  # this write's change number, taken when first needed
        # the machine this store's own writes were observed on (id, label); read-only stores write nothing
        self.machine_id, self.machine_label = machine or (("", "") if read_only else home.machine())
        self._owners = resolve.Owners()  # keys with stored facts (resolve_owners), cached
        self._tree = resolve.TreeCache()  # what the connection's agent tree was last built from
        self._staged: dict[str, _Staged | None] = {}  # tables _prefetch staged for the write in progress
        self._res: resolve.WriteResolution | None = None  # the resolver's state during a write
        self._prestaged: dict[str, list[Any]] | None = None  # a landed write's checked tables (land())
        self._fact_hooks: list[Callable[[duckdb.DuckDBPyConnection, dict[str, int]], None]] = []
        self.on_fact_changes(rollups.on_fact_changes)  # the rollups follow every change of a fact
        if not read_only:
            with self.memory.heavy():  # an old store's upgrade resolves and builds everything once
                self.migrate()
        self._load_types()
        self._inbox_lock = threading.Lock()
        self._inbox_next = 1  # the next write inbox number (land())
        self._inbox_kept = 0  # batches of the inbox its replay at this open could not write
        if not read_only and self.records_facts:
            self._write_inbox()
        # a store dropped without close() (or still open when the program ends) stops its writer
        # thread and its memory limit's timer; the connection closes with the store. (A timer left
        # to fire ran DuckDB statements for a store nobody held, and one firing as the interpreter
        # shut down aborted the process: duckdb/duckdb#13904)
        weakref.finalize(self, _release, self._writes, self.memory)
        if not read_only:
            self.note_machine(self.machine_id, self.machine_label)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """The store's connection: the database opened and configured."""
        con = self._connect(read_only)
        # a library and a daemon: DuckDB's terminal progress bar would write into our output (a
        # setting of the connection, so not among the database's above)
        con.execute("SET enable_progress_bar = false")
        return con

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the database (the team store opens a lake instead: store/team.py)."""
        try:
            return duckdb.connect(self.path, read_only=read_only, config=self._config(read_only))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise StoreBusy(
                    f"the database {self.path} is held by another process (the golem-mcp daemon, most "
                    "likely). Commands go through the daemon when it runs; if none runs, find the "
                    "process holding the file and stop it."
                ) from e
            raise GolemError(f"cannot open {self.path}: {e}") from e

    def _config(self, read_only: bool) -> dict[str, Any]:
        """DuckDB's settings for this database, fixed when it opens: agents send SQL to it.

        golem-mcp reads files in Python and hands DuckDB Arrow tables, so DuckDB itself never needs
        the file system beyond its own database, WAL and spill folder (which it still allows), nor the
        network or extensions. Turning that off database-wide makes ``read_text``, ``COPY``, ``ATTACH``
        of a file, ``INSTALL`` and any URL fail inside DuckDB whatever the SQL looks like, and DuckDB
        refuses to turn it back on while the database runs (``tests/test_memory_limit.py`` pins it).
        The one setting changed later is ``memory_limit``, by the store itself (:mod:`.memory`);
        agents' SQL runs as exactly one parsed SELECT, so it can issue no ``SET`` at all.
        """
        try:
            budget = max(256, int(self.settings.memory_budget_mb))
        except (TypeError, ValueError):  # a bad value in settings.json must not stop the daemon
            budget = Settings.memory_budget_mb
        self.memory_limit_mb = budget * 3 // 4
        config: dict[str, Any] = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            # DuckDB's buffers (caches, hash tables, aggregate states) beyond this spill or fail with
            # an out-of-memory error; the rest of the budget is Python's and the answers' own
            "memory_limit": f"{self.memory_limit_mb}MB",
        }
        if not read_only:
            # DuckDB checkpoints when the WAL passes 16 MB, and a checkpoint rewrites every primary
            # key index whole: under steady OTLP ingest that was two thirds of the commit cost, and it
            # grows with the store. A larger WAL means fewer of them (and a longer replay after a crash).
            config["checkpoint_threshold"] = "256MB"
        return config

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self, wait: float = 10.0) -> None:
        """Close the store. Reads still running on cursors (an analysis run, an agent's SQL) are
        interrupted first and given ``wait`` seconds to let go: DuckDB refuses to close a connection
        one of its cursors is busy on, and a daemon stopping mid-analysis aborted on that."""
        deadline = time.monotonic() + wait
        self.memory.close()
        self._writes.close(wait)  # what was submitted is written first
        self.interrupt_readers(max(0.0, deadline - time.monotonic()))
        # a write in flight (the analysis recording its run as failed) finishes first
        got = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        try:
            self.con.close()
        finally:
            if got:
                self._lock.release()

    def interrupt_readers(self, wait: float = 10.0) -> None:
        """Interrupt the reads running on cursors from ``reader()`` and wait up to ``wait`` seconds
        for their owners to let go (each sees ``duckdb.InterruptException``)."""
        deadline = time.monotonic() + wait
        with self._readers_lock:
            busy = list(self._readers)
        for cur in busy:
            with contextlib.suppress(Exception):  # already finished or closed: nothing to stop
                cur.interrupt()
        while busy and time.monotonic() < deadline:
            with self._readers_lock:
                if not self._readers:
                    break
            time.sleep(0.02)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> None:
        with self._lock:
            self.con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                             "applied_at TIMESTAMP DEFAULT current_timestamp)")
            # every migration not applied yet, not only those above the highest: a migration merged
            # with a lower number than one already applied still runs
            applied = {r[0] for r in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
            current = max(applied, default=0)
            if current > SCHEMA_VERSION:
                raise GolemError(f"{self.path} was written by a newer golem-mcp (schema {current}); upgrade golem-mcp")
            ran = False
            fresh = []
            for version, name in _migrations():
                if version in applied:
                    continue
                ran = True
                fresh.append(version)
                self.con.execute("BEGIN")
                try:
                    self.con.execute(_sql(name))
                    if version == MACHINE_MIGRATION and applied:
                        self._claim_unowned()
                    if version == 7 and applied:  # an existing store: its facts resolved below, in parts
                        self.con.execute(f"INSERT OR REPLACE INTO settings VALUES ('{_BACKFILL_PENDING}', 'yes')")
                    if version in FACT_MIGRATIONS and applied:
                        self._resolver_macros()
                        self._load_types()
                        resolve.backfill(self.con, self._types, tables=FACT_MIGRATIONS[version])
                    if applied and (version == rollups.MIGRATION or version in rollups.ADDED):
                        # an existing store's rollups, built once from its resolved facts (below)
                        self._mark_rollups([] if version == rollups.MIGRATION else list(rollups.ADDED[version]))
                    self.con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
                    self.con.execute("COMMIT")
                except Exception:
                    self.con.execute("ROLLBACK")
                    raise
                if version == 7:
                    self._backfill_resolved()
            self._ensure_tracking()
            if 7 not in fresh:
                self._backfill_resolved()  # a backfill cut short, finished now (the rollups follow it)
            if ran and self.path != ":memory:":
                # DuckDB 1.5.5 cannot replay a WAL holding 009's column defaults (nextval): a daemon
                # killed -9 before its first checkpoint could never open its store again
                self.con.execute("CHECKPOINT")
            self.con.execute(resolve.SQL["macros"])
            self._tree.forget()
            resolve.build_tree(self.con, ())  # the tree the resolver joins, empty until a write fills it
            self.con.execute(_sql("views.sql"))
            # the agent-facing tools ask about one workflow (its cost, its budget): its rollup groups by
            # index, where a scan of the rollups grew with the store (~5 CPU-ms per 1M requests)
            self.con.execute("CREATE INDEX IF NOT EXISTS rollup_requests_workflow ON rollup_requests (workflow_id)")
            # resolving facts reads their sessions' workflow links only: found by index, where the
            # primary key (session, time) gave no lookup and each re-resolution read every link
            self.con.execute("CREATE INDEX IF NOT EXISTS workflow_links_session ON workflow_links (session_id)")
            self._settle_resolution_inputs()
            self._build_marked_rollups()

    def _mark_rollups(self, facts: Sequence[str]) -> None:
        """Mark the rollups of ``facts`` (SPECS keys; empty: all) to be built whole, in the open
        transaction that made them stale; :meth:`_build_marked_rollups` builds them."""
        rows = self.con.execute("SELECT value FROM settings WHERE key = ?", [_ROLLUPS_PENDING]).fetchall()
        names = set(facts or rollups.SPECS) | (set(rows[0][0].split(",")) if rows else set())
        self.con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                         [_ROLLUPS_PENDING, ",".join(n for n in rollups.SPECS if n in names)])

    def rebuild_rollups(self) -> dict[str, int]:
        """Build every rollup whole from the resolved facts (for facts written around :meth:`write`,
        as the benchmarks' generated stores are); groups per rollup table."""
        with self.memory.heavy(), self._lock:
            self._in_transaction(lambda: self._mark_rollups([]))
            return self._build_marked_rollups()

    def _build_marked_rollups(self) -> dict[str, int]:
        """Build the marked rollups whole (:meth:`_mark_rollups`), a run of days at a time, each run
        committed and checkpointed: one transaction over a 10 M-request store's build held more than
        the default memory budget (out of memory at 1.4 GiB). The mark goes with the last run, so a
        store closed or killed mid-way builds them again at its next open, never answering from
        half-built rollups. Returns groups per rollup table; {} when none was marked."""
        rows = self.con.execute("SELECT value FROM settings WHERE key = ?", [_ROLLUPS_PENDING]).fetchall()
        if not rows:
            return {}
        names = [n for n in rows[0][0].split(",") if n in rollups.SPECS]
        out: dict[str, int] = {}
        big = sum(self.con.execute(f"SELECT count(*) FROM {ident(rollups.SPECS[n].fact)}").fetchone()[0]  # type: ignore[index]
                  for n in names) > 100_000
        if big:
            resolve.stderr_progress(f"building the rollups of {', '.join(names)} ...")

        def build() -> None:
            out.update(rollups.build(self.con, names, commit=self._commit_and_begin,
                                     progress=resolve.stderr_progress if big else None))
            self.con.execute("DELETE FROM settings WHERE key = ?", [_ROLLUPS_PENDING])

        self._in_transaction(build)
        return out

    def _in_transaction(self, fn: Callable[[], Any]) -> None:
        self.con.execute("BEGIN")
        try:
            fn()
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def _resolver_macros(self) -> None:
        """The resolver's macros on a store mid-way through its migrations: the columns they read
        that a later migration adds first (RESOLVER_INPUT_MIGRATIONS)."""
        for name in RESOLVER_INPUT_MIGRATIONS:
            self.con.execute(_sql(name))
        self.con.execute(resolve.SQL["macros"])

    def _backfill_resolved(self) -> bool:
        """Migration 007 on a store with facts: resolve them all once (progress on stderr when big), in
        parts each committed, so memory stays bounded; a store closed or killed mid-way carries on at
        its next open (the pending mark goes only with the last part). Returns whether it ran."""
        if not self.con.execute("SELECT 1 FROM settings WHERE key = ?", [_BACKFILL_PENDING]).fetchall():
            return False
        self._resolver_macros()
        self._load_types()
        rows = self.con.execute("SELECT " + " + ".join(f"(SELECT count(*) FROM {ident(t)})" for t in resolve.FACTS if t in self._types)).fetchone()
        big = bool(rows and rows[0] > 100_000)
        def backfill() -> None:
            resolve.backfill(self.con, self._types, resolve.stderr_progress if big else None,
                             commit=self._commit_and_begin)
            self._mark_rollups([])  # the rollups group resolved columns: built whole after it
            self.con.execute("DELETE FROM settings WHERE key = ?", [_BACKFILL_PENDING])

        self._in_transaction(backfill)
        return True

    def _commit_and_begin(self) -> None:
        self.con.execute("COMMIT")
        if self.path != ":memory:":
            self.con.execute("CHECKPOINT")  # the part's rows to the file: out of the memory budget
        self.con.execute("BEGIN")

    def _settle_resolution_inputs(self) -> None:
        """Write the main stage setting and the price table (both read by the resolver) and, when either
        differs from what the stored facts were resolved with, re-resolve the facts concerned."""
        self.con.execute("BEGIN")
        try:
            old_stage = self.con.execute("SELECT value FROM settings WHERE key = 'main_stage'").fetchall()
            old_prices = set(self.con.execute("SELECT * EXCLUDE (as_of, source) FROM prices").fetchall())
            self.con.execute("INSERT OR REPLACE INTO settings VALUES ('main_stage', ?)", [self.settings.main_stage])
            self._load_prices()
            new_prices = set(self.con.execute("SELECT * EXCLUDE (as_of, source) FROM prices").fetchall())
            scope = resolve.Scope(models={p[0] for p in old_prices ^ new_prices},
                                  main_thread=bool(old_stage) and old_stage[0][0] != self.settings.main_stage)
            if scope:
                self._load_types()
                self._change = None
                res = resolve.WriteResolution(self.con, self._types, self._owners, track=False, change=self._change_number)
                res.scope = scope
                res.finish()
                if res.rescoped:  # the analysis' per-day aggregates hold resolved costs and stages: built again
                    self.con.execute("DELETE FROM analysis_cache_state WHERE name = 'facts'")
                    self._mark_rollups([])  # so are the rollups (a price or main stage change: rare, at open)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def resolve_all(self, progress: Callable[[str], None] | None = None) -> None:
        """Resolve every stored fact from scratch, in parts each committed: for facts written around
        :meth:`write` (plain SQL, generated stores); :meth:`write` keeps them resolved otherwise."""
        with self.memory.heavy(), self._lock:
            if self.path != ":memory:":
                self.con.execute("CHECKPOINT")  # rows written around write() (plain SQL) to the file first

            def resolve_and_rebuild() -> None:
                resolve.backfill(self.con, self._types, progress, commit=self._commit_and_begin)
                # the analysis' per-day aggregates and the rollups group by resolved columns: built again
                self.con.execute("DELETE FROM analysis_cache_state WHERE name = 'facts'")
                self._mark_rollups([])

            self._in_transaction(resolve_and_rebuild)
            self._build_marked_rollups()

    def load_resolved(self, tables: dict[str, Callable[[], Iterable[Any]]]) -> dict[str, int]:
        """Fill the empty store from bulk rows, each fact resolved as it goes in (one pass: resolving
        after the fact UPDATEs every row, which at 10 M requests took minutes per 200k rows).

        ``tables``: table -> a callable giving the table's rows as Arrow record batches (columns:
        some of the table's own); context tables are loaded before facts whatever the order. Then
        the rollups and the resolver's owner list are built from the facts. One transaction: a load
        cut short leaves the store as it was. Returns rows loaded per table."""
        order = [t for t in WRITE_ORDER if t in tables and t not in resolve.FACTS] + \
                [t for t in tables if t not in WRITE_ORDER and t not in resolve.FACTS]
        facts = [t for t in resolve.FACTS if t in tables]
        out: dict[str, int] = {}
        with self.memory.heavy(), self._lock:
            self._load_types()

            def load() -> None:
                def insert(table: str, into: str, resolved: bool) -> None:
                    n = 0
                    for part in tables[table]():
                        self.con.register("_golem_bulk", part)
                        try:
                            cols = [c for c in part.schema.names if c in self._types[table]]
                            src = f"SELECT {', '.join(ident(c) for c in cols)} FROM _golem_bulk"
                            if resolved:
                                sql = resolve.resolved_rows(table, self._types[table], cols, src)
                                self.con.execute(f"INSERT INTO {into} {sql}")
                            else:
                                self.con.execute(f"INSERT INTO {into} ({', '.join(ident(c) for c in cols)}) {src}")
                        finally:
                            self.con.unregister("_golem_bulk")
                        n += part.num_rows
                    out[table] = n

                for t in order:
                    insert(t, ident(t), resolved=False)
                # the agent tree reads tool calls (an agent's spawning call): they go in first as they
                # are, and are then resolved in one pass like the other facts
                if "tool_calls" in facts:
                    insert("tool_calls", ident("tool_calls"), resolved=False)
                self._tree.forget()
                resolve.build_tree(self.con, None)
                if "tool_calls" in facts:
                    own = ", ".join(ident(c) for c in resolve.fact_columns(self._types["tool_calls"]))
                    self.con.execute(f"CREATE OR REPLACE TEMP TABLE _golem_bulk_tools AS SELECT {own} FROM tool_calls")
                    self.con.execute("DELETE FROM tool_calls")
                    self.con.execute(f"INSERT INTO tool_calls {resolve.resolved_rows('tool_calls', self._types['tool_calls'], resolve.fact_columns(self._types['tool_calls']), 'SELECT * FROM _golem_bulk_tools')}")
                    self.con.execute("DROP TABLE _golem_bulk_tools")
                for t in facts:
                    if t != "tool_calls":
                        insert(t, ident(t), resolved=True)
                resolve.record_owners(self.con)
                self.con.execute("DELETE FROM analysis_cache_state WHERE name = 'facts'")
                self._mark_rollups([])

            self._in_transaction(load)
            self._build_marked_rollups()
            self._tree.forget()
            resolve.build_tree(self.con, ())  # the tree the resolver joins, empty until a write fills it
        return out

    def on_fact_changes(self, hook: Callable[[duckdb.DuckDBPyConnection, dict[str, int]], None]) -> None:
        """Call ``hook(con, {fact table: changed rows})`` inside every write's transaction, after the
        facts are resolved and before the commit, when the write changed facts. The rows are in the
        temporary tables ``golem_delta_old_<table>`` (as stored before) and ``golem_delta_new_<table>``
        (as stored now); see :mod:`golem_mcp.store.resolve`. An exception rolls the write back."""
        self._fact_hooks.append(hook)

    def _claim_unowned(self) -> None:
        """Facts stored before machines were tracked were observed here: they get this machine's id."""
        for t in MACHINE_TABLES:
            if self._has_column(t, "machine_id"):
                self.con.execute(f"UPDATE {ident(t)} SET machine_id = ? WHERE machine_id IS NULL", [self.machine_id])

    def _has_column(self, table: str, column: str) -> bool:
        row = self.con.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'main' "
                               "AND table_name = ? AND column_name = ?", [table, column]).fetchone()
        return bool(row and row[0])

    def _ensure_tracking(self) -> None:
        """009's two columns on the tables later migrations added (010's compaction_events, ...): a
        machine_id (rows already there were observed here) and a _change_seq (1: before tracking)."""
        have = set(self.con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = 'main'").fetchall())
        tables = {t for t, _ in have}
        todo = [(t, "machine_id") for t in MACHINE_TABLES if t in tables and (t, "machine_id") not in have]
        todo += [(t, CHANGE_COLUMN) for t in CHANGE_TABLES if t in tables and (t, CHANGE_COLUMN) not in have]
        if not todo:
            return
        self.con.execute("BEGIN")
        try:
            for t, c in todo:  # every ALTER before any UPDATE: DuckDB refuses a table altered after an update
                if c == "machine_id":
                    self.con.execute(f"ALTER TABLE {ident(t)} ADD COLUMN machine_id VARCHAR")
                else:
                    self.con.execute(f"ALTER TABLE {ident(t)} ADD COLUMN {ident(c)} BIGINT DEFAULT 1")
                    self.con.execute(f"ALTER TABLE {ident(t)} ALTER COLUMN {ident(c)} SET DEFAULT nextval('change_seq')")
            for t, c in todo:
                if c == "machine_id":
                    self.con.execute(f"UPDATE {ident(t)} SET machine_id = ?", [self.machine_id])
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def note_machine(self, machine_id: str, label: str | None, first: Any = None, last: Any = None) -> None:
        """Record a machine (this store's own at open, a shard's at import) in ``machines``."""
        if not machine_id:
            return
        from datetime import UTC, datetime

        now = datetime.now(UTC).replace(tzinfo=None)
        self.write(Batch(rows={"machines": [{"machine_id": machine_id, "label": label,
                                             "first_seen": first or now, "last_seen": last or now}]}))

    def _load_prices(self) -> None:
        table = json.loads(resources.files("golem_mcp.store").joinpath("prices.json").read_text())
        rows = {m: (p, table["as_of"], "bundled") for m, p in table["models"].items()}
        if self.settings.price_file:
            try:
                override = json.loads(Path(self.settings.price_file).expanduser().read_text())
            except (OSError, ValueError) as e:
                raise GolemError(f"price file {self.settings.price_file} is unreadable: {e}; fix or unset it") from e
            for m, p in override.get("models", {}).items():
                rows[m] = (p, override.get("as_of", "user"), "user")
        self.con.execute("DELETE FROM prices")
        self.con.executemany(
            "INSERT INTO prices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[m, p.get("input"), p.get("output"), p.get("cache_read"), p.get("cache_write_5m"),
              p.get("cache_write_1h", p.get("cache_write_5m")), as_of, src] for m, (p, as_of, src) in rows.items()],
        )

    def _load_types(self) -> None:
        rows = self.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
        self._types = {}
        for t, c, dt in rows:
            self._types.setdefault(t, {})[c] = dt
        self._specs = {t: checks.TableSpec(t, types, KEYS[t], resolved=t in resolve.FACTS, redacted=t not in NOT_REDACTED,
                                           keep_payload=self.settings.keep_hook_payloads)
                       for t, types in self._types.items() if t in KEYS}

    # -- writing ---------------------------------------------------------------------------------
    def submit(self, batch: Batch) -> Future[dict[str, int]]:
        """Queue ``batch`` for the store's one writer thread, which commits queued batches together
        (:mod:`.writer`); the future resolves once its rows are committed, as :meth:`write` returns.
        The daemon's every source of facts writes through here."""
        return self._writes.submit(batch)

    def coming(self) -> contextlib.AbstractContextManager[None]:
        """``with store.coming(): ...decode...; store.submit(batch)``: a batch is on its way, so a
        write starting meanwhile waits for it (:meth:`.writer.WriteQueue.coming`)."""
        return self._writes.coming()

    @property
    def commits(self) -> int:
        """Transactions :meth:`submit` committed so far (what changed since a caller last looked)."""
        return self._writes.commits

    def landed_rows(self) -> int:
        """Rows of landed batches (:meth:`land`) submitted and not yet written."""
        return self._writes.landed_rows

    def wait_landed_below(self, rows: int) -> None:
        """Wait until the landed batches not yet written hold at most ``rows`` rows."""
        self._writes.wait_landed_below(rows)

    def land(self, batch: Batch) -> int | None:
        """Check and redact ``batch``'s rows as its write will, and commit them to the write inbox
        (:mod:`.inbox`) in a transaction of their own, before the write that resolves them.

        Problems the checks find are added to ``batch.skipped`` now, so a caller answering before
        the write counts them; the rows left in ``batch`` are the checked, redacted ones. Returns
        the batch's inbox number (also added to ``batch.landed``; its write deletes the rows in its
        own transaction), or None when no row is left to write. Then :meth:`submit` it."""
        return self._commit_landed(batch, checks.land(batch, self._specs))

    def land_checked(self, blobs: Sequence[tuple[str, bytes]], skipped: Sequence[Skipped] = ()) -> Batch:
        """The batch another process checked and encoded (:func:`.checks.land` with
        :meth:`check_specs`: a decoding worker), committed to the write inbox as :meth:`land` does;
        its rows are the staged tables' (what a replay at open reads too). Then :meth:`submit` it."""
        batch = Batch(skipped=list(skipped))
        for t, blob in blobs:
            if t not in self._specs:
                raise ValueError(f"unknown table {t}")
            inbox.add_to(batch, t, blob)
        self._commit_landed(batch, blobs)
        return batch

    def check_specs(self) -> dict[str, checks.TableSpec]:
        """What checking each table's rows needs (plain data a decoding worker can be given)."""
        return dict(self._specs)

    def _commit_landed(self, batch: Batch, blobs: Sequence[tuple[str, bytes]]) -> int | None:
        if not blobs:
            return None
        with self._inbox_lock:
            seq = self._inbox_next
            self._inbox_next += 1
        cur = self.con.cursor()
        try:
            cur.execute("INSERT INTO write_inbox (seq, table_name, rows) VALUES "
                        + ", ".join(["(?, ?, ?)"] * len(blobs)), [v for t, b in blobs for v in (seq, t, b)])
        finally:
            cur.close()
        batch.landed.append(seq)
        return seq

    def _write_inbox(self) -> None:
        """Write the batches a process before left in the inbox (landed, not yet written), first."""
        rows = self.con.execute("SELECT seq, table_name, rows FROM write_inbox ORDER BY seq").fetchall()
        self._inbox_next = max((r[0] for r in rows), default=0) + 1
        if not rows:
            return
        batches: dict[int, Batch] = {}
        for seq, table, blob in rows:
            inbox.add_to(batches.setdefault(seq, Batch(landed=[seq])), table, blob)
        merged = Batch()
        for b in batches.values():
            merged.extend(b)
        failed = 0
        try:
            self.write(merged)
        except Exception:  # noqa: BLE001 - one by one, so one that cannot be written keeps no other back
            for seq, b in batches.items():
                try:
                    self.write(b)
                except Exception:  # noqa: BLE001 - the store opens all the same; the rows stay for the next start
                    failed += 1
                    log.exception("a batch accepted before the last stop (write inbox %d) could not be "
                                  "written; it stays in the inbox and is tried again at the next start", seq)
        self._inbox_kept = failed
        log.info("wrote %d of the %d batches accepted before the last stop", len(batches) - failed, len(batches))

    def inbox_state(self) -> dict[str, int]:
        """The write inbox as a user would ask of it: ``rows_not_written``, rows answered and not yet
        written (a backlog the writer is working through); ``batches_kept``, batches accepted before
        a stop that the open could not write (kept, tried again at every writable open). A read-only
        store counts every batch it holds as kept: only a writable open writes them."""
        if not self.read_only:
            return {"rows_not_written": self.landed_rows(), "batches_kept": self._inbox_kept}
        try:
            with self.reader() as cur:
                row = cur.execute("SELECT count(DISTINCT seq) FROM write_inbox").fetchone()
        except duckdb.CatalogException:  # a store from before the inbox, opened read-only (not migrated)
            return {"rows_not_written": 0, "batches_kept": 0}
        return {"rows_not_written": 0, "batches_kept": int(row[0]) if row else 0}

    def write(self, batch: Batch, report: checks.Report | None = None,
              shards: Sequence[tuple[str, str, int]] = ()) -> dict[str, int]:
        """Write every row of ``batch`` in one transaction; returns rows offered per table.

        Every value is checked first (:mod:`.checks`): a bad one is stored as NULL or its row left
        out, and reported to ``report(row, problem)``, by default added to ``batch.skipped``.
        ``shards``: the shard files (name, machine, rows) this batch was read from, listed in
        ``imported_shards`` in the same transaction (see :mod:`golem_mcp.store.shards`).
        """
        if report is None:
            def report(row: dict, problem: Skipped) -> None:
                batch.skipped.append(problem)
        # each problem reported once, should the write run twice (below)
        told: set[tuple[int, str, int | None, str, bool]] = set()

        def noted(row: dict, problem: Skipped) -> None:
            key = (id(row), problem.source, problem.line, problem.reason, problem.dropped)
            if key not in told:
                told.add(key)
                report(row, problem)
        # a large write has the whole budget; one that runs out at the low limit runs again (its
        # transaction rolled back whole; its problems reported once, above)
        with self.memory.heavy() if batch.count() >= self.HEAVY_WRITE_ROWS else contextlib.nullcontext():
            return self.memory.run(lambda: self._write(batch, noted, shards))

    def _write(self, batch: Batch, report: checks.Report,
               shards: Sequence[tuple[str, str, int]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        tables = [t for t in WRITE_ORDER if batch.rows.get(t)] + [t for t in batch.rows if t not in WRITE_ORDER and batch.rows[t]]
        if not tables and not shards:
            return counts
        with self._lock:
            self.con.execute("BEGIN")
            try:
                self._estimate_writes += 1
                if self._estimate_writes >= self._ESTIMATE_WRITES:
                    self._estimates, self._estimate_writes = None, 0
                self._changed = {}
                self._change = None
                self._prestaged = batch.staged if batch.landed else None
                hooks = list(self._fact_hooks)
                first = self._first_facts(hooks)
                res = self._res = resolve.WriteResolution(self.con, self._types, self._owners,
                                                          track=bool(hooks) and not first, change=self._change_number,
                                                          tree=self._tree)
                res.begin(batch.rows)
                resolving = False
                for i, t in enumerate(tables):
                    if t in resolve.FACTS and not resolving:
                        res.context_written(batch.rows)  # facts are written after all their context
                        resolving = True
                    if t in _PREFETCHED and t not in self._staged and (i == 0 or tables[i - 1] not in _PREFETCHED):
                        run = list(itertools.takewhile(lambda x: x in _PREFETCHED, tables[i:]))
                        if len(run) > 1:
                            self._prefetch(run, batch.rows, report)
                    counts[t] = self._upsert(t, batch.rows[t], report)
                if shards:
                    self.con.executemany("INSERT OR REPLACE INTO imported_shards VALUES (?, ?, ?, ?, current_timestamp)",
                                         [[n, m, r, self._change_number()] for n, m, r in shards])
                if batch.landed:  # written now: out of the inbox, in the same transaction
                    self.con.execute(f"DELETE FROM write_inbox WHERE seq IN ({', '.join('?' * len(batch.landed))})",
                                     batch.landed)
                if not resolving:
                    res.context_written({})
                changed = res.finish()
                self._note_resolved_days(res.rescoped)
                if first:
                    if built := rollups.of_facts(changed):
                        rollups.build(self.con, built)
                elif hooks and changed:
                    for hook in hooks:
                        hook(self.con, changed)
                added = self._stamp_changes()
                self.con.execute("COMMIT")
            except Exception:
                self._tree.forget()  # the rollback took the tree this write built with it
                self.con.execute("ROLLBACK")
                raise
            finally:
                self._res = None
                self._prestaged = None
                for st in self._staged.values():  # staged by _prefetch, not written (the write failed)
                    if st is not None:
                        self.con.unregister(st.name)
                self._staged.clear()
            self._tree.committed()
            self.memory.after_write()
            if self._stamped is not None:
                self._stamped |= added  # only once committed: a rolled-back insert left no row
            self._owners.remember(res.new_owners)
        return counts

    def _first_facts(self, hooks: list[Callable[[duckdb.DuckDBPyConnection, dict[str, int]], None]]) -> bool:
        """Whether this write brings the store's first facts while only the rollups follow fact changes:
        its change set would then be a copy of every fact it inserts, so the rollups are built from the
        tables after the insert instead (one GROUP BY each: a first import of 1 GB spent ~0.3 CPU-s
        copying 100,000 rows into the change set and reading them back)."""
        if hooks != [rollups.on_fact_changes] or self._owners.any(self.con):
            return False
        # (resolve_owners is empty in a store whose facts were written around write(): look at the tables)
        row = self.con.execute("SELECT " + " + ".join(
            f"(SELECT count(*) FROM (SELECT 1 FROM {ident(t)} LIMIT 1))" for t in rollups.FACTS)).fetchone()
        return not (row and row[0])

    def _upsert(self, table: str, rows: list[dict], report: checks.Report) -> int:
        """Merge ``rows`` into ``table`` by its keys, exactly as one INSERT .. ON CONFLICT would.

        Most rows are new (OTLP records, a first import), and DuckDB's ON CONFLICT costs several
        times a plain INSERT, growing with the table (~90 ms per 500 rows at 2M rows). So the keys
        already stored are looked up first; rows with new keys go in with a plain INSERT and only
        the others take the ON CONFLICT merge. Rows sharing a key inside the batch are folded by
        GROUP BY with the column policies first (skipped when keys are unique, the common case).
        """
        st = self._staged.pop(table) if table in self._staged else self._stage(table, rows, report)
        if st is not None:
            self._apply(st)
        return len(rows)

    def _checked(self, table: str, rows: list[dict],
                 report: checks.Report) -> tuple[list[str], Any, list[dict], list[Any]] | None:
        """``rows`` checked and redacted (:func:`.checks.checked`): what every write does to its rows
        first, and :meth:`land` before the write."""
        return checks.checked(self._specs[table], rows, report)

    def _landed(self, table: str, rows: list[dict]) -> tuple[list[str], Any, list[dict], list[Any]] | None:
        """What :meth:`_checked` gives for ``rows``, from the tables :meth:`land` checked them into,
        when every row of the write came that way (None: check them here)."""
        tables = self._prestaged.get(table) if self._prestaged else None
        if not tables or sum(t.num_rows for t in tables) != len(rows):
            return None
        import pyarrow as pa
        stg = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        cols = [c for c in self._types[table] if c in stg.column_names]
        stg = stg.select(cols)
        keys = KEYS[table]
        key_cols = [stg.column(k).to_pylist() for k in keys]
        kv = key_cols[0] if len(keys) == 1 else list(zip(*key_cols, strict=True))
        return cols, stg, rows, kv

    def _stage(self, table: str, rows: list[dict], report: checks.Report) -> _Staged | None:
        """``rows`` checked, redacted and registered as ``_stg_<table>`` (None: no row to write)."""
        checked = self._landed(table, rows) or self._checked(table, rows, report)
        if checked is None:
            return None
        cols, stg, kept, kv = checked
        import pyarrow as pa
        if table in MACHINE_TABLES and self.machine_id:
            stg, cols = self._stamp_machine(stg, cols)
        stg = stg.append_column("_golem_seq", pa.array(range(len(kept)), type=pa.int64()))
        name = f"_stg_{table}"
        self.con.register(name, stg)
        return _Staged(table, cols, stg, kept, kv, len(set(kv)), name)

    def _lookup(self, st: _Staged) -> bool:
        """Whether ``st``'s keys are looked up in its table before it is written (else ON CONFLICT)."""
        return (st.table in resolve.FACTS and self._res is not None) or st.n_keys > self._SMALL

    def _prefetch(self, tables: Sequence[str], rows: dict[str, list[dict]], report: checks.Report) -> None:
        """Stage ``tables`` (the facts and raw events of a write, in order) and find the keys they
        hold already in one statement for all of them, where each would have taken one (a four-body
        OTLP write: requests, tool calls and events, ~5 CPU-ms a statement). :meth:`_upsert` takes
        them from there."""
        joins: list[tuple[_Staged, str]] = []
        for t in tables:
            st = self._staged[t] = self._stage(t, rows[t], report)  # (None: no row to write, reported)
            if st is not None and self._lookup(st):
                sql = self._existing_join(t, KEYS[t], st.kv)
                if sql is not None:
                    joins.append((st, sql.replace("{staged}", st.name)))
        if len(joins) < 2:
            return  # one lookup: asked in its own write as before
        found = self.con.execute(" UNION ALL ".join(f"SELECT {i} AS t, * FROM ({sql})" for i, (_, sql) in enumerate(joins))
                                 ).fetchall()
        existing: list[set[Any]] = [set() for _ in joins]
        for i, seq in found:
            existing[i].add(joins[i][0].kv[seq])
        for (st, _), keys in zip(joins, existing, strict=True):
            st.existing = keys

    def _apply(self, st: _Staged) -> None:
        """Write the staged rows ``st`` (see :meth:`_upsert`)."""
        table, cols, stg, kept, kv, n_keys, name = st.table, st.cols, st.stg, st.kept, st.kv, st.n_keys, st.name
        import pyarrow as pa
        keys = KEYS[table]
        try:
            if table == "tool_calls" and self._res is not None and ("agent_id" in cols or "session_id" in cols):
                self._res.note_tool_calls(kept)
            if table in resolve.FACTS and self._res is not None:
                existing = st.existing if st.existing is not None else self._existing(table, keys, kv, name)
                if existing:  # the stored rows of these keys, kept as they are before the merge (the change set)
                    self._res.before_merge(table, sorted(existing))
            elif n_keys <= self._SMALL:
                # a few keys: ON CONFLICT is as cheap as the lookup it would save
                self._insert(table, cols, name, n_keys != len(kv), merge=True)
                return
            else:
                existing = st.existing if st.existing is not None else self._existing(table, keys, kv, name)
            if not existing:
                self._note_new_days(table, stg)
                self._insert(table, cols, name, n_keys != len(kv), merge=False, sessions=_sessions(stg))
            elif len(existing) == n_keys:
                self._insert(table, cols, name, n_keys != len(kv), merge=True)
            else:
                old = [k in existing for k in kv]
                n_old = sum(old)
                for part, mask, dups in (("new", [not o for o in old], n_keys - len(existing) != len(kv) - n_old),
                                         ("old", old, len(existing) != n_old)):
                    sub = f"{name}_{part}"
                    rows_part = stg.filter(pa.array(mask, type=pa.bool_()))
                    if part == "new":
                        self._note_new_days(table, rows_part)
                    self.con.register(sub, rows_part)
                    try:
                        self._insert(table, cols, sub, dups, merge=part == "old",
                                     sessions=_sessions(rows_part) if part == "new" else None)
                    finally:
                        self.con.unregister(sub)
        finally:
            self.con.unregister(name)

    def _stamp_machine(self, stg: Any, cols: list[str]) -> tuple[Any, list[str]]:
        """Rows observed here get this machine's id; rows that name their machine (a shard's) keep it."""
        import pyarrow as pa
        if "machine_id" in stg.column_names:
            import pyarrow.compute as pc

            i = stg.schema.get_field_index("machine_id")
            return stg.set_column(i, "machine_id", pc.fill_null(stg.column(i), self.machine_id)), cols
        stg = stg.append_column("machine_id", pa.array([self.machine_id] * stg.num_rows, type=pa.string()))
        return stg, [*cols, "machine_id"]

    def _change_number(self) -> int:
        """This write's change number (see CHANGE_TABLES): taken from change_seq at its first use in a
        write, under the write lock, so a higher number never commits before a lower one."""
        if self._change is None:
            row = self.con.execute("SELECT nextval('change_seq')").fetchone()
            self._change = int(row[0]) if row else 0
        return self._change

    def _note_resolved_days(self, tables: set[str]) -> None:
        """The days of the fact rows the resolver re-resolved (their resolved context is part of what
        the analysis' per-day cache groups by)."""
        for t in tables:
            if t in FACT_TABLES:
                rows = self.con.execute(f"SELECT DISTINCT {FACT_DAY_SQL} FROM {ident('_res_cur_' + t)} UNION "
                                        f"SELECT DISTINCT {FACT_DAY_SQL} FROM {ident('_res_out_' + t)}").fetchall()
                self._changed.setdefault(t, set()).update(NO_DAY if r[0] is None else r[0] for r in rows)

    def _note_new_days(self, table: str, staged: Any) -> None:
        """The days new rows of a fact table land on, read off their staged (arrow) timestamps."""
        if table not in FACT_TABLES:
            return
        import pyarrow as pa
        if "timestamp" in staged.column_names:
            import pyarrow.compute as pc

            days = pc.unique(pc.cast(staged.column("timestamp"), pa.date32())).to_pylist()
        else:
            days = [None]
        self._changed.setdefault(table, set()).update(NO_DAY if d is None else d for d in days)

    # an IN list of bound keys is answered from the primary-key index, at ~25 us a key whatever the
    # table's size; a join with the staged keys scans the key column (~40 ns a stored row). Past
    # this many stored rows per key the IN list is cheaper.
    _IN_LIST_ROWS_PER_KEY = 600
    _IN_LIST_CHUNK = 2000  # DuckDB uses the index for at most index_scan_max_count (2048) keys
    # up to this many keys DuckDB's ON CONFLICT probes the index (~7 ms at 2M rows); at 500 keys
    # it costs ~90 ms there, against ~4 ms for a plain INSERT
    _SMALL = 32
    # a write of this many rows or more (an import's, a replica's catch-up) has DuckDB's whole budget
    HEAVY_WRITE_ROWS = 20_000
    _ESTIMATE_WRITES = 32

    def _existing(self, table: str, keys: tuple[str, ...], kv: list[Any], staged: str) -> set[Any]:
        """The keys among ``kv`` (the rows of the registered table ``staged``) already in ``table``."""
        t = ident(table)
        if len(keys) == 1 and self._types[table][keys[0]] == "VARCHAR":
            distinct = list(dict.fromkeys(kv))
            if self._estimates is None:
                self._estimates = self._row_estimates()
            if self._estimates.get(table, 0) > self._IN_LIST_ROWS_PER_KEY * len(distinct):
                k = ident(keys[0])
                out: set[Any] = set()
                for i in range(0, len(distinct), self._IN_LIST_CHUNK):
                    part = [str(v) for v in distinct[i:i + self._IN_LIST_CHUNK]]
                    found = self.con.execute(f"SELECT {k} FROM {t} WHERE {k} IN ({', '.join('?' * len(part))})",
                                             part).fetchall()
                    out.update(r[0] for r in found)
                return {v for v in distinct if str(v) in out}
        # stored values come back as DuckDB types (a TIMESTAMP key as datetime): match by position
        pos = self.con.execute(self._join_sql(table, keys).replace("{staged}", staged)).fetchall()
        return {kv[r[0]] for r in pos}

    def _existing_join(self, table: str, keys: tuple[str, ...], kv: list[Any]) -> str | None:
        """The SELECT :meth:`_existing` would answer by (positions of the staged rows ``{staged}``
        whose keys are stored), or None when it would ask by IN lists instead."""
        if len(keys) == 1 and self._types[table][keys[0]] == "VARCHAR":
            if self._estimates is None:
                self._estimates = self._row_estimates()
            if self._estimates.get(table, 0) > self._IN_LIST_ROWS_PER_KEY * len(set(kv)):
                return None
        return self._join_sql(table, keys)

    @staticmethod
    def _join_sql(table: str, keys: tuple[str, ...]) -> str:
        t = ident(table)
        on = " AND ".join(f"s.{ident(k)} = {t}.{ident(k)}" for k in keys)
        return f"SELECT s._golem_seq FROM {{staged}} s JOIN {t} ON {on}"

    def _row_estimates(self) -> dict[str, int]:
        """Rows per table, roughly: DuckDB's own estimate, which it keeps without a scan."""
        rows = self.con.execute("SELECT table_name, estimated_size FROM duckdb_tables() "
                                "WHERE schema_name = 'main'").fetchall()
        return {t: int(n or 0) for t, n in rows}

    def _insert(self, table: str, cols: list[str], staged: str, dups: bool, merge: bool,
                sessions: list[str] | None = None) -> None:
        """INSERT the registered ``staged`` rows: folded by key first when ``dups``; merged into
        stored rows when ``merge``. ``sessions``: the staged rows' session ids, when known (new
        facts resolve against those sessions' workflow links)."""
        keys = KEYS[table]
        non_keys = [c for c in cols if c not in keys]
        key_list = ", ".join(ident(k) for k in keys)
        col_list = ", ".join(ident(c) for c in cols)
        tracked = CHANGE_COLUMN in self._types[table]
        params: list[Any] = [self._change_number()] if tracked else []
        change = f", ? AS {ident(CHANGE_COLUMN)}" if tracked else ""
        if dups:
            sel = ", ".join([ident(k) for k in keys] + [f"{_agg(c, column_policy(table, c), table, cols)} AS {ident(c)}" for c in non_keys])
            src = f"SELECT {sel}{change} FROM {staged} GROUP BY {key_list}"
        else:
            src = f"SELECT {col_list}{change} FROM {staged}"
        if not merge and table in resolve.FACTS and self._res is not None:
            # new facts: resolved as they go in
            self._res.insert(table, cols + ([CHANGE_COLUMN] if tracked else []), src, params, sessions)
            return
        sql = f"INSERT INTO {ident(table)} ({col_list}{', ' + ident(CHANGE_COLUMN) if tracked else ''}) {src}"
        if merge:
            if non_keys:
                sql += f" ON CONFLICT ({key_list}) DO UPDATE SET " + ", ".join(
                    [_merge(table, c, column_policy(table, c), cols) for c in non_keys]
                    + ([_change_merge(table, non_keys, cols)] if tracked else []))
            else:
                sql += f" ON CONFLICT ({key_list}) DO NOTHING"
        if table not in FACT_TABLES:
            self.con.execute(sql, params)
            return
        if not merge:
            self.con.execute(sql, params)  # new rows: _note_new_days took their days from the staged batch
            return
        # a merged row keeps its stored day or moves to the batch's (timestamp policy min): the day
        # it ends on is the one stamped (the day it left shows in the analysis' day counts)
        self._changed.setdefault(table, set()).update(
            NO_DAY if r[0] is None else r[0]
            for r in self.con.execute(f"{sql} RETURNING {FACT_DAY_SQL}", params).fetchall())

    def _stamp_changes(self) -> set[tuple[str, Any]]:
        """Stamp the days this write's facts landed on with a new sequence number, in its transaction
        (an UPDATE of the days stamped before, an INSERT of new ones: cheaper than ON CONFLICT, which
        cost ~4 ms a write). Returns the (fact, day) rows it inserted."""
        pairs = {(t, d) for t, days in self._changed.items() for d in days}
        if not pairs:
            return set()
        if self._stamped is None:
            self._stamped = {(f, d) for f, d in self.con.execute("SELECT fact, day FROM fact_changes").fetchall()}
        old, new = pairs & self._stamped, pairs - self._stamped
        if old:
            self.con.execute("UPDATE fact_changes SET seq = nextval('fact_change_seq') "
                             "WHERE list_contains(?::VARCHAR[], fact || '/' || CAST(day AS VARCHAR))",
                             [[f"{f}/{d.isoformat()}" for f, d in old]])
        if new:
            self.con.execute("INSERT INTO fact_changes SELECT unnest(?::VARCHAR[]), unnest(?::DATE[]), "
                             "nextval('fact_change_seq')", [[f for f, _ in new], [d for _, d in new]])
        return new

    def insert_rows(self, table: str, rows: list[dict]) -> None:
        """Plain inserts for tables with generated keys (stage_records)."""
        if not rows:
            return
        types = self._types[table]
        cols = [c for c in types if any(c in r for r in rows)]
        values = [[redact(v) if isinstance(v, str) else v for v in (r.get(c) for c in cols)] for r in rows]
        with self._lock:
            self.con.executemany(
                f"INSERT INTO {ident(table)} ({', '.join(ident(c) for c in cols)}) VALUES ({', '.join('?' for _ in cols)})",
                values)

    # -- reading ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own (reads run beside writes), closed afterwards; ``close()`` interrupts it.

        It sees every batch acknowledged before it: a batch answered once in the write inbox (an
        OTLP body, :meth:`land`) and still on its way to the facts is waited for. Not on the writer
        thread, nor under the store's lock, which that write needs."""
        if self._writes.landed_pending() and not self._writes.on_writer_thread() and not _owned(self._lock):
            self._writes.settle()
        cur = self.con.cursor()
        with self._readers_lock:
            self._readers.add(cur)
        try:
            yield cur
        finally:
            with self._readers_lock:
                self._readers.discard(cur)
            cur.close()

    @contextlib.contextmanager
    def read_only_reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A :meth:`reader` cursor inside a ``READ ONLY`` transaction that is always rolled back.

        For SQL the store did not write (an agent's): DuckDB refuses any write to the database in such
        a transaction (a ``DELETE`` inside a ``WITH``, ``nextval``, ``CREATE``), and the rollback drops
        whatever else the transaction held. Transactions belong to the cursor, so the store's own
        writes on its main connection commit meanwhile and are never rolled back or blocked by it.
        """
        with self.reader() as cur:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                yield cur
            finally:
                # an interrupted or failed statement aborts the transaction; ROLLBACK still ends it,
                # and a cursor closed mid-way (store closing) has nothing left to roll back
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.reader() as cur:
            return dict_rows(cur, sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.reader() as cur:
            row = cur.execute(sql, params or []).fetchone()
            return row[0] if row else None

    def arrays(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> dict[str, Any]:
        """:func:`column_arrays` on a reader cursor."""
        with self.reader() as cur:
            return column_arrays(cur, sql, params)

    # -- ingest state ----------------------------------------------------------------------------
    def file_states(self, paths: Iterable[str] | None = None) -> dict[str, tuple[int, int, int, int]]:
        """path -> (size, mtime_ns, offset, lines) for files read before."""
        rows = self.con.cursor().execute('SELECT path, size, mtime_ns, "offset", lines FROM ingest_files').fetchall()
        return {p: (s, m, o, n) for p, s, m, o, n in rows}

    def check_resolution(self, full: bool = False, limit: int = 5) -> dict[str, Any]:
        """Whether the stored resolved columns equal a from-scratch resolution (``golem-mcp doctor``):
        of the most recent 2,000 rows of each fact table, or of every row when ``full``. Returns
        ``{"checked": "recent"|"all", "mismatches": {table: {"rows": n, "first": [...]}}}``."""
        with self.memory.heavy() if full else contextlib.nullcontext(), self.reader() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                found = resolve.mismatches(cur, self._types, limit=limit, sample=None if full else 2000)
            finally:
                cur.execute("ROLLBACK")
        return {"checked": "all" if full else "recent",
                "mismatches": {t: {"rows": n, "first": first} for t, (n, first) in found.items()}}

    def table_counts(self) -> dict[str, int]:
        """Rows per table, all from one snapshot: counted one statement each, a commit landing between
        two of them showed one batch's hook events without its tool calls."""
        tables = ("api_requests", "tool_calls", "api_errors", "spans", "otel_events", "metric_points",
                  "hook_events", "sessions", "agents", "workflows", "review_reports")
        row = self.query("SELECT " + ", ".join(f"(SELECT count(*) FROM {ident(t)}) AS {ident(t)}" for t in tables))[0]
        return {t: int(row[t] or 0) for t in tables}

    # -- change tracking (migration 009; see CHANGE_TABLES) --------------------------------------
    def change_high(self) -> int:
        """The highest change number every write has committed: read under the write lock, so no
        write holding a lower number is still in flight. An export or push sends (watermark, this]."""
        with self._lock:
            row = self.con.execute("SELECT COALESCE(last_value, start_value - 1) FROM duckdb_sequences() "
                                   "WHERE sequence_name = 'change_seq' AND schema_name = 'main'").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def changes_since(self, table: str, seq: int, upto: int | None = None, local_only: bool = False) -> Any:
        """The rows of ``table`` inserted or changed after change number ``seq`` (up to ``upto``,
        default :meth:`change_high`), as a ``pyarrow.Table`` ordered by ``_change_seq`` (a column of it).
        ``local_only``: without the rows last changed by merging a shard (``imported_shards``)."""
        if table not in CHANGE_TABLES:
            raise GolemError(f"{table} is not change-tracked; choose from {', '.join(CHANGE_TABLES)}")
        high = self.change_high() if upto is None else upto
        c = ident(CHANGE_COLUMN)
        skip = (f" AND {c} NOT IN (SELECT change_seq FROM imported_shards WHERE change_seq > ?)"
                if local_only else "")
        params = [int(seq), int(high)] + ([int(seq)] if local_only else [])
        with self.reader() as cur:
            return cur.execute(f"SELECT * FROM {ident(table)} WHERE {c} > ? AND {c} <= ?{skip} ORDER BY {c}",
                               params).to_arrow_table()

    def watermark(self, destination: str, table: str) -> int:
        """How far ``table`` has been sent to ``destination`` (0: nothing yet)."""
        v = self.scalar("SELECT seq FROM change_watermarks WHERE destination = ? AND table_name = ?",
                        [destination, table])
        return int(v) if v is not None else 0

    def set_watermark(self, destination: str, table: str, seq: int) -> None:
        """Every change of ``table`` up to ``seq`` is at ``destination`` now."""
        self.set_watermarks(destination, [table], seq)

    def watermarks(self, destination: str) -> dict[str, int]:
        """Every table's watermark at ``destination`` in one read (tables not sent yet are absent: 0)."""
        return {r["table_name"]: int(r["seq"]) for r in self.query(
            "SELECT table_name, seq FROM change_watermarks WHERE destination = ?", [destination])}

    def set_watermarks(self, destination: str, tables: Sequence[str], seq: int) -> None:
        """Every change of each of ``tables`` up to ``seq`` is at ``destination`` now (one statement)."""
        with self._lock:
            self.con.execute("INSERT OR REPLACE INTO change_watermarks "
                             "SELECT ?, unnest(?::VARCHAR[]), ?, current_timestamp",
                             [destination, list(tables), int(seq)])
