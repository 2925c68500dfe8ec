"""``GET /metrics``: the store's totals in the Prometheus text exposition format (version 0.0.4).

The numbers come from :func:`golem_mcp.analysis.metrics.store_metrics`; this module only names and
prints them, and keeps the last reading for a while: a scrape every few seconds from several
Prometheus servers must not keep a core busy reading the store. A reading is reused while it is
younger than ``MIN_AGE`` seconds, or ten times what it took to read (a store whose reading takes
2 s is read at most every 20 s); an older one is still served while the next is read in the
background. Counters read a little late are still counters: Prometheus takes rates between the
values it saw.

The route sits behind the daemon's guard like every other route (token, loopback Host), so a
Prometheus scrape config sends the token: see the README's "Prometheus and Grafana".
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..analysis.metrics import StoreMetrics, store_metrics
from ..store.db import Store

log = logging.getLogger("golem_mcp.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MIN_AGE = 10.0  # seconds a reading is served again; see the module docstring
COST_FACTOR = 10.0  # ... or this many times the reading's own duration, whichever is longer

TOKEN_KINDS = (("input", "input_tokens"), ("output", "output_tokens"), ("cache_read", "cache_read_tokens"),
               ("cache_creation", "cache_creation_tokens"))


def _value(v: float | int) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


class _Family:
    """One metric family: its HELP and TYPE lines, then its samples (the format wants them together)."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, labels: dict[str, str], value: float | int, suffix: str = "") -> None:
        inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{self.name}{suffix}{{{inner}}} {_value(value)}" if inner
                          else f"{self.name}{suffix} {_value(value)}")


def render(m: StoreMetrics) -> str:
    """The text exposition of ``m``: one family per metric, each ending in a line feed."""
    fams: list[_Family] = []

    def family(name: str, kind: str, help_text: str) -> _Family:
        f = _Family(name, kind, help_text)
        fams.append(f)
        return f

    family("golem_build_info", "gauge", "golem-mcp's version; always 1").add({"version": __version__}, 1)
    req = family("golem_api_requests_total", "counter", "Claude API requests by stage, model and experiment")
    tok = family("golem_tokens_total", "counter", "Tokens of Claude API requests by kind (input, output, "
                 "cache_read, cache_creation), stage, model and experiment")
    cost = family("golem_cost_usd_total", "counter", "Cost in US dollars of Claude API requests (Claude Code's "
                  "recorded cost, else tokens x the price table) by stage, model and experiment")
    unpriced = family("golem_unpriced_requests_total", "counter", "Requests of a model the price table does not "
                      "know (counted at no cost): add its price to see their cost")
    retries = family("golem_api_retries_total", "counter", "Failed attempts before Claude API requests succeeded")
    for g in m.requests:
        labels = {"stage": g.stage, "model": g.model, "experiment": g.experiment}
        req.add(labels, g.requests)
        for kind, field in TOKEN_KINDS:
            tok.add({**labels, "kind": kind}, getattr(g, field))
        cost.add(labels, g.cost_usd)
        unpriced.add(labels, g.unpriced_requests)
        retries.add(labels, g.retries)
    _histogram(family("golem_api_request_duration_seconds", "histogram",
                      "Duration of Claude API requests in seconds, by stage and model"), m)
    err = family("golem_api_errors_total", "counter", "Claude API errors (rate limits, overloads, server errors) "
                 "by stage and model")
    for e in m.errors:
        err.add({"stage": e.stage, "model": e.model}, e.errors)
    calls = family("golem_tool_calls_total", "counter", "Tool calls by stage and tool")
    fails = family("golem_tool_failures_total", "counter", "Failed tool calls by stage and tool")
    for t in m.tools:
        calls.add({"stage": t.stage, "tool": t.tool}, t.calls)
        fails.add({"stage": t.stage, "tool": t.tool}, t.failures)
    wf = family("golem_workflows_total", "counter", "Workflows recorded, by path (fast-track, full) and experiment")
    for w in m.workflows:
        wf.add({"path": w.path, "experiment": w.experiment}, w.workflows)
    al = family("golem_alerts_total", "counter", "Alerts golem-mcp raised (budget, error_spike, stage_error_rate, "
                "quality_regression) by scope and budget level")
    for a in m.alerts:
        al.add({"kind": a.kind, "scope": a.scope, "level": a.level}, a.alerts)
    if m.last_request_at is not None:
        family("golem_last_api_request_timestamp_seconds", "gauge",
               "Unix time of the newest Claude API request in the store (how fresh the data is)").add(
            {}, m.last_request_at.replace(tzinfo=UTC).timestamp())
    family("golem_metrics_read_seconds", "gauge", "Seconds the last reading of the store for /metrics took").add(
        {}, m.seconds)
    return "".join(line + "\n" for f in fams for line in f.lines)


def live(store: Store) -> str:
    """The families read at each scrape, from the daemon's memory (the store's are read at most every
    few seconds, :class:`MetricsPage`)."""
    f = _Family("golem_write_inbox_rows", "gauge", "Rows of OTLP bodies answered (committed to the store's "
                "write inbox) and not yet resolved into facts: a writer falling behind shows here")
    f.add({}, store.landed_rows())
    return "".join(line + "\n" for line in f.lines)


def _histogram(f: _Family, m: StoreMetrics) -> None:
    """Cumulative buckets, +Inf = count, then sum and count, per stage and model."""
    for h in m.latency:
        labels = {"stage": h.stage, "model": h.model}
        for le, count in zip(m.latency_buckets, h.buckets, strict=True):
            f.add({**labels, "le": _value(float(le))}, count, "_bucket")
        f.add({**labels, "le": "+Inf"}, h.count, "_bucket")
        f.add(labels, h.seconds, "_sum")
        f.add(labels, h.count, "_count")


class MetricsPage:
    """The last rendering and when it was read. Only the first scrape waits for a reading; later ones
    get the last rendering at once while a stale one is read again in a thread (a reading of a large
    store can take longer than Prometheus' 10 s scrape timeout). One reading at a time."""

    def __init__(self, store: Store, min_age: float = MIN_AGE) -> None:
        self.store = store
        self.min_age = min_age
        self.lock = threading.Lock()  # held while reading
        self.text: str | None = None
        self.read_at = 0.0
        self.took = 0.0

    def get(self) -> str:
        text = self.text
        if text is None:
            with self.lock:
                if self.text is None:
                    self._read()
                return self.text or ""
        if time.monotonic() - self.read_at >= max(self.min_age, COST_FACTOR * self.took) \
                and self.lock.acquire(blocking=False):
            threading.Thread(target=self._read_and_release, name="golem-metrics", daemon=True).start()
        return text

    def _read(self) -> None:
        start = time.monotonic()
        self.text = render(store_metrics(self.store))
        self.took = time.monotonic() - start
        self.read_at = time.monotonic()

    def _read_and_release(self) -> None:
        try:
            self._read()
        except Exception:  # noqa: BLE001 - the last reading stays served; the next scrape tries again
            log.exception("reading the store for /metrics failed")
            self.read_at = time.monotonic()  # not again on every scrape: after the usual wait
        finally:
            self.lock.release()


def metrics_endpoint(store: Store, min_age: float = MIN_AGE) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` handler for the daemon's app."""
    page = MetricsPage(store, min_age)

    async def metrics(request: Request) -> Response:
        text = await anyio.to_thread.run_sync(page.get) + live(store)
        return Response(text, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return metrics
