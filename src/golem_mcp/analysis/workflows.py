"""Workflows as agents see them: record their context and stages, ask what they cost, list errors.

Plain functions over a :class:`Store`; the MCP tools call these and only shape the answers.

How the calling session is known (the ``Caller``):

1. an explicit ``session_id`` (and ``agent_id``) argument wins: an orchestrator that ran
   ``claude -p --output-format json`` knows the session id it got back;
2. otherwise the ``tool_use_id`` of the MCP call. Claude Code puts it into every ``tools/call``
   request as ``_meta["claudecode/toolUseId"]``, and the same id reaches the daemon from the
   ``PreToolUse`` hook (which Claude Code runs, and waits for, before it calls the tool) and later
   from the transcript and OTel. The tool call row for that id names the session and, inside a
   subagent, the agent. We wait a little for it, because the hook may still be in flight;
3. otherwise the session the MCP client announced: Claude Code starts its stdio MCP servers with
   ``CLAUDE_CODE_SESSION_ID`` in their environment, and the ``golem-mcp stdio`` bridge forwards it
   as the ``x-golem-session-id`` header. It names the session but not the subagent.
4. Without any, the workflow is recorded but not linked; the answer says so and what to pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..ingestion.records import Batch, now_us
from ..store.checks import MAX_COST_USD, MAX_TOKENS
from ..store.db import NO_DAY, Store, dict_rows
from . import known
from .common import Table, rounded, table
from .cost import DIMENSIONS, cost_by

WORKFLOW_PATHS = ("fast-track", "full")


@dataclass
class Caller:
    """Who called a tool: the Claude Code session and, inside a subagent, its agent id."""

    session_id: str | None = None
    agent_id: str | None = None
    tool_use_id: str | None = None
    how: str = "unknown"  # argument | tool_use_id | mcp_client | unknown

    @property
    def known(self) -> bool:
        return self.session_id is not None


def resolve_caller(store: Store, session_id: str | None = None, agent_id: str | None = None,
                   tool_use_id: str | None = None, client_session_id: str | None = None,
                   wait_s: float = 5.0) -> Caller:
    """Find the session (and agent) behind a tool call; see the module docstring for the order."""
    if session_id:
        return Caller(session_id, agent_id, tool_use_id, "argument")
    if tool_use_id:
        # The PreToolUse hook names the calling agent. When the client's session is known and its hooks
        # have never reached the daemon (not installed), the row will not come: a short look only. When
        # they have, wait for it: a hook process on a busy machine can take seconds, and without it a
        # subagent's call (the reviewer's findings) would lose its agent.
        wait = wait_s
        if client_session_id and not store.scalar(
                "SELECT EXISTS (SELECT 1 FROM hook_events WHERE session_id = ?)", [client_session_id]):
            wait = min(wait_s, 0.3)
        deadline = time.monotonic() + wait
        while True:
            rows = store.query("SELECT session_id, agent_id FROM tool_calls WHERE tool_use_id = ? "
                               "AND session_id IS NOT NULL", [tool_use_id])
            if rows:
                return Caller(rows[0]["session_id"], rows[0]["agent_id"], tool_use_id, "tool_use_id")
            if time.monotonic() >= deadline:
                break
            # the PreToolUse hook for this very call may still be on its way to the daemon
            time.sleep(0.1)
    if client_session_id:
        return Caller(client_session_id, None, tool_use_id, "mcp_client")
    return Caller(None, None, tool_use_id, "unknown")


def live_transcripts(store: Store, workflow_id: str, limit: int = 16) -> list[str]:
    """Transcript paths the hooks named for the sessions ``record_workflow`` (or the OTLP resource
    attributes) linked to ``workflow_id``, the most recently seen first: what a "so far" answer
    reads up to the moment it is asked (Claude Code exports OTLP every few seconds, the transcript
    has each request as soon as it is answered). The links first, then those sessions by their key
    (a join of the two scanned every session: ~9 CPU-ms at 10M requests, against ~2)."""
    from ..store.resolve import keyed

    sessions = [r["session_id"] for r in store.query(
        "SELECT DISTINCT session_id FROM workflow_links WHERE workflow_id = ?", [workflow_id])]
    if not sessions:
        return []
    with store.reader() as cur:
        rows = keyed(cur, "SELECT transcript_path, last_seen FROM sessions WHERE session_id IN ({keys}) "
                          "AND transcript_path LIKE '%.jsonl'", sessions)
    return [r[0] for r in sorted(rows, key=lambda r: r[1] or datetime.min, reverse=True)[:limit]]


def _ts(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidInput(f"{name} is not an ISO-8601 time: {value!r} (e.g. 2026-11-21T10:00:00Z)") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def _check_id(value: str | None, name: str, required: bool = False) -> None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required")
        return
    if len(value) > 200 or any(c in value for c in "\n\r\t\0"):
        raise InvalidInput(f"{name} must be one line of at most 200 characters")


def _link_valid_from(store: Store, caller: Caller, workflow_id: str, task_id: str | None,
                     experiment_id: str | None) -> int:
    """From when a session works for this workflow.

    The first workflow of a session holds from its start (epoch 0), so the master's requests before
    the record_workflow call count too; a later, different workflow holds from the call on. The
    workflow the session already works for, recorded again (its status at the end, say) with no
    other task or experiment, keeps its link: a new one from now would attribute nothing differently,
    yet each call added a link row and re-resolved the whole session's facts.
    """
    links = store.query("SELECT epoch_us(valid_from) AS vf, workflow_id, task_id, experiment_id FROM workflow_links "
                        "WHERE session_id = ? ORDER BY valid_from", [caller.session_id])
    if not links or all(r["workflow_id"] == workflow_id for r in links):
        return 0
    now = now_us()
    current = ([r for r in links if r["vf"] <= now] or links)[-1]
    if (current["workflow_id"] == workflow_id and task_id in (None, current["task_id"])
            and experiment_id in (None, current["experiment_id"])):
        return int(current["vf"])
    if caller.tool_use_id:
        ts = store.scalar('SELECT epoch_us("timestamp") FROM tool_calls WHERE tool_use_id = ?', [caller.tool_use_id])
        if ts is not None:
            return int(ts)
    return now


def record_workflow(store: Store, caller: Caller, workflow_id: str, path: str | None = None,
                    complexity: str | None = None, spec_completeness: str | None = None,
                    experiment_id: str | None = None, task_id: str | None = None,
                    status: str | None = None, parent_workflow_id: str | None = None) -> WorkflowRecorded:
    """Store a workflow's context and link the calling session to it (one transaction).

    ``parent_workflow_id`` names the workflow that started this one; it must be known already, and
    a workflow cannot be its own ancestor.
    """
    _check_id(workflow_id, "workflow_id", required=True)
    for v, n in ((experiment_id, "experiment_id"), (task_id, "task_id"), (status, "status"),
                 (complexity, "complexity"), (spec_completeness, "spec_completeness"),
                 (parent_workflow_id, "parent_workflow_id")):
        _check_id(v, n)
    if parent_workflow_id is not None:
        known.require(store, "workflow_id", parent_workflow_id)
        ancestors = {r["workflow_id"] for r in store.query(
            "SELECT root_workflow_id AS workflow_id FROM workflow_tree WHERE workflow_id = ? "
            "UNION SELECT ancestor FROM (SELECT unnest(ancestors) AS ancestor FROM workflow_tree WHERE workflow_id = ?)",
            [parent_workflow_id, parent_workflow_id])} | {parent_workflow_id}
        if workflow_id in ancestors:
            raise InvalidInput(f"{workflow_id!r} cannot be a child of {parent_workflow_id!r}: "
                               f"{parent_workflow_id!r} already descends from it")
    if path is not None and path not in WORKFLOW_PATHS:
        raise InvalidInput(f"path must be one of {', '.join(WORKFLOW_PATHS)}, not {path!r}")
    now = now_us()
    b = Batch()
    b.add("workflows", {"workflow_id": workflow_id, "path": path, "complexity": complexity,
                        "spec_completeness": spec_completeness, "experiment_id": experiment_id,
                        "parent_workflow_id": parent_workflow_id,
                        "task_id": task_id, "status": status, "started_at": now, "updated_at": now,
                        "ended_at": now if status in ("done", "completed", "failed", "abandoned") else None})
    linked_from = None
    if caller.known:
        linked_from = _link_valid_from(store, caller, workflow_id, task_id, experiment_id)
        b.add("workflow_links", {"session_id": caller.session_id, "valid_from": linked_from,
                                 "workflow_id": workflow_id, "task_id": task_id, "experiment_id": experiment_id,
                                 "source": "mcp"})
        b.add("sessions", {"session_id": caller.session_id, "first_seen": now, "last_seen": now})
    store.write(b)
    row = store.query("SELECT workflow_id, path, complexity, spec_completeness, experiment_id, task_id, status "
                      "FROM workflows WHERE workflow_id = ?", [workflow_id])[0]
    note = None if caller.known else ("the calling session is unknown, so usage is not linked yet: enable "
                                      "golem-mcp's hooks (golem-mcp install) or pass session_id")
    return WorkflowRecorded(summary=f"workflow {workflow_id} recorded" + (
        f", session linked ({caller.how})" if caller.known else ", not linked"), note=note,
        session_id=caller.session_id, linked=caller.known, linked_by=caller.how, **row)


def _usage_problem(name: str, value: object) -> str | None:
    """Why a usage number an agent sent cannot be stored (the store's own bounds), or None."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        return f"{name} must be a finite number >= 0, not {value!r}"
    limit = MAX_COST_USD if name == "cost_usd" else MAX_TOKENS
    if value > limit:
        return f"{name} must be at most {limit:,.0f}, not {value!r}"
    return None


class Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    cost_usd: float | None = None



class WorkflowRecorded(BaseModel):
    summary: str
    workflow_id: str
    path: str | None = None
    complexity: str | None = None
    spec_completeness: str | None = None
    experiment_id: str | None = None
    task_id: str | None = None
    status: str | None = None
    session_id: str | None = Field(None, description="the calling Claude Code session, when known")
    linked: bool = Field(description="true: this session's and its subagents' usage is attributed to the workflow")
    linked_by: str = Field(description="argument | tool_use_id | mcp_client | unknown")
    note: str | None = Field(None, description="what to do when not linked")



class StageRecorded(BaseModel):
    summary: str
    id: int
    workflow_id: str
    stage: str
    task_id: str | None = None
    agent: str | None = None
    model: str | None = None
    status: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    usage: Usage
    usage_source: Literal["given", "observed", "none"] = Field(
        description="given = numbers from the caller; observed = what the store saw for the caller")
    observed_requests: int | None = Field(None, description="API requests the store saw for the caller")



USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "cost_usd")


