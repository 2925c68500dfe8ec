"""Claude Code's native ``Workflow`` runs: each run is a workflow, each of its agents a stage.

Claude Code (2.1.328) runs a ``Workflow`` tool script of ``agent()`` calls in the background and writes,
under the session's folder ``~/.claude/projects/<project>/<session>/``::

    subagents/workflows/<run id>/agent-<id>.jsonl       each agent's transcript
    subagents/workflows/<run id>/agent-<id>.meta.json   its type (agentType) and label (description)
    subagents/workflows/<run id>/journal.jsonl          per-agent records: started (label, phase), result, failed
    workflows/<run id>.json                             the run's record: name, status, agents (cached or not)

Its OTel events and spans of those agents carry ``workflow.run_id`` and ``workflow.name`` (the name is
``custom`` for a script the user wrote, like ``agent.name``). A resumed run (``resumeFromRunId``) keeps
its run id and folder: agents served from the run's cache make no request and write nothing new, and
the journal gains records only for the agents that ran again. So each agent's requests are counted
once, under its run, whatever was resumed.

The mapping is made here, once, for all three places that see a run (transcript files, the journal and
run record, OTel): the run id is the workflow id; an agent's stage is its type, or its label when it
is Claude Code's generic workflow subagent (:func:`stage_of`). Rows use fields the store already has:
``agent_context`` (agent -> workflow and stage) and the workflow id emitted on OTel facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .records import Batch, json_object_file, unexpected

RUN_ID_ATTR = "workflow.run_id"
RUN_NAME_ATTR = "workflow.name"
SOURCE = "claude_code_workflow"
# The agent type of an agent() call that names none: a stage needs its label instead.
GENERIC_AGENT_TYPES = frozenset({"workflow-subagent"})
# What Claude Code reports instead of a user-defined name (agent.name, workflow.name) in OTel.
REDACTED_NAME = "custom"
RUN_ID_RE = re.compile(r"^wf_[A-Za-z0-9-]{6,}$")
JOURNAL = "journal.jsonl"
JOURNAL_TYPES = frozenset({"launched", "started", "result", "failed", "restoring", "restored", "resumed"})


def stage_of(agent_type: object, label: object) -> str | None:
    """An agent's stage in its run: its type, or its label when the type is the generic workflow subagent."""
    t = agent_type if isinstance(agent_type, str) and agent_type else None
    if t is not None and t not in GENERIC_AGENT_TYPES and t != REDACTED_NAME:
        return t
    return label if isinstance(label, str) and label else None


@dataclass(frozen=True)
class RunPath:
    """What a path under ``<session>/subagents/workflows/<run id>/`` tells."""

    project: str | None
    session_id: str
    run_id: str

    @classmethod
    def of(cls, path: Path) -> RunPath | None:
        parts = path.parts
        # .../<project>/<session>/subagents/workflows/<run id>/<file>
        if len(parts) >= 5 and parts[-3] == "workflows" and parts[-4] == "subagents" and RUN_ID_RE.match(parts[-2]):
            return cls(parts[-6] if len(parts) >= 6 else None, parts[-5], parts[-2])
        return None


def is_run_record(name: str) -> bool:
    """``<session>/workflows/<run id>.json``: a run's record, told by its name."""
    return name.endswith(".json") and bool(RUN_ID_RE.match(name[:-5]))


def agent_context(agent_id: str, run_id: str, stage: str | None = None) -> dict[str, Any]:
    """An agent's context row: its run is its workflow (and its stage, when known here)."""
    return {"agent_id": agent_id, "workflow_id": run_id, "stage": stage, "source": SOURCE}


