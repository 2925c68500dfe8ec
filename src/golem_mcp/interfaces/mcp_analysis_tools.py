"""MCP tools of the analysis engine: thin wrappers over ``golem_mcp.analysis`` (no SQL, no statistics).

``register(server, get_store)`` adds the tools to the MCP server built in ``mcp_server.build_server``.
Answers are pydantic models, capped (``limit``) so an agent pays for few tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from ..analysis import anomalies, bottlenecks, budgets, error_patterns, findings_store, loops, predict, trends
from ..store.db import Store

Days = Annotated[float, Field(gt=0, le=3650, description="look back this many days")]
Limit = Annotated[int, Field(ge=1, le=50, description="at most this many rows per list")]
OptStr = Annotated[str | None, Field(max_length=200)]


class FindingsList(findings_store.BaseModel):
    items: list[findings_store.Item]
    note: str | None = None


class ModelAdviceList(findings_store.BaseModel):
    advice: list[predict.ModelAdvice]


class CostForecast(findings_store.BaseModel):
    prediction: predict.CostPrediction
    model_advice: list[predict.ModelAdvice] = Field(description="per stage: did a cheaper model do as well?")


def _cap(model: Any, limit: int, *fields: str) -> Any:
    for f in fields:
        v = getattr(model, f)
        if isinstance(v, list) and len(v) > limit:
            setattr(model, f, v[:limit])
    return model


def register(server: Any, get_store: Callable[[], Store]) -> None:
    """Add find_bottlenecks, detect_anomalies, find_loops, query_error_patterns, query_trends,
    query_quality, budget_status, list_findings, set_threshold and predict_cost to ``server`` (an ``MCPServer``)."""
    from .mcp_server import READ_ONLY, _guard

    @server.tool(annotations=READ_ONLY, description=(
        "Slowest stages, agents, tools, models and workflow paths: p50/p95 duration over the last days vs a "
        "configured or learned baseline, severity = observed/baseline (bottlenecks, latency, duration, time)."))
    @_guard
    def find_bottlenecks(days: Days = 7, dimension: OptStr = None, limit: Limit = 10) -> bottlenecks.BottleneckReport:
        rep = bottlenecks.find_bottlenecks(get_store(), days=days, dimensions=[dimension] if dimension else None)
        return _cap(rep, limit, "bottlenecks", "no_baseline")

    @server.tool(annotations=READ_ONLY, description=(
        "Token leaks and cost anomalies: stage runs and workflows with N x the normal tokens, cost or tool calls "
        "of the same stage (median/MAD), with the ratio to normal."))
    @_guard
    def detect_anomalies(days: Days = 30, workflow_id: OptStr = None, limit: Limit = 10) -> anomalies.AnomalyReport:
        rep = anomalies.detect_anomalies(get_store(), days=days, workflow_id=workflow_id)
        return _cap(rep, limit, "anomalies", "insufficient_history")

    @server.tool(annotations=READ_ONLY, description=(
        "Loops, retries and rework: the same failing command or identical tool call repeated (with command and "
        "count), edit->test-fail cycles, API retries (attempt > 1), another implementer pass after review, "
        "tool calls per API request."))
    @_guard
    def find_loops(days: Days = 30, workflow_id: OptStr = None, limit: Limit = 10) -> loops.LoopReport:
        rep = loops.find_loops(get_store(), days=days, workflow_id=workflow_id)
        return _cap(rep, limit, "loops", "retries", "edit_fail_cycles", "rework", "thrashing")

    @server.tool(annotations=READ_ONLY, description=(
        "Error patterns with suggested fixes: categories (rate limit, overload, timeout, permission, file not "
        "found, shell exit, syntax) by stage and tool, repeated failures with examples, error and recovery rate "
        "per stage, error bursts by day."))
    @_guard
    def query_error_patterns(days: Days = 30, limit: Limit = 10) -> error_patterns.ErrorPatternReport:
        rep = error_patterns.query_error_patterns(get_store(), days=days)
        rep.daily = rep.daily[-limit:]
        return _cap(rep, limit, "categories", "repeated_failures", "by_stage", "bursts")

    @server.tool(annotations=READ_ONLY, description=(
        "Trends of cost, tokens, duration, error rate, cache hit rate and review findings per day or week, with "
        "a 7-period moving average and change vs the previous period."))
    @_guard
    def query_trends(period: Annotated[str, Field(pattern="^(day|week)$")] = "day", days: Days = 30) -> trends.TrendReport:
        return trends.query_trends(get_store(), period=period, days=days)

    @server.tool(annotations=READ_ONLY, description=(
        "Quality from reviewers' findings: counts by severity and category, rework rate, findings per workflow "
        "by experiment, files with the most findings, cleanest workflows."))
    @_guard
    def query_quality(days: Days = 30, limit: Limit = 5) -> trends.QualityReport:
        return trends.query_quality(get_store(), days=days, limit=limit)

    @server.tool(annotations=READ_ONLY, description=(
        "Budget status before an expensive step: today's spend, this workflow's and stage's spend against their "
        "budgets (default workflow $5, stage $2, day $150), burn rate per hour, projection, and advice."))
    @_guard
    def budget_status(workflow_id: OptStr = None, stage: OptStr = None) -> budgets.BudgetStatus:
        return budgets.budget_status(get_store(), workflow_id=workflow_id, stage=stage)

    @server.tool(annotations=READ_ONLY, description=(
        "Open improvement items the analysis found (bottlenecks, token leaks, loops, error patterns, cheaper "
        "models), worst first, each with a recommendation; evidence on request."))
    @_guard
    def list_findings(kind: OptStr = None, status: Annotated[str, Field(pattern="^(open|done|dismissed|all)$")] = "open",
                      with_evidence: bool = False, limit: Limit = 10) -> FindingsList:
        items = findings_store.list_findings(get_store(), status=None if status == "all" else status, kind=kind,
                                             limit=limit, with_evidence=with_evidence)
        return FindingsList(items=items, note=None if items else
                            "no findings stored yet; the analysis runs at session start when older than 7 days, "
                            "or run `golem-mcp analyze`")

    from .mcp_server import RECORDS

    @server.tool(annotations=RECORDS, description=(
        "Set, change or switch off a bottleneck threshold: flag dimension:key when its p50 duration > "
        "baseline_ms x multiplier."))
    @_guard
    def set_threshold(dimension: Annotated[str, Field(max_length=50, description="phase, gate, subagent, stage, tool...")],
                      key: Annotated[str, Field(max_length=200)], baseline_ms: Annotated[float | None, Field(gt=0)] = None,
                      multiplier: Annotated[float | None, Field(gt=0)] = None, active: bool = True
                      ) -> bottlenecks.Threshold:
        if not active:
            return bottlenecks.switch_off_threshold(get_store(), dimension, key)
        return bottlenecks.set_threshold(get_store(), dimension, key, baseline_ms, multiplier=multiplier)

    @server.tool(annotations=READ_ONLY, description=(
        "Predict a workflow's cost from history by path (fast-track/full), complexity and model, with a "
        "10-90 % range, plus per-stage advice whether a cheaper model did as well."))
    @_guard
    def predict_cost(path: OptStr = None, complexity: OptStr = None, model: OptStr = None, days: Days = 90) -> CostForecast:
        store = get_store()
        return CostForecast(prediction=predict.predict_cost(store, path=path, complexity=complexity, model=model, days=days),
                            model_advice=predict.model_advice(store, days=days))
