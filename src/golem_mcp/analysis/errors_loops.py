"""Errors and loops in one answer: what failed, what was repeated or retried, what was sent back.

Before, three tools (errors, error patterns, loops) reported overlapping views of the same failures and
an agent had to pick one; this answer has one section per question, each a compact table capped at
``limit`` rows, computed by the analyses that already own each rule (``workflows.query_errors``,
``loops.find_loops``, ``error_patterns.error_categories``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from . import known
from .common import Table, table, window
from .error_patterns import error_categories
from .loops import find_loops
from .sequences import reusable_sequences
from .workflows import query_errors

SECTIONS = ("loops", "retries", "failures", "api_errors", "by_stage", "patterns", "rework", "sequences")
DEFAULT_SECTIONS = SECTIONS[:-1]  # sequences, what went right, only when asked
ALL_TIME_DAYS = 3650  # a workflow, task or stage named explicitly is looked at whole
EXAMPLE_CHARS = 120


class ErrorsAndLoops(BaseModel):
    summary: str
    scope: dict[str, str]
    window: str = Field(description="the time window looked at")
    workflows_with_loops: list[str] = Field(description="workflows with a repeated failing or identical tool call")
    loops: Table | None = Field(None, description="repeated identical tool calls (failing 3+ or identical 5+ times)")
    retries: Table | None = Field(None, description=(
        "API requests Claude Code retried (attempt > 1) with the reason: the failure just before (category, status)"))
    failures: Table | None = Field(None, description="failed tool calls by tool and stage, with an example")
    api_errors: Table | None = Field(None, description=(
        "API errors by kind (api_error, refusal, stop_failure) and HTTP status; retries_exhausted: Claude Code gave up"))
    by_stage: Table | None = Field(None, description="requests, errors, retries and tool error rate per stage")
    patterns: Table | None = Field(None, description="error categories with a suggested fix")
    rework: Table | None = Field(None, description="work sent back by the reviewer, edit-then-test-fail cycles")
    sequences: Table | None = Field(None, description=(
        "what went right: tool (or stage) sequences recurring in successful workflows that go with success; "
        "successful/failed = workflows with it of all, q = chance it is luck"))
    more: list[str] | None = Field(None, description="sections cut at limit, and how to see the rest")


def _cut(v: Any) -> Any:
    return v[:EXAMPLE_CHARS] + "..." if isinstance(v, str) and len(v) > EXAMPLE_CHARS else v


def errors_and_loops(store: Store, workflow_id: str | None = None, stage: str | None = None,
                     days: float | None = None, sections: list[str] | None = None,
                     limit: int = 5) -> ErrorsAndLoops:
    """The chosen sections (default all) for one workflow/stage, or for the recent window."""
    bad = [s for s in sections or [] if s not in SECTIONS]
    if bad:
        raise InvalidInput(f"unknown section {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    if not 1 <= limit <= 50:
        raise InvalidInput("limit must be 1..50")
    want = set(sections or DEFAULT_SECTIONS)
    known.require_all(store, workflow_id=workflow_id, stage=stage)
    now = known.data_now(store)
    span = days if days is not None else (ALL_TIME_DAYS if workflow_id else known.DEFAULT_DAYS)
    start = now - timedelta(days=span)
    window_text = ("all of the workflow" if workflow_id and days is None
                   else known.window_note(start, now, span))
    scope = {k: v for k, v in (("workflow_id", workflow_id), ("stage", stage)) if v}
    from .snapshot import summaries

    # one reader of the analysis cache (brought up to date first) for the loops, errors and categories
    with summaries(store) as reader:
        return _answer(store, reader, workflow_id, stage, span, now, start, days, window_text, scope, want, limit)


def _answer(store: Store, reader: Any, workflow_id: str | None, stage: str | None, span: float, now: datetime,
            start: datetime, days: float | None, window_text: str, scope: dict[str, str], want: set[str],
            limit: int) -> ErrorsAndLoops:
    more: list[str] = []
    failed = ""

    def capped(name: str, rows: list[dict[str, Any]], columns: list[str], total: int | None = None) -> Table:
        n = len(rows) if total is None else total  # total: rows has the first `limit` of them only
        if n > limit:
            more.append(f"{name}: {limit} of {n} rows; raise limit (max 50) or narrow by workflow_id/stage")
        return table([{k: _cut(v) for k, v in r.items()} for r in rows[:limit]], columns)

    def staged(rows: list[Any]) -> list[dict[str, Any]]:
        out = [r.model_dump() if isinstance(r, BaseModel) else r for r in rows]
        return [r for r in out if stage is None or r.get("stage") == stage]

    # the retries shown (the first `limit`) with their reasons, all counted; by stage, all with reasons
    lp = find_loops(reader, days=span, now=now, workflow_id=workflow_id, retry_reasons=limit if stage is None else None)
    n_retried = lp.retried_requests if stage is None else len(staged(lp.retries))
    loops_rows = staged(lp.loops)
    answer: dict[str, Any] = {}
    if "loops" in want:
        answer["loops"] = capped("loops", loops_rows, ["workflow_id", "stage", "tool_name", "command", "count",
                                                        "failures"])
    if "retries" in want:
        answer["retries"] = capped("retries", staged(lp.retries), ["workflow_id", "stage", "request_id", "attempt",
                                                                     "model", "reason_category", "reason_status_code",
                                                                     "reason"], n_retried)
    if "rework" in want:
        rework = [{"workflow_id": r.workflow_id, "stage": None, "what": r.reason} for r in lp.rework]
        rework += [{"workflow_id": c.workflow_id, "stage": c.stage, "what": f"{c.cycles} edit -> failing Bash cycles"}
                   for c in lp.edit_fail_cycles]
        answer["rework"] = capped("rework", staged(rework), ["workflow_id", "stage", "what"])
    if want & {"failures", "api_errors", "by_stage"}:
        qe = query_errors(reader, workflow_id, stage, start.isoformat() if not workflow_id or days else None, limit=100)
        failed = (f"{sum(r['failures'] for r in qe['tool_failures'])} failed tool call(s), "
                  f"{sum(r['errors'] for r in qe['api_errors_by_status'])} API error(s); ")
        if "failures" in want:
            answer["failures"] = capped("failures", qe["tool_failures"], ["tool_name", "stage", "failures", "example"])
        if "api_errors" in want:
            answer["api_errors"] = capped("api_errors", qe["api_errors_by_status"], [
                "kind", "status_code", "errors", "retries_exhausted", "example"])
        if "by_stage" in want:
            answer["by_stage"] = capped("by_stage", qe["by_stage"], ["stage", "requests", "api_errors", "retries",
                                                                     "tool_calls", "tool_failures", "tool_error_rate"])
    if "patterns" in want:
        if workflow_id:
            more.append("patterns: over the recent window only; omit workflow_id to see them")
        else:
            # the categories only: the pattern report's other parts (by stage, repeats, days) are not shown
            cats = [{"category": c.category, "count": c.count,
                     "stages": ", ".join(f"{k} {v}" for k, v in sorted(c.stages.items(), key=lambda kv: (-kv[1], kv[0]))),
                     "fix": c.fix} for c in error_categories(reader, *window(now, span))
                    if stage is None or stage in c.stages]
            answer["patterns"] = capped("patterns", cats, ["category", "count", "stages", "fix"])
    if "sequences" in want:
        if workflow_id:
            more.append("sequences: learned across workflows; omit workflow_id to see them")
        else:
            ru = reusable_sequences(store, days=span, now=now, stage=stage, limit=50)
            rows = [{"stage": r.stage or "(stages)", "sequence": r.sequence,
                     "successful": f"{r.successful_with}/{r.successful_total}",
                     "failed": f"{r.failed_with}/{r.failed_total}", "with_success_rate": r.with_success_rate,
                     "without_success_rate": r.without_success_rate, "q": f"{r.q_value:.2g}",
                     "median_cost_with_usd": r.median_cost_with_usd,
                     "median_cost_without_usd": r.median_cost_without_usd,
                     "examples": ", ".join(r.examples)} for r in ru.sequences]
            if ru.note:
                more.append(f"sequences: {ru.note}")
            answer["sequences"] = capped("sequences", rows, list(rows[0]) if rows else ["stage", "sequence"])
    n_fail = sum(r["failures"] for r in loops_rows)
    with_loops = sorted({str(r["workflow_id"]) for r in loops_rows})
    summary = (failed + f"{len(with_loops)} workflow(s) with loops"
               + (f" ({', '.join(with_loops[:5])})" if with_loops else "")
               + f"; {len(loops_rows)} repeated call(s) with {n_fail} failures; {n_retried} retried "
               f"request(s)")
    return ErrorsAndLoops(summary=summary, scope=scope, window=window_text,
                          workflows_with_loops=with_loops, more=more or None, **answer)
