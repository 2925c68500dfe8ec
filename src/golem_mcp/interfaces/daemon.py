"""The daemon (``golem-mcp serve``): the one process that owns the DuckDB file.

It serves on loopback:

- ``POST /v1/logs``, ``/v1/metrics``, ``/v1/traces`` — OTLP/HTTP, JSON or protobuf, gzip accepted.
  Each body is committed to the store before the reply, so a 200 means stored.
- ``POST /hooks`` — one Claude Code hook payload (or a JSON list of them), from ``golem-mcp hook``.
- ``POST /api/import``, ``POST /api/report``, ``GET /api/status`` — what the CLI asks when a daemon
  runs (it cannot open the database itself then).
- ``GET /metrics`` — the store's totals for Prometheus (``interfaces/metrics.py``).
- ``GET /healthz`` — liveness (and which data folder it serves, for a second daemon's message), no
  token needed.
- MCP (streamable HTTP), when ``interfaces/mcp_server.py`` provides it (see :func:`create_app`).

Background threads watch the transcript folders (new sessions appear within seconds) and drain the
hook spool that ``golem-mcp hook`` writes while the daemon is down.

Safety: every route but ``/healthz`` requires the token (``--token``/``GOLEM_TOKEN``, else the data
folder's, made at first start: ``golem_mcp.home``). It binds 127.0.0.1 by default and refuses any
other address without a token chosen explicitly; requests whose
``Origin`` is not a loopback origin, or whose ``Host`` is not a literal loopback address or
``localhost`` while serving on loopback, get 403 (a web page must not reach the store through DNS
rebinding; the rule is ``interfaces/loopback.py``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import logging
import logging.handlers
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from datetime import date, datetime
from decimal import Decimal
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..config import (
    DEFAULT_HOST,
    Settings,
    claude_projects_dir,
    data_dir,
    default_db_path,
    spool_dir,
    state_file,
    token_file,
)
from ..errors import GolemError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..ingestion.records import Batch, Skipped
from ..store.db import Store
from .loopback import is_loopback_host, is_loopback_origin
from .metrics import metrics_endpoint

log = logging.getLogger("golem_mcp.daemon")

WATCH_INTERVAL = 2.0  # seconds between transcript-folder scans; unchanged files cost one stat each
SPOOL_INTERVAL = 2.0  # seconds between hook-spool drains
SUMMARY_INTERVAL = 60.0  # seconds between activity lines in the log (one line per request is too much)
# seconds between alert evaluations, run only when something was ingested since the last one: budgets
# are crossed by new data, and an evaluation scans the last week (too much for every OTLP request)
ALERT_INTERVAL = float(os.environ.get("GOLEM_ALERT_INTERVAL") or 20.0)
ANALYSIS_INTERVAL = 300.0  # seconds between looks for queued analysis runs (a SessionStart wakes it at once)
DISPLAY_BUDGET = 0.5  # seconds a SessionStart waits for its display text; the hook gives up at 1 s
SIGNALS = ("logs", "metrics", "traces")
# how long `serve --detach` waits for the daemon to answer: 15 s was too short on a busy 2-core
# machine (start-ups of 15-16 s were measured under a load average of 18)
DETACH_WAIT_S = 30.0

Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]]


# -- small helpers -------------------------------------------------------------------------------

def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return float(o)
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS),
                    status_code=status, media_type="application/json", headers=headers)


def error_response(e: GolemError) -> Response:
    body: dict[str, Any] = {"error": str(e)}
    if isinstance(e, InvalidInput) and e.problems:
        body["problems"] = e.problems
    return json_response(body, e.http_status)


class Stats:
    """Counters for the periodic log summary; approximate under threads, which is fine for a log."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.records = 0
        self.rejected = 0
        self.failed = 0
        self.hooks = 0
        self.spooled = 0
        self.watched_files = 0

    def take(self) -> dict[str, int]:
        snap = dict(vars(self))
        self.reset()
        return snap


# -- bodies --------------------------------------------------------------------------------------

async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when asked; PayloadTooLarge as soon as it passes ``limit``."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            declared = int(cl)
        except ValueError as e:
            raise InvalidInput(f"Content-Length {cl!r} is not a number") from e
        if declared > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes "
                                  "(max_body_bytes in settings.json); send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # no or a lying Content-Length: stop reading, do not buffer the rest
            raise PayloadTooLarge(f"body over the limit of {limit} bytes (max_body_bytes in settings.json); "
                                  "send smaller batches")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        return gunzip(body, limit)
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding")
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress with a cap, so a small gzip bomb cannot fill memory."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInput(f"body is marked gzip but does not decompress: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes (max_body_bytes in "
                              "settings.json); send smaller batches")
    if not d.eof:
        raise InvalidInput("gzip body is truncated")
    return out


