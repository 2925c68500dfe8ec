"""The daemon's ASGI app: its routes (OTLP, hooks, the CLI's API, the dashboard, /healthz, MCP) over
an open store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from ...config import Settings
from ...errors import GolemError, InvalidInput
from ...ingestion.otlp import NOUN
from ...store.batch import Batch
from ...store.db import Store
from ..metrics import metrics_endpoint
from .background import Background, Stats
from .bodies import (
    ThrottledLog,
    error_response,
    json_body,
    json_response,
    media_type,
    otlp_reply,
    problems_message,
    read_body,
)
from .decoding import Decoder
from .guard import Guard
from .startup import health

log = logging.getLogger("golem_mcp.daemon")

# rows landed in the write inbox and not yet written past which an OTLP request waits until the
# writer is back under it: the queue (rows held in memory) stops growing (~10,000 records)
INBOX_MAX_ROWS = 20_000
DISPLAY_BUDGET = 0.5  # seconds a SessionStart waits for its display text; the hook gives up at 1 s
CATCH_UP_WAIT_S = 2.0  # seconds an MCP answer waits for a running import before answering without it
CATCH_UP_LIVE_S = 3600.0  # no hook payload for this long: no session is live here, nothing to catch up
SIGNALS = ("logs", "metrics", "traces")

Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]]

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


def _mcp_parts(store: Store, settings: Settings,
               catch_up: Callable[[str], None] | None = None) -> tuple[list[BaseRoute], Lifespan | None]:
    """The MCP server's routes and lifespan from ``interfaces/mcp_server.py``, when it exists."""
    try:
        from ..mcp_server import mcp_routes  # type: ignore[attr-defined,unused-ignore]
    except ImportError as e:
        if getattr(e, "name", None) != "golem_mcp.interfaces.mcp_server":
            log.warning("MCP server not mounted: %s", e)  # it exists but cannot import: say why
        return [], None
    try:
        routes, lifespan = mcp_routes(store, settings, catch_up=catch_up)
    except Exception:  # noqa: BLE001 - OTLP and hooks must keep working without MCP
        log.exception("MCP server not mounted: mcp_routes() failed")
        return [], None
    return list(routes or []), lifespan


def create_app(store: Store, settings: Settings | None = None, *, token: str | None = None,
               loopback_only: bool = True, watch: list[Path] | None = None,
               spool: Path | None = None, mount_mcp: bool = True, mcp_snapshot: bool = False) -> ASGIApp:
    """The daemon's app over an open ``store`` behind its :class:`~.guard.Guard` (in-process use:
    tests). ``token``: bearer token required on all but /healthz; the rest as :func:`build_app`."""
    return Guard(build_app(store, settings, watch=watch, spool=spool, mount_mcp=mount_mcp,
                           mcp_snapshot=mcp_snapshot), token, loopback_only)


