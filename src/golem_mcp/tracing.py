"""Tracing for custom orchestrators: spans of handoffs, phases, gates and subagents that golem-mcp's
bottleneck analysis reads (seed 003's ``trace.js``, seed 004's ``log_phase_start`` /
``log_phase_completion``), sent with the OpenTelemetry SDK to the daemon's ``/v1/traces``.

Example::

    from golem_mcp import tracing as golem

    golem.configure(workflow_id="wf-42")            # optional: finds the running daemon by itself
    with golem.span("handoff", "LEAD->PLAN"):
        with golem.span("phase", "PLAN", queue_wait_ms=1200) as plan:
            with golem.span("gate", "GATE_PRD_REQUIRED", score=0.92):
                check_prd()
            for attempt in golem.attempts("subagent", "DESIGN", max_attempts=3):
                with attempt:                        # a failure is recorded and retried
                    run_design()
            plan.set("files_changed", 4)
    golem.flush()                                    # also done when the process exits

Without ``with``: ``s = golem.start_span("phase", "BUILD")`` ... ``s.end()`` (or ``s.end(error="...")``).
Failures never reach the orchestrator: a daemon that is down costs the spans (dropped with a warning
in the ``opentelemetry`` log, after the exporter's retries: a flush then takes up to ~5 s), never the
workflow.

The span convention. Any OpenTelemetry SDK (Node, Go, ...) that sends spans like these to
``http://127.0.0.1:4319/v1/traces`` (OTLP/HTTP, protobuf or JSON; ``Authorization: Bearer <token>``
when the daemon has one) produces the same rows in ``workflow_trace_log`` and the same bottlenecks:

- span name: what ran, e.g. ``PLAN``, ``GATE_PRD_REQUIRED``, ``DESIGN``, ``LEAD->PLAN`` (the
  seed's ``span_name``; the bottleneck analysis' key);
- ``golem.kind``: ``handoff`` | ``phase`` | ``gate`` | ``subagent`` (the seed's ``span_type``; the
  bottleneck dimension);
- ``golem.workflow_id``, ``golem.stage``, ``golem.task_id``, ``golem.experiment_id``: the context,
  on every span (resource attributes ``workflow_id`` etc. do as well). A phase's ``golem.stage``
  defaults to its name here, and nested spans inherit their parent's context;
- ``golem.queue_wait_ms`` (double): how long the operation waited before it started. The span's own
  start and end cover execution only; the analysis judges the two apart;
- ``golem.attempt`` (int, 1 = first try): a retry is a new span with the same name and parent and
  the next attempt number; a failed attempt has status ERROR with a description;
- parent/child: the OTel parent span id (a handoff's phases, a phase's gates and subagents);
- any other attribute is kept (JSON ``attributes`` column), e.g. ``sd_type`` or a gate's score.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

KINDS = ("handoff", "phase", "gate", "subagent")
CONTEXT_KEYS = ("workflow_id", "stage", "task_id", "experiment_id")
log = logging.getLogger("golem_mcp.tracing")

# the golem context (workflow_id, stage, ...) of the span the caller is inside
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("golem_tracing_context", default=None)


def _endpoint() -> str:
    """The running daemon's URL (``GOLEM_URL``, else the state file), else the default port."""
    from .config import DEFAULT_PORT
    from .interfaces.client import daemon_url, find_daemon

    return find_daemon() or daemon_url() or f"http://127.0.0.1:{DEFAULT_PORT}"


def _auth_headers() -> dict[str, str]:
    from .interfaces.client import auth_headers  # the daemon's token, as every client of it sends it

    return auth_headers()