def observed_usage(store: Store, caller: Caller) -> dict[str, Any] | None:
    """What the store has seen for the caller's agent (or the session's main thread)."""
    if not caller.known:
        return None
    params: list[Any]
    if caller.agent_id:
        where, params = "agent_id = ?", [caller.agent_id]
    else:
        where, params = "session_id = ? AND agent_id IS NULL", [caller.session_id]
    rows = store.query(
        f"SELECT count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        f"sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens, "
        f"sum(cost_usd) AS cost_usd, any_value(model) AS model, min(\"timestamp\") AS first_at, "
        f"max(\"timestamp\") AS last_at FROM requests WHERE {where}", params)
    return rows[0]


def record_stage_usage(store: Store, caller: Caller, workflow_id: str, stage: str, task_id: str | None = None,
                       agent: str | None = None, model: str | None = None, status: str | None = None,
                       started_at: str | None = None, ended_at: str | None = None,
                       usage: dict[str, float | int | None] | None = None) -> StageRecorded:
    """Record one stage of a workflow; without usage numbers, attribute what was observed for the caller."""
    _check_id(workflow_id, "workflow_id", required=True)
    _check_id(stage, "stage", required=True)
    for v, n in ((task_id, "task_id"), (agent, "agent"), (model, "model"), (status, "status")):
        _check_id(v, n)
    usage = {k: v for k, v in (usage or {}).items() if v is not None}
    bad = [p for k, v in usage.items() if (p := _usage_problem(k, v))]
    if bad:
        raise InvalidInput("usage numbers are invalid", bad)
    start, end = _ts(started_at, "started_at"), _ts(ended_at, "ended_at")
    if start is not None and end is not None and end < start:
        raise InvalidInput("ended_at is before started_at; swap them or fix the clock")
    observed = observed_usage(store, caller)
    now = now_us()
    rec_id = int(store.scalar("SELECT nextval('stage_record_seq')"))
    given = bool(usage)
    src = usage if given else (observed or {})
    row: dict[str, Any] = {
        "id": rec_id, "workflow_id": workflow_id, "stage": stage, "task_id": task_id,
        "agent": agent or (stage if caller.agent_id else None), "model": model or (observed or {}).get("model"),
        "status": status, "started_at": start, "ended_at": end, "session_id": caller.session_id,
        "agent_id": caller.agent_id, "recorded_at": now}
    for k in USAGE_FIELDS:
        val = src.get(k)
        row[k] = (float(val) if k == "cost_usd" else int(val)) if val is not None else None
    b = Batch()
    b.add("stage_records", row)
    b.add("workflows", {"workflow_id": workflow_id, "task_id": task_id, "started_at": now, "updated_at": now})
    # the caller's own requests now belong to this stage when the caller is a subagent, or a session
    # named explicitly (an orchestrator recording a `claude -p` run); a master recording some other
    # stage from its main thread must not relabel its own requests
    if caller.known and (caller.agent_id or caller.how == "argument"):
        b.add("agent_context", {"agent_id": caller.agent_id or caller.session_id, "workflow_id": workflow_id,
                                "stage": stage, "task_id": task_id, "source": "mcp", "updated_at": now})
    store.write(b)
    source: Literal["given", "observed", "none"] = (
        "given" if given else ("observed" if observed and observed["requests"] else "none"))
    return StageRecorded(
        summary=f"stage {stage} of {workflow_id} recorded ({source} usage)",
        **{k: row[k] for k in ("id", "workflow_id", "stage", "task_id", "agent", "model", "status", "session_id",
                               "agent_id")},
        usage=Usage(**{k: rounded(k, row[k]) for k in USAGE_FIELDS}), usage_source=source,
        observed_requests=(observed or {}).get("requests"))


