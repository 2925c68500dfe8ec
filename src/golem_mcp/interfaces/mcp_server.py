"""golem-mcp's MCP server: the tools agents call, wired to the analysis functions.

This module only wires: every tool validates nothing beyond its typed arguments, calls one function
in ``golem_mcp.analysis`` and shapes the answer as a pydantic model. Errors are mapped once
(:func:`_guard`): a :class:`GolemError` becomes a protocol-level tool error (``isError``) whose text
says what to do next.

Transport: the daemon mounts :func:`mcp_routes` at ``/mcp`` (streamable HTTP, stateless, JSON
responses). Stateless because each Claude Code session runs its own stdio bridge and nothing here
needs per-connection state; a daemon restart then costs the bridge nothing but one retry.

How the calling session is found: see ``analysis/workflows.py`` (explicit ``session_id``, else the
``_meta["claudecode/toolUseId"]`` Claude Code attaches to each tool call, matched to the
PreToolUse hook / transcript record of that call, else the ``CLAUDE_CODE_SESSION_ID`` Claude Code
gives the stdio bridge, forwarded as the ``x-golem-session-id`` header).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .. import __version__
from ..analysis import experiment_defs, experiments, findings, schema_doc, sql_guard, workflows
from ..config import Settings
from ..errors import GolemError, PayloadTooLarge
from ..store.db import Store

MAX_ARGUMENT_BYTES = 1_000_000  # an agent's argument above this is a mistake, not a report
TOOL_USE_META = "claudecode/toolUseId"
SESSION_HEADER = "x-golem-session-id"  # set by the stdio bridge when its environment names the session

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
RECORDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

INSTRUCTIONS = """golem-mcp knows what every Claude Code workflow cost and did: tokens, cache use, dollars,
requests, tool calls, errors and reviewer findings per workflow, stage (subagent type; 'main' = master),
task, agent, model and experiment. Masters call record_workflow first; reviewers call
report_review_findings; any agent may ask query_workflow_cost. For anything else: describe_schema, then
query_sql."""


# --- result models --------------------------------------------------------------------------------

class Usage(BaseModel):
    input_tokens: int | None = Field(None, description="uncached input tokens")
    output_tokens: int | None = Field(None, description="output tokens")
    cache_read_tokens: int | None = Field(None, description="input tokens read from the prompt cache")
    cache_creation_tokens: int | None = Field(None, description="input tokens written to the prompt cache")
    cost_usd: float | None = Field(None, description="cost in USD")


class ObservedUsage(Usage):
    requests: int = Field(0, description="API requests the store has seen for the caller")
    model: str | None = Field(None, description="a model the caller used")


class WorkflowRecorded(BaseModel):
    workflow_id: str = Field(description="the workflow")
    path: str | None = Field(None, description="fast-track | full")
    complexity: str | None = Field(None, description="the master's estimate")
    spec_completeness: str | None = Field(None, description="complete | incomplete")
    experiment_id: str | None = Field(None, description="experiment arm")
    task_id: str | None = Field(None, description="task")
    status: str | None = Field(None, description="status")
    session_id: str | None = Field(None, description="the calling Claude Code session, when known")
    linked: bool = Field(description="true: this session's and its subagents' usage is attributed to the workflow")
    linked_by: str = Field(description="how the session was identified: argument | tool_use_id | mcp_client | unknown")
    note: str | None = Field(None, description="what to do when not linked")


class StageRecorded(BaseModel):
    id: int = Field(description="id of the stage record")
    workflow_id: str
    stage: str
    task_id: str | None = None
    agent: str | None = None
    model: str | None = None
    status: str | None = None
    session_id: str | None = Field(None, description="the calling session, when known")
    agent_id: str | None = Field(None, description="the calling subagent, when known")
    usage: Usage = Field(description="the usage stored with the record")
    usage_source: Literal["given", "observed", "none"] = Field(
        description="given = numbers from the caller; observed = what the store saw for the caller")
    observed: ObservedUsage | None = Field(None, description="what the store saw for the caller so far")


class CostRow(BaseModel):
    group: dict[str, Any] = Field(default_factory=dict, description="the group's key (e.g. {'stage': 'analyst'})")
    requests: int = Field(0, description="API requests")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    total_tokens: int = Field(0, description="input + output + cache read + cache write tokens")
    cost_usd: float | None = Field(None, description="USD; Claude Code's own figure where present")
    cache_hit_rate: float | None = Field(None, description="cache_read / (input + cache_read + cache_creation)")
    retries: int = 0
    duration_seconds: float | None = Field(None, description="first to last request")
    unpriced_requests: int = Field(0, description="requests of models without a price (cost excludes them)")


class WorkflowCost(BaseModel):
    scope: dict[str, Any] = Field(description="what was costed")
    total: CostRow = Field(description="totals over the scope")
    group_by: list[str] = Field(description="the grouping of 'groups'")
    groups: list[CostRow] = Field(description="one row per group, most tokens (stage) or cost first")
    top: str | None = Field(None, description="the group with the most tokens")
    group_count: int = Field(description="groups in all (this page may hold fewer)")
    truncated: bool = Field(description="more groups exist; ask again with offset=next_offset")
    next_offset: int | None = None


class ArmStats(BaseModel):
    n: int = Field(description="workflows in the arm")
    mean: float | None = None
    median: float | None = None
    sd: float | None = None
    min: float | None = None
    max: float | None = None


class Guardrail(BaseModel):
    baseline_mean: float
    arm_mean: float
    difference: float
    p_value: float | None = None
    worse: bool = Field(description="significantly worse in the arm")


class Comparison(BaseModel):
    arm: str
    vs: str = Field(description="the baseline arm")
    difference: float = Field(description="mean(arm) - mean(baseline)")
    relative_change: float | None = Field(None, description="difference / mean(baseline)")
    ci_low: float | None = Field(None, description="confidence interval of the difference, lower bound")
    ci_high: float | None = Field(None, description="confidence interval of the difference, upper bound")
    ci_method: str | None = Field(None, description="percentile bootstrap, or Welch t for arms of thousands")
    p_value: float | None = Field(None, description="two-sided Mann-Whitney U p-value")
    test: str | None = None
    cliffs_delta: float | None = Field(None, description="effect size -1..1 (P(arm>base) - P(arm<base))")
    guardrails: dict[str, Guardrail] = Field(default_factory=dict, description="errors, review findings")
    verdict: Literal["confirmed", "rejected", "inconclusive"]
    more_runs_needed: int = Field(description="more workflows per arm before a verdict (0 = enough)")
    reason: str


class ExperimentComparison(BaseModel):
    experiment_id: str | None = Field(None, description="the stored definition the arms and metric came from")
    hypothesis: str | None = None
    metric: str
    stage: str | None = None
    unit: str = Field(description="what one observation is")
    baseline: str
    alpha: float
    min_runs: int = Field(description="runs per arm the hypothesis process asks for")
    arms: dict[str, ArmStats]
    comparisons: list[Comparison]


class ExperimentRecord(BaseModel):
    experiment_id: str
    hypothesis: str
    arms: list[str]
    metric: str
    stage: str | None = None
    expected_change_pct: float | None = None
    expected: str | None = Field(None, description="decrease or increase")
    alpha: float | None = None
    guardrails: list[str] | None = None
    min_runs_per_arm: int | None = None
    status: str = Field(description="defined, running or decided")
    verdict: str | None = Field(None, description="confirmed / rejected / inconclusive, once decided")
    decision: dict[str, Any] | None = None
    created_at: Any = None
    updated_at: Any = None
    decided_at: Any = None
    warnings: list[str] | None = None


class FindingsRecorded(BaseModel):
    report_id: str = Field(description="stable id: the same report sent twice is stored once")
    workflow_id: str | None = Field(None, description="the workflow the findings are linked to")
    task_id: str
    severity: dict[str, int]
    issues_stored: int
    categories: dict[str, int] = Field(default_factory=dict)
    duplicate: bool = Field(description="this exact report was already stored")
    session_id: str | None = None
    agent_id: str | None = None
    warnings: list[str] | None = None


class ErrorsReport(BaseModel):
    api_errors_by_status: list[dict[str, Any]] = Field(description="status_code, errors, example")
    retries: dict[str, Any] = Field(description="requests Claude Code retried (e.g. after 529)")
    tool_failures: list[dict[str, Any]] = Field(description="tool_name, stage, failures, example")
    repeated_failing_commands: list[dict[str, Any]] = Field(description="Bash commands that failed 2+ times")
    by_stage: list[dict[str, Any]] = Field(description="requests, api errors, retries, tool failures, error rate")


class SqlResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    note: str | None = Field(None, description="why and where the answer was cut")


class ViewInfo(BaseModel):
    name: str
    description: str
    columns: list[str]


class ColumnInfo(BaseModel):
    name: str
    type: str
    description: str | None = None


class SchemaDescription(BaseModel):
    views: list[ViewInfo] | None = Field(None, description="every view (without 'view')")
    view: str | None = None
    description: str | None = None
    columns: list[ColumnInfo] | None = Field(None, description="typed, described columns (with 'view')")
    note: str | None = None


# --- wiring ---------------------------------------------------------------------------------------

T = TypeVar("T")
Id = Annotated[str, Field(min_length=1, max_length=200)]
OptId = Annotated[str | None, Field(max_length=200)]


def _guard(fn: Callable[..., T]) -> Callable[..., T]:
    """Map GolemError to a tool error once; refuse oversized arguments before any work.

    The answer's text is compact JSON without nulls (the SDK's default is indented, and an agent pays
    for every token); the structured content keeps the full model.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            size = len(json.dumps({k: v for k, v in kwargs.items() if k != "ctx"}, default=str))
            if size > MAX_ARGUMENT_BYTES:
                raise PayloadTooLarge(f"the arguments are {size:,} bytes; the limit is {MAX_ARGUMENT_BYTES:,}. "
                                      "Send less (e.g. only the findings, or a narrower query)")
            result = fn(*args, **kwargs)
        except GolemError as e:
            raise ToolError(str(e)) from e
        if isinstance(result, BaseModel):
            text = json.dumps(result.model_dump(mode="json", exclude_none=True), separators=(",", ":"))
            return CallToolResult(content=[TextContent(type="text", text=text)],
                                  structured_content=result.model_dump(mode="json"))
        return result

    return wrapper