def media_type(request: Request) -> str:
    """'json' or 'protobuf' from Content-Type, else UnsupportedMediaType (415)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return "json"
    if ctype in ("application/x-protobuf", "application/protobuf"):
        return "protobuf"
    raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'!r} is not OTLP/HTTP; send application/json "
                               "or application/x-protobuf")


_PARTIAL = {"logs": "rejected_log_records", "traces": "rejected_spans", "metrics": "rejected_data_points"}


def otlp_reply(signal: str, kind: str, rejected: int, message: str) -> Response:
    """The OTLP/HTTP success reply in the request's encoding: an Export*ServiceResponse, with
    ``partial_success`` when records were rejected (or, with 0 rejected, to carry warnings)."""
    field = _PARTIAL[signal]
    if kind == "json":
        body: dict[str, Any] = {}
        if rejected or message:
            camel = "".join(w.capitalize() if i else w for i, w in enumerate(field.split("_")))
            body["partialSuccess"] = {camel: rejected, "errorMessage": message}
        return json_response(body)
    msg = _pb_response(signal)
    if rejected or message:
        setattr(msg.partial_success, field, rejected)
        msg.partial_success.error_message = message
    return Response(msg.SerializeToString(), media_type="application/x-protobuf")


_NOUN = {"logs": "log records", "traces": "spans", "metrics": "data points"}


class ThrottledLog:
    """Warnings about what a sender keeps getting wrong: the first at once, then at most one a
    minute per kind with how many were not logged (an exporter that sends the same bad field in
    every batch must not fill the log)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        at, quiet = self.last.get(kind, (-self.every, 0))
        if now - at < self.every:
            self.last[kind] = (at, quiet + 1)
            return
        more = f" ({quiet} more like it not logged)" if quiet else ""
        log.warning("%s: %s%s", kind, message, more)
        self.last[kind] = (now, 0)


def problems_message(batch: Batch, records: int, noun: str, shown: int = 5) -> str:
    """What was rejected or left out of a batch, in a line: the first few problems and a count."""
    if not batch.skipped:
        return ""
    rejected = batch.rejected()
    head = (f"{rejected} of {records} {noun} not stored" if rejected
            else f"all {records} {noun} stored, some values left out")
    parts = [s.reason for s in batch.skipped[:shown]]
    more = len(batch.skipped) - shown
    tail = f"; {more} more problem(s) in the daemon's log" if more > 0 else ""
    return f"{head}: " + "; ".join(parts) + tail + "; the rest was stored"


def _pb_response(signal: str) -> Any:
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        return ExportLogsServiceResponse()
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
        return ExportMetricsServiceResponse()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    return ExportTraceServiceResponse()


# -- security ------------------------------------------------------------------------------------

class Guard:
    """ASGI middleware: Origin and Host checks against DNS rebinding, and the bearer token.

    The token is sent as ``Authorization: Bearer <token>`` by every client; a browser cannot, so the
    dashboard's pages (GET ``/``, ``/dashboard``) also take it once as ``?token=`` (the link that
    ``golem-mcp dashboard`` opens), which answers with a redirect to the same page without it and
    an HttpOnly, SameSite=Strict cookie that later page loads carry. The cookie opens the pages
    only, never an API or MCP route, so another page on a loopback port cannot use it to write.

    Plain ASGI (not BaseHTTPMiddleware) so streamed MCP responses pass through untouched.
    """

    PAGES = frozenset({"/", "/dashboard"})

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        problem: tuple[int, str] | Response | None = self.check(path, headers)
        if problem is None and self.token and path != "/healthz":
            problem = self.authorize(scope, path, headers)
        if isinstance(problem, Response):
            await problem(scope, receive, send)
            return
        if problem:
            status, message = problem
            extra = {"www-authenticate": "Bearer"} if status == 401 else None
            await json_response({"error": message}, status, extra)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """Origin and Host (DNS rebinding); every route, /healthz too."""
        origin = headers.get("origin")
        if origin is not None and not is_loopback_origin(origin):
            return 403, f"requests from web origin {origin!r} are refused: golem-mcp serves local tools only"
        if self.loopback_only:
            host = headers.get("host", "")
            if not is_loopback_host(host):
                return 403, (f"Host {host!r} is not a loopback address; connect to 127.0.0.1, [::1] or localhost "
                             "(DNS names are refused: they could point anywhere)")
        return None

    def _is_token(self, candidate: str | None) -> bool:
        assert self.token is not None
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def authorize(self, scope: Scope, path: str, headers: dict[str, str]) -> tuple[int, str] | Response | None:
        """None when the request carries the token; a redirect that sets the page cookie; or 401."""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self._is_token(auth[7:].strip()):
            return None
        page = path in self.PAGES and scope.get("method") in ("GET", "HEAD")
        if page:
            port = (scope.get("server") or (None, None))[1]
            cookie_name = f"golem_token_{port}" if port else "golem_token"
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given and self._is_token(given[-1]):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                return Response(status_code=303, headers={
                    "location": path + (f"?{rest}" if rest else ""), "cache-control": "no-store",
                    "referrer-policy": "no-referrer",
                    "set-cookie": f"{cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"})
            cookies = SimpleCookie()
            with contextlib.suppress(CookieError):  # a malformed Cookie header is no token
                cookies.load(headers.get("cookie", ""))
            if not given and cookie_name in cookies and self._is_token(cookies[cookie_name].value):
                return None
            return Response("golem-mcp: this page needs the daemon's token. Open it with `golem-mcp dashboard`, "
                            "which opens a link carrying it.\n", status_code=401, media_type="text/plain",
                            headers={"cache-control": "no-store"})
        return 401, ("missing or wrong token: send 'Authorization: Bearer <token>'. Local clients read it from "
                     "GOLEM_TOKEN or the daemon's data folder by themselves")


