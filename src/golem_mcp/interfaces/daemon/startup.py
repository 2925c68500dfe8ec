"""The daemon's first second: answer ``/healthz`` as soon as the port is bound, open the store behind it.

Opening takes seconds (importing DuckDB, pyarrow and pydantic, migrating, mounting MCP), more on a
loaded machine, and every client waits for ``/healthz`` before it sends anything: the stdio bridge
while Claude Code waits for its tools, ``serve --detach``, the CLI. So :class:`Opening` is the ASGI
app uvicorn runs from the start. It answers ``/healthz`` itself (``"store": "opening"`` until the
store is open, then ``"ready"``), opens the store and builds the real app in a thread, and hands
every other request to that app once it is ready. A request that arrives meanwhile waits up to
``STORE_WAIT_S`` for it, then gets 503 with ``Retry-After`` (OTLP exporters retry on that; the stdio
bridge retries); hook posts get the 503 at once (the hook spools them). If the store cannot be opened, the daemon stops and says why.

Light on purpose: this module and what it imports at load time are all a daemon needs to answer its
first ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ... import __version__
from ...home import data_dir
from .asgi import json_reply

log = logging.getLogger("golem_mcp.daemon")

# how long a request waits for the store to open before a 503: long enough that a CLI call or a tool
# call made right after start is answered late rather than refused (opening took over 20 s on a
# loaded 2-core machine); an OTLP exporter's own timeout (10 s by default) ends its wait sooner, and
# it retries
STORE_WAIT_S = float(os.environ.get("GOLEM_STORE_WAIT_S") or 60.0)
RETRY_AFTER_S = 2
# answered 503 at once while opening: the hook gives up after 1 s and spools, and a request it gave
# up on must not be journaled as well once the store is open (it would be stored twice)
NO_WAIT = frozenset({"/hooks", "/api/wake"})


def health(state: str) -> dict[str, Any]:
    """The ``/healthz`` answer. ``data_dir`` and ``pid`` are what a second daemon, failing to bind
    this port, tells its user about the one holding it; ``store`` is "opening" or "ready"."""
    return {"ok": True, "service": "golem-mcp", "version": __version__, "pid": os.getpid(),
            "data_dir": data_dir(), "store": state}


class Opening:
    """ASGI app: ``/healthz`` at once, everything else through the app ``open_app`` returns.

    ``open_app()`` runs in a thread: it opens the store and returns ``(app, close)``, the real app
    (a Starlette app, whose lifespan is entered here) and what closes the store after it.
    ``on_failure(exc)`` is called when it raises (``serve`` stops the server then).
    """

    def __init__(self, open_app: Callable[[], tuple[Any, Callable[[], None]]],
                 on_failure: Callable[[BaseException], None]) -> None:
        self.open_app = open_app
        self.on_failure = on_failure
        self.app: ASGIApp | None = None
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http" and scope.get("path") == "/healthz":
            await json_reply(health("ready" if self.app is not None else "opening"))(scope, receive, send)
            return
        if self.app is None and scope.get("path") not in NO_WAIT:
            with contextlib.suppress(TimeoutError):  # answered below: still opening
                await asyncio.wait_for(self._ready.wait(), STORE_WAIT_S)
        if self.app is None:
            if scope["type"] != "http":
                return  # a websocket: no route of ours takes one
            why = (f"the daemon could not open its store: {self.error}" if self.error else
                   "the daemon is still opening its store (a first start after an upgrade migrates it); "
                   f"try again in {RETRY_AFTER_S} s")
            await json_reply({"error": why}, 503, {"retry-after": str(RETRY_AFTER_S)})(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._task = asyncio.get_running_loop().create_task(self._run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._stop.set()
                if self._task is not None:
                    await self._task
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            app, close = await loop.run_in_executor(None, self.open_app)
        except BaseException as e:  # noqa: BLE001 - said by serve, which stops the daemon
            self.error = e
            self._ready.set()
            self.on_failure(e)
            return
        try:
            async with app.router.lifespan_context(app):
                self.app = app
                self._ready.set()
                log.info("store open; serving everything")
                await self._stop.wait()
        finally:
            self.app = None
            await loop.run_in_executor(None, close)
