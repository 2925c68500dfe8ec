"""Claude Code hook payloads (the JSON a hook command reads on stdin) to store rows.

Hooks are where custom agents get their names (``SubagentStart.agent_type``), where tool calls get
their agent, and where a session's working directory and transcript path are announced.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from ..redaction import HOOK_TEXT_KEYS, redact_value
from .records import SRC_HOOK, Batch, error_text, mcp_names, now_us, tool_parameters, unexpected

_IDS = ("session_id", "agent_id", "tool_use_id", "prompt_id")
# texts a person or the model wrote: kept only when the user asked for prompts to be stored
_DROP = HOOK_TEXT_KEYS


def payload_key(payload: dict) -> str:
    return hashlib.sha1(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def hook_to_batch(payload: Any, batch: Batch, received_us: int | None = None, store_prompts: bool = False,
                  source: str = "hook", line: int | None = None) -> bool:
    """Map one hook payload; returns False (and records why) when it is not a hook payload."""
    if not isinstance(payload, dict):
        batch.skip(source, line, "hook payload is not a JSON object")
        return False
    event = payload.get("hook_event_name")
    if not isinstance(event, str):
        batch.skip(source, line, "hook payload has no 'hook_event_name'")
        return False
    batch.at = (source, line)
    try:
        _map(payload, event, batch, received_us, store_prompts)
    except Exception as e:  # noqa: BLE001 - a payload no check foresaw costs only itself
        batch.skip(source, line, str(e) if type(e) is ValueError else unexpected(e))
        return False
    finally:
        batch.at = None
    return True


def _map(payload: dict, event: str, batch: Batch, received_us: int | None, store_prompts: bool) -> None:
    received_us = received_us if received_us is not None else payload.get("_golem_received_us")
    sid = payload.get("session_id")
    agent_id = payload.get("agent_id")
    agent_type = payload.get("agent_type")
    tool_use_id = payload.get("tool_use_id")
    tool_name = payload.get("tool_name")
    for k in _IDS:
        v = payload.get(k)
        if v is not None and not isinstance(v, str):
            # the ids join a payload to its session, agent and tool call: without them it is no fact
            raise ValueError(f"'{k}' is {type(v).__name__}, not a text; payload not stored")
    clean = {k: v for k, v in payload.items() if store_prompts or k not in _DROP}
    clean.pop("_golem_received_us", None)
    if "tool_input" in payload:
        params = tool_parameters(tool_name, payload.get("tool_input"))
        if params:
            clean["tool_parameters"] = params
    # keyed by the redacted payload: what the spool holds, so a payload posted and spooled both counts once
    event_key = payload_key(redact_value({k: v for k, v in payload.items() if k != "_golem_received_us"}))
    prompt_id = payload.get("prompt_id")
    batch.add("hook_events", {
        "event_key": event_key,
        "received_at": received_us, "session_id": sid, "event_name": event, "agent_id": agent_id,
        "agent_type": agent_type, "tool_use_id": tool_use_id, "tool_name": tool_name, "prompt_id": prompt_id,
        "payload": orjson.dumps(clean, default=str).decode(),  # the store keeps it only if keep_hook_payloads
    })
    _map_today(payload, event, batch, received_us, store_prompts, event_key)
    if sid and event == "SessionStart":
        tp = payload.get("transcript_path")
        batch.add("sessions", {
            "session_id": sid, "cwd": payload.get("cwd"), "transcript_path": tp,
            "project": os.path.basename(os.path.dirname(tp)) if isinstance(tp, str) and tp else None,
            "first_seen": received_us, "last_seen": received_us,
        })
    elif sid and event == "SessionEnd":
        batch.add("sessions", {"session_id": sid, "end_reason": payload.get("reason"), "last_seen": received_us})
    if agent_id and event in ("SubagentStart", "SubagentStop"):
        row: dict[str, Any] = {"agent_id": agent_id, "session_id": sid, "agent_type": agent_type}
        row["started_at" if event == "SubagentStart" else "ended_at"] = received_us
        batch.add("agents", row)
    if tool_use_id and event in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
        tc: dict[str, Any] = {"tool_use_id": tool_use_id, "session_id": sid, "agent_id": agent_id,
                              "tool_name": tool_name, "prompt_id": payload.get("prompt_id"),
                              "source_mask": SRC_HOOK, **_mcp(payload, tool_name)}
        if event == "PreToolUse":
            tinput = payload.get("tool_input")
            params = tool_parameters(tool_name, tinput)
            tc["tool_parameters"] = orjson.dumps(params).decode() if params else None
            tc["timestamp"] = received_us
        else:
            tc["success"] = event == "PostToolUse"
            dur = payload.get("duration_ms")
            tc["duration_ms"] = float(dur) if isinstance(dur, int | float) else None
            if event == "PostToolUseFailure":
                tc["error"] = error_text(payload.get("error"))
        batch.add("tool_calls", tc)
        resp = payload.get("tool_response")
        tinput = payload.get("tool_input")
        if event == "PostToolUse" and tool_name in ("Agent", "Task") and isinstance(resp, dict) and resp.get("agentId"):
            batch.add("agents", {
                "agent_id": resp["agentId"], "session_id": sid, "spawn_tool_use_id": tool_use_id,
                "agent_type": tinput.get("subagent_type") if isinstance(tinput, dict) else None,
                "description": resp.get("description"), "model": resp.get("resolvedModel"),
                "parent_agent_id": agent_id,
            })


def _mcp(payload: dict, tool_name: Any) -> dict[str, Any]:
    """The MCP server and tool of a tool call, from its name or the payload's ``mcp_server``."""
    server, tool = mcp_names(tool_name)
    named = payload.get("mcp_server")
    if server is None and isinstance(named, dict) and isinstance(named.get("name"), str):
        server = named["name"]
    return {"mcp_server_name": server, "mcp_tool_name": tool} if server or tool else {}