class Span:
    """One operation in flight: set attributes, mark it failed, end it."""

    def __init__(self, span: Any, token: contextvars.Token | None = None) -> None:
        self._span = span
        self._token = token
        self._ended = False

    def set(self, key: str, value: Any) -> Span:
        """Add an attribute (str, bool, int, float or a list of one of them)."""
        self._span.set_attribute(key, value)
        return self

    def fail(self, error: str | BaseException) -> Span:
        """Mark the operation failed (status ERROR with ``error`` as its description)."""
        if isinstance(error, BaseException):
            self._span.record_exception(error)
            error = f"{type(error).__name__}: {error}"
        self._span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
        return self

    def end(self, error: str | BaseException | None = None) -> None:
        """End the span (failed when ``error`` is given). Ending twice does nothing."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self.fail(error)
        elif self._span.status.status_code is StatusCode.UNSET:
            self._span.set_status(Status(StatusCode.OK))
        self._span.end()


class Attempt:
    """One try of :meth:`Tracer.attempts`: a failure inside it is recorded, and retried unless it was
    the last try."""

    def __init__(self, tracer: Tracer, kind: str, name: str, number: int, last: bool, kw: dict[str, Any]) -> None:
        self.number = number
        self.last = last
        self.succeeded = False
        self._cm = tracer.span(kind, name, attempt=number, **kw)

    def __enter__(self) -> Span:
        return self._cm.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            self.succeeded = True
            self._cm.__exit__(None, None, None)
            return False
        with contextlib.suppress(BaseException):  # the span context re-raises what it recorded
            self._cm.__exit__(exc_type, exc, tb)
        return not self.last and isinstance(exc, Exception)


class Tracer:
    """Spans for one orchestrator process, exported in the background to the daemon.

    ``endpoint``: the daemon's base URL (default: the running daemon); ``context``: workflow_id, stage,
    task_id, experiment_id given to every span (a span's own values win). ``exporter`` replaces the
    OTLP/HTTP exporter (tests, or another collector)."""

    def __init__(self, endpoint: str | None = None, *, service_name: str = "golem-orchestrator",
                 exporter: SpanExporter | None = None, token: str | None = None, **context: str | None) -> None:
        bad = set(context) - set(CONTEXT_KEYS)
        if bad:
            raise TypeError(f"unknown context {sorted(bad)}; give {', '.join(CONTEXT_KEYS)}")
        self.context = {k: str(v) for k, v in context.items() if v is not None}
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = (endpoint or _endpoint()).rstrip("/")
            headers = {"authorization": f"Bearer {token}"} if token else _auth_headers()
            exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers, timeout=5)
        # a provider of our own: the orchestrator's global OTel setup (if any) stays as it is
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        self._tracer = self.provider.get_tracer("golem_mcp.tracing")

    def _attributes(self, kind: str, name: str, queue_wait_ms: float | None, attempt: int | None,
                    context: dict[str, Any], attributes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if not name:
            raise ValueError("give the span a name, e.g. PLAN or GATE_PRD_REQUIRED")
        ctx = {**self.context, **(_context.get() or {}), **{k: str(v) for k, v in context.items() if v is not None}}
        if kind == "phase" and context.get("stage") is None:
            ctx["stage"] = name  # a phase is a stage: its children belong to it
        attrs: dict[str, Any] = {k: v for k, v in attributes.items() if v is not None}
        attrs["golem.kind"] = kind
        attrs.update({f"golem.{k}": v for k, v in ctx.items()})
        if queue_wait_ms is not None:
            attrs["golem.queue_wait_ms"] = float(queue_wait_ms)
        if attempt is not None:
            attrs["golem.attempt"] = int(attempt)
        return attrs, ctx

    @contextlib.contextmanager
    def span(self, kind: str, name: str, *, queue_wait_ms: float | None = None, attempt: int | None = None,
             workflow_id: str | None = None, stage: str | None = None, task_id: str | None = None,
             experiment_id: str | None = None, **attributes: Any) -> Iterator[Span]:
        """A span around the ``with`` block, the child of the span the caller is in. An exception
        leaving the block marks it failed and goes on."""
        attrs, ctx = self._attributes(kind, name, queue_wait_ms, attempt, {
            "workflow_id": workflow_id, "stage": stage, "task_id": task_id, "experiment_id": experiment_id},
            attributes)
        token = _context.set(ctx)
        try:
            with self._tracer.start_as_current_span(name, attributes=attrs, record_exception=False,
                                                    set_status_on_exception=False, end_on_exit=False) as raw:
                s = Span(raw)
                try:
                    yield s
                except BaseException as e:
                    s.end(e)
                    raise
                s.end()
        finally:
            _context.reset(token)

    def start_span(self, kind: str, name: str, *, queue_wait_ms: float | None = None, attempt: int | None = None,
                   workflow_id: str | None = None, stage: str | None = None, task_id: str | None = None,
                   experiment_id: str | None = None, **attributes: Any) -> Span:
        """A span the caller ends with ``.end()`` (seed 004's log_phase_start ... log_phase_completion);
        the child of the span the caller is in. Spans started inside it are not its children: use
        :meth:`span` for a tree."""
        attrs, _ = self._attributes(kind, name, queue_wait_ms, attempt, {
            "workflow_id": workflow_id, "stage": stage, "task_id": task_id, "experiment_id": experiment_id},
            attributes)
        return Span(self._tracer.start_span(name, attributes=attrs))

    def attempts(self, kind: str, name: str, max_attempts: int = 3, **kw: Any) -> Iterator[Attempt]:
        """Tries of one operation, each its own span with ``golem.attempt`` = 1, 2, ...: a failure is
        recorded and the next try begins; the last try's failure is raised. Stops at the first success."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for n in range(1, max_attempts + 1):
            a = Attempt(self, kind, name, n, n == max_attempts, kw)
            yield a
            if a.succeeded:
                return

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send every ended span now. False when that did not finish within ``timeout_s``; spans the
        daemon could not take are dropped (the exporter logs it), which does not make this False."""
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        """Flush and stop the background exporter."""
        self.provider.shutdown()


_default: Tracer | None = None
_lock = threading.Lock()


def configure(endpoint: str | None = None, **kw: Any) -> Tracer:
    """Set up the module's tracer (see :class:`Tracer`); replaces one configured before."""
    global _default
    with _lock:
        old, _default = _default, Tracer(endpoint, **kw)
    if old is not None:
        old.shutdown()
    return _default


def tracer() -> Tracer:
    """The module's tracer, configured with defaults on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Tracer()
        return _default


def span(kind: str, name: str, **kw: Any) -> contextlib.AbstractContextManager[Span]:
    """``with span("phase", "PLAN", queue_wait_ms=...)``: see :meth:`Tracer.span`."""
    return tracer().span(kind, name, **kw)


def start_span(kind: str, name: str, **kw: Any) -> Span:
    """See :meth:`Tracer.start_span`."""
    return tracer().start_span(kind, name, **kw)


def attempts(kind: str, name: str, max_attempts: int = 3, **kw: Any) -> Iterator[Attempt]:
    """See :meth:`Tracer.attempts`."""
    return tracer().attempts(kind, name, max_attempts, **kw)


def flush(timeout_s: float = 10.0) -> bool:
    """Send every ended span now (see :meth:`Tracer.flush`)."""
    return tracer().flush(timeout_s) if _default is not None else True


@atexit.register
def _flush_at_exit() -> None:
    if _default is not None:
        with contextlib.suppress(Exception):  # exiting: nothing left to tell the orchestrator
            _default.shutdown()


__all__ = ["KINDS", "Attempt", "Span", "Tracer", "attempts", "configure", "flush", "span", "start_span", "tracer"]
