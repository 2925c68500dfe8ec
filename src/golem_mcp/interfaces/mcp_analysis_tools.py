"""MCP tools of the analysis engine: thin wrappers over ``golem_mcp.analysis`` (no SQL, no statistics).

``register(server, get_store, guard)`` adds the tools to the server built in ``mcp_server.build_server``.
Answers are the analyses' pydantic models, compact (tables, capped at ``limit``, caps stated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp_types import ToolAnnotations
from pydantic import Field

from ..analysis import answers
from ..store.db import Store

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
DAYS = Annotated[float | None, Field(gt=0, le=3650, description="look back this many days (default 30)")]
LIMIT = Annotated[int, Field(ge=1, le=50, description="rows shown (default 5)")]
# the analysis' dimensions (bottlenecks.SAMPLES), spelled out for the schema's enum
Dimension = Literal["stage", "stage_experiment", "workflow_path", "agent", "model", "tool", "span", "handoff", "phase",
                    "gate", "subagent"]
RECORDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WF = Annotated[str | None, Field(max_length=200, description="workflow id; omit for all")]
STAGE = Annotated[str | None, Field(max_length=200, description="stage, e.g. implementer")]


def register(server: Any, get_store: Callable[[], Store], guard: Callable[..., Any],
             catch_up: Callable[[str], None] | None = None) -> None:
    """Add budget_status, find_slow_stages, find_token_leaks, query_review_findings, list_improvements,
    predict_cost and set_threshold to ``server``. ``catch_up``: see ``mcp_server.build_server``."""

    @server.tool(annotations=READ_ONLY, description=(
        "Budget: am I over budget today, in this workflow or stage? Spend vs budget (workflow $5, stage $2, day "
        "$150 by default), burn rate, projection, advice. Check before an expensive step."))
    @guard
    def budget_status(workflow_id: WF = None, stage: STAGE = None) -> answers.BudgetAnswer:
        if workflow_id and catch_up is not None:
            catch_up(workflow_id)
        return answers.budget(get_store(), workflow_id, stage)

    @server.tool(annotations=READ_ONLY, description=(
        "Slow stages: p50/p95/p99 duration per stage, agent, model, tool or path vs its baseline; flags "
        "bottlenecks; each workflow's bottleneck stage and idle time. Percentiles: within 1 %. "
        "For cost use query_workflow_cost."))
    @guard
    def find_slow_stages(
        dimension: Annotated[Dimension | None, Field(description="default all")] = None,
        days: DAYS = None, limit: LIMIT = 5, workflow_id: WF = None,
    ) -> answers.SlowAnswer:
        return answers.slow(get_store(), dimension, days, limit, workflow_id)

    @server.tool(annotations=READ_ONLY, description=(
        "Token leaks: stage runs or workflows using several times the usual tokens, cost or tool calls of "
        "their peers."))
    @guard
    def find_token_leaks(workflow_id: WF = None, days: DAYS = None, limit: LIMIT = 5) -> answers.LeakAnswer:
        return answers.leaks(get_store(), workflow_id, days, limit)

    @server.tool(annotations=READ_ONLY, description=(
        "Review findings reported by reviewers: counts by severity and category, rework rate, per experiment, "
        "most-flagged files. (Improvement items: list_improvements.)"))
    @guard
    def query_review_findings(days: DAYS = None, limit: LIMIT = 5) -> answers.ReviewAnswer:
        return answers.review_quality(get_store(), days, limit)

    @server.tool(annotations=READ_ONLY, description=(
        "Improvement items from the analysis (slow stages, token leaks, loops, error patterns, cheaper models), "
        "worst first, each with a recommendation. Runs the analysis when its last run is over a day old."))
    @guard
    def list_improvements(
        kind: Annotated[Literal["bottleneck", "token_leak", "loop", "error_pattern", "retry", "model_advice"] | None,
                        Field(description="default all")] = None,
        status: Annotated[Literal["open", "done", "dismissed", "all"], Field(description="default open")] = "open",
        limit: LIMIT = 5,
    ) -> answers.ImprovementAnswer:
        return answers.improvements(get_store(), kind, status, limit)

    @server.tool(annotations=READ_ONLY, description=(
        "Predict what a workflow will cost from past ones of the same path and complexity (median, 10-90% "
        "range, per stage) and whether a cheaper model did as well."))
    @guard
    def predict_cost(
        path: Annotated[Literal["fast-track", "full"] | None, Field(description="default any")] = None,
        complexity: Annotated[Literal["simple", "medium", "complex"] | None, Field(description="default any")] = None,
        model: Annotated[str | None, Field(max_length=200, description="only workflows using this model")] = None,
        days: Annotated[float, Field(gt=0, le=3650, description="history (default 90)")] = 90,
    ) -> answers.PredictAnswer:
        return answers.predict(get_store(), path, complexity, model, days)

    @server.tool(annotations=RECORDS, description=(
        "Maintainers: set, change or switch off a slow-stage baseline: dimension:key is flagged when its p50 "
        "exceeds baseline_ms x multiplier."))
    @guard
    def set_threshold(
        dimension: Annotated[Dimension, Field(description="what is timed")],
        key: Annotated[str, Field(min_length=1, max_length=200, description="e.g. implementer or PLAN")],
        baseline_ms: Annotated[float | None, Field(gt=0, description="expected p50; new rows need it")] = None,
        multiplier: Annotated[float | None, Field(gt=0, description="default 2")] = None,
        active: Annotated[bool, Field(description="false switches it off")] = True,
    ) -> answers.ThresholdAnswer:
        return answers.threshold(get_store(), dimension, key, baseline_ms, multiplier, active)
