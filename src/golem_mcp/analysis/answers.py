"""The analyses as agents ask for them: default windows, unknown ids refused, compact capped answers.

Each function checks the ids it is given (``known.require``), picks the recent window when none is
given (``known.data_now``), calls the analysis that owns the rule, and returns a model with a one-line
``summary`` and tables cut at ``limit`` with a note saying how to see the rest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..store.db import Store
from . import known
from .anomalies import detect_anomalies
from .bottlenecks import Threshold, find_bottlenecks, set_threshold, switch_off_threshold
from .budgets import BudgetStatus, budget_status
from .common import Table, as_naive, table, utcnow, window
from .findings_store import list_findings
from .predict import CostPrediction, ModelAdvice, model_advice, predict_cost
from .runs import latest_run, run_analysis
from .trends import query_quality

IMPROVEMENTS_MAX_AGE = timedelta(days=1)


def _days(days: float | None) -> float:
    return days if days is not None else known.DEFAULT_DAYS


def _capped(name: str, rows: list[dict[str, Any]], columns: list[str], limit: int, more: list[str],
            how: str = "raise limit (max 50)", total: int | None = None) -> Table:
    """The first ``limit`` rows; ``total``: how many there are when ``rows`` holds only the first ones."""
    total = len(rows) if total is None else total
    if total > limit:
        more.append(f"{name}: {limit} of {total} rows; {how}")
    return table(rows[:limit], columns)


class BudgetAnswer(BudgetStatus):
    summary: str


def budget(store: Store, workflow_id: str | None = None, stage: str | None = None) -> BudgetAnswer:
    """Spend today (wall clock), and of one workflow (and stage), against the budgets."""
    st = budget_status(store, workflow_id=workflow_id, stage=stage)
    lines = [st.today] + [x for x in (st.workflow, st.stage) if x]
    over = [x for x in lines if x.percent >= 100]
    head = "OVER budget: " if over else "within budget: "
    summary = head + "; ".join(f"{x.scope} {x.key} ${x.spent_usd:.4f} of ${x.limit_usd:g} ({x.percent:.0f}%)"
                               for x in lines)
    return BudgetAnswer(summary=summary, **st.model_dump())


class SlowAnswer(BaseModel):
    summary: str
    window: str
    bottlenecks: Table = Field(description="p50 above baseline x multiplier, worst first")
    durations: Table = Field(description="p50/p95/p99 per dimension and key with the baseline used or why none")
    workflows: Table = Field(description="per workflow, longest first: its bottleneck stage and share of wall "
                                         "time, queue wait apart, and idle time between stages")
    more: list[str] | None = None


def slow(store: Store, dimension: str | None = None, days: float | None = None, limit: int = 5,
         workflow_id: str | None = None) -> SlowAnswer:
    d = _days(days)
    now = known.data_now(store)
    rep = find_bottlenecks(store, days=d, now=now, dimensions=[dimension] if dimension else None,
                           per_workflow=True, workflow_id=workflow_id, workflow_limit=limit)
    more: list[str] = []
    bn = [b.model_dump() for b in rep.bottlenecks]
    durs = sorted(rep.durations, key=lambda r: -(r.get("severity") or 0) - r["p50_ms"] / 1e9)
    summary = (f"{len(bn)} bottleneck(s)" + (f", worst {rep.bottlenecks[0].line()}" if bn else "")
               + f"; {len(durs)} dimension key(s) measured, {len(rep.no_baseline)} without a baseline")
    return SlowAnswer(
        summary=summary, window=known.window_note(rep.window_start, rep.window_end, d),
        bottlenecks=_capped("bottlenecks", bn, ["dimension", "key", "p50_ms", "p95_ms", "baseline_p50_ms",
                                                "baseline_source", "severity"], limit, more),
        durations=_capped("durations", durs, ["dimension", "key", "samples", "p50_ms", "p95_ms", "p99_ms",
                                              "baseline"], limit, more, "raise limit or pick one dimension"),
        workflows=_capped("workflows", [w.model_dump() for w in rep.workflows],
                          ["workflow_id", "wall_ms", "bottleneck_stage", "bottleneck_ms", "bottleneck_share",
                           "bottleneck_queue_wait_ms", "queue_wait_ms", "idle_ms", "idle_share", "idle_gaps",
                           "largest_gap_ms", "largest_gap_before"], limit, more, "raise limit or give workflow_id",
                          rep.workflows_total),
        more=more or None)


class LeakAnswer(BaseModel):
    summary: str
    window: str
    leaks: Table = Field(description="value vs the peers' median (ratio), largest first")
    note: str | None = None
    more: list[str] | None = None


def leaks(store: Store, workflow_id: str | None = None, days: float | None = None, limit: int = 5) -> LeakAnswer:
    d = _days(days)
    now = known.data_now(store)
    rep = detect_anomalies(store, days=d, now=now, workflow_id=workflow_id)
    more: list[str] = []
    rows = [a.model_dump() for a in rep.anomalies]
    notes = [n for n in (rep.note, f"too little history for: {', '.join(rep.insufficient_history[:5])}"
                         if rep.insufficient_history else None) if n]
    summary = f"{len(rows)} token/cost leak(s)" + (
        f", largest {rows[0]['ratio']:.1f}x normal {rows[0]['metric']} in {rows[0]['workflow_id']}" if rows else "")
    return LeakAnswer(summary=summary, window=known.window_note(now - timedelta(days=d), now, d),
                      leaks=_capped("leaks", rows, ["level", "workflow_id", "stage", "metric", "value", "normal",
                                                    "ratio"], limit, more),
                      note="; ".join(notes) or None, more=more or None)


class ReviewAnswer(BaseModel):
    summary: str
    window: str
    reports: int
    by_severity: dict[str, int]
    by_category: dict[str, int]
    rework_rate: float | None = Field(None, description="share of reviewed workflows sent back")
    findings_per_workflow_by_experiment: dict[str, float]
    top_files: Table
    cleanest_workflows: Table


def review_quality(store: Store, days: float | None = None, limit: int = 5) -> ReviewAnswer:
    d = _days(days)
    now = known.data_now(store)
    q = query_quality(store, days=d, now=now, limit=limit)
    sev = q.by_severity
    summary = (f"{q.reports} review report(s): " + ", ".join(f"{v} {k}" for k, v in sev.items())
               + (f"; rework rate {q.rework_rate:.3f}" if q.rework_rate is not None else ""))
    files = [f.model_dump() for f in q.top_files]
    clean = [c.model_dump() for c in q.cleanest_workflows]
    return ReviewAnswer(summary=summary, window=known.window_note(now - timedelta(days=d), now, d),
                        reports=q.reports, by_severity=sev, by_category=q.by_category,
                        rework_rate=None if q.rework_rate is None else round(q.rework_rate, 3),
                        findings_per_workflow_by_experiment={k: round(v, 3) for k, v in
                                                             q.findings_per_workflow_by_experiment.items()},
                        top_files=table(files, list(files[0]) if files else ["file"]),
                        cleanest_workflows=table(clean, list(clean[0]) if clean else ["workflow_id"]))


class ImprovementAnswer(BaseModel):
    summary: str
    analysed_at: str | None = Field(None, description="when the analysis behind these items ran")
    items: Table
    more: str | None = None


def improvements(store: Store, kind: str | None = None, status: str = "open", limit: int = 5,
                 now: Any = None) -> ImprovementAnswer:
    """Stored improvement items; the analysis runs first when its last run is older than a day."""
    last = latest_run(store)
    end = as_naive(now) if now is not None else utcnow()
    if last is None or last.finished_at is None or last.finished_at < end - IMPROVEMENTS_MAX_AGE:
        last = run_analysis(store, now=known.data_now(store), days=known.DEFAULT_DAYS, trigger="mcp", alert=False)
    items = list_findings(store, status=None if status == "all" else status, kind=kind, limit=limit + 1)
    rows = [i.model_dump() for i in items[:limit]]
    more = (f"{limit} shown; raise limit (max 50) or filter by kind" if len(items) > limit else None)
    summary = (f"{len(rows)}{'+' if more else ''} {status} improvement item(s)"
               + (f"; worst: {rows[0]['title']}" if rows else "; nothing to improve was found"))
    return ImprovementAnswer(summary=summary, analysed_at=last.finished_at.isoformat() if last.finished_at else None,
                             items=table(rows, ["item_id", "kind", "title", "severity", "recommendation", "status"]),
                             more=more)


class PredictAnswer(BaseModel):
    summary: str
    prediction: CostPrediction
    model_advice: list[ModelAdvice] = Field(description="per stage: did a cheaper model do as well?")
    note: str | None = None


def predict(store: Store, path: str | None = None, complexity: str | None = None, model: str | None = None,
            days: float = 90) -> PredictAnswer:
    from .snapshot import MODEL_ADVICE_DAYS, summaries

    now = known.data_now(store)
    # one reader of the analysis cache for the estimate and the advice (with the advice's usual model
    # per stage when its window is the cache's): each opening its own was ~30 of ~110 ms at 10M
    with summaries(store, now=window(now, days)[1] if days == MODEL_ADVICE_DAYS else None) as reader:
        pred = predict_cost(reader, path=path, complexity=complexity, model=model, days=days, now=now)
        note = None
        if complexity and pred.expected_usd is None:
            # complexity is the master's estimate and often unrecorded: answer without it, and say so
            loose = predict_cost(reader, path=path, model=model, days=days, now=now)
            if loose.expected_usd is not None:
                note = (f"no past workflow recorded complexity {complexity!r} (record_workflow(complexity=...)); "
                        "this estimate ignores complexity")
                pred = loose
        advice = model_advice(reader, days=days, now=now)
    cost = (f"${pred.expected_usd:.4f} (10-90%: ${pred.low_usd:.4f}-${pred.high_usd:.4f})"
            if pred.expected_usd is not None else "no estimate")
    return PredictAnswer(summary=f"{path or 'any'}-path workflow: {cost} from {pred.matched_workflows} past "
                                 "workflow(s)",
                         prediction=pred, model_advice=advice, note=note)


class ThresholdAnswer(Threshold):
    summary: str


def threshold(store: Store, dimension: str, key: str, baseline_ms: float | None = None,
              multiplier: float | None = None, active: bool = True) -> ThresholdAnswer:
    """Set or switch off one baseline of the slow-stage analysis."""
    t = (set_threshold(store, dimension, key, baseline_ms, multiplier=multiplier) if active
         else switch_off_threshold(store, dimension, key))
    state = "on" if t.is_active else "off"
    return ThresholdAnswer(summary=f"{dimension}:{key} baseline p50 {t.baseline_p50_ms:g} ms x {t.multiplier:g} ({state})",
                           **t.model_dump())