# --- cost -----------------------------------------------------------------------------------------

GROUPS = ("stage", "agent", "model", "task", "day", "workflow", "experiment", "session", "top_stage", "machine",
          "skill", "plugin", "mcp_server")
COST_COLUMNS = ["requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
                "total_tokens", "cost_usd", "cache_hit_rate"]


class CostTotals(BaseModel):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    total_tokens: int = Field(0, description="all four kinds: input + output + cache read + cache write")
    cost_usd: float | None = None
    cache_hit_rate: float | None = Field(None, description="cache read / (input + cache read + cache write)")
    retries: int = 0
    duration_s: float | None = Field(None, description="first to last request")
    unpriced_requests: int = Field(0, description="requests of models without a price (not in cost_usd)")


class CostAnswer(BaseModel):
    summary: str
    scope: dict[str, str] = Field(description="the filters used")
    window: str | None = Field(None, description="the default time window, when no id or range was given")
    total: CostTotals
    top: str | None = Field(None, description="the group with the most total_tokens")
    groups: Table = Field(description="one row per group, most tokens (by stage) or cost first")
    group_count: int
    more: str | None = Field(None, description="how to get the groups not shown")
    compactions: str | None = Field(None, description="context compactions in scope and the tokens they saved")


def compaction_note(store: Store, filters: dict[str, Any], since: datetime | None,
                    until: datetime | None) -> str | None:
    """``"2 context compactions (1 auto), 41,000 tokens saved"`` for the scope, or None without any."""
    if not store.query("SELECT 1 FROM compaction_events LIMIT 1"):
        return None  # none at all: the view (its planning alone ~10 CPU-ms) is not asked
    where, params = ["1=1"], []
    for k in ("workflow_id", "task_id", "experiment_id", "stage"):
        if filters.get(k) is not None:
            where.append(f"{k} = ?")
            params.append(filters[k])
    for op, t in ((">=", since), ("<", until)):
        if t is not None:
            where.append(f'"timestamp" {op} ?')
            params.append(t)
    row = store.query("SELECT count(*) AS n, count(*) FILTER (WHERE \"trigger\" = 'auto') AS auto, "
                      "sum(tokens_saved) AS saved, count(tokens_saved) AS counted "
                      f"FROM compactions WHERE {' AND '.join(where)}", params)[0]
    if not row["n"]:
        return None
    saved = (f", {int(row['saved']):,} tokens saved" if row["counted"] else "")
    return f"{row['n']} context compaction(s) ({row['auto']} auto){saved}"