# -- group commit --------------------------------------------------------------------------------

class GroupWriter:
    """One thread writes to the store; batches that arrive while a write runs go into the next one.

    A DuckDB transaction costs a few milliseconds per table whatever its size, so under load many
    small OTLP and hook batches share one commit (the importer batches the same way; the store's
    merge policies make a merged write equal to separate ones). Each caller still gets its answer
    only after the transaction holding its rows committed. If a merged write fails, its batches are
    retried one by one, so one bad batch cannot fail the others.
    """

    MAX_ROWS = 50_000  # bound one transaction's time, and so the latency of those queued behind it

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Batch, Future[None]] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.commits = 0

    async def write(self, batch: Batch) -> None:
        """Write ``batch``; returns once it is committed, raises what the store raised."""
        if not batch.count():
            return
        fut: Future[None] = Future()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="golem-writer", daemon=True)
                self.thread.start()
            self.queue.put((batch, fut))
        await asyncio.wrap_future(fut)

    def close(self, timeout: float = 10.0) -> None:
        with self.lock:
            t = self.thread
            if t is None:
                return
            self.queue.put(None)
            self.thread = None
        t.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            items = [item]
            rows = item[0].count()
            stop = False
            while rows < self.MAX_ROWS:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
                rows += nxt[0].count()
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[Batch, Future[None]]]) -> None:
        if len(items) > 1:
            merged = Batch()
            for b, _ in items:
                merged.extend(b)
            owner: dict[int, Batch] = {}

            def report(row: dict, problem: Skipped) -> None:
                # a problem belongs to the request its row came from, which answers with it
                if not owner:
                    owner.update((id(r), b) for b, _ in items for rs in b.rows.values() for r in rs)
                owner.get(id(row), merged).skipped.append(problem)

            try:
                self.store.write(merged, report)
            except Exception:  # noqa: BLE001 - find the culprit by writing each batch on its own
                log.warning("a merged write of %d batches failed; writing them one by one", len(items))
            else:
                self.commits += 1
                for _, f in items:
                    f.set_result(None)
                return
        for b, f in items:
            try:
                self.store.write(b)
            except Exception as e:  # noqa: BLE001 - handed to the waiting request, which answers 500
                f.set_exception(e)
            else:
                self.commits += 1
                f.set_result(None)


# -- background work -----------------------------------------------------------------------------

