"""golem-mcp's MCP server: the tools agents call, wired to the analysis functions.

This module only wires: every tool validates nothing beyond its typed arguments, calls one function
in ``golem_mcp.analysis`` and shapes the answer as a pydantic model. Errors are mapped once
(:func:`_guard`): a :class:`GolemError`, or DuckDB running out of the store's memory limit, becomes a
protocol-level tool error (``isError``) whose text says what to do next.

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

import duckdb
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from .. import __version__
from ..analysis import (
    errors_loops,
    experiment_defs,
    experiments,
    findings,
    known,
    schema_doc,
    sql_guard,
    workflows,
)
from ..config import Settings
from ..errors import GolemError, PayloadTooLarge
from ..store.db import Store
from ..store.memory import out_of_memory
from . import mcp_analysis_tools
from .toolsets import parse as parse_toolsets
from .toolsets import tools_of

MAX_ARGUMENT_BYTES = 1_000_000  # an agent's argument above this is a mistake, not a report
TOOL_USE_META = "claudecode/toolUseId"
SESSION_HEADER = "x-golem-session-id"  # set by the stdio bridge when its environment names the session

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
RECORDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

INSTRUCTIONS = """golem-mcp knows what every Claude Code workflow cost and did: tokens, cost, cache use, errors,
loops, slow stages and review findings per workflow, stage (subagent type; 'main' = master), task, model and
experiment. Masters call record_workflow first; reviewers call report_review_findings. Questions without an id
cover the last 30 days of data. Anything else: describe_schema, then query_sql."""


# --- result models --------------------------------------------------------------------------------

class SqlResult(BaseModel):
    summary: str
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    note: str | None = None


class SchemaDescription(BaseModel):
    summary: str
    views: list[dict[str, Any]] | None = None
    view: str | None = None
    description: str | None = None
    columns: list[dict[str, Any]] | None = None
    note: str | None = None


class SeverityCounts(BaseModel):
    critical: int = Field(ge=0)
    major: int = Field(ge=0)
    minor: int = Field(ge=0)


class Issue(BaseModel):
    severity: Literal["critical", "major", "minor"]
    category: str | None = None
    file: str | None = None
    line: int | None = None
    summary: str


# --- wiring ---------------------------------------------------------------------------------------

T = TypeVar("T")


OptId = Annotated[str | None, Field(max_length=200)]
WF = Annotated[OptId, Field(description="workflow id, e.g. wf-042; omit for the recent window")]
STAGE = Annotated[OptId, Field(description="subagent type, e.g. implementer; main = master")]
DAYS = Annotated[float | None, Field(gt=0, le=3650, description="look back this many days (default 30)")]
LIMIT = Annotated[int, Field(ge=1, le=50, description="rows per section (default 5)")]


def _guard(fn: Callable[..., T], store_of: Callable[[], Store] | None = None) -> Callable[..., T]:
    """Map GolemError to a tool error once; refuse oversized arguments; answer = structured content + summary.

    A call that runs out of DuckDB's memory while the store's limit is low runs again with the whole
    budget (``store_of().memory``, store/memory.py); out of memory then, the agent is told what to do.

    Claude Code gives the model the structured content when there is some, so that is the one copy of
    the data; the text content is the answer's one-line ``summary`` for clients that read only text.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            size = len(json.dumps({k: v for k, v in kwargs.items() if k != "ctx"}, default=str))
            if size > MAX_ARGUMENT_BYTES:
                raise PayloadTooLarge(f"the arguments are {size:,} bytes; the limit is {MAX_ARGUMENT_BYTES:,}. "
                                      "Send less (e.g. only the findings, or a narrower query)")
            if store_of is None:
                result = fn(*args, **kwargs)
            else:
                result = store_of().memory.run(lambda: fn(*args, **kwargs))
        except GolemError as e:
            raise ToolError(str(e)) from e
        except duckdb.Error as e:  # the store's limit: the agent saw only "Error executing tool"
            oom = out_of_memory(e)
            if oom is None:
                raise
            raise ToolError(f"the store ran out of memory answering this ({str(oom).splitlines()[0]}). Ask a "
                            "narrower question (fewer days, one workflow or stage), or give the daemon more: "
                            "memory_budget_mb in settings.json or GOLEM_MEMORY_BUDGET_MB") from e
        if isinstance(result, BaseModel):
            data = _drop_none(result.model_dump(mode="json"))
            text = getattr(result, "summary", None) or json.dumps(data, separators=(",", ":"))
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
        return result

    return wrapper


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v


