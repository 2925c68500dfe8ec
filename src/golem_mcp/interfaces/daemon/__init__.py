"""The daemon (``golem-mcp serve``): the one process that owns the DuckDB file.

It serves on loopback:

- ``POST /v1/logs``, ``/v1/metrics``, ``/v1/traces`` — OTLP/HTTP, JSON or protobuf, gzip accepted.
  Each body is committed to the store before the reply, so a 200 means stored.
- ``POST /hooks`` — one Claude Code hook payload (or a JSON list of them), from ``golem-mcp hook``.
- ``POST /api/import``, ``POST /api/report``, ``GET /api/status`` — what the CLI asks when a daemon
  runs (it cannot open the database itself then). ``GET /api/resolution`` (``?full=1``): whether the
  stored resolved facts equal a from-scratch resolution (``golem-mcp doctor``).
- ``GET /metrics`` — the store's totals for Prometheus (``interfaces/metrics.py``).
- ``GET /healthz`` — liveness (and which data folder it serves, for a second daemon's message), no
  token needed.
- MCP (streamable HTTP), when ``interfaces/mcp_server.py`` provides it (see :func:`create_app`).

Background threads watch the transcript folders (new sessions appear within seconds) and drain the
hook spool that ``golem-mcp hook`` writes while the daemon is down.

The package, a module per job: ``bodies`` (reading bodies, OTLP media types and replies), ``guard``
(Origin/Host checks and the token), ``app`` (the routes over an open store), ``startup`` (``/healthz``
at once, the store opened behind it), ``background`` (watcher, spool drain, alerts, analyses),
``process`` (serve, detach, stop), ``asgi`` (plain replies). Every write goes through the store's
one writer (``Store.submit``, ``store/writer.py``).

Safety: every route but ``/healthz`` requires the token (``--token``/``GOLEM_TOKEN``, else the data
folder's, made at first start: ``golem_mcp.home``). It binds 127.0.0.1 by default and refuses any
other address without a token chosen explicitly; requests whose
``Origin`` is not a loopback origin, or whose ``Host`` is not a literal loopback address or
``localhost`` while serving on loopback, get 403 (a web page must not reach the store through DNS
rebinding; the rule is ``interfaces/loopback.py``'s).
"""

from typing import Any

from .process import AlreadyServing, serve, stop

__all__ = ["AlreadyServing", "Guard", "ThrottledLog", "create_app", "json_response", "serve", "stop"]

_LAZY = {"create_app": "app", "ThrottledLog": "bodies", "json_response": "bodies", "Guard": "guard"}


def __getattr__(name: str) -> Any:
    # `golem-mcp serve` imports this package to answer /healthz within a second: the app and the
    # store (DuckDB, pyarrow, pydantic) load only when asked for, in serve's case after the bind
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