class Background:
    """Threads next to the server: transcript watcher, spool drainer, alerts, periodic log summary,
    and the analysis runner (seed 003's auto-trigger: a SessionStart queues a run when the last
    successful one is older than ``analysis_max_age_days``; queued runs run here, one at a time,
    never on a request's path).

    Nothing here may stop the daemon: each round's exception is logged (once a minute at most when
    it repeats) and the next round runs.
    """

    def __init__(self, store: Store, settings: Settings, stats: Stats, watch: list[Path],
                 spool: Path | None, import_lock: threading.Lock, writer: GroupWriter | None = None) -> None:
        self.store = store
        self.writer = writer
        self.ingested = 0           # rows the watcher and the spool drainer wrote (the writer counts its own)
        self._alerts_seen = -1
        self.settings = settings
        self.stats = stats
        self.watch = watch
        self.spool = spool
        self.import_lock = import_lock
        self.stop_event = threading.Event()
        self.spool_wake = threading.Event()
        self.analysis_wake = threading.Event()
        self.session_started = threading.Event()  # a SessionStart arrived since the analysis thread last looked
        self._recovered = False
        self.threads: list[threading.Thread] = []
        self._last_error: dict[str, tuple[str, float]] = {}

    def start(self) -> None:
        jobs: list[tuple[str, float, Callable[[], None]]] = [("summary", SUMMARY_INTERVAL, self.summary)]
        if self.spool is not None:
            jobs.append(("spool", SPOOL_INTERVAL, self.drain_spool))
        if self.watch:
            jobs.append(("watch", WATCH_INTERVAL, self.scan))
        if ALERT_INTERVAL > 0:
            jobs.append(("alerts", ALERT_INTERVAL, self.alerts))
        jobs.append(("analysis", ANALYSIS_INTERVAL, self.analysis))
        for name, interval, fn in jobs:
            t = threading.Thread(target=self._loop, args=(name, interval, fn), name=f"golem-{name}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.spool_wake.set()
        self.analysis_wake.set()
        self.store.interrupt_readers(timeout)  # an analysis run in progress stops (and says so) at once
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wake_spool(self) -> None:
        """Drain now rather than at the next interval (a hook was just journaled)."""
        self.spool_wake.set()

    def session_start(self) -> None:
        """A session started: the analysis thread checks the last run's age (and runs one if due)."""
        self.session_started.set()
        self.analysis_wake.set()

    def _loop(self, name: str, interval: float, fn: Callable[[], None]) -> None:
        # drain, scan and run queued analyses at once on start; the others after a while
        first = name not in ("summary", "alerts")
        wake = {"spool": self.spool_wake, "analysis": self.analysis_wake}.get(name)
        while not self.stop_event.is_set():
            if not first:
                if wake is not None:
                    wake.wait(interval)
                    wake.clear()
                    if self.stop_event.is_set():
                        break
                elif self.stop_event.wait(interval):
                    break
            first = False
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a failing round must not end the thread or the daemon
                self._report(name, e)

    def _report(self, name: str, e: Exception) -> None:
        text = f"{type(e).__name__}: {e}"
        last = self._last_error.get(name)
        now = time.monotonic()
        if last and last[0] == text and now - last[1] < 60:
            return
        self._last_error[name] = (text, now)
        log.error("%s failed (will retry): %s", name, text, exc_info=e)

    def drain_spool(self) -> None:
        from ..ingestion.spool import drain, quarantine_path

        assert self.spool is not None
        res = drain(self.store, self.spool, self.settings.store_prompts)
        if res.files:
            self.ingested += res.payloads
            self.stats.spooled += res.payloads
            log.info("ingested %d spooled hook payloads from %d files", res.payloads, res.files)
        for s in res.skipped[:20]:
            log.warning("spool: %s", s)
        if res.quarantined:
            log.warning("spool: %d payload(s) could not be stored and were moved to %s (see golem-mcp doctor)",
                        res.quarantined, quarantine_path(self.spool))
        for f in res.failed:
            log.error("spool: %s (kept for the next drain)", f)

    def scan(self) -> None:
        from ..ingestion.importer import Importer

        paths = [p for p in self.watch if p.exists()]
        if not paths:
            return
        with self.import_lock:
            res = Importer(self.store, self.settings.store_prompts).run(paths)
        if res.files_read:
            self.ingested += res.rows
            self.stats.watched_files += res.files_read
            self.stats.records += res.rows
            log.info("watch: read %d files (%.1f MB), %d records", res.files_read, res.bytes_read / 1e6, res.rows)
        for s in res.skipped[:20]:
            log.warning("watch: skipped %s", s)

    def alerts(self) -> None:
        """Budget, error-spike and quality alerts on what was ingested: to the log file, the daemon's log
        and the webhook (each alert once, ever; see ``analysis.budgets``)."""
        from ..analysis.budgets import evaluate_alerts

        seen = self.ingested + (self.writer.commits if self.writer else 0)
        if seen == self._alerts_seen:
            return
        self._alerts_seen = seen
        for a in evaluate_alerts(self.store):
            log.warning("alert: %s", a.message)

    def analysis(self) -> None:
        from ..analysis import runs

        if not self._recovered:
            n = runs.recover_interrupted(self.store)
            if n:
                log.warning("analysis: %d run(s) left running by a stopped daemon marked failed", n)
            self._recovered = True
        if self.session_started.is_set():
            self.session_started.clear()
            try:
                max_age = float(self.settings.analysis_max_age_days)
            except (TypeError, ValueError):
                max_age = 7.0
            if max_age > 0 and runs.maybe_enqueue(self.store, max_age_days=max_age):
                log.info("analysis: the last successful run is older than %g days; queued one", max_age)
        for run in runs.run_pending(self.store):
            took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0
            log.info("analysis run %d (%s) %s in %.1fs: %s", run.run_id, run.trigger, run.status, took,
                     run.error_detail or run.produced)
        # keep the analysis' per-day aggregates up to date in idle time: the next run finds them warm
        from ..analysis.snapshot import warm_cache

        s = time.monotonic()
        n = warm_cache(self.store)
        if n:
            log.info("analysis cache: %s in %.1fs", "built" if n < 0 else f"{n} day(s) refreshed",
                     time.monotonic() - s)

    def summary(self) -> None:
        s = self.stats.take()
        if any(s.values()):
            log.info("last %ds: %s", int(SUMMARY_INTERVAL), ", ".join(f"{k} {v}" for k, v in s.items() if v))


# -- the app -------------------------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]


def _endpoint(stats: Stats) -> Callable[[Endpoint], Endpoint]:
    """GolemError -> its HTTP status and message; anything else -> 500, logged, daemon unharmed."""

    def wrap(fn: Endpoint) -> Endpoint:
        async def handler(request: Request) -> Response:
            stats.requests += 1
            try:
                return await fn(request)
            except GolemError as e:
                stats.rejected += 1
                return error_response(e)
            except Exception as e:  # noqa: BLE001 - the transaction rolled back; stored data is intact
                stats.failed += 1
                log.exception("%s %s failed", request.method, request.url.path)
                return json_response({"error": f"internal error: {type(e).__name__}: {e}; nothing from this "
                                      "request was stored, data stored before is intact"}, 500)

        handler.__name__ = fn.__name__
        return handler

    return wrap


def _mcp_parts(store: Store, settings: Settings) -> tuple[list[BaseRoute], Lifespan | None]:
    """The MCP server's routes and lifespan from ``interfaces/mcp_server.py``, when it exists."""
    try:
        from .mcp_server import mcp_routes  # type: ignore[attr-defined,unused-ignore]
    except ImportError as e:
        if getattr(e, "name", None) != "golem_mcp.interfaces.mcp_server":
            log.warning("MCP server not mounted: %s", e)  # it exists but cannot import: say why
        return [], None
    try:
        routes, lifespan = mcp_routes(store, settings)
    except Exception:  # noqa: BLE001 - OTLP and hooks must keep working without MCP
        log.exception("MCP server not mounted: mcp_routes() failed")
        return [], None
    return list(routes or []), lifespan


def create_app(store: Store, settings: Settings | None = None, *, token: str | None = None,
               loopback_only: bool = True, watch: list[Path] | None = None,
               spool: Path | None = None, mount_mcp: bool = True, mcp_snapshot: bool = False) -> ASGIApp:
    """The daemon's ASGI app over ``store``; usable in-process (tests) as well as by :func:`serve`.

    ``watch``: transcript folders to scan every few seconds; ``spool``: the hook spool folder to
    drain (None: neither runs). ``token``: bearer token required on all but /healthz.
    ``mcp_snapshot``: once started, write the MCP list answers the stdio bridge gives while a
    daemon starts (``mcp_stdio.record_snapshot``).

    MCP contract: when ``golem_mcp.interfaces.mcp_server`` defines
    ``mcp_routes(store, settings) -> tuple[list[starlette.routing.BaseRoute], lifespan | None]``,
    its routes are mounted after ours (so they cannot shadow /v1, /hooks, /api, /healthz) and
    ``lifespan`` — a callable taking the Starlette app and returning an async context manager
    (e.g. one that runs the MCP session manager) — is entered inside the app's lifespan. A missing
    module is skipped silently; one that fails to import, build or start is logged and skipped,
    and everything else keeps serving.
    """
    settings = settings or store.settings
    stats = Stats()
    import_lock = threading.Lock()
    ep = _endpoint(stats)
    limit = int(settings.max_body_bytes)

    writer = GroupWriter(store)
    partial_log = ThrottledLog()
    from .dashboard import PageCache

    pages = PageCache()

    def map_otlp(signal: str, body: bytes, kind: str) -> tuple[Batch, int]:
        from ..ingestion import otlp

        doc = otlp.decode(signal, body, "application/json" if kind == "json" else "application/x-protobuf")
        batch = Batch()
        n = otlp.to_batch(signal, doc, batch, settings.store_prompts)
        if n and batch.rejected() >= n:
            # nothing decodes: the one case that is the sender's error as a whole
            raise InvalidInput(f"none of the {n} OTLP {_NOUN[signal]} in the body could be read; fix the "
                               "exporter's data and send again", [str(s) for s in batch.skipped[:10]])
        return batch, n

    async def otlp_endpoint(request: Request) -> Response:
        signal = request.path_params["signal"]
        if signal not in SIGNALS:
            return json_response({"error": f"unknown OTLP signal {signal!r}; use /v1/logs, /v1/metrics or /v1/traces"},
                                 404)
        kind = media_type(request)
        body = await read_body(request, limit)
        batch, n = await anyio.to_thread.run_sync(map_otlp, signal, body, kind)
        await writer.write(batch)  # the store's value checks add what they refused to batch.skipped
        stats.records += n
        message = problems_message(batch, n, _NOUN[signal])
        if message:
            partial_log.warning(f"POST /v1/{signal}", message)
        return otlp_reply(signal, kind, batch.rejected(), message)

    def map_hooks(body: bytes, journal: bool = False) -> tuple[Batch, int, bool]:
        from ..ingestion.hooks import hook_to_batch
        from ..ingestion.records import now_us
        from ..redaction import redact_value

        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"hook payload is not JSON: {e}") from e
        items = payload if isinstance(payload, list) else [payload]
        batch = Batch()
        received = now_us()
        n = 0
        session_start = False
        lines: list[bytes] = []
        for i, p in enumerate(items, start=1):
            # a payload replayed from a spool or capture keeps the time it was first received
            stamp = p.get("_golem_received_us") if isinstance(p, dict) else None
            if hook_to_batch(p, batch, stamp if isinstance(stamp, int) else received, settings.store_prompts,
                             source="POST /hooks", line=i):
                n += 1
                session_start = session_start or p.get("hook_event_name") == "SessionStart"
                if journal:  # the spool holds no secret
                    lines.append(orjson.dumps(redact_value({**p, "_golem_received_us": stamp if isinstance(stamp, int)
                                                            else received})) + b"\n")
        if not n:
            raise InvalidInput("no hook payload in the body", [str(s) for s in batch.skipped[:10]])
        if journal and spool is not None:
            from ..ingestion.spool import append

            append(str(spool), b"".join(lines))
        return batch, n, session_start

    async def hooks_endpoint(request: Request) -> Response:
        body = await read_body(request, limit)
        # ``?ack=spooled`` (what ``golem-mcp hook`` sends): reply once the payload is journaled to
        # the spool file, which the drainer commits moments later. As durable as a commit (it is
        # on disk, and a crash leaves it for the next start), without making Claude Code wait
        # for a DuckDB transaction on every hook event.
        journal = request.query_params.get("ack") == "spooled" and spool is not None
        batch, n, session_start = await anyio.to_thread.run_sync(map_hooks, body, journal)
        if journal:
            background.wake_spool()
            reply: dict[str, Any] = {"ok": True, "queued": n}
        else:
            await writer.write(batch)
            reply = {"ok": True, "stored": n}
        stats.hooks += n
        if batch.skipped:
            reply["skipped"] = [str(s) for s in batch.skipped]
        if session_start:
            text = await session_start_display(store)
            if text:
                reply["display"] = text
            background.session_start()  # queue an analysis if the last one is old; never waited for
        return json_response(reply)

    async def wake_endpoint(request: Request) -> Response:
        # `golem-mcp hook` appended to the spool itself and asks for it to be drained now
        background.wake_spool()
        return json_response({"ok": True})

    async def import_endpoint(request: Request) -> Response:
        args = await _json_body(request, limit)
        paths = args.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidInput("'paths' must be a non-empty list of file or folder paths")

        def run() -> dict:
            from ..ingestion.importer import Importer

            with import_lock:
                return Importer(store, settings.store_prompts).run(paths).as_dict()

        result = await anyio.to_thread.run_sync(run)
        stats.records += result.get("rows", 0)
        return json_response(result)

    async def report_endpoint(request: Request) -> Response:
        from ..analysis.cost import cost_by

        args = await _json_body(request, limit)
        by = args.get("by") or ["workflow", "stage"]
        if isinstance(by, str):
            by = [b.strip() for b in by.split(",") if b.strip()]
        filters = args.get("filters") or {}
        if not isinstance(by, list) or not isinstance(filters, dict):
            raise InvalidInput("'by' must be a list of groupings and 'filters' an object")
        since = _parse_time(args.get("since"), "since")
        limit_rows = args.get("limit")
        if limit_rows is not None and (not isinstance(limit_rows, int) or limit_rows < 1):
            raise InvalidInput("'limit' must be a positive integer")
        rows = await anyio.to_thread.run_sync(lambda: cost_by(store, by, filters, since=since, limit=limit_rows))
        return json_response(rows)

    async def cli_endpoint(request: Request) -> Response:
        # `golem-mcp analyze|findings|budget|weekly` while the daemon owns the file: the same command,
        # run here against the open store (analysis code only; no SQL from the caller)
        from .cli_analysis import run_served

        args = await _json_body(request, limit)
        argv = args.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise InvalidInput("'argv' must be a list of strings")
        return json_response(await anyio.to_thread.run_sync(run_served, store, argv))

    async def status_endpoint(request: Request) -> Response:
        return json_response(await anyio.to_thread.run_sync(store.table_counts))

    async def dashboard_endpoint(request: Request) -> Response:
        from .dashboard import CSP, parse_days

        days = parse_days(request.query_params.get("days"))
        page = await anyio.to_thread.run_sync(pages.get, store, days)
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def healthz(request: Request) -> Response:
        # what a second daemon, failing to bind this port, tells its user about the one holding it
        return json_response({"ok": True, "service": "golem-mcp", "version": __version__, "pid": os.getpid(),
                              "data_dir": str(data_dir())})

    routes: list[BaseRoute] = [
        Route("/healthz", ep(healthz), methods=["GET"]),
        Route("/", ep(dashboard_endpoint), methods=["GET"]),
        Route("/dashboard", ep(dashboard_endpoint), methods=["GET"]),
        Route("/v1/{signal}", ep(otlp_endpoint), methods=["POST"]),
        Route("/hooks", ep(hooks_endpoint), methods=["POST"]),
        Route("/api/import", ep(import_endpoint), methods=["POST"]),
        Route("/api/report", ep(report_endpoint), methods=["POST"]),
        Route("/api/status", ep(status_endpoint), methods=["GET"]),
        Route("/api/cli", ep(cli_endpoint), methods=["POST"]),
        Route("/api/wake", ep(wake_endpoint), methods=["POST"]),
        Route("/metrics", ep(metrics_endpoint(store)), methods=["GET"]),
    ]
    mcp_routes, mcp_lifespan = _mcp_parts(store, settings) if mount_mcp else ([], None)
    routes.extend(mcp_routes)
    background = Background(store, settings, stats, list(watch or []), spool, import_lock, writer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if mcp_lifespan is not None:
                try:
                    await stack.enter_async_context(mcp_lifespan(app))
                except Exception:  # noqa: BLE001 - the store must stay reachable for OTLP and hooks
                    log.exception("MCP server failed to start; serving without it")
            background.start()
            snapshot = None
            if mcp_snapshot and mcp_routes:
                snapshot = asyncio.get_running_loop().create_task(_record_mcp_snapshot(app))
            try:
                yield
            finally:
                if snapshot is not None:
                    snapshot.cancel()
                background.stop()
                writer.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.stats = stats
    app.state.writer = writer
    return Guard(app, token, loopback_only)


async def _record_mcp_snapshot(app: ASGIApp) -> None:
    from .mcp_stdio import record_snapshot

    try:
        await record_snapshot(app)
    except Exception:  # noqa: BLE001 - without it the bridge waits for the daemon, as before
        log.exception("could not write the MCP snapshot for the stdio bridge")


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    try:
        args = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"request body is not JSON: {e}") from e
    if not isinstance(args, dict):
        raise InvalidInput("request body must be a JSON object")
    return args