def parse_journal_lines(path: Path, data: bytes, first_line: int, batch: Batch) -> int:
    """A run's ``journal.jsonl`` (complete lines, starting at line ``first_line``): every agent it
    started is linked to the run, with its label; returns the lines consumed.

    The journal is no session: it holds no requests. A ``result`` record carries the agent's return
    value, which is not stored (no model output is kept); ``failed`` marks a call to be run again.
    """
    source = str(path)
    rp = RunPath.of(path)
    lineno = first_line - 1
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    for raw in lines:
        lineno += 1
        if not raw.strip():
            continue
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            batch.skip(source, lineno, f"not JSON ({e.args[0] if e.args else e})")
            continue
        if not isinstance(rec, dict):
            batch.skip(source, lineno, "not a JSON object")
            continue
        rtype = rec.get("type")
        if rtype not in JOURNAL_TYPES:
            batch.skip(source, lineno, f"unknown workflow journal record type {str(rtype)[:80]!r}")
            continue
        if rp is None:
            batch.skip(source, lineno, "a workflow journal outside <session>/subagents/workflows/<run id>/: "
                                       "its run is unknown")
            return lineno - first_line + 1
        batch.at = (source, lineno)
        try:
            agent_id = rec.get("agentId")
            if rtype == "launched":
                batch.add("workflows", {"workflow_id": rp.run_id})
            elif rtype == "started" and isinstance(agent_id, str) and agent_id:
                label = rec.get("label") if isinstance(rec.get("label"), str) else None
                batch.add("agents", {"agent_id": agent_id, "session_id": rec.get("sessionId") or rp.session_id,
                                     "description": label})
                # the stage needs the agent's type too (its .meta.json): only the run is known here
                batch.add("agent_context", agent_context(agent_id, rp.run_id))
            elif rtype == "result" and isinstance(agent_id, str) and agent_id:
                batch.add("agent_context", agent_context(agent_id, rp.run_id))
        except Exception as e:  # noqa: BLE001 - a record no check foresaw costs only itself
            batch.skip(source, lineno, unexpected(e))
    batch.at = None
    return lineno - first_line + 1


def parse_run_record(path: Path, batch: Batch) -> None:
    """``<session>/workflows/<run id>.json``: the run's name, status and times, and how many of its
    agents a resume served from cache (they made no request this time)."""
    rec = json_object_file(path, batch, "workflow run record")
    if rec is None:
        return
    rid = rec.get("runId")
    run_id: str = rid if isinstance(rid, str) and rid else path.name[:-len(".json")]
    batch.at = (str(path), None)
    progress = [p for p in rec.get("workflowProgress") or [] if isinstance(p, dict) and p.get("type") == "workflow_agent"]
    cached = sum(1 for p in progress if p.get("cached") is True)
    start_ms = rec.get("startTime") if isinstance(rec.get("startTime"), int | float) else None
    dur_ms = rec.get("durationMs") if isinstance(rec.get("durationMs"), int | float) else None
    attrs = {"name": rec.get("workflowName"), "source": SOURCE, "agents": rec.get("agentCount"),
             "cached_agents": cached, "resumed": cached > 0}
    batch.add("workflows", {
        "workflow_id": run_id, "status": rec.get("status") if isinstance(rec.get("status"), str) else None,
        "started_at": int(start_ms * 1000) if start_ms is not None else None,
        "ended_at": int((start_ms + dur_ms) * 1000) if start_ms is not None and dur_ms is not None else None,
        "attributes": orjson.dumps({k: v for k, v in attrs.items() if v is not None}).decode(),
    })
    for p in progress:
        agent_id = p.get("agentId")
        if isinstance(agent_id, str) and agent_id:
            # no stage from here: a cached agent's entry names no agentType, like a generic one
            batch.add("agent_context", agent_context(agent_id, run_id))
    batch.at = None


def fact_context(attrs: dict[str, Any], ctx: dict[str, Any], batch: Batch, ts: int | None,
                 seen: set[tuple[Any, ...]]) -> dict[str, Any]:
    """The context an OTel fact carries: a record of a workflow run's agent belongs to the run (more
    specific than a workflow the resource names, which becomes the run's parent). Sends the run's
    workflow row and the agent's context once per request (``seen``)."""
    run_id = attrs.get(RUN_ID_ATTR)
    if not isinstance(run_id, str) or not run_id:
        return ctx
    parent = ctx.get("workflow_id")
    if ("run", run_id) not in seen:
        seen.add(("run", run_id))
        name = attrs.get(RUN_NAME_ATTR)
        row: dict[str, Any] = {"workflow_id": run_id, "experiment_id": ctx.get("experiment_id"),
                               "task_id": ctx.get("task_id"), "started_at": ts, "updated_at": ts,
                               "parent_workflow_id": parent if parent != run_id else None}
        if isinstance(name, str) and name and name != REDACTED_NAME:
            row["attributes"] = orjson.dumps({"name": name, "source": SOURCE}).decode()
        batch.add("workflows", row)
    agent_id = attrs.get("agent_id")
    if isinstance(agent_id, str) and agent_id and ("agent", agent_id, run_id) not in seen:
        seen.add(("agent", agent_id, run_id))
        batch.add("agent_context", agent_context(agent_id, run_id, stage_of(attrs.get("agent.name"), None)))
    return {**ctx, "workflow_id": run_id}
