"""The team store: one DuckLake every machine pushes its facts to and ``serve --team`` reads.

DuckLake is DuckDB's own lakehouse format: its catalog lives in PostgreSQL (``GOLEM_TEAM_URL``, e.g.
``ducklake:postgres:dbname=golem host=db.internal``) and its data files as Parquet in a shared folder
or on object storage (``GOLEM_TEAM_DATA_PATH``). Many machines write and read it at once, and it keeps
DuckDB's dialect, so the store's views, the tools' SQL and the analyses run on it unchanged.

- **Schema.** The lake's tables are the local store's fact and context tables (those with a
  ``_change_seq``), made from the local store's own column definitions, less the local bookkeeping
  column. ``golem_schema`` holds the version, as ``schema_migrations`` does locally; a push from a
  newer golem-mcp adds what is missing.
- **Push.** What changed locally since the last push (the store's change numbers and watermarks)
  goes into the lake by each table's key, merged by the same policies as the local upsert
  (the store's own ``ON CONFLICT`` merge expressions, the lake's rows aliased as the table and the
  incoming ones as ``EXCLUDED``), all in one DuckLake transaction. The watermark moves
  only after that transaction committed, and resending merges to the same rows, so a push killed at
  any point is simply pushed again.
- **Concurrency.** DuckLake lets two transactions that both only insert into a table commit side by
  side, which would double a fact two machines pushed at the same moment (a workflow whose stages ran
  on both). So every push also updates the one row of ``golem_push_lock``: two pushes in flight then
  conflict, DuckLake refuses the second commit, and it is retried from a fresh snapshot with backoff.
- **Reading.** :class:`TeamStore` is a :class:`~golem_mcp.store.db.Store` over a replica of the lake
  in a local DuckDB file, resolved again as a whole (a workflow's context may come from several
  machines) and kept current by :meth:`TeamStore.refresh`: only the rows of pushes it has not seen
  (``_lake_push``), written through the store's own write path, so the resolver and the rollups
  follow by delta. The lake is read on a connection of its own; agents' SQL reaches only the replica,
  which allows no external access.

The extensions come from the ``duckdb-extension-ducklake`` and ``duckdb-extension-postgres`` wheels
(built for one DuckDB version); nothing here relies on ``INSTALL`` reaching the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from .. import home
from ..config import Settings
from ..errors import GolemError
from . import resolve, rollups
from .batch import Batch
from .db import CHANGE_TABLES, KEYS, SCHEMA_VERSION, WRITE_ORDER, Store, _merge, column_policy, ident, literal

log = logging.getLogger("golem_mcp.team")

LAKE = "team"  # the name the lake is attached under
SEQ_COLUMN = "_change_seq"  # the local store's change number: which rows a push sends, never sent itself
# The number of the push that last inserted or changed a lake row: every push takes the next value of
# golem_push_lock.pushes, and pushes commit one after the other (see Concurrency), so a reader that
# saw the counter at N has every row of pushes <= N and finds what came since as _lake_push > N.
PUSH_COLUMN = "_lake_push"
# The lake's own bookkeeping, versioned apart from the tables' columns (which follow SCHEMA_VERSION):
# 2 added PUSH_COLUMN to every table and golem_schema.layout.
LAKE_LAYOUT = 2
# rows sent per table in one push transaction: the initial push of a large store goes in several
# transactions of this size (each resumable on its own) instead of one that holds it all in memory
PUSH_ROWS = 250_000
# DuckLake's own retries cover commits that do not conflict; a real conflict (another push) is
# retried here from a fresh snapshot: waits from 50 ms growing 1.6x, with jitter, for up to a minute
RETRY_FIRST_S = 0.05
RETRY_GROWTH = 1.6
RETRY_MAX_S = 60.0

T = TypeVar("T")


class TeamUnavailable(GolemError):
    """The team store is not configured right or cannot be reached."""

    http_status = 503


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeamConfig:
    url: str
    data_path: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def shown_url(self) -> str:
        """The catalog's address without its password (for messages and watermarks)."""
        return re.sub(r"password=\S+", "password=***", self.url)

    @property
    def destination(self) -> str:
        """The name of this team store among the local store's change watermarks."""
        return "team:" + self.shown_url

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("ducklake:postgres:")