def _parse_time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as e:
        raise InvalidInput(f"'{name}' must be an ISO date or time such as 2026-11-01, not {value!r}") from e


async def session_start_display(store: Store) -> str | None:
    """Text for a new session's context from ``analysis.runs.session_start_display(store)``, if any.

    Contract: that function returns a short string (or None) quickly; we wait at most
    DISPLAY_BUDGET seconds, since the hook client gives up after 1 s. Failures are logged only.
    """
    try:
        from ..analysis.runs import session_start_display as fn  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    text: Any = None
    try:
        with anyio.move_on_after(DISPLAY_BUDGET):
            text = await anyio.to_thread.run_sync(fn, store, abandon_on_cancel=True)
    except Exception:  # noqa: BLE001 - a display is a courtesy; the hook event is already stored
        log.exception("session_start_display failed")
        return None
    return text if isinstance(text, str) and text.strip() else None


# -- state file ----------------------------------------------------------------------------------

def read_state() -> dict[str, Any] | None:
    from .client import read_state as _read

    return _read()


def write_state(state: dict[str, Any]) -> None:
    """Atomically (write + rename), readable by the user only: it may hold the token."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def remove_state(pid: int) -> None:
    """Remove the state file if it still names this pid (a newer daemon may have replaced it)."""
    st = read_state()
    if st and st.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            state_file().unlink()


def healthy(url: str, timeout: float = 1.0) -> bool:
    from .client import find_daemon

    old = os.environ.get("GOLEM_URL")
    os.environ["GOLEM_URL"] = url
    try:
        return find_daemon(timeout) is not None
    finally:
        if old is None:
            os.environ.pop("GOLEM_URL", None)
        else:
            os.environ["GOLEM_URL"] = old


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # a zombie (exited, not yet reaped by its parent) still answers kill(0); it is gone for us
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- serve / stop --------------------------------------------------------------------------------

class _RedactingFormatter(logging.Formatter):
    """Log lines may quote what clients sent (a skipped line, a refused body, a request's query
    string, an exception's message): they are redacted like everything stored."""

    def format(self, record: logging.LogRecord) -> str:
        from ..redaction import redact

        return redact(super().format(record))


def _setup_logging() -> None:
    fmt = _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        data_dir().mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(data_dir() / "daemon.log", maxBytes=5_000_000,
                                                             backupCount=3))
    except OSError as e:
        print(f"golem-mcp: cannot write {data_dir() / 'daemon.log'} ({e}); logging to stderr only", file=sys.stderr)
    for name in ("golem_mcp", "uvicorn"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.INFO)
        lg.propagate = False
        for h in handlers:
            h.setFormatter(fmt)
            lg.addHandler(h)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        holder = _port_holder(host, port)
        if holder and Path(str(holder.get("data_dir", ""))).resolve() == data_dir().resolve():
            raise AlreadyServing(f"golem-mcp: a daemon of this data folder already listens on {host}:{port} "
                                 f"(pid {holder.get('pid')})") from e
        who = (f"another golem-mcp daemon (pid {holder.get('pid')}, data folder {holder.get('data_dir', '?')}; "
               f"this one's is {data_dir()})" if holder else "another program")
        raise GolemError(f"cannot listen on {host}:{port}: {who} holds that port ({e.strerror}). Stop it, or "
                         f"choose another port for this daemon: `golem-mcp serve --port N` or GOLEM_PORT=N in the "
                         "environment (then `golem-mcp install --port N` so Claude Code's telemetry follows; "
                         "--port 0 takes any free port)") from e
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class AlreadyServing(GolemError):
    """This data folder's daemon already holds the port (its state file was gone, or two started at once)."""