def query_workflow_cost(store: Store, workflow_id: str | None = None, task_id: str | None = None,
                        experiment_id: str | None = None, stage: str | None = None,
                        since: str | None = None, until: str | None = None,
                        group_by: list[str] | None = None, limit: int = 20, offset: int = 0,
                        machine_id: str | None = None) -> CostAnswer:
    """Totals and groups of cost, tokens, cache hit rate and requests; no scope = the recent window."""
    group_by = list(group_by) if group_by is not None else ["stage"]
    bad = [g for g in group_by if g not in GROUPS or g not in DIMENSIONS]
    if bad:
        raise InvalidInput(f"cannot group by {', '.join(bad)}; choose from {', '.join(GROUPS)}")
    if limit < 1 or limit > 500 or offset < 0:
        raise InvalidInput("limit must be 1..500 and offset >= 0")
    known.require_all(store, workflow_id=workflow_id, task_id=task_id, experiment_id=experiment_id, stage=stage,
                      machine_id=machine_id)
    s = _ts(since, "since")
    u = _ts(until, "until")
    since_dt = datetime.fromtimestamp(s / 1e6, UTC).replace(tzinfo=None) if s is not None else None
    until_dt = datetime.fromtimestamp(u / 1e6, UTC).replace(tzinfo=None) if u is not None else None
    window_text = None
    if not (workflow_id or task_id or experiment_id or since or until or machine_id):
        until_dt = known.data_now(store)
        since_dt = until_dt - timedelta(days=known.DEFAULT_DAYS)
        window_text = known.window_note(since_dt, until_dt, known.DEFAULT_DAYS)
    filters = {"workflow_id": workflow_id, "task_id": task_id, "experiment_id": experiment_id, "stage": stage,
               "machine_id": machine_id}
    order = "key" if group_by == ["day"] else "tokens" if group_by == ["stage"] else "cost"
    groups, top = 0, None
    if group_by:
        # the page of groups asked for, each carrying the totals over all of them (one scan, and only
        # the page comes back to Python); a page past the last group asks for the first to get them
        page = cost_by(store, group_by, filters, since=since_dt, until=until_dt, order=order, page=(offset, limit))
        head = page or (cost_by(store, group_by, filters, since=since_dt, until=until_dt, order=order,
                                page=(0, 1)) if offset else [])
        total = _page_totals(store, head[0]) if head else _page_totals(store, {})
        groups = int(head[0]["_groups"]) if head else 0
        top = ", ".join(str(v) for v in head[0]["_top"]) if head and head[0]["_top"] is not None else None
    else:
        page = []
        total = (cost_by(store, [], filters, since=since_dt, until=until_dt) or [{}])[0]
    for r in page:
        for g in group_by:
            r[g] = None if r.get(g) is None else str(r[g])
    nullable = ("cost_usd", "cache_hit_rate")
    totals = CostTotals(**{k: rounded(k, total.get(k)) if k in nullable else (total.get(k) or 0)
                           for k in CostTotals.model_fields if k != "duration_s"},
                        duration_s=rounded("duration_s", total.get("duration_seconds")))
    scope = {k: v for k, v in (("workflow_id", workflow_id), ("task_id", task_id), ("experiment_id", experiment_id),
                               ("stage", stage), ("since", since), ("until", until), ("machine_id", machine_id)) if v}
    nxt = offset + limit
    more = (f"showing {len(page)} of {groups} groups; ask again with offset={nxt}" if nxt < groups else None)
    cost = "unknown cost" if totals.cost_usd is None else f"${totals.cost_usd:.4f}"
    summary = (f"{cost}, {totals.total_tokens:,} tokens in {totals.requests} requests"
               + (f"; most tokens: {top}" if top else "") + (f" ({window_text.split(' (')[0]})" if window_text else ""))
    return CostAnswer(summary=summary, scope=scope, window=window_text, total=totals, top=top,
                      groups=table(page, group_by + COST_COLUMNS), group_count=groups, more=more,
                      compactions=compaction_note(store, filters, since_dt, until_dt))