# enforced by the argument models (a broken one is answered in plain words), and defaults are in the
# descriptions: none of it needs to cost tokens in every turn
PADDING = ("title", "maxLength", "minLength", "maxItems", "$defs", "default", "minimum", "maximum",
           "exclusiveMinimum", "exclusiveMaximum")


def lean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema as the model should see it: no titles, no ``anyOf [X, null]``, no length limits.

    Every token of the tool list is paid in every turn of every session; the limits stay enforced
    by the argument models, and a broken one is answered with a plain line (see ``_argument_errors``).
    """
    defs = schema.get("$defs", {})

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        if in_properties:  # keys are parameter names, not keywords
            return {k: walk(v) for k, v in node.items()}
        if "$ref" in node:
            return walk({**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}})
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in PADDING or (k == "additionalProperties" and v is True):
                continue
            if k == "anyOf":
                kept = [x for x in v if x != {"type": "null"}]
                if len(kept) == 1:
                    out.update(walk(kept[0]))
                    continue
                v = kept
            out[k] = walk(v, in_properties=k == "properties")
        return out

    return walk(schema)


def _argument_errors(name: str, exc: ValidationError) -> str:
    """One plain line per wrong argument (no library text, no URLs)."""
    lines = []
    for err in exc.errors(include_url=False):
        arg = ".".join(str(p) for p in err["loc"]) or "arguments"
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "missing":
            lines.append(f"{arg}: required")
        elif kind in ("literal_error", "enum"):
            lines.append(f"{arg}: must be one of {ctx.get('expected', '')}, not {err.get('input')!r}")
        elif kind == "string_too_long":
            lines.append(f"{arg}: at most {ctx.get('max_length')} characters")
        elif kind == "too_long":
            lines.append(f"{arg}: at most {ctx.get('max_length')} items")
        else:
            lines.append(f"{arg}: {err['msg'][0].lower()}{err['msg'][1:]}, not {err.get('input')!r}"[:200])
    return f"{name}: wrong arguments; fix and call again:\n" + "\n".join(f"- {ln}" for ln in lines)


class GolemServer(MCPServer):
    """MCPServer that refuses unknown argument names and answers wrong types in plain words."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            names = [t.name for t in self._tool_manager.list_tools()]
            raise ToolError(f"no tool {name!r}; closest: {', '.join(known.closest(name, names))}")
        allowed = list(tool.parameters.get("properties", {}))
        unknown = [a for a in arguments if a not in allowed]
        if unknown:
            hints = [f"{a!r} (did you mean {', '.join(repr(c) for c in known.closest(a, allowed, 2))}?)"
                     for a in unknown]
            raise ToolError(f"{name}: unknown argument {', '.join(hints)}; its arguments are: {', '.join(allowed)}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError):
                raise ToolError(_argument_errors(name, e.__cause__)) from e.__cause__
            prefix = f"Error executing tool {name}: "
            text = str(e)
            raise ToolError(text[len(prefix):] if text.startswith(prefix) else text) from e.__cause__


def build_server(get_store: Callable[[], Store], settings: Settings | None = None,
                 wait_for_caller_s: float = 5.0, toolsets: str | list[str] | tuple[str, ...] | None = None,
                 lean: bool = True, catch_up: Callable[[str], None] | None = None) -> MCPServer:
    """The MCP server over the store ``get_store()`` returns (called per tool call, so it may change).

    ``toolsets``: which of :data:`toolsets.TOOLSETS` to list (default all). ``lean=False`` lists the
    full input schemas (with length limits), the contract the published ``schemas/*.json`` match.
    ``catch_up(workflow_id)``: called before a "so far" answer about one workflow (its cost, its
    budget), to read what its live sessions wrote since (the daemon's reads their transcripts).
    """
    # WARNING: at INFO the SDK logs a line for every stateless request ("Terminating session: None"),
    # rendered by rich (~1-2 CPU-ms a call) into the daemon's output
    server = GolemServer("golem", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    guard = functools.partial(_guard, store_of=get_store)

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
        "Masters: call first. Records a workflow and links this session and its subagents to it, so their "
        "tokens and cost count for it. Call again to update status."))
    @guard
    def record_workflow(
        workflow_id: Annotated[str, Field(min_length=1, max_length=200, description="e.g. wf-042")],
        path: Annotated[Literal["fast-track", "full"] | None, Field(description="path")] = None,
        complexity: Annotated[OptId, Field(description="the master's estimate: simple | complex")] = None,
        spec_completeness: Annotated[OptId, Field(description="complete | incomplete")] = None,
        experiment_id: Annotated[OptId, Field(description="experiment arm, e.g. baseline")] = None,
        task_id: Annotated[OptId, Field(description="task worked on")] = None,
        status: Annotated[OptId, Field(description="running | completed | failed | abandoned")] = None,
        parent_workflow_id: Annotated[OptId, Field(description="the workflow that started this one")] = None,
        session_id: Annotated[OptId, Field(description="only for another session (e.g. a claude -p run)")] = None,
        ctx: Context | None = None,
    ) -> workflows.WorkflowRecorded:
        return workflows.record_workflow(get_store(), caller(ctx, session_id, None), workflow_id, path, complexity,
                                         spec_completeness, experiment_id, task_id, status,
                                         parent_workflow_id)

    @server.tool(annotations=RECORDS, description=(
        "Record one stage of a workflow. Without token numbers the tokens and cost observed for the calling "
        "agent are used."))
    @guard
    def record_stage_usage(
        workflow_id: Annotated[str, Field(min_length=1, max_length=200, description="the workflow")],
        stage: Annotated[str, Field(min_length=1, max_length=200, description="e.g. analyst, implementer")],
        task_id: Annotated[OptId, Field(description="task")] = None, agent: Annotated[OptId, Field(description="agent name")] = None, model: Annotated[OptId, Field(description="model used")] = None,
        status: Annotated[OptId, Field(description="succeeded | failed | rework")] = None,
        started_at: Annotated[str | None, Field(max_length=64, description="ISO-8601")] = None,
        ended_at: Annotated[str | None, Field(max_length=64, description="ISO-8601")] = None,
        input_tokens: Annotated[int | None, Field(ge=0, description="if known")] = None,
        output_tokens: Annotated[int | None, Field(ge=0, description="if known")] = None,
        cache_read_tokens: Annotated[int | None, Field(ge=0, description="if known")] = None,
        cache_creation_tokens: Annotated[int | None, Field(ge=0, description="if known")] = None,
        cost_usd: Annotated[float | None, Field(ge=0, description="if known")] = None,
        session_id: Annotated[OptId, Field(description="only for another session")] = None,
        agent_id: Annotated[OptId, Field(description="only for another subagent")] = None,
        ctx: Context | None = None,
    ) -> workflows.StageRecorded:
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_tokens": cache_read_tokens,
                 "cache_creation_tokens": cache_creation_tokens, "cost_usd": cost_usd}
        return workflows.record_stage_usage(get_store(), caller(ctx, session_id, agent_id), workflow_id, stage,
                                            task_id, agent, model, status, started_at, ended_at, usage)

    @server.tool(annotations=READ_ONLY, description=(
        "What did a workflow, task, stage or experiment cost? Tokens and cost grouped by stage (default), model, skill, MCP server...: "
        "USD, tokens by kind, cache hit rate. No id = last 30 days. Over budget? use budget_status."))
    @guard
    def query_workflow_cost(
        workflow_id: WF = None, task_id: Annotated[OptId, Field(description="task id")] = None,
        experiment_id: Annotated[OptId, Field(description="experiment arm")] = None, stage: STAGE = None,
        since: Annotated[str | None, Field(max_length=64, description="ISO-8601 start")] = None,
        until: Annotated[str | None, Field(max_length=64, description="ISO-8601 end, exclusive")] = None,
        group_by: Annotated[list[Literal["stage", "agent", "model", "task", "day", "workflow", "experiment",
                                         "session", "top_stage", "machine", "skill", "plugin",
                                         "mcp_server"]] | None,
                            Field(max_length=3, description="default [stage]; [] = totals only")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="groups shown (default 20, max 200)")] = 20,
        offset: Annotated[int, Field(ge=0, description="for the next page (default 0)")] = 0,
        machine_id: Annotated[OptId, Field(description="only facts seen on this machine")] = None,
    ) -> workflows.CostAnswer:
        if workflow_id and catch_up is not None:
            catch_up(workflow_id)
        return workflows.query_workflow_cost(get_store(), workflow_id, task_id, experiment_id, stage, since, until,
                                             list(group_by) if group_by is not None else None, limit, offset,
                                             machine_id)

    @server.tool(annotations=READ_ONLY, description=(
        "Is experiment arm B better than A on a metric (one stage or whole workflows)? Difference, CI, "
        "p-value, guardrails, verdict, runs still needed."))
    @guard
    def compare_experiments(
        metric: Annotated[Literal["tokens", "input_tokens", "output_tokens", "cache_read_tokens", "cost", "duration",
                                  "errors", "requests", "tool_calls", "review_findings"] | None,
                          Field(description="default: the experiment's metric, else tokens")] = None,
        stage: STAGE = None,
        arms: Annotated[list[Annotated[str, Field(max_length=200)]] | None,
                        Field(max_length=10, description="experiment ids; default all")] = None,
        baseline: Annotated[OptId, Field(description="control arm (default baseline)")] = None,
        expected: Annotated[Literal["decrease", "increase"] | None, Field(description="hypothesis direction")] = None,
        alpha: Annotated[float | None, Field(gt=0, lt=0.5, description="default 0.05")] = None,
        min_runs: Annotated[int | None, Field(ge=2, le=1000, description="runs per arm for a verdict (10)")] = None,
        experiment_id: Annotated[OptId, Field(description="stored definition giving the defaults")] = None,
    ) -> experiments.ExperimentAnswer:
        return experiments.compare_by_definition(get_store(), metric, stage, arms, baseline, expected, alpha,
                                                 min_runs, experiment_id)

    @server.tool(annotations=RECORDS, description=(
        "Maintainers: define an experiment (schemas/experiment.v1.json), or record its decision once "
        "compare_experiments gave a verdict."))
    @guard
    def record_experiment(
        definition_json: Annotated[dict[str, Any] | str, Field(description=(
            "{experiment_id, hypothesis, arms (baseline first), metric, stage, expected_change_pct, guardrails, "
            "min_runs_per_arm, decision?}"))],
    ) -> experiment_defs.ExperimentRecord:
        return experiment_defs.record_experiment(get_store(), definition_json)

    @server.tool(annotations=RECORDS, description=(
        "Reviewers: post review findings (.claude-metrics v1). Counts in severity and categories must match "
        "issues. Stored once per identical report."))
    @guard
    def report_review_findings(
        task: Annotated[str | None, Field(max_length=200, description="task id")] = None,
        severity: Annotated[SeverityCounts | None, Field(description="issue counts")] = None,
        issues: Annotated[list[Issue] | None, Field(max_length=500, description="[] for a clean review")] = None,
        parent: Annotated[OptId, Field(description="workflow id")] = None,
        categories: Annotated[dict[str, int] | None, Field(description="counts per category")] = None,
        rework: Annotated[bool | None, Field(description="true when the work is sent back")] = None,
        ts: Annotated[str | None, Field(max_length=64, description="ISO-8601, default now")] = None,
        v: Annotated[Literal[1], Field(description="version")] = 1,
        findings_json: Annotated[dict[str, Any] | str | None, Field(description="older form: the whole v1 object")
                                 ] = None,
        ctx: Context | None = None,
    ) -> findings.FindingsRecorded:
        report = findings.report_from_fields(
            findings_json, v=v, ts=ts, task=task, parent=parent,
            severity=severity.model_dump() if severity else None, categories=categories,
            issues=[i.model_dump(exclude_none=True) for i in issues] if issues is not None else None, rework=rework)
        return findings.report_findings(get_store(), caller(ctx, None, None), report)

    @server.tool(annotations=READ_ONLY, description=(
        "Errors and loops: what failed, repeatedly failing commands, workflows with loops, retries, rework, "
        "error rate by stage, error patterns with fixes; sequences: what successful workflows repeat. "
        "No id = last 30 days."))
    @guard
    def query_errors_and_loops(
        workflow_id: WF = None, stage: STAGE = None, days: DAYS = None,
        sections: Annotated[list[Literal["loops", "retries", "failures", "api_errors", "by_stage", "patterns",
                                         "rework", "sequences"]] | None,
                    Field(description="default all but sequences")] = None,
        limit: LIMIT = 5,
    ) -> errors_loops.ErrorsAndLoops:
        return errors_loops.errors_and_loops(get_store(), workflow_id, stage, days,
                                             list(sections) if sections is not None else None, limit)

    @server.tool(annotations=READ_ONLY, description=(
        "Read-only SQL (DuckDB) over the telemetry views, for what no other tool answers; see describe_schema. "
        "Rows and characters are capped."))
    @guard
    def query_sql(
        sql: Annotated[str, Field(min_length=1, max_length=20000, description="one SELECT")],
        max_rows: Annotated[int, Field(ge=1, le=500, description="default 50")] = 50,
    ) -> SqlResult:
        out = sql_guard.run_read_only(get_store(), sql, max_rows=max_rows)
        return SqlResult(summary=f"{out['row_count']} row(s)" + (" (truncated)" if out["truncated"] else ""), **out)

    @server.tool(annotations=READ_ONLY, description=(
        "The telemetry views and what each column means (tokens, cost, stage, workflow); view=NAME for one."))
    @guard
    def describe_schema(view: Annotated[OptId, Field(description="one view")] = None) -> SchemaDescription:
        out = schema_doc.describe(get_store(), view)
        return SchemaDescription(summary=f"view {view}" if view else f"{len(out.get('views') or [])} views", **out)

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
            "2. query_errors_and_loops — failures, loops, retries, rework, error rate by stage, patterns.\n"
            "3. query_review_findings and list_improvements — review quality and the analysis' items.\n"
            "4. compare_experiments if there are experiment arms — report the verdict and how many more runs.\n"
            "Answer compactly: a table of stages with tokens and cost, the top 3 problems with evidence, and one "
            "concrete change (prompt, model or workflow) with the metric that would show it helped."
        )

    mcp_analysis_tools.register(server, get_store, guard, catch_up)
    keep = tools_of(parse_toolsets(toolsets))
    for t in list(server._tool_manager.list_tools()):
        if t.name not in keep:
            server.remove_tool(t.name)
        elif lean:
            t.parameters = lean_schema(t.parameters)
    return server


def mcp_routes(store: Store, settings: Settings | None = None, *, max_body_bytes: int = 4 * 1024 * 1024,
               catch_up: Callable[[str], None] | None = None) -> tuple[list[Any], Callable[[Any], Any] | None]:
    """Routes serving MCP at ``/mcp`` (streamable HTTP) and the lifespan that runs its session manager.

    Contract with the daemon: mount the routes, and enter ``lifespan(app)`` for the app's lifetime.
    Origin, Host and bearer-token checks are the daemon's middleware's (it knows the bind address and
    the token), so the SDK's own DNS-rebinding check, which only knows loopback, is off here.
    Stateless with JSON responses: no per-session state to lose when the daemon restarts, and no
    long-lived SSE streams to hold open per Claude Code session.
    """
    server = build_server(lambda: store, settings, catch_up=catch_up)
    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, max_request_body_size=max_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return list(app.routes), lifespan