def _port_holder(host: str, port: int) -> dict[str, Any] | None:
    """What /healthz at host:port says when a golem-mcp daemon answers there, else None."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host.strip("[]") == "::" else host.strip("[]"))
    try:
        with socket.create_connection((target, port), timeout=1.0) as s:
            s.settimeout(2.0)
            s.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        info = orjson.loads(data.partition(b"\r\n\r\n")[2])
    except orjson.JSONDecodeError:
        return None
    if isinstance(info, dict) and info.get("ok") is True and "pid" in info and "version" in info:
        return info
    return None


def _running() -> dict[str, Any] | None:
    """The state of a daemon that answers its health check, else None."""
    st = read_state()
    if st and isinstance(st.get("url"), str) and healthy(st["url"]):
        return st
    return None


def _token(chosen: str | None) -> str:
    """The token this daemon requires: the one chosen (--token, GOLEM_TOKEN), else the data folder's."""
    from ..home import check_token, ensure_token

    try:
        return check_token(chosen) if chosen else ensure_token()
    except ValueError as e:
        where = "--token/GOLEM_TOKEN" if chosen else str(token_file())
        raise GolemError(f"the token in {where} cannot be used: {e}. Choose another"
                         + ("" if chosen else " (or delete the file: a new one is made)")) from e
    except OSError as e:
        raise GolemError(f"cannot read or create the token file {token_file()} ({e}); check the data folder's "
                         "permissions, or choose a token with --token/GOLEM_TOKEN") from e