def _r(v: Any, nd: int = 6) -> Any:
    return round(v, nd) if isinstance(v, float) else v


def _cost_row(r: dict[str, Any], keys: list[str]) -> CostRow:
    return CostRow(group={k: (str(r[k]) if r.get(k) is not None else None) for k in keys},
                   requests=r.get("requests") or 0, input_tokens=r.get("input_tokens") or 0,
                   output_tokens=r.get("output_tokens") or 0, cache_read_tokens=r.get("cache_read_tokens") or 0,
                   cache_creation_tokens=r.get("cache_creation_tokens") or 0,
                   total_tokens=r.get("total_tokens") or 0, cost_usd=_r(r.get("cost_usd")),
                   cache_hit_rate=_r(r.get("cache_hit_rate"), 4), retries=r.get("retries") or 0,
                   duration_seconds=_r(r.get("duration_seconds"), 3), unpriced_requests=r.get("unpriced_requests") or 0)


def build_server(get_store: Callable[[], Store], settings: Settings | None = None,
                 wait_for_caller_s: float = 5.0) -> MCPServer:
    """The MCP server over the store ``get_store()`` returns (called per tool call, so it may change)."""
    server: MCPServer = MCPServer("golem", instructions=INSTRUCTIONS, version=__version__)

    def caller(ctx: Context | None, session_id: str | None, agent_id: str | None) -> workflows.Caller:
        tool_use_id = None
        header_session = None
        if ctx is not None:
            meta = ctx.request_context.meta or {}
            tool_use_id = meta.get(TOOL_USE_META) if isinstance(meta, dict) else None
            headers = ctx.headers or {}
            header_session = headers.get(SESSION_HEADER)
        return workflows.resolve_caller(get_store(), session_id, agent_id,
                                        tool_use_id if isinstance(tool_use_id, str) else None,
                                        header_session, wait_s=wait_for_caller_s)

    @server.tool(annotations=RECORDS, description=(
        "Record a workflow's context (workflow_id, path fast-track/full, complexity, spec completeness, "
        "experiment arm, task, status) and link the calling Claude Code session to it, so the cost, tokens "
        "and tool calls of this session and all its subagents/stages are attributed to the workflow. "
        "Masters call this first; call again to update status."))
    @_guard
    def record_workflow(
        workflow_id: Annotated[str, Field(min_length=1, max_length=200, description="the workflow id, e.g. wf-042")],
        path: Annotated[Literal["fast-track", "full"] | None, Field(description="workflow path")] = None,
        complexity: Annotated[str | None, Field(max_length=200, description="estimated complexity, e.g. simple | complex")] = None,
        spec_completeness: Annotated[str | None, Field(max_length=200, description="complete | incomplete")] = None,
        experiment_id: Annotated[str | None, Field(max_length=200, description="experiment arm, e.g. baseline")] = None,
        task_id: Annotated[str | None, Field(max_length=200, description="the task the workflow works on")] = None,
        status: Annotated[str | None, Field(max_length=200, description="e.g. started | done | failed")] = None,
        session_id: Annotated[str | None, Field(max_length=200, description="only when calling on behalf of another session (e.g. the session_id of a `claude -p` run)")] = None,
        ctx: Context | None = None,
    ) -> WorkflowRecorded:
        c = caller(ctx, session_id, None)
        row = workflows.record_workflow(get_store(), c, workflow_id, path, complexity, spec_completeness,
                                        experiment_id, task_id, status)
        note = None if c.known else ("the calling session is unknown, so usage is not linked yet: enable golem-mcp's "
                                     "hooks (golem-mcp install) or pass session_id")
        return WorkflowRecorded(**{k: row[k] for k in ("workflow_id", "path", "complexity", "spec_completeness",
                                                        "experiment_id", "task_id", "status", "session_id",
                                                        "linked", "linked_by")}, note=note)

    @server.tool(annotations=RECORDS, description=(
        "Record one stage of a workflow (stage name, task, agent, model, status, start/end) with its usage: "
        "tokens and cost if you have them (e.g. from `claude -p --output-format json`); without numbers the "
        "server attributes the tokens and cost it observed for the calling agent/session. Returns what was stored."))
    @_guard
    def record_stage_usage(
        workflow_id: Id, stage: Annotated[str, Field(min_length=1, max_length=200, description="analyst, planner, implementer, reviewer, ...")],
        task_id: OptId = None, agent: OptId = None, model: OptId = None,
        status: Annotated[str | None, Field(max_length=200, description="e.g. done | failed | rework")] = None,
        started_at: Annotated[str | None, Field(max_length=64, description="ISO-8601 start")] = None,
        ended_at: Annotated[str | None, Field(max_length=64, description="ISO-8601 end")] = None,
        input_tokens: Annotated[int | None, Field(ge=0)] = None,
        output_tokens: Annotated[int | None, Field(ge=0)] = None,
        cache_read_tokens: Annotated[int | None, Field(ge=0)] = None,
        cache_creation_tokens: Annotated[int | None, Field(ge=0)] = None,
        cost_usd: Annotated[float | None, Field(ge=0)] = None,
        session_id: Annotated[str | None, Field(max_length=200, description="only when recording for another session")] = None,
        agent_id: Annotated[str | None, Field(max_length=200, description="only when recording for another subagent")] = None,
        ctx: Context | None = None,
    ) -> StageRecorded:
        c = caller(ctx, session_id, agent_id)
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_tokens": cache_read_tokens,
                 "cache_creation_tokens": cache_creation_tokens, "cost_usd": cost_usd}
        out = workflows.record_stage_usage(get_store(), c, workflow_id, stage, task_id, agent, model, status,
                                           started_at, ended_at, usage)
        obs = out["observed"]
        return StageRecorded(**{k: out[k] for k in ("id", "workflow_id", "stage", "task_id", "agent", "model",
                                                     "status", "session_id", "agent_id", "usage_source")},
                             usage=Usage(**out["usage"]),
                             observed=ObservedUsage(**{k: obs.get(k) for k in ObservedUsage.model_fields if k in obs},
                                                    ) if obs else None)

    @server.tool(annotations=READ_ONLY, description=(
        "What did a workflow, task or experiment cost? Cost in USD, tokens by type (input, output, cache read, "
        "cache write), cache hit rate, requests, retries and duration, grouped by stage (default), agent, model, "
        "task or day. Answers 'what did task X cost?' and 'which stage uses most tokens?'."))
    @_guard
    def query_workflow_cost(
        workflow_id: OptId = None, task_id: OptId = None, experiment_id: OptId = None,
        stage: Annotated[str | None, Field(max_length=200, description="only this stage")] = None,
        since: Annotated[str | None, Field(max_length=64, description="ISO-8601 start of a time range")] = None,
        until: Annotated[str | None, Field(max_length=64, description="ISO-8601 end (exclusive)")] = None,
        group_by: Annotated[list[Literal["stage", "agent", "model", "task", "day", "workflow", "experiment",
                                         "session", "top_stage"]] | None,
                            Field(max_length=3, description="grouping, default ['stage']; [] for totals only")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="groups per page")] = 20,
        offset: Annotated[int, Field(ge=0, description="paging offset")] = 0,
    ) -> WorkflowCost:
        gb: list[str] = list(group_by) if group_by is not None else ["stage"]
        out = workflows.query_workflow_cost(get_store(), workflow_id, task_id, experiment_id, stage, since, until,
                                            gb, limit, offset)
        groups = [_cost_row(r, gb) for r in out["groups"]]
        top = max(groups, key=lambda g: g.total_tokens, default=None) if groups else None
        scope = {k: v for k, v in (("workflow_id", workflow_id), ("task_id", task_id), ("experiment_id", experiment_id),
                                   ("stage", stage), ("since", since), ("until", until)) if v}
        return WorkflowCost(scope=scope, total=_cost_row(out["total"], []), group_by=gb, groups=groups,
                            top=", ".join(f"{v}" for v in top.group.values()) if top and top.group else None,
                            group_count=out["group_count"], truncated=out["truncated"], next_offset=out["next_offset"])

    @server.tool(annotations=READ_ONLY, description=(
        "Compare experiment arms (e.g. baseline vs a prompt change) on tokens, input_tokens, cost, duration, "
        "errors, requests or review_findings, for one stage or the whole workflow: per-arm n/mean/median, the "
        "difference with a bootstrap confidence interval, Mann-Whitney p-value, effect size, guardrails "
        "(errors, findings) and a verdict confirmed / rejected / inconclusive with how many more runs to do."))
    @_guard
    def compare_experiments(
        metric: Annotated[Literal["tokens", "input_tokens", "output_tokens", "cache_read_tokens", "cost", "duration",
                                  "errors", "requests", "tool_calls", "review_findings"] | None,
                          Field(description="what to compare, per workflow; default the experiment's metric, else tokens")] = None,
        stage: Annotated[str | None, Field(max_length=200, description="one stage (e.g. analyst); omit for whole workflows")] = None,
        arms: Annotated[list[Annotated[str, Field(max_length=200)]] | None,
                        Field(max_length=10, description="experiment_ids to compare; default: all")] = None,
        baseline: Annotated[str | None, Field(max_length=200, description="the control arm; default 'baseline'")] = None,
        expected: Annotated[Literal["decrease", "increase"] | None, Field(description="the hypothesis' direction")] = None,
        alpha: Annotated[float | None, Field(gt=0, lt=0.5, description="significance level; default 0.05")] = None,
        min_runs: Annotated[int | None, Field(ge=2, le=1000, description="runs per arm before a verdict (seed 000: 10)")] = None,
        experiment_id: Annotated[str | None, Field(max_length=200, description=(
            "a definition stored with record_experiment: its arms, metric, stage, direction and minimum runs are "
            "the defaults"))] = None,
    ) -> ExperimentComparison:
        store = get_store()
        d = experiment_defs.get_experiment(store, experiment_id) if experiment_id else {}
        pct = d.get("expected_change_pct")
        out = experiments.compare_experiments(
            store, metric or d.get("metric") or "tokens", stage or d.get("stage"), arms or d.get("arms"),
            baseline or (d["arms"][0] if d else None),
            expected or d.get("expected") or (None if pct is None else "decrease" if pct < 0 else "increase"),
            alpha or d.get("alpha") or 0.05,
            min_runs or d.get("min_runs_per_arm") or 10)
        if d:
            out = {**out, "experiment_id": d["experiment_id"], "hypothesis": d["hypothesis"]}
        return ExperimentComparison.model_validate(_round_all(out))

    @server.tool(annotations=RECORDS, description=(
        "Record an experiment (schemas/experiment.v1.json): experiment_id, hypothesis, arms (baseline first), "
        "metric, stage, expected_change_pct, guardrails, min_runs_per_arm; later the same with a decision "
        "{verdict, action, notes} once compare_experiments gave a verdict. Validated (each problem listed)."))
    @_guard
    def record_experiment(
        definition_json: Annotated[dict[str, Any] | str, Field(description="the definition object (or its JSON text)")],
    ) -> ExperimentRecord:
        return ExperimentRecord(**experiment_defs.record_experiment(get_store(), definition_json))

    @server.tool(annotations=RECORDS, description=(
        "Reviewers: post review findings (quality issues) as the .claude-metrics v1 JSON of schemas/"
        "review-findings.v1.json: v, ts, task, parent, severity {critical, major, minor}, categories, issues "
        "[{severity, category, file, line, summary}]. Validated (each problem is listed) and linked to the "
        "workflow and task."))
    @_guard
    def report_review_findings(
        findings_json: Annotated[dict[str, Any] | str, Field(description="the report object (or its JSON text)")],
        workflow_id: Annotated[str | None, Field(max_length=200, description="default: the report's parent, else the session's workflow")] = None,
        task_id: Annotated[str | None, Field(max_length=200, description="default: the report's task")] = None,
        session_id: Annotated[str | None, Field(max_length=200, description="only when reporting for another session")] = None,
        ctx: Context | None = None,
    ) -> FindingsRecorded:
        c = caller(ctx, session_id, None)
        return FindingsRecorded(**findings.report_findings(get_store(), c, findings_json, workflow_id, task_id))

    @server.tool(annotations=READ_ONLY, description=(
        "Errors and failures of workflows/stages: API errors by HTTP status, retries, tool failures by tool and "
        "stage, repeated failing commands (loops), and error rate by stage."))
    @_guard
    def query_errors(
        workflow_id: OptId = None,
        stage: Annotated[str | None, Field(max_length=200)] = None,
        since: Annotated[str | None, Field(max_length=64, description="ISO-8601")] = None,
        limit: Annotated[int, Field(ge=1, le=50, description="rows per list")] = 10,
    ) -> ErrorsReport:
        return ErrorsReport(**_round_all(workflows.query_errors(get_store(), workflow_id, stage, since, limit)))

    @server.tool(annotations=READ_ONLY, description=(
        "Run one read-only SQL query (DuckDB dialect) over golem-mcp's telemetry views (requests, tools, errors, "
        "workflow_summary, workflow_stage_summary, claude_metrics, ...; see describe_schema) for cost, tokens, "
        "stage and workflow questions the other tools do not answer. Writes, ATTACH, COPY, INSTALL/LOAD, "
        "files and network are refused; rows and characters are capped."))
    @_guard
    def query_sql(
        sql: Annotated[str, Field(min_length=1, max_length=20000, description="one SELECT")],
        max_rows: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> SqlResult:
        return SqlResult(**sql_guard.run_read_only(get_store(), sql, max_rows=max_rows))

    @server.tool(annotations=READ_ONLY, description=(
        "The telemetry views (requests, tools, errors, workflow_summary, workflow_stage_summary, claude_metrics "
        "findings, ...), their columns and what each means: cost, tokens, stage, workflow. Give view=NAME for "
        "types and meanings."))
    @_guard
    def describe_schema(view: Annotated[str | None, Field(max_length=100, description="one view")] = None
                        ) -> SchemaDescription:
        return SchemaDescription(**schema_doc.describe(get_store(), view))

    @server.resource("golem://schema", name="schema", title="golem-mcp views and columns",
                     description="Every queryable view with its columns and their meaning", mime_type="text/markdown")
    def schema_resource() -> str:
        return schema_doc.as_markdown(get_store())

    @server.prompt(name="analyze", title="Analyze workflow cost and quality", description=(
        "Analyse recent workflows: cost and tokens per stage, errors, findings, experiments; advise one change"))
    def analyze(workflow_id: str | None = None, question: str | None = None) -> str:
        scope = f"workflow {workflow_id}" if workflow_id else "the most recent workflows"
        ask = f"\nThe question: {question}\n" if question else ""
        return (
            f"Analyse {scope} with the golem MCP tools.{ask}\n"
            "1. query_workflow_cost (group_by stage; then model) — which stage uses most tokens and dollars, "
            "cache hit rate.\n"
            "2. query_errors — API errors, tool failures, repeated failing commands (loops), error rate by stage.\n"
            "3. compare_experiments if there are experiment arms — report the verdict and how many more runs.\n"
            "4. query_sql over workflow_summary / claude_metrics for review findings and trends if needed "
            "(describe_schema lists the views).\n"
            "Answer compactly: a table of stages with tokens and cost, the top 3 problems with evidence, and one "
            "concrete change (prompt, model or workflow) with the metric that would show it helped."
        )

    # tools of the analysis engine join ours when that module is installed
    try:
        from . import mcp_analysis_tools  # type: ignore[attr-defined]
    except ImportError:
        pass  # the analysis engine is optional; the core tools stand alone
    else:
        mcp_analysis_tools.register(server, get_store)
    return server


def _round_all(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, dict):
        return {k: _round_all(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round_all(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def mcp_routes(store: Store, settings: Settings | None = None, *,
               max_body_bytes: int = 4 * 1024 * 1024) -> tuple[list[Any], Callable[[Any], Any] | None]:
    """Routes serving MCP at ``/mcp`` (streamable HTTP) and the lifespan that runs its session manager.

    Contract with the daemon: mount the routes, and enter ``lifespan(app)`` for the app's lifetime.
    Origin, Host and bearer-token checks are the daemon's middleware's (it knows the bind address and
    the token), so the SDK's own DNS-rebinding check, which only knows loopback, is off here.
    Stateless with JSON responses: no per-session state to lose when the daemon restarts, and no
    long-lived SSE streams to hold open per Claude Code session.
    """
    server = build_server(lambda: store, settings)
    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, max_request_body_size=max_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return list(app.routes), lifespan
