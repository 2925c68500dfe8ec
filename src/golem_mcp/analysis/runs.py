"""Analysis runs (seed 003): lifecycle queued -> running -> succeeded | failed | timed_out, what each
scanned and produced, the SessionStart auto-trigger and the findings display.

Contract with the daemon:
- ``session_start_display(store)`` is called by the /hooks endpoint on SessionStart; it reads stored
  results only (one small query) and returns a few lines for the hook client to print, or None.
- ``maybe_enqueue(store)`` inserts a queued run when the last successful one is older than
  ``max_age_days`` (default 7) and none is queued or running; cheap, never runs the analysis itself.
- ``run_pending(store)`` runs queued runs one after another; the daemon calls it from a background
  thread (never on the request path). Writes go through the Store's lock.
- ``recover_interrupted(store)`` fails the runs a stopped process left ``running``; the daemon calls
  it when it starts.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .. import formatting as fmt
from ..store.db import Store
from .common import as_naive, dumps, execute, utcnow
from .findings_store import Candidate, save_items
from .snapshot import snapshot

STATUSES = ("queued", "running", "succeeded", "failed", "timed_out")
DEFAULT_MAX_AGE_DAYS = 7.0


class TimedOut(Exception):
    """The run went past its time limit between two analyses."""


class AnalysisRun(BaseModel):
    run_id: int
    status: str = Field(description="queued, running, succeeded, failed or timed_out")
    trigger: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    scanned: dict[str, Any] | None = None
    produced: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    error_detail: str | None = None


def _run(row: dict) -> AnalysisRun:
    return AnalysisRun(**{**row, **{k: json.loads(row[k]) if row.get(k) else None for k in ("scanned", "produced", "summary")}})


def _select() -> str:
    return ("SELECT run_id, status, trigger, queued_at, started_at, finished_at, CAST(scanned AS VARCHAR) AS scanned, "
            "CAST(produced AS VARCHAR) AS produced, CAST(summary AS VARCHAR) AS summary, error_detail FROM analysis_runs")


def get_run(store: Store, run_id: int) -> AnalysisRun | None:
    rows = store.query(_select() + " WHERE run_id = ?", [run_id])
    return _run(rows[0]) if rows else None


def latest_run(store: Store, status: str | None = "succeeded") -> AnalysisRun | None:
    rows = store.query(_select() + " WHERE (? IS NULL OR status = ?) ORDER BY run_id DESC LIMIT 1", [status, status])
    return _run(rows[0]) if rows else None


def list_runs(store: Store, limit: int = 10) -> list[AnalysisRun]:
    return [_run(r) for r in store.query(_select() + " ORDER BY run_id DESC LIMIT ?", [limit])]


def enqueue(store: Store, trigger: str = "manual", window_days: int = 7, now: datetime | None = None) -> int:
    rows = execute(store, "INSERT INTO analysis_runs (status, trigger, queued_at, window_days) VALUES ('queued', ?, ?, ?) "
                   "RETURNING run_id", [trigger, as_naive(now), window_days])
    return int(rows[0][0])


def maybe_enqueue(store: Store, max_age_days: float = DEFAULT_MAX_AGE_DAYS, now: datetime | None = None,
                  trigger: str = "session_start") -> bool:
    """Queue a run when the last successful one is older than ``max_age_days`` and none is pending."""
    end = as_naive(now)
    row = store.query("""SELECT max(finished_at) FILTER (WHERE status = 'succeeded') AS last_ok,
                                count(*) FILTER (WHERE status IN ('queued', 'running')) AS pending
                         FROM analysis_runs""")[0]
    if row["pending"]:
        return False
    if row["last_ok"] is not None and row["last_ok"] > end - timedelta(days=max_age_days):
        return False
    enqueue(store, trigger, now=end)
    return True


def recover_interrupted(store: Store) -> int:
    """Mark the runs a process that stopped left ``running`` as failed; returns how many (queued runs
    stay queued: ``run_pending`` runs them).

    Only the process that owns the store calls this, when it starts: no run of another can be alive
    then, and a run stuck at ``running`` would keep ``maybe_enqueue`` from ever queueing again."""
    rows = execute(store, "UPDATE analysis_runs SET status = 'failed', finished_at = ?, error_detail = "
                   "'interrupted: the process running it stopped' WHERE status = 'running' RETURNING run_id",
                   [utcnow()])
    return len(rows)


def _candidates(results: dict[str, Any]) -> list[Candidate]:
    out: list[Candidate] = []
    for b in results["bottlenecks"].bottlenecks:
        if b.part == "queue_wait":
            out.append(Candidate(kind="bottleneck", dimension=b.dimension, key=f"{b.key} (queue wait)", title=b.line(),
                                 severity=b.severity, evidence=b.model_dump(),
                                 recommendation=f"{b.dimension} {b.key} waits before it starts, not while it runs: "
                                                "give the orchestrator more workers or start it earlier."))
            continue
        out.append(Candidate(kind="bottleneck", dimension=b.dimension, key=b.key, title=b.line(), severity=b.severity,
                             recommendation=f"Look at what {b.dimension} {b.key} waits on (tool calls, retries, "
                                            "context size); split it or give it a faster model if the work allows.",
                             evidence=b.model_dump()))
    for a in results["anomalies"].anomalies:
        if a.metric != "total_tokens":
            continue
        where = f"{a.workflow_id}/{a.stage}" if a.stage else a.workflow_id
        out.append(Candidate(kind="token_leak", dimension=a.level, key=where,
                             title=f"{a.ratio:.1f}x normal tokens in {a.level} {where}", severity=a.ratio,
                             recommendation="Check what this run read or repeated (large files, loops, retries) and "
                                            "limit it in the agent's prompt.", evidence=a.model_dump()))
    for loop in results["loops"].loops:
        key = f"{loop.workflow_id}/{loop.stage}/{loop.tool_name}:{loop.command}"
        out.append(Candidate(kind="loop", dimension=loop.stage, key=key,
                             title=f"{loop.tool_name} `{loop.command}` run {loop.count}x in {loop.workflow_id} {loop.stage}",
                             severity=float(loop.count),
                             recommendation="Tell the agent to stop after 2 identical failures and read the error "
                                            "before re-running.", evidence=loop.model_dump()))
    for rf in results["errors"].repeated_failures:
        out.append(Candidate(kind="error_pattern", dimension=rf.stage, key=f"{rf.category}/{rf.tool_name}/{rf.example}",
                             title=f"{rf.count}x {rf.category} in {rf.stage} ({rf.tool_name or 'api'})",
                             severity=float(rf.count), recommendation=rf.fix, evidence=rf.model_dump()))
    for adv in results["models"]:
        if adv.verdict == "switch":
            out.append(Candidate(kind="model_advice", dimension="stage", key=adv.stage,
                                 title=f"{adv.stage}: {adv.suggested_model} did as well as {adv.current_model} "
                                       f"for {adv.saving_pct:.0f}% less", severity=(adv.saving_pct or 0) / 10,
                                 recommendation=f"Run {adv.stage} on {adv.suggested_model}.",
                                 evidence={"evidence": [e.model_dump() for e in adv.evidence]}))
    return out


def _summary(results: dict[str, Any], alerts: list) -> dict[str, Any]:
    b = results["bottlenecks"]
    return {
        "bottlenecks": [x.line() for x in b.bottlenecks[:3]],
        "bottleneck_count": len(b.bottlenecks),
        "leaks": [f"{a.ratio:.1f}x tokens {a.workflow_id}{'/' + a.stage if a.stage else ''}"
                  for a in results["anomalies"].anomalies if a.metric == "total_tokens"][:3],
        "loops": [f"{x.tool_name} `{x.command}` x{x.count} in {x.workflow_id} {x.stage}" for x in results["loops"].loops[:3]],
        "alerts": [a.message for a in alerts[:3]],
        "samples": b.samples_scanned, "dimensions": b.dimensions_evaluated,
    }


def run_analysis(store: Store, now: datetime | None = None, days: float = 7, run_id: int | None = None,
                 trigger: str = "manual", timeout_s: float = 300.0, alert: bool = True,
                 use_cache: bool = True) -> AnalysisRun:
    """Run every analysis, store improvement items and alerts, and record the run.

    ``use_cache``: aggregate history from the per-day cache kept between runs (see snapshot.py);
    False aggregates every fact afresh (same answers, the cache is neither read nor written)."""
    from .anomalies import detect_anomalies
    from .bottlenecks import find_bottlenecks
    from .budgets import evaluate_alerts
    from .error_patterns import query_error_patterns
    from .loops import find_loops
    from .predict import model_advice

    end = as_naive(now)
    if run_id is None:
        run_id = enqueue(store, trigger, int(days), now=end)
    execute(store, "UPDATE analysis_runs SET status = 'running', started_at = ? WHERE run_id = ?", [utcnow(), run_id])
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    steps = [("bottlenecks", lambda st: find_bottlenecks(st, days=days, now=end)),
             ("anomalies", lambda st: detect_anomalies(st, days=max(days, 7), now=end)),
             ("loops", lambda st: find_loops(st, days=max(days, 7), now=end)),
             ("errors", lambda st: query_error_patterns(st, days=max(days, 7), now=end)),
             ("models", lambda st: model_advice(st, now=end))]
    results: dict[str, Any] = {}
    try:
        s0 = time.monotonic()
        # the whole memory budget for DuckDB while it runs (store/memory.py)
        with store.memory.heavy(), snapshot(store, now=end, days=days, timings=timings, use_cache=use_cache) as snap:
            timings["snapshot"] = round(time.monotonic() - s0, 3)
            for name, fn in steps:
                if time.monotonic() - t0 > timeout_s:
                    raise TimedOut(f"stopped before {name}: over {timeout_s:g}s")
                s = time.monotonic()
                results[name] = fn(snap)
                timings[name] = round(time.monotonic() - s, 3)
            saved = save_items(store, run_id, _candidates(results), now=end)
            s = time.monotonic()
            new_alerts = evaluate_alerts(snap, now=end) if alert else []
            timings["alerts"] = round(time.monotonic() - s, 3)
        scanned = {
            "requests": store.scalar('SELECT count(*) FROM api_requests WHERE "timestamp" >= ? AND "timestamp" < ?',
                                     [end - timedelta(days=days), end]),
            "duration_samples": results["bottlenecks"].samples_scanned,
            "dimensions_evaluated": results["bottlenecks"].dimensions_evaluated,
            "window_days": days, "seconds": timings}
        produced = {"bottlenecks": len(results["bottlenecks"].bottlenecks),
                    "anomalies": len(results["anomalies"].anomalies), "loops": len(results["loops"].loops),
                    "retries": len(results["loops"].retries), "error_patterns": len(results["errors"].repeated_failures),
                    "model_advice": sum(1 for a in results["models"] if a.verdict == "switch"),
                    "items_created": saved.created, "items_skipped_dedupe": saved.refreshed_duplicates,
                    "items_skipped_rate_limit": saved.skipped_rate_limit, "alerts": len(new_alerts)}
        summary = _summary(results, new_alerts)
        summary["ms"] = round((time.monotonic() - t0) * 1000)
        execute(store, "UPDATE analysis_runs SET status = 'succeeded', finished_at = ?, scanned = ?, produced = ?, "
                "summary = ? WHERE run_id = ?", [utcnow(), dumps(scanned), dumps(produced), dumps(summary), run_id])
    except TimedOut as e:
        execute(store, "UPDATE analysis_runs SET status = 'timed_out', finished_at = ?, error_detail = ? WHERE run_id = ?",
                [utcnow(), str(e), run_id])
    except Exception as e:  # a failed run is recorded with its error; the caller still gets the run back
        import duckdb

        detail = ("interrupted: the store was closed while the run read it (the daemon stopping)"
                  if isinstance(e, duckdb.InterruptException) else f"{type(e).__name__}: {e}"[:2000])
        execute(store, "UPDATE analysis_runs SET status = 'failed', finished_at = ?, error_detail = ? WHERE run_id = ?",
                [utcnow(), detail, run_id])
    run = get_run(store, run_id)
    assert run is not None
    return run


def run_pending(store: Store, now: datetime | None = None, timeout_s: float = 300.0) -> list[AnalysisRun]:
    """Run every queued run (oldest first). Safe to call from a background thread; returns the runs."""
    done: list[AnalysisRun] = []
    while True:
        rows = execute(store, "UPDATE analysis_runs SET status = 'running', started_at = ? WHERE run_id = "
                       "(SELECT min(run_id) FROM analysis_runs WHERE status = 'queued') RETURNING run_id, window_days, trigger",
                       [utcnow()])
        if not rows:
            return done
        run_id, window_days, trigger = rows[0]
        done.append(run_analysis(store, now=now, days=window_days or 7, run_id=run_id, trigger=trigger, timeout_s=timeout_s))


def _age(ts: datetime, now: datetime) -> str:
    days = (now.date() - ts.date()).days
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"


def session_start_display(store: Store, now: datetime | None = None) -> str | None:
    """A few lines for the SessionStart hook to print (seed 003's findings display); stored results only."""
    end = as_naive(now)
    rows = store.query("SELECT finished_at, CAST(summary AS VARCHAR) AS summary FROM analysis_runs "
                       "WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1")
    # alerts raised on ingest since that run (budgets crossed, error spikes): the run's own are in its summary
    since = rows[0]["finished_at"] if rows else end - timedelta(days=1)
    fresh = [r["message"] for r in store.query(
        "SELECT message FROM alerts WHERE created_at > ? ORDER BY created_at DESC, alert_id DESC LIMIT 3", [since])]
    if not rows:
        if not fresh:
            return None
        return "\n".join(["golem-mcp telemetry", "  no analysis yet", *(f"  alert: {m}" for m in fresh)])
    s = json.loads(rows[0]["summary"] or "{}")
    lines = ["golem-mcp telemetry", f"  Last analysis: {rows[0]['finished_at']:%Y-%m-%d} ({_age(rows[0]['finished_at'], end)})"]
    lines += [f"  alert: {m}" for m in fresh]
    if s.get("bottleneck_count"):
        lines.append(f"  {s['bottleneck_count']} bottleneck(s) detected")
        lines += [f"  {b}" for b in s.get("bottlenecks", [])]
    lines += [f"  leak: {x}" for x in s.get("leaks", [])]
    lines += [f"  loop: {x}" for x in s.get("loops", [])]
    lines += [f"  alert: {x}" for x in s.get("alerts", [])]
    if len(lines) == 2:
        lines.append("  no bottlenecks, leaks, loops or budget alerts")
    lines.append(f"  ({fmt.count(s.get('samples', 0))} samples, {fmt.count(s.get('dimensions', 0))} dimensions, "
                 f"{fmt.duration_ms(s.get('ms', 0))})")
    return "\n".join(lines)