def team_config(settings: Settings | None = None, required: bool = True) -> TeamConfig | None:
    """The team store configured by ``GOLEM_TEAM_URL``/``GOLEM_TEAM_DATA_PATH`` (or ``team_url`` and
    ``team_data_path`` in settings.json); None when neither is set and not ``required``."""
    s = settings or Settings.load()
    url, data = (s.team_url or "").strip(), (s.team_data_path or "").strip()
    if not url and not data:
        if required:
            raise TeamUnavailable(
                "no team store is configured: set GOLEM_TEAM_URL (e.g. 'ducklake:postgres:dbname=golem "
                "host=db.internal') and GOLEM_TEAM_DATA_PATH (a shared folder or an s3:// prefix), or "
                "team_url and team_data_path in settings.json; see the README, 'Running for a team'")
        return None
    if not url:
        raise TeamUnavailable("GOLEM_TEAM_DATA_PATH is set but GOLEM_TEAM_URL is not: set the catalog too, "
                              "e.g. GOLEM_TEAM_URL='ducklake:postgres:dbname=golem host=db.internal'")
    if not data:
        raise TeamUnavailable("GOLEM_TEAM_URL is set but GOLEM_TEAM_DATA_PATH is not: set where the team's "
                              "data files live (a shared folder every machine mounts, or an s3:// prefix)")
    if not url.startswith("ducklake:"):
        raise TeamUnavailable(f"GOLEM_TEAM_URL must start with 'ducklake:' (got {url[:40]!r}), e.g. "
                              "'ducklake:postgres:dbname=golem host=db.internal'")
    if "://" not in data:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise TeamUnavailable(f"GOLEM_TEAM_DATA_PATH {data} is not a folder: mount the team's shared "
                                  "folder there (or create it), or give an s3:// prefix")
        data = str(folder.resolve()) + os.sep
    elif not data.endswith("/"):
        data += "/"
    return TeamConfig(url=url, data_path=data)


# -- connecting ----------------------------------------------------------------------------------
def _extension_file(package: str, name: str) -> Path:
    """``name``'s extension file in the installed ``duckdb-extension-<package>`` wheel."""
    version = duckdb.__version__
    spec = find_spec(f"duckdb_extension_{package}")
    path = (Path(spec.origin).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
            if spec and spec.origin else None)
    if path is None or not path.is_file():
        raise TeamUnavailable(f"DuckDB's {name} extension for DuckDB {version} is not installed: "
                              f"pip install 'duckdb-extension-{package}=={version}'")
    return path


def _postgres_extension() -> Path:
    """The PostgreSQL extension, under the file name DuckDB loads it by (``postgres_scanner``: the
    wheel names it ``postgres``, and DuckDB derives the entry point from the file name)."""
    src = _extension_file("postgres", "postgres")
    dest = Path(home.data_dir()) / "extensions" / f"v{duckdb.__version__}" / "postgres_scanner.duckdb_extension"
    with contextlib.suppress(OSError):
        if dest.stat().st_size == src.stat().st_size:
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # atomic: a concurrent copy by another process leaves one whole file
    return dest


def _explain(e: Exception, cfg: TeamConfig) -> TeamUnavailable:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return TeamUnavailable(
        f"cannot open the team store ({cfg.shown_url}, data in {cfg.data_path}): {first}. Check "
        "GOLEM_TEAM_URL and GOLEM_TEAM_DATA_PATH, that PostgreSQL runs and lets this machine in, and "
        "that the data path is reachable; this machine's own store keeps everything meanwhile.")