_SUMMED = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "total_tokens",
           "cost_usd", "recorded_cost_usd", "calculated_cost_usd", "unpriced_requests", "retries")


def _page_totals(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    """The totals over every group that a row of ``cost_by(..., page=...)`` carries (``{}``: no group)."""
    out: dict[str, Any] = {k: row.get(f"_total_{k}") for k in _SUMMED}
    for k in _SUMMED:
        if k not in ("cost_usd", "recorded_cost_usd", "calculated_cost_usd"):
            out[k] = int(out[k] or 0)
    # the store's one definition of the rate (views.sql), over the summed tokens
    out["cache_hit_rate"] = store.scalar("SELECT golem_cache_hit_rate(?::DOUBLE, ?::DOUBLE, ?::DOUBLE)",
                                         [out["cache_read_tokens"], out["input_tokens"], out["cache_creation_tokens"]])
    out["first_at"], out["last_at"] = row.get("_total_first_at"), row.get("_total_last_at")
    out["duration_seconds"] = ((out["last_at"] - out["first_at"]).total_seconds()
                               if out["first_at"] is not None and out["last_at"] is not None else None)
    return out


# --- errors ---------------------------------------------------------------------------------------

def query_errors(store: Store, workflow_id: str | None = None, stage: str | None = None,
                 since: str | None = None, limit: int = 10) -> dict[str, Any]:
    """API errors by status, tool failures by tool and stage, error rate by stage."""
    if limit < 1 or limit > 100:
        raise InvalidInput("limit must be 1..100")
    known.require(store, "workflow_id", workflow_id)
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if workflow_id:
        where.append("workflow_id = ?")
        params.append(workflow_id)
    if stage:
        where.append("stage = ?")
        params.append(stage)
    s = _ts(since, "since")
    if s is not None:
        where.append('"timestamp" >= make_timestamp(?)')
        params.append(s)
    w = " AND ".join(where)
    # requests and retries per stage from the rollups (one row per day and group, found by an index for
    # a workflow), and from the request rows only for the part of a day before `since`'s first midnight
    rw = " AND ".join(where[:-1] if s is not None else where)
    whole_from = None
    if s is not None:
        since_at = datetime.fromtimestamp(s / 1e6, UTC).replace(tzinfo=None)
        whole_from = since_at.date() + timedelta(days=0 if since_at.time() == datetime.min.time() else 1)
    from .snapshot import current_cache

    # one statement: each part is read once (a CTE, materialized) and serves every answer below that
    # needs it; as temporary tables and separate reads it was eight statements, ~1 ms each before any
    # work (most of one workflow's answer)
    with current_cache(store, wanted=whole_from is not None and not workflow_id) as (cur, by_days):
        # (every workflow's: the same sums without the workflow, a few rows a day instead of one per workflow)
        table = "rollup_requests" if workflow_id else "rollup_requests_coarse"
        rolled = f"SELECT stage, requests, retries, retried_requests AS retried FROM {table} WHERE {rw}"
        rolled_params = params[:-1] if s is not None else list(params)
        if whole_from is not None:
            rolled += " AND day >= ? UNION ALL SELECT stage, 1, attempt - 1, CAST(attempt > 1 AS INTEGER) " \
                      f'FROM requests WHERE {w} AND "timestamp" < ?'
            rolled_params += [whole_from, *params, whole_from]
        if by_days:
            # the calls per stage of a window of every workflow: the analysis cache's per-day stage counts
            # (brought up to date first, as summaries() does) for the days at and after whole_from but the
            # cache's day of facts without a time (NO_DAY: those are not in a window; a call made on that
            # very day is counted from its row), rows for the first day's part
            sw = " AND stage = ?" if stage else ""
            calls = f"""SELECT stage, CAST(sum(n) AS BIGINT) AS tool_calls FROM (
                SELECT stage, n FROM analysis_tool_stage_days WHERE day >= ? AND day <> ?{sw}
                UNION ALL SELECT stage, 1 FROM tools WHERE {w} AND ("timestamp" < ? OR "timestamp" >= ?))
                GROUP BY stage"""
            calls_params = [whole_from, NO_DAY, *([stage] if stage else []), *params, whole_from, NO_DAY]
        else:
            calls, calls_params = f"SELECT stage, count(*) AS tool_calls FROM tools WHERE {w} GROUP BY stage", params
        # the failed calls (a few percent of the calls) counted per tool and stage, and the calls per
        # stage: copying every call of the window with its error and command was most of the answer's
        # cost, then copying the failed ones (their command read from the JSON parameters) most of the rest
        # kind: api_error, refusal (the model declined), stop_failure (a turn ended on an API error)
        row = dict_rows(cur, f"""
            WITH qe_requests AS MATERIALIZED (
                SELECT stage, CAST(sum(requests) AS BIGINT) AS requests, CAST(sum(retries) AS BIGINT) AS retries,
                       CAST(sum(retried) AS BIGINT) AS retried FROM ({rolled}) GROUP BY stage),
            qe_tools AS MATERIALIZED (
                SELECT tool_name, stage, count(*) AS failures, any_value(error) AS example FROM tools
                WHERE {w} AND success = false GROUP BY 1, 2),
            qe_calls AS MATERIALIZED ({calls}),
            qe_errors AS MATERIALIZED (SELECT stage, status_code, error, kind, retries_exhausted FROM errors WHERE {w})
            SELECT
              (SELECT list({{'kind': kind, 'status_code': status_code, 'errors': errors,
                             'retries_exhausted': retries_exhausted, 'example': example}}
                           ORDER BY errors DESC, kind, status_code) FROM (
                 SELECT kind, status_code, count(*) AS errors, count(*) FILTER (WHERE retries_exhausted)
                        AS retries_exhausted, any_value(error) AS example
                 FROM qe_errors GROUP BY 1, 2 ORDER BY errors DESC, 1, 2 LIMIT ?)) AS api,
              (SELECT {{'retried_requests': CAST(COALESCE(sum(retried), 0) AS BIGINT),
                        'retries': CAST(sum(retries) AS BIGINT)}} FROM qe_requests) AS retried,
              (SELECT list({{'tool_name': tool_name, 'stage': stage, 'failures': failures, 'example': example}}
                           ORDER BY failures DESC, tool_name, stage) FROM (
                 SELECT * FROM qe_tools ORDER BY failures DESC, tool_name, stage LIMIT ?)) AS tools,
              (SELECT list({{'stage': stage, 'requests': requests, 'api_errors': api_errors, 'retries': retries,
                             'tool_calls': tool_calls, 'tool_failures': tool_failures,
                             'tool_error_rate': tool_error_rate}} ORDER BY tool_failures DESC NULLS LAST, stage) FROM (
                 WITH t AS (SELECT stage, tool_calls, COALESCE(f.n, 0) AS tool_failures FROM qe_calls
                            LEFT JOIN (SELECT stage, CAST(sum(failures) AS BIGINT) AS n FROM qe_tools GROUP BY 1) f
                            USING (stage)),
                      r AS (SELECT stage, requests, retries FROM qe_requests),
                      e AS (SELECT stage, count(*) AS api_errors FROM qe_errors GROUP BY 1)
                 SELECT stage, COALESCE(requests, 0) AS requests, COALESCE(api_errors, 0) AS api_errors,
                        COALESCE(retries, 0) AS retries, COALESCE(tool_calls, 0) AS tool_calls,
                        COALESCE(tool_failures, 0) AS tool_failures,
                        round(COALESCE(tool_failures, 0) / NULLIF(tool_calls, 0), 4) AS tool_error_rate
                 FROM r FULL JOIN t USING (stage) FULL JOIN e USING (stage)
                 ORDER BY tool_failures DESC NULLS LAST, stage LIMIT ?)) AS by_stage""",
                        [*rolled_params, *params, *calls_params, *params, limit, limit, limit])[0]
    api, retried, tools, by_stage = row["api"] or [], row["retried"], row["tools"] or [], row["by_stage"] or []
    # (repeated failing commands: the loops of loops.find_loops)
    return {"api_errors_by_status": api, "retries": retried, "tool_failures": tools, "by_stage": by_stage}
