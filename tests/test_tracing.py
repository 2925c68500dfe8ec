"""The tracing API (golem_mcp.tracing), a plain OpenTelemetry SDK program and a hand-written OTLP/JSON
body following the written span convention, all sending to a real daemon over loopback: the same
handoff -> phase -> gate/subagent rows, which the bottleneck analysis reads with queue wait apart
from execution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from golem_mcp import tracing
from golem_mcp.interfaces.client import auth_headers
from golem_mcp.store import Store

PLAIN_OTEL = textwrap.dedent('''
    # An orchestrator with nothing of golem-mcp: the OTel SDK, its OTLP/HTTP exporter configured by the
    # standard environment variables, and the span convention of golem_mcp/tracing.py.
    import sys, time
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "plain-orchestrator"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("plain")
    for i in range(3):
        wf = f"wf-otel-{i}"
        ctx = {"golem.workflow_id": wf}
        with tracer.start_as_current_span("LEAD->PLAN", attributes={**ctx, "golem.kind": "handoff", "sd_type": "feature"}):
            plan = {**ctx, "golem.stage": "PLAN"}
            with tracer.start_as_current_span("PLAN", attributes={**plan, "golem.kind": "phase",
                                                                  "golem.queue_wait_ms": 3000.0}):
                time.sleep(0.06)
                with tracer.start_as_current_span("GATE_PRD_REQUIRED", attributes={**plan, "golem.kind": "gate", "score": 0.9}):
                    pass
                for attempt in (1, 2):
                    with tracer.start_as_current_span("DESIGN", attributes={**plan, "golem.kind": "subagent",
                                                                            "golem.attempt": attempt}) as s:
                        if attempt == 1:
                            s.set_status(Status(StatusCode.ERROR, "RuntimeError: design timed out"))
    sys.exit(0 if provider.force_flush(10_000) else 1)
''')


def orchestrate(golem: tracing.Tracer, workflow_id: str) -> None:
    with golem.span("handoff", "LEAD->PLAN", workflow_id=workflow_id, sd_type="feature"), \
            golem.span("phase", "PLAN", queue_wait_ms=3000):
        time.sleep(0.06)
        with golem.span("gate", "GATE_PRD_REQUIRED", score=0.9):
            pass
        tries = []
        for attempt in golem.attempts("subagent", "DESIGN", max_attempts=3):
            with attempt:
                tries.append(attempt.number)
                if len(tries) == 1:
                    raise RuntimeError("design timed out")
        assert tries == [1, 2]


def _raw_otlp_json(workflow_id: str) -> dict:
    """The same tree as :func:`orchestrate`, written by hand as OTLP/JSON."""
    t0 = time.time_ns()
    trace = "5" * 32

    def span(sid: str, parent: str | None, name: str, kind: str, start_ms: int, end_ms: int,
             extra: dict | None = None, error: str | None = None) -> dict:
        attrs = {"golem.kind": kind, "golem.workflow_id": workflow_id, **({"golem.stage": "PLAN"} if parent else {}),
                 **(extra or {})}
        values = [{"key": k, "value": {"doubleValue": v} if isinstance(v, float) else
                   {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}} for k, v in attrs.items()]
        return {"traceId": trace, "spanId": sid * 16, "parentSpanId": parent * 16 if parent else "", "name": name,
                "startTimeUnixNano": str(t0 + start_ms * 1_000_000), "endTimeUnixNano": str(t0 + end_ms * 1_000_000),
                "attributes": values, "status": {"code": 2, "message": error} if error else {"code": 0}}

    spans = [span("a", None, "LEAD->PLAN", "handoff", 0, 100, {"sd_type": "feature"}),
             span("b", "a", "PLAN", "phase", 1, 90, {"golem.queue_wait_ms": 3000.0}),
             span("c", "b", "GATE_PRD_REQUIRED", "gate", 70, 71, {"score": 0.9}),
             span("d", "b", "DESIGN", "subagent", 72, 73, {"golem.attempt": 1}, "RuntimeError: design timed out"),
             span("e", "b", "DESIGN", "subagent", 74, 75, {"golem.attempt": 2})]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "raw"}}]},
                               "scopeSpans": [{"scope": {"name": "raw"}, "spans": spans}]}]}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home)}
    env.pop("GOLEM_DB", None)
    return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _tree(store: Store, workflow_id: str) -> list[tuple]:
    rows = store.query("""
        SELECT t.span_type, t.span_name, p.span_name AS parent, t.stage, t.queue_wait_ms, t.attempt, t.status,
               t.status_message, t.duration_ms >= 60 AS slow, t.trace_id = p.trace_id AS same_trace
        FROM workflow_trace_log t LEFT JOIN workflow_trace_log p ON p.span_id = t.parent_span_id
        WHERE t.workflow_id = ? ORDER BY t.start_time, t.attempt""", [workflow_id])
    return [tuple(r.values()) for r in rows]


def test_python_api_and_plain_otel_give_the_same_rows_and_bottlenecks(golem_home, start_daemon, tmp_path):
    d = start_daemon()
    golem = tracing.Tracer()  # finds the daemon this test started (GOLEM_HOME's state file)
    for i in range(3):
        orchestrate(golem, f"wf-py-{i}")
    assert golem.flush()
    headers = ",".join(f"{k}={v.replace(' ', '%20')}" for k, v in auth_headers().items())
    plain = subprocess.run([sys.executable, "-c", PLAIN_OTEL], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": d.url + "/v1/traces",
                                "OTEL_EXPORTER_OTLP_HEADERS": headers})
    assert plain.returncode == 0, plain.stderr

    # the analysis, through the daemon: PLAN runs slower than its 20 ms baseline allows (x2), and waits
    # far longer than that before it starts; the two are separate findings with their own p50
    assert _cli(golem_home, "thresholds", "set", "phase", "PLAN", "20").returncode == 0
    r = _cli(golem_home, "analyze", "bottlenecks", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    found = {(b["dimension"], b["key"], b["part"]): b for b in rep["bottlenecks"]}
    assert set(found) == {("phase", "PLAN", "execution"), ("phase", "PLAN", "queue_wait")}
    ex, wait = found[("phase", "PLAN", "execution")], found[("phase", "PLAN", "queue_wait")]
    assert ex["samples"] == 6 and 60 <= ex["p50_ms"] < 3000 and ex["queue_wait_p50_ms"] == 3000
    assert wait["samples"] == 6 and wait["p50_ms"] == 3000 and wait["severity"] == 150
    assert {"gate:GATE_PRD_REQUIRED", "subagent:DESIGN", "handoff:LEAD->PLAN"} <= set(rep["no_baseline"])
    # and a sender with no SDK at all: one OTLP/JSON body following the convention
    r = httpx.post(d.url + "/v1/traces", json=_raw_otlp_json("wf-json-0"), headers=auth_headers(), timeout=30)
    assert r.status_code == 200, r.text
    golem.shutdown()
    d.stop()

    with Store(d.db, read_only=True) as store:
        py, otel = _tree(store, "wf-py-0"), _tree(store, "wf-otel-0")
        assert py == otel == _tree(store, "wf-json-0")
        assert py == [
            ("handoff", "LEAD->PLAN", None, None, None, 1, "ok", None, True, None),
            ("phase", "PLAN", "LEAD->PLAN", "PLAN", 3000.0, 1, "ok", None, True, True),
            ("gate", "GATE_PRD_REQUIRED", "PLAN", "PLAN", None, 1, "ok", None, False, True),
            ("subagent", "DESIGN", "PLAN", "PLAN", None, 1, "error", "RuntimeError: design timed out", False, True),
            ("subagent", "DESIGN", "PLAN", "PLAN", None, 2, "ok", None, False, True),
        ]
        attrs = {r["span_type"]: json.loads(r["attributes"]) for r in store.query(
            "SELECT span_type, CAST(attributes AS VARCHAR) AS attributes FROM workflow_trace_log "
            "WHERE workflow_id = 'wf-py-0' AND span_type IN ('handoff', 'gate')")}
        assert attrs["handoff"]["sd_type"] == "feature" and attrs["gate"]["score"] == 0.9
        # seed 004's view of the same: the phase is a task_logs row of its workflow, which exists
        for wf in ("wf-py-0", "wf-otel-0"):
            phase = store.query("SELECT phase_name, phase_status, retry_count, duration_seconds FROM task_logs "
                                "WHERE adw_id = ?", [wf])
            assert [(p["phase_name"], p["phase_status"]) for p in phase] == [("PLAN", "completed")]
            assert store.scalar("SELECT count(*) FROM workflows WHERE workflow_id = ?", [wf]) == 1


def test_bad_use_is_refused_and_a_missing_daemon_costs_only_the_spans(golem_home):
    golem = tracing.Tracer("http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ValueError, match="kind 'step' is not one of handoff, phase, gate, subagent"), \
            golem.span("step", "X"):
        pass
    with pytest.raises(TypeError, match="unknown context"):
        tracing.Tracer("http://127.0.0.1:9", workflow="wf")
    with pytest.raises(KeyError):  # the orchestrator's own error comes through, recorded on the last try
        for attempt in golem.attempts("gate", "G", max_attempts=2):
            with attempt:
                raise KeyError("boom")
    s = golem.start_span("phase", "BUILD", workflow_id="wf-1")
    s.set("files", 3).end()
    s.end()  # twice: nothing
    t0 = time.monotonic()
    assert golem.flush(timeout_s=3) in (True, False)
    golem.shutdown()
    assert time.monotonic() - t0 < 30