def connect(cfg: TeamConfig, read_only: bool = False, memory_limit_mb: int | None = None,
            lock: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as ``team``; with ``lock``, external access is then
    turned off and the configuration locked (for serving agents' SQL)."""
    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    if memory_limit_mb:
        config["memory_limit"] = f"{memory_limit_mb}MB"
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute(f"LOAD {literal(str(_extension_file('ducklake', 'ducklake')))}")
        if cfg.is_postgres:
            con.execute(f"LOAD {literal(str(_postgres_extension()))}")
        if cfg.data_path.startswith(("s3://", "gs://", "r2://", "https://", "az://")):
            con.execute(f"LOAD {literal(str(_extension_file('httpfs', 'httpfs')))}")
            _object_storage_secret(con, cfg)
        opts = f"DATA_PATH {literal(cfg.data_path)}" + (", READ_ONLY" if read_only else "")
        con.execute(f"ATTACH {literal(cfg.url)} AS {LAKE} ({opts})")
        con.execute("SET enable_progress_bar = false")
        if lock:
            # DuckDB then reaches only the lake's data files (read through the read-only attach);
            # agents' SQL names no file either way (the SQL guard refuses file readers and COPY)
            con.execute(f"SET allowed_directories = [{literal(cfg.data_path)}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except TeamUnavailable:
        con.close()
        raise
    except duckdb.Error as e:
        con.close()
        raise _explain(e, cfg) from e
    return con


def _object_storage_secret(con: duckdb.DuckDBPyConnection, cfg: TeamConfig) -> None:
    """S3 credentials from the usual environment variables, when given (else DuckDB's own defaults)."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret):
        return
    parts = [f"KEY_ID {literal(key)}", f"SECRET {literal(secret)}"]
    if os.environ.get("AWS_REGION"):
        parts.append(f"REGION {literal(os.environ['AWS_REGION'])}")
    if os.environ.get("AWS_ENDPOINT_URL"):
        endpoint = re.sub(r"^https?://", "", os.environ["AWS_ENDPOINT_URL"])
        parts.append(f"ENDPOINT {literal(endpoint)}")
        if os.environ["AWS_ENDPOINT_URL"].startswith("http://"):
            parts.append("USE_SSL false")
        parts.append("URL_STYLE 'path'")
    con.execute(f"CREATE OR REPLACE SECRET golem_team_s3 (TYPE s3, {', '.join(parts)})")


def is_conflict(e: Exception) -> bool:
    """A DuckLake commit refused because another transaction changed the same thing meanwhile."""
    text = str(e).lower()
    return isinstance(e, duckdb.TransactionException) or "conflict" in text or "retry count" in text


def with_retries(con: duckdb.DuckDBPyConnection, work: Callable[[], T], what: str,
                 budget_s: float = RETRY_MAX_S) -> T:
    """Run ``work`` in one transaction on ``con``; a commit conflict rolls back and runs it again from
    a fresh snapshot, after a growing, jittered wait, for up to ``budget_s`` seconds."""
    deadline = time.monotonic() + budget_s
    wait = RETRY_FIRST_S
    attempt = 0
    while True:
        attempt += 1
        con.execute("BEGIN")
        try:
            out = work()
            con.execute("COMMIT")
            return out
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT already ended the transaction
                con.execute("ROLLBACK")
            if not is_conflict(e) or time.monotonic() + wait > deadline:
                raise
            log.debug("%s: commit conflict (attempt %d), retrying in %.2f s", what, attempt, wait)
            time.sleep(wait * (0.5 + random.random()))
            wait *= RETRY_GROWTH


# -- the lake's schema ---------------------------------------------------------------------------
def team_tables(store: Store) -> dict[str, dict[str, str]]:
    """table -> column -> type of the lake's tables: the local store's tables that keep change numbers
    (facts and context), with their local column types, less the change number itself."""
    rows = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_catalog = current_database() AND table_name IN ("
        "  SELECT table_name FROM information_schema.columns WHERE column_name = ? "
        "  AND table_schema = 'main' AND table_catalog = current_database()) "
        "ORDER BY table_name, ordinal_position", [SEQ_COLUMN])
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["column_name"] != SEQ_COLUMN:
            out.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
    return out


def lake_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version of the lake (None: golem-mcp never wrote to it)."""
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? "
                      "AND table_name = 'golem_schema'", [LAKE]).fetchone()
    if not has or not has[0]:
        return None
    row = con.execute(f"SELECT max(version) FROM {LAKE}.golem_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def lake_layout(con: duckdb.DuckDBPyConnection) -> int:
    """The layout of the lake's own bookkeeping (``LAKE_LAYOUT``) it was last upgraded to (1: before
    layouts were numbered)."""
    has = con.execute("SELECT count(*) FROM information_schema.columns WHERE table_catalog = ? "
                      "AND table_name = 'golem_schema' AND column_name = 'layout'", [LAKE]).fetchone()
    if not has or not has[0]:
        return 1
    row = con.execute(f"SELECT max(layout) FROM {LAKE}.golem_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 1


def ensure_schema(con: duckdb.DuckDBPyConnection, tables: dict[str, dict[str, str]]) -> int:
    """Create or upgrade the lake's tables to this golem-mcp's schema and the lake's layout; returns
    the lake's version.

    Each table has the local table's columns (less the change number) and ``_lake_push``. Upgrades
    only ever add (tables, columns), in one DuckLake transaction: machines running an older
    golem-mcp go on pushing the columns they know."""

    def upgrade() -> int:
        current = lake_version(con)
        if current is not None and current >= SCHEMA_VERSION and lake_layout(con) >= LAKE_LAYOUT:
            return current
        con.execute(f"CREATE TABLE IF NOT EXISTS {LAKE}.golem_schema (version INTEGER, applied_at TIMESTAMP, "
                    "layout INTEGER)")
        con.execute(f"ALTER TABLE {LAKE}.golem_schema ADD COLUMN IF NOT EXISTS layout INTEGER")
        con.execute(f"CREATE TABLE IF NOT EXISTS {LAKE}.golem_push_lock (pushes BIGINT)")
        if not con.execute(f"SELECT count(*) FROM {LAKE}.golem_push_lock").fetchone()[0]:  # type: ignore[index]
            con.execute(f"INSERT INTO {LAKE}.golem_push_lock VALUES (0)")
        present: dict[str, set[str]] = {}
        for t, c in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                "WHERE table_catalog = ?", [LAKE]).fetchall():
            present.setdefault(t, set()).add(c)
        for table, local_cols in tables.items():
            cols = {**local_cols, PUSH_COLUMN: "BIGINT"}
            if table not in present:
                body = ", ".join(f"{ident(c)} {t}" for c, t in cols.items())
                con.execute(f"CREATE TABLE {LAKE}.{ident(table)} ({body})")
                continue
            for c, t in cols.items():
                if c not in present[table]:
                    con.execute(f"ALTER TABLE {LAKE}.{ident(table)} ADD COLUMN {ident(c)} {t}")
        version = max(SCHEMA_VERSION, current or 0)
        con.execute(f"INSERT INTO {LAKE}.golem_schema (version, applied_at, layout) VALUES (?, now(), ?)",
                    [version, LAKE_LAYOUT])
        return version

    return with_retries(con, upgrade, "schema upgrade")


# -- pushing -------------------------------------------------------------------------------------
@dataclass
class PushResult:
    rows: dict[str, int] = field(default_factory=dict)  # rows sent per table
    transactions: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {"rows": dict(self.rows), "transactions": self.transactions, "seconds": round(self.seconds, 3)}


def _merge_sql(table: str, cols: list[str], staged: str, push_no: int) -> str:
    """``MERGE INTO`` the lake's ``table`` from the registered ``staged`` rows: by the table's key, each
    other column merged by the local store's policy for it, and every row it touches stamped with
    the push's number (``PUSH_COLUMN``). The stored rows are aliased as the table and the incoming
    ones as ``EXCLUDED``, so the SET items are the local upsert's own (``_merge``)."""
    keys = KEYS[table]
    t, e = ident(table), "EXCLUDED"
    on = " AND ".join(f"{t}.{ident(k)} = {e}.{ident(k)}" for k in keys)
    non_keys = [c for c in cols if c not in keys]
    stamp = f"{ident(PUSH_COLUMN)} = {int(push_no)}"
    sets = [_merge(table, c, column_policy(table, c), cols) for c in non_keys] + [stamp]
    sql = f"MERGE INTO {LAKE}.{t} AS {t} USING {staged} AS {e} ON ({on}) WHEN MATCHED THEN UPDATE SET {', '.join(sets)} "
    col_list = ", ".join(ident(c) for c in [*cols, PUSH_COLUMN])
    values = ", ".join([*(f"{e}.{ident(c)}" for c in cols), str(int(push_no))])
    return sql + f"WHEN NOT MATCHED THEN INSERT ({col_list}) VALUES ({values})"


def _chunk_end(store: Store, table: str, since: int, high: int, max_rows: int) -> int:
    """The highest change number up to which ``table``'s changes after ``since`` hold about ``max_rows``
    rows (one write's rows share a number: at least one whole write)."""
    c = ident(SEQ_COLUMN)
    rows = store.query(f"SELECT {c} AS seq, count(*) AS n FROM {ident(table)} WHERE {c} > ? AND {c} <= ? "
                       f"GROUP BY 1 ORDER BY 1", [since, high])
    total, end = 0, since
    for r in rows:
        if total and total + r["n"] > max_rows:
            break
        total += r["n"]
        end = r["seq"]
    return end


def push(store: Store, cfg: TeamConfig, con: duckdb.DuckDBPyConnection | None = None,
         max_rows: int = PUSH_ROWS, until: Callable[[], bool] | None = None, schema_checked: bool = False) -> PushResult:
    """Send every change of ``store`` not yet in the team store; returns what was sent.

    ``con``: an open connection from :func:`connect` (the daemon keeps one); else one is opened and
    closed. Each transaction sends up to ``max_rows`` rows per table and then moves the watermarks;
    ``until`` returning True stops between transactions (a daemon stopping). ``schema_checked``: the
    lake's schema was brought up to date on ``con`` already (the daemon checks once per connection)."""
    started = time.monotonic()
    own = con is None
    lake = con or connect(cfg)
    result = PushResult()
    try:
        tables = team_tables(store)
        if not tables:
            return result
        if not schema_checked:
            ensure_schema(lake, tables)
        high = store.change_high()
        while not (until and until()):
            batch: dict[str, tuple[Any, int]] = {}
            for table in tables:
                since = store.watermark(cfg.destination, table)
                end = _chunk_end(store, table, since, high, max_rows)
                if end > since:
                    batch[table] = (store.changes_since(table, since, end), end)
            if not batch:
                break

            def send(batch: dict[str, tuple[Any, int]] = batch) -> None:
                lake.execute(f"UPDATE {LAKE}.golem_push_lock SET pushes = pushes + 1")
                push_no = int(lake.execute(f"SELECT max(pushes) FROM {LAKE}.golem_push_lock").fetchone()[0])  # type: ignore[index]
                for table, (rows, _) in batch.items():
                    cols = [c for c in rows.column_names if c in tables[table]]
                    lake.register("_golem_push", rows)
                    try:
                        lake.execute(_merge_sql(table, cols, "_golem_push", push_no))
                    finally:
                        lake.unregister("_golem_push")

            with_retries(lake, send, "push")
            # only now: a push killed before this line sends the same rows again, merged to the same
            for t, (_, end) in batch.items():
                store.set_watermark(cfg.destination, t, end)
            result.transactions += 1
            for t, (rows, _) in batch.items():
                result.rows[t] = result.rows.get(t, 0) + rows.num_rows
    except duckdb.Error as e:
        raise _explain(e, cfg) from e
    finally:
        if own:
            lake.close()
    result.seconds = time.monotonic() - started
    return result


def compact(con: duckdb.DuckDBPyConnection, keep_snapshots_s: int = 600) -> None:
    """DuckLake's own maintenance: inlined rows into Parquet files, small files merged, snapshots
    older than ``keep_snapshots_s`` expired and the files only they used removed. Each step may meet a
    push and lose: it is retried, and what is left is done the next time."""
    steps = [
        f"CALL ducklake_flush_inlined_data({literal(LAKE)})",
        f"CALL ducklake_merge_adjacent_files({literal(LAKE)})",
        f"CALL ducklake_expire_snapshots({literal(LAKE)}, older_than => now() - INTERVAL {keep_snapshots_s} SECOND)",
        f"CALL ducklake_cleanup_old_files({literal(LAKE)}, older_than => now() - INTERVAL {keep_snapshots_s} SECOND)",
    ]
    for sql in steps:
        def step(sql: str = sql) -> None:
            # the steps' answers (files and snapshots touched) have time-zone columns: as Python rows
            # they need pytz, which is not installed, and the step would fail after its work
            con.execute(sql).to_arrow_table()

        with_retries(con, step, "compaction", budget_s=20)


# -- the daemon's job ----------------------------------------------------------------------------
class TeamPusher:
    """Pushes the store's changes to the team store every ``interval`` seconds, on a thread of its
    own; compacts the lake's small files every ``compact_every`` seconds.

    The team store being down changes nothing locally: the store keeps every fact, the watermarks stay
    where they are, and the next push that gets through sends it all. One warning a minute says so."""

    def __init__(self, store: Store, cfg: TeamConfig, interval: float = 5.0, compact_every: float = 60.0) -> None:
        self.store, self.cfg = store, cfg
        self.interval, self.compact_every = interval, compact_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._last_warning = 0.0
        self._next_compact = time.monotonic() + compact_every * (0.5 + random.random())
        self.last_error: str | None = None
        self.last_push: PushResult | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="golem-team-push", daemon=True)
        self._thread.start()

    def stop(self, wait: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(wait)
        self._close()

    def _close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> PushResult | None:
        try:
            fresh = self._con is None
            if self._con is None:
                self._con = connect(self.cfg)
            self.last_push = push(self.store, self.cfg, self._con, until=self._stop.is_set, schema_checked=not fresh)
            self.last_error = None
            if time.monotonic() >= self._next_compact:
                self._next_compact = time.monotonic() + self.compact_every
                compact(self._con)
            return self.last_push
        except Exception as e:  # noqa: BLE001 -- the daemon goes on whatever the team store does
            self._close()  # a broken connection is opened afresh next time
            self.last_error = str(e)
            if time.monotonic() - self._last_warning > 60:
                self._last_warning = time.monotonic()
                log.warning("team store push failed (will retry; nothing is lost locally): %s", e)
            return None


def push_now(store: Store, settings: Settings | None = None) -> dict[str, Any]:
    """One push of ``store`` to the configured team store (``golem-mcp push`` through the daemon). A
    push the daemon's job runs meanwhile sends the same rows, merged to the same facts."""
    if isinstance(store, TeamStore):
        raise GolemError("this daemon serves the team store (serve --team): push from each machine's own daemon")
    cfg = team_config(settings or store.settings)
    assert cfg is not None
    return push(store, cfg).as_dict()


def start_pusher(store: Store, settings: Settings, interval: float | None = None) -> TeamPusher | None:
    """The daemon's push job, started when a team store is configured (None when not). A team store
    configured wrong is said in the log and leaves the daemon running: facts stay local meanwhile."""
    try:
        cfg = team_config(settings, required=False)
    except TeamUnavailable as e:
        log.warning("no pushes to the team store: %s", e)
        return None
    if cfg is None:
        return None
    if interval is None:
        try:
            interval = float(os.environ.get("GOLEM_TEAM_PUSH_SECONDS") or 5)
        except ValueError:
            interval = 5.0
    try:
        compact_every = float(os.environ.get("GOLEM_TEAM_COMPACT_SECONDS") or 60)
    except ValueError:
        compact_every = 60.0
    pusher = TeamPusher(store, cfg, interval=interval, compact_every=compact_every)
    pusher.start()
    log.info("pushing to the team store %s every %.0f s", cfg.shown_url, interval)
    return pusher


# -- reading -------------------------------------------------------------------------------------
SEEN_KEY = "team_pushes_seen"  # settings key of a replica: the lake's push counter it holds everything up to
# rows of one fact table written to the replica per transaction when catching up (each is resolved
# and rolled up in its write; a smaller transaction lets the next refresh's readers see progress)
APPLY_ROWS = 50_000
OPEN_RETRY_S = 60.0  # how long a team server opening keeps reading the lake again after a failed read
BUILDING = "golem_replica"  # the name a replica being built whole is attached under, beside the lake


def replica_path(cfg: TeamConfig) -> Path:
    """Where this machine keeps its replica of the team store ``cfg`` (one file per lake)."""
    digest = hashlib.sha256(f"{cfg.shown_url}|{cfg.data_path}".encode()).hexdigest()[:16]
    return Path(home.data_dir()) / "team" / f"replica-{digest}.duckdb"


@dataclass
class RefreshResult:
    pushes: int = 0                     # the lake's push counter the replica now holds everything up to
    rows: dict[str, int] = field(default_factory=dict)  # lake rows applied per table
    whole: bool = False                 # copied whole (a new replica, or a lake made anew)
    seconds: float = 0.0


def _shared_columns(here: list[tuple[str, str]], lake: list[tuple[str, str]]) -> dict[str, list[str]]:
    """table -> the columns both the lake and the replica have, in the lake's order (a newer machine
    may have pushed columns this golem-mcp does not know; the replica's own may be missing from an
    older lake), tables in write order; ``here`` and ``lake`` are (table, column) rows."""
    mine: dict[str, set[str]] = {}
    for t, c in here:
        mine.setdefault(t, set()).add(c)
    out: dict[str, list[str]] = {}
    for t, c in lake:
        if t in mine and c in mine[t] and c != SEQ_COLUMN and not (t in resolve.FACTS and c.startswith("r_")):
            out.setdefault(t, []).append(c)
    return {t: out[t] for t in [*WRITE_ORDER, *sorted(out)] if t in out and t in CHANGE_TABLES}


def _columns_of(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[str, str]]:
    return [(t, c) for t, c in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ? "
        "AND table_schema = 'main' ORDER BY table_name, ordinal_position", [catalog]).fetchall()]


def build_replica(cfg: TeamConfig, path: Path, settings: Settings, memory_limit_mb: int) -> RefreshResult:
    """A new replica of the lake ``cfg`` at ``path`` (a file not in use), built whole inside DuckDB.

    The file gets the store's schema from a plain open, then is attached beside the lake on one
    connection, and each table goes in as one ``INSERT ... SELECT`` from the lake, facts resolved as
    they stream through (``resolve.resolved_rows``, links of every session): no row passes through
    Python, and the one DuckDB instance doing the work has the memory limit. Every table is read at
    one lake snapshot, the one whose push counter the replica records. Each step commits on its own
    and the file is checkpointed after the facts and after the rollups: a build cut short leaves a
    file its caller discards (it records the counter last), and the WAL never holds the whole lake."""
    started = time.monotonic()
    for leftover in (path, Path(f"{path}.wal")):
        leftover.unlink(missing_ok=True)
    with Store(path, settings=settings, machine=("", "")) as schema:  # the schema, macros and views
        types = dict(schema._types)
    spill = path.with_name(path.name + ".tmp")
    con = connect(cfg, read_only=True, memory_limit_mb=memory_limit_mb)
    try:
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        con.execute("SET preserve_insertion_order = false")  # INSERT ... SELECT without ordering buffers
        con.execute(f"ATTACH {literal(str(path))} AS {BUILDING}")
        con.execute(f"USE {BUILDING}")  # the store's macros and views name its tables unqualified
        result = RefreshResult(whole=True)
        snapshot = int(con.execute(f"SELECT id FROM ducklake_current_snapshot({literal(LAKE)})").fetchone()[0])  # type: ignore[index]
        at = f"AT (VERSION => {snapshot})"
        row = con.execute(f"SELECT max(pushes) FROM {LAKE}.golem_push_lock {at}").fetchone()
        result.pushes = int(row[0]) if row and row[0] is not None else 0
        tables = _shared_columns(_columns_of(con, BUILDING), _columns_of(con, LAKE))

        def lake_rows(table: str, where: str = "") -> str:
            return f"SELECT {', '.join(ident(c) for c in tables[table])} FROM {LAKE}.{ident(table)} {at} {where}"

        def insert(table: str, sql: str) -> int:
            return int(con.execute(f"INSERT INTO main.{ident(table)} {sql}").fetchone()[0])  # type: ignore[index]

        for table in tables:
            if table not in resolve.FACTS:
                cols = ", ".join(ident(c) for c in tables[table])
                result.rows[table] = insert(table, f"({cols}) {lake_rows(table)}")
        # the agent tree reads the tool calls that spawned agents: those go in first as they are
        if "tool_calls" in tables:
            insert("tool_calls", f"({', '.join(ident(c) for c in tables['tool_calls'])}) "
                   + lake_rows("tool_calls", "WHERE tool_use_id IN (SELECT spawn_tool_use_id FROM main.agents)"))
        resolve.build_tree(con, None)
        con.execute("DELETE FROM main.tool_calls")
        for table in resolve.FACTS:
            if table in tables:
                result.rows[table] = insert(table, resolve.resolved_rows(table, types[table], tables[table], lake_rows(table),
                                                                         every_session=True))
                if result.rows[table]:
                    log.info("team store: building a replica: %d %s in, resolved (%.0f s)", result.rows[table], table,
                             time.monotonic() - started)
        con.execute(f"CHECKPOINT {BUILDING}")
        resolve.record_owners(con)
        con.execute("DELETE FROM analysis_cache_state WHERE name = 'facts'")
        groups = rollups.build(con)
        log.info("team store: building a replica: %s rollup groups (%.0f s)", sum(groups.values()), time.monotonic() - started)
        con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [SEEN_KEY, str(result.pushes)])
        con.execute(f"CHECKPOINT {BUILDING}")
        con.execute("USE memory")
        con.execute(f"DETACH {BUILDING}")
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    if Path(f"{path}.wal").exists():  # checkpointed and detached: the file alone is the replica
        raise GolemError(f"the replica built at {path} left a WAL behind")
    result.seconds = time.monotonic() - started
    return result


class TeamStore(Store):
    """The team store for reading: a replica of the lake in a local DuckDB file (``replica_path``),
    with the local store's schema, so the seed views, the tools' SQL and the analyses run unchanged.

    Each machine pushes facts resolved with the context it saw; a workflow's context can live on
    another machine (hooks on one, transcripts on another), so the replica resolves the union again
    with the one resolver and keeps its own rollups, rather than trust what each machine resolved
    alone. :meth:`refresh` keeps it current: a new replica copies the lake whole and resolves it
    once; after that, only the rows pushes stamped with a higher ``_lake_push`` than the replica has
    seen are read, and written through :meth:`Store.write` (the same merge policies the lake
    applied, so a row merges to the lake's value; the resolver re-resolves what new context
    concerns, and the rollups follow by delta). The file is kept between starts: a server starting
    again catches up on what was pushed meanwhile instead of copying the lake again.

    Readers use their own cursors and snapshots: a refresh never blocks them, and they see each of
    its writes whole or not at all."""

    records_facts = False

    def __init__(self, cfg: TeamConfig, settings: Settings | None = None, path: str | Path | None = None) -> None:
        self.team = cfg
        self._lake: duckdb.DuckDBPyConnection | None = None
        self._refresh_lock = threading.Lock()
        self._stop_refresh = threading.Event()
        self._refresher: threading.Thread | None = None
        self._last_warning = 0.0
        self.last_refresh: RefreshResult | None = None
        self.refresh_error: str | None = None
        # the replica notes no machine of its own: its machines are the lake's
        super().__init__(path or replica_path(cfg), settings=settings, machine=("", ""))

    def __enter__(self) -> TeamStore:
        return self

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        # the lake's schema first, with a short-lived writer (a team server may start before any push)
        con = connect(self.team)
        try:
            ensure_schema(con, _local_tables(self.settings))
        finally:
            con.close()
        return super()._connect(read_only)

    def migrate(self) -> None:
        super().migrate()  # the replica's schema: the local store's
        # a read of the lake while pushes commit has failed now and then inside DuckLake (an INT128
        # "-1" cast to UINT64 while reading a snapshot); read again from a fresh connection, as
        # the refresher does every few seconds, before giving up on opening
        deadline = time.monotonic() + OPEN_RETRY_S
        while True:
            try:
                self.refresh()
                return
            except TeamUnavailable as e:
                if time.monotonic() >= deadline:
                    raise
                log.warning("team store: reading the lake failed, reading again: %s", e)
                time.sleep(1.0)

    # -- keeping current -------------------------------------------------------------------------
    def _lake_con(self) -> duckdb.DuckDBPyConnection:
        if self._lake is None:
            self._lake = connect(self.team, read_only=True, memory_limit_mb=max(256, self.memory_limit_mb // 2))
        return self._lake

    def _close_lake(self) -> None:
        if self._lake is not None:
            with contextlib.suppress(duckdb.Error):
                self._lake.close()
            self._lake = None

    def pushes_seen(self) -> int | None:
        """The lake's push counter this replica holds everything up to (None: never filled)."""
        v = self.scalar("SELECT value FROM settings WHERE key = ?", [SEEN_KEY])
        return int(v) if v is not None else None

    def refresh(self) -> RefreshResult:
        """Bring the replica up to the lake's latest snapshot: the rows pushed since the last refresh
        (a new replica, or a lake whose counter went back, made anew: the whole lake). One lake
        snapshot for the counter and the rows, so nothing pushed meanwhile is half read."""
        with self._refresh_lock:
            started = time.monotonic()
            result = RefreshResult()
            lake = self._lake_con()
            try:
                lake.execute("BEGIN")
                try:
                    row = lake.execute(f"SELECT max(pushes) FROM {LAKE}.golem_push_lock").fetchone()
                    result.pushes = int(row[0]) if row and row[0] is not None else 0
                    seen = self.pushes_seen()
                    self._load_types()  # (refresh runs from migrate, before Store.__init__ loads them)
                    if seen is None or result.pushes < seen:
                        result.whole = True
                        self._copy_whole(result)
                    elif result.pushes > seen:
                        self._apply_since(lake, self._lake_columns(lake), seen, result)
                finally:
                    with contextlib.suppress(duckdb.Error):
                        lake.execute("ROLLBACK")  # read only: nothing to commit
            except duckdb.Error as e:
                self._close_lake()  # a broken connection is opened afresh next time
                raise _explain(e, self.team) from e
            if result.whole or result.pushes != seen:
                with self._lock:
                    self.con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [SEEN_KEY, str(result.pushes)])
            result.seconds = time.monotonic() - started
            self.last_refresh = result
            if result.rows:
                log.info("team store: %s %s rows of pushes up to %d in %.2f s", "copied whole" if result.whole else "applied",
                         sum(result.rows.values()), result.pushes, result.seconds)
            return result

    def _lake_columns(self, lake: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
        """table -> the columns both the lake and the replica have (:func:`_shared_columns`)."""
        here = [(t, c) for t, c in self.con.cursor().execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_catalog = current_database()").fetchall()]
        return _shared_columns(here, _columns_of(lake, LAKE))

    def _copy_whole(self, result: RefreshResult) -> None:
        """A replica built whole beside this one (:func:`build_replica`), then put in its place: the
        readers are interrupted and the store's connection opened again on the new file."""
        building = Path(f"{self.path}.building")
        try:
            built = build_replica(self.team, building, self.settings, self.memory_limit_mb)
            with self._lock:
                self.interrupt_readers()
                self.con.close()
                Path(f"{self.path}.wal").unlink(missing_ok=True)  # the old file's: never replayed on the new one
                os.replace(building, self.path)
                self.con = self._open(False)
                Store.migrate(self)  # the connection's own: macros, the resolver's empty tree
                self._load_types()
                self._owners = resolve.Owners()
                self._estimates, self._stamped = None, None
        finally:
            building.unlink(missing_ok=True)
            Path(f"{building}.wal").unlink(missing_ok=True)
        result.pushes, result.rows = built.pushes, built.rows

    def _apply_since(self, lake: duckdb.DuckDBPyConnection, tables: dict[str, list[str]], seen: int,
                     result: RefreshResult) -> None:
        """The lake rows of pushes after ``seen``, written through Store.write: context first (one
        write: the stored facts it concerns are re-resolved), then each fact table in parts."""
        from .shards import arrow_rows

        context = Batch()
        facts: list[tuple[str, Any]] = []
        for table, cols in tables.items():
            names = ", ".join(ident(c) for c in cols)
            tbl = lake.execute(f"SELECT {names} FROM {LAKE}.{ident(table)} WHERE {ident(PUSH_COLUMN)} > ?",
                               [seen]).to_arrow_table()
            if not tbl.num_rows:
                continue
            result.rows[table] = tbl.num_rows
            if table in resolve.FACTS:
                facts.append((table, tbl))
            else:
                context.rows[table] = arrow_rows(tbl)
        if context.rows:
            Store.write(self, context)
        for table, tbl in facts:
            for lo in range(0, tbl.num_rows, APPLY_ROWS):
                Store.write(self, Batch(rows={table: arrow_rows(tbl.slice(lo, APPLY_ROWS))}))

    def start_refreshing(self, interval: float) -> None:
        """Refresh every ``interval`` seconds on a thread of its own until :meth:`close`. The lake
        being unreachable leaves the replica as it was (answers as of the last refresh); one warning
        a minute says so."""
        def run() -> None:
            while not self._stop_refresh.wait(interval):
                try:
                    self.refresh()
                    self.refresh_error = None
                except Exception as e:  # noqa: BLE001 -- the server goes on answering from the replica
                    self.refresh_error = str(e)
                    if time.monotonic() - self._last_warning > 60:
                        self._last_warning = time.monotonic()
                        log.warning("team store refresh failed (answers are as of the last refresh; will retry): %s", e)

        self._refresher = threading.Thread(target=run, name="golem-team-refresh", daemon=True)
        self._refresher.start()

    def close(self, wait: float = 10.0) -> None:
        self._stop_refresh.set()
        if self._refresher is not None:
            self._refresher.join(wait)
        with self._refresh_lock:
            self._close_lake()
        super().close(wait)

    def note_machine(self, *args: Any, **kwargs: Any) -> None:
        """The machines are the lake's (pushed with their facts): a team server adds none."""

    def write(self, *args: Any, **kwargs: Any) -> dict[str, int]:
        raise GolemError("the team store is read here, not written: each machine's own daemon records facts "
                         "and pushes them (golem-mcp push)")


def open_team_store(settings: Settings | None = None) -> TeamStore:
    """The configured team store, for reading (``serve --team``, ``report --team``, ...)."""
    settings = settings or Settings.load()
    cfg = team_config(settings)
    assert cfg is not None  # required=True: raised when unset
    return TeamStore(cfg, settings)


def refresh_interval() -> float:
    """Seconds between a team server's refreshes (``GOLEM_TEAM_REFRESH_SECONDS``, default 2)."""
    try:
        return max(0.1, float(os.environ.get("GOLEM_TEAM_REFRESH_SECONDS") or 2))
    except ValueError:
        return 2.0


def _local_tables(settings: Settings) -> dict[str, dict[str, str]]:
    """The lake's tables as this golem-mcp defines them: read off a fresh in-memory local store."""
    with Store(":memory:", settings=settings, machine=("", "")) as s:
        return team_tables(s)