def serve(args: argparse.Namespace) -> int:
    """``golem-mcp serve``: run the daemon in the foreground (or ``--detach``)."""
    host = getattr(args, "host", None) or DEFAULT_HOST
    chosen = getattr(args, "token", None) or None
    if not is_loopback_host(host) and not chosen:
        raise GolemError(f"refusing to listen on {host} without a token: anyone on that network could read "
                         "your usage. Use the default 127.0.0.1, or pass --token (or GOLEM_TOKEN)")
    token = _token(chosen)
    db = Path(args.db).expanduser().resolve() if getattr(args, "db", None) else default_db_path().resolve()
    running = _running()
    if running:
        same = Path(str(running.get("db", ""))).expanduser().resolve() == db
        if same:
            print(f"golem-mcp daemon already running at {running['url']} (pid {running.get('pid')}, db {db})")
            return 0
        print(f"golem-mcp: a daemon already runs at {running['url']} with another database "
              f"({running.get('db')}); stop it first (`golem-mcp stop`) or use another GOLEM_HOME", file=sys.stderr)
        return 1
    if getattr(args, "detach", False):
        if int(args.port):  # a held port is said here, at once, not after the child's start-up
            try:
                _bind(host, int(args.port)).close()
            except AlreadyServing as e:
                print(e)
                return 0
        return _detach(args, host, db, chosen)

    import uvicorn

    try:
        # before opening the store: a held port fails at once, saying who holds it
        sock = _bind(host, int(args.port))
    except AlreadyServing as e:
        print(e)
        return 0
    _setup_logging()
    settings = Settings.load()
    try:
        store = Store(db, settings=settings)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    url_host = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{url_host}:{port}"
    watch = [] if getattr(args, "no_watch", False) else [
        Path(w).expanduser() for w in (getattr(args, "watch", None) or [str(claude_projects_dir())])]
    app = create_app(store, settings, token=token, loopback_only=is_loopback_host(host), watch=watch,
                     spool=spool_dir(), mcp_snapshot=True)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False)
    # An OTLP body of 500 records becomes ~50,000 short-lived dicts that reference counting frees.
    # At the default threshold (700 allocations) the cycle collector ran dozens of times a body and
    # its passes walked every live object (bodies in flight, queued batches): half the ingest CPU.
    gc.set_threshold(100_000, 50, 100)
    server = uvicorn.Server(config)
    pid = os.getpid()
    state: dict[str, Any] = {"url": url, "pid": pid, "port": port, "host": host, "db": str(db),
                             "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                             "version": __version__, "token": token}
    write_state(state)
    log.info("golem-mcp %s serving %s on %s (watching %s); dashboard at %s/", __version__, db, url,
             ", ".join(map(str, watch)) or "nothing", url)
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default SIGTERM
    # action that would kill us before the state file is removed, so let those signals be no-ops
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        remove_state(pid)
        sock.close()
        store.close()
        log.info("golem-mcp daemon stopped")
    return 0


def _detach(args: argparse.Namespace, host: str, db: Path, token: str | None) -> int:
    cmd = [sys.executable, "-m", "golem_mcp", "serve", "--host", host, "--port", str(args.port), "--db", str(db)]
    if getattr(args, "no_watch", False):
        cmd.append("--no-watch")
    for w in getattr(args, "watch", None) or []:
        cmd += ["--watch", str(Path(w).expanduser().resolve())]
    env = dict(os.environ)
    if token:
        env["GOLEM_TOKEN"] = token  # not on the command line, where every local user could read it
    data_dir().mkdir(parents=True, exist_ok=True)
    out_path = data_dir() / "daemon.out"
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + DETACH_WAIT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code == 0:  # another start won the race for the port: wait for that daemon instead
            running = _running()
            if running:
                print(running["url"])
                return 0
            time.sleep(0.1)
            continue
        if code is not None:
            print(f"golem-mcp: the daemon exited at start (code {code}):\n{_tail(out_path)}", file=sys.stderr)
            return 1
        st = read_state()
        if st and st.get("pid") == proc.pid and healthy(str(st.get("url")), 0.5):
            print(st["url"])
            return 0
        time.sleep(0.1)
    print(f"golem-mcp: the daemon (pid {proc.pid}) did not answer within {DETACH_WAIT_S:.0f} s; see {out_path} and "
          f"{data_dir() / 'daemon.log'}", file=sys.stderr)
    return 1


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _is_golem(pid: int) -> bool:
    """Guard against a stale state file whose pid now belongs to some other program."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the state file
    return b"golem" in cmdline


def stop() -> int:
    """``golem-mcp stop``: SIGTERM the daemon named in the state file and wait for it to exit."""
    st = read_state()
    if not st:
        print("golem-mcp: no daemon running (no state file)")
        return 0
    pid = st.get("pid")
    if not _pid_alive(pid) or not isinstance(pid, int) or not _is_golem(pid):
        with contextlib.suppress(FileNotFoundError):
            state_file().unlink()
        print(f"golem-mcp: no daemon running (removed a stale state file for pid {pid})")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child (tests)
        time.sleep(0.05)
    else:
        print(f"golem-mcp: the daemon (pid {pid}) did not stop within 15 s; it may be finishing a long "
              f"import. Try again, or `kill {pid}`", file=sys.stderr)
        return 1
    remove_state(pid)
    print(f"golem-mcp: stopped the daemon (pid {pid}, {st.get('url')})")
    return 0