def build_app(store: Store, settings: Settings | None = None, *, watch: list[Path] | None = None,
              spool: Path | None = None, mount_mcp: bool = True, mcp_snapshot: bool = False,
              decode_workers: int = 0) -> Starlette:
    """The daemon's routes over ``store``, without the guard (``serve`` puts it in front of
    :class:`~.startup.Opening`, which hands requests to this app once the store is open).

    ``watch``: transcript folders to scan every few seconds; ``spool``: the hook spool folder to
    drain (None: neither runs). ``decode_workers``: processes that decode OTLP bodies (0: a thread
    of this process does, as in-process tests want).
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

    partial_log = ThrottledLog()
    from ..dashboard import PageCache

    pages = PageCache()

    inbox = bool(settings.otlp_inbox) and store.records_facts
    decoder = Decoder(decode_workers, settings.store_prompts, store.check_specs if inbox else None)
    last_hook = [-CATCH_UP_LIVE_S - 1.0]  # monotonic time of the last hook payload, posted or drained

    def note_hooks() -> None:
        last_hook[0] = time.monotonic()

    async def otlp_endpoint(request: Request) -> Response:
        signal = request.path_params["signal"]
        if signal not in SIGNALS:
            return json_response({"error": f"unknown OTLP signal {signal!r}; use /v1/logs, /v1/metrics or /v1/traces"},
                                 404)
        kind = media_type(request)
        if inbox:
            body = await read_body(request, limit)
            # checked, redacted and committed to the write inbox (what the checks refused is in
            # batch.skipped now); resolved into facts by the writer with whatever else has arrived
            batch, n = await decoder.landed(store, signal, body, kind)
            store.submit(batch)
            if store.landed_rows() > INBOX_MAX_ROWS:  # the writer is behind: wait for it (memory stays bounded)
                await anyio.to_thread.run_sync(store.wait_landed_below, INBOX_MAX_ROWS)
        else:
            with store.coming():  # a write starting meanwhile waits for this body (store/writer.py)
                body = await read_body(request, limit)
                batch, n = await decoder.batch(signal, body, kind)
                # committed by the store's one writer; its value checks add what they refused to batch.skipped
                committed = store.submit(batch)
            await asyncio.wrap_future(committed)
        stats.records += n
        message = problems_message(batch, n, NOUN[signal])
        if message:
            partial_log.warning(f"POST /v1/{signal}", message)
        return otlp_reply(signal, kind, batch.rejected(), message)

    def map_hooks(body: bytes, journal: bool = False) -> tuple[Batch, int, bool]:
        from ...ingestion.hooks import hook_to_batch
        from ...ingestion.records import now_us
        from ...redaction import redact_value

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
        note_hooks()
        if journal and spool is not None:
            from ...ingestion.spool import append

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
            await asyncio.wrap_future(store.submit(batch))
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
        args = await json_body(request, limit)
        paths = args.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidInput("'paths' must be a non-empty list of file or folder paths")

        def run() -> dict:
            from ...ingestion.importer import Importer

            with import_lock:
                return Importer(store, settings.store_prompts).run(paths).as_dict()

        result = await anyio.to_thread.run_sync(run)
        stats.records += result.get("rows", 0)
        return json_response(result)

    async def export_endpoint(request: Request) -> Response:
        # `golem-mcp export DIR` ({"folder", "project"}) and the SessionEnd hook ({"session_end": payload})
        args = await json_body(request, limit)
        end = args.get("session_end")
        folder, project = args.get("folder"), args.get("project")
        if end is not None and not isinstance(end, dict):
            raise InvalidInput("'session_end' must be the SessionEnd hook payload (an object)")
        if end is None and (not isinstance(folder, str) or not folder or not isinstance(project, str | None)):
            raise InvalidInput("'folder' must be the export folder's path ('project' optional: a project folder)")

        def run() -> dict | None:
            from ...store.shards import export
            from ..session_export import session_end_export

            with import_lock, store.memory.heavy():  # bulk reads of what is new: the whole budget
                if end is not None:  # `folder`: the hook's setting, which may be in Claude Code's env only
                    return session_end_export(store, settings, end, background.drain_spool if spool else None,
                                              folder if isinstance(folder, str) else None)
                return export(store, str(folder), project)

        return json_response(await anyio.to_thread.run_sync(run))

    async def shards_endpoint(request: Request) -> Response:
        # `golem-mcp import DIR` with shard files: merged through the store's write path
        args = await json_body(request, limit)
        paths = args.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise InvalidInput("'paths' must be a non-empty list of shard files or folders")

        def run() -> dict:
            from ...store.shards import import_shards

            with import_lock, store.memory.heavy():
                return import_shards(store, paths)

        return json_response(await anyio.to_thread.run_sync(run))

    async def report_endpoint(request: Request) -> Response:
        from ...analysis.cost import report

        args = await json_body(request, limit)
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
        rows = await anyio.to_thread.run_sync(
            lambda: store.memory.run(lambda: report(store, by, filters, since=since, limit=limit_rows)))
        return json_response(rows)

    async def cli_endpoint(request: Request) -> Response:
        # `golem-mcp analyze|findings|budget|weekly` while the daemon owns the file: the same command,
        # run here against the open store (analysis code only; no SQL from the caller)
        from ..cli_analysis import run_served

        args = await json_body(request, limit)
        argv = args.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise InvalidInput("'argv' must be a list of strings")
        # out of memory at the store's low limit: run again with the whole budget (store/memory.py)
        return json_response(await anyio.to_thread.run_sync(lambda: store.memory.run(lambda: run_served(store, argv))))

    async def status_endpoint(request: Request) -> Response:
        def status() -> dict[str, Any]:
            return {**store.table_counts(), "write_inbox": store.inbox_state()}

        return json_response(await anyio.to_thread.run_sync(status))

    async def push_endpoint(request: Request) -> Response:
        from ...store.team import push_now

        def run() -> Any:
            with store.memory.heavy():
                return push_now(store, settings)

        return json_response(await anyio.to_thread.run_sync(run))

    async def resolution_endpoint(request: Request) -> Response:
        full = request.query_params.get("full") in ("1", "true")
        return json_response(await anyio.to_thread.run_sync(lambda: store.check_resolution(full=full)))

    async def dashboard_endpoint(request: Request) -> Response:
        from ..dashboard import CSP, parse_days

        days = parse_days(request.query_params.get("days"))
        page = await anyio.to_thread.run_sync(pages.get, store, days)
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def healthz(request: Request) -> Response:
        return json_response(health("ready"))

    routes: list[BaseRoute] = [
        Route("/healthz", ep(healthz), methods=["GET"]),
        Route("/", ep(dashboard_endpoint), methods=["GET"]),
        Route("/dashboard", ep(dashboard_endpoint), methods=["GET"]),
        Route("/v1/{signal}", ep(otlp_endpoint), methods=["POST"]),
        Route("/hooks", ep(hooks_endpoint), methods=["POST"]),
        Route("/api/import", ep(import_endpoint), methods=["POST"]),
        Route("/api/export", ep(export_endpoint), methods=["POST"]),
        Route("/api/shards", ep(shards_endpoint), methods=["POST"]),
        Route("/api/report", ep(report_endpoint), methods=["POST"]),
        Route("/api/status", ep(status_endpoint), methods=["GET"]),
        Route("/api/push", ep(push_endpoint), methods=["POST"]),
        Route("/api/resolution", ep(resolution_endpoint), methods=["GET"]),
        Route("/api/cli", ep(cli_endpoint), methods=["POST"]),
        Route("/api/wake", ep(wake_endpoint), methods=["POST"]),
        Route("/metrics", ep(metrics_endpoint(store)), methods=["GET"]),
    ]
    def catch_up(workflow_id: str) -> None:
        """Read what the live sessions of ``workflow_id`` wrote to their transcripts since they were
        last read, before an MCP answer about the workflow so far. Claude Code exports OTLP every
        few seconds, so without it an agent asking a moment after its workflow started is told of
        none of it. An import already holding the lock past CATCH_UP_WAIT_S (a first import of a
        long history) is not waited for: the answer is then what is stored. A team server reads
        what machines pushed, and reads no transcripts."""
        from ...analysis.workflows import live_transcripts
        from ...ingestion.importer import Importer, session_files

        # no hook for an hour (a team server, a benchmark, agents on other machines): no query
        if not store.records_facts or time.monotonic() - last_hook[0] > CATCH_UP_LIVE_S:
            return
        try:
            paths = [p for t in live_transcripts(store, workflow_id) for p in session_files(t)]
            if not paths or not import_lock.acquire(timeout=CATCH_UP_WAIT_S):
                return
            try:
                res = Importer(store, settings.store_prompts).run(paths)
            finally:
                import_lock.release()
            stats.records += res.rows
        except Exception:  # noqa: BLE001 - the answer from what is stored beats no answer
            log.exception("catching up workflow %s's transcripts failed; answering from the store", workflow_id)

    mcp_routes, mcp_lifespan = _mcp_parts(store, settings, catch_up) if mount_mcp else ([], None)
    routes.extend(mcp_routes)
    background = Background(store, settings, stats, list(watch or []), spool, import_lock)
    background.on_hooks = note_hooks

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
                decoder.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.stats = stats
    return app


async def _record_mcp_snapshot(app: ASGIApp) -> None:
    from ..mcp_stdio import record_snapshot

    try:
        await record_snapshot(app)
    except Exception:  # noqa: BLE001 - without it the bridge waits for the daemon, as before
        log.exception("could not write the MCP snapshot for the stdio bridge")


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
        from ...analysis.runs import session_start_display as fn  # type: ignore[attr-defined,unused-ignore]
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