def _map_today(payload: dict, event: str, batch: Batch, received_us: int | None, store_prompts: bool,
               event_key: str) -> None:
    """The events Claude Code 2.1 added, mapped to what they mean: a tool batch (how many calls ran
    together), a denied permission (a failed tool call), a turn that ended on an API error, a
    compaction, a task of Claude Code's own task list."""
    sid = payload.get("session_id")
    agent_id = payload.get("agent_id")
    prompt_id = payload.get("prompt_id")
    if event == "PostToolBatch":
        calls = [c for c in payload.get("tool_calls") or () if isinstance(c, dict)]
        for c in calls:
            tid, name = c.get("tool_use_id"), c.get("tool_name")
            if not isinstance(tid, str) or not tid:
                continue
            batch.add("tool_calls", {"tool_use_id": tid, "session_id": sid, "agent_id": agent_id,
                                     "tool_name": name if isinstance(name, str) else None, "prompt_id": prompt_id,
                                     "timestamp": received_us, "batch_size": len(calls), "source_mask": SRC_HOOK, **_mcp(c, name)})
    elif event == "PermissionDenied" and isinstance(payload.get("tool_use_id"), str):
        name = payload.get("tool_name")
        reason = error_text(payload.get("reason"))
        batch.add("tool_calls", {
            "tool_use_id": payload["tool_use_id"], "session_id": sid, "agent_id": agent_id, "tool_name": name,
            "prompt_id": prompt_id, "timestamp": received_us, "success": False, "decision": "denied",
            "error_type": "permission_denied",
            "error": "permission denied" + (f": {reason}" if reason else ""), "source_mask": SRC_HOOK,
            **_mcp(payload, name)})
    elif event == "StopFailure":
        kind = payload.get("error") if isinstance(payload.get("error"), str) else None
        # the last "assistant message" of a failed turn is Claude Code's own error text, not the model's
        last = payload.get("last_assistant_message")
        shown = last if isinstance(last, str) and last.startswith("API Error") else None
        batch.add("api_errors", {
            "error_key": "h:" + event_key, "session_id": sid, "agent_id": agent_id, "prompt_id": prompt_id,
            "timestamp": received_us, "error": error_text(payload.get("error_details") or shown) or kind,
            "error_type": kind, "kind": "stop_failure", "source": "hook"})
    elif event in ("PreCompact", "PostCompact"):
        trigger = payload.get("trigger")
        batch.add("compaction_events", {
            "event_key": "h:" + event_key, "source": "hook", "phase": "pre" if event == "PreCompact" else "post",
            "session_id": sid, "agent_id": agent_id, "prompt_id": prompt_id, "timestamp": received_us,
            "trigger": trigger if isinstance(trigger, str) else None})
    elif event in ("TaskCreated", "TaskCompleted") and sid and isinstance(payload.get("task_id"), str):
        subject, mate = payload.get("task_subject"), payload.get("teammate_name")
        batch.add("agent_tasks", {
            "task_key": f"{sid}|{payload['task_id']}", "session_id": sid, "cc_task_id": payload["task_id"],
            "agent_id": agent_id, "prompt_id": prompt_id,
            "subject": subject if store_prompts and isinstance(subject, str) else None,
            "teammate_name": mate if isinstance(mate, str) else None,
            "created_at" if event == "TaskCreated" else "completed_at": received_us})


def parse_hook_lines(data: bytes, source: str, batch: Batch, store_prompts: bool = False) -> int:
    """A file of hook payloads: JSON objects one per line (blank lines allowed). Returns payloads read."""
    n = 0
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            batch.skip(source, i, f"not JSON ({e})")
            continue
        if hook_to_batch(payload, batch, store_prompts=store_prompts, source=source, line=i):
            n += 1
    return n


def stamp(payload: dict) -> dict:
    payload.setdefault("_golem_received_us", now_us())
    return payload
