"""Claude Code session transcripts: ``~/.claude/projects/<project>/<session>.jsonl`` and
``<session>/subagents/agent-<id>.jsonl`` with ``agent-<id>.meta.json``; the agents of a native
``Workflow`` run are in ``<session>/subagents/workflows/<run id>/`` (see ``workflow_runs``).

One API response appears on several lines (one per content block) and sometimes in several files
(resumed sessions); the store keeps one row per ``requestId`` (largest ``output_tokens`` wins).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import workflow_runs
from .records import (
    MCP_PLACEHOLDER,
    SRC_TRANSCRIPT,
    Batch,
    error_text,
    iso_to_us,
    json_object_file,
    tool_parameters,
    unexpected,
)

# Top-level record types Claude Code writes that carry nothing we count; skipped silently.
KNOWN_TYPES = frozenset({
    "user", "assistant", "system", "attachment", "summary", "queue-operation", "api-request",
    "api-request-blob", "api-request-shape", "atis-latch", "cost-state", "last-prompt", "tools-used",
    "custom-title", "file-history-snapshot", "progress", "ai-title", "tag", "mode", "agent-name",
    "pr-link", "worktree-state", "content-replacement", "marble-origami-commit",
    "marble-origami-snapshot",
})


@dataclass
class TranscriptFile:
    """What the path tells: the project folder, the session and, for subagents, the agent id (and the
    ``Workflow`` run whose agent it is)."""

    path: Path
    project: str | None
    session_id: str | None
    agent_id: str | None
    workflow_run_id: str | None = None

    @classmethod
    def from_path(cls, path: Path) -> TranscriptFile:
        name = path.name
        agent_id = None
        session_id = None
        project = None
        parts = path.parts
        if name.startswith("agent-") and name.endswith(".jsonl"):
            agent_id = name[len("agent-"):-len(".jsonl")]
            # .../<project>/<session>/subagents/agent-<id>.jsonl
            if len(parts) >= 4 and parts[-2] == "subagents":
                session_id = parts[-3]
                project = parts[-4]
            elif (run := workflow_runs.RunPath.of(path)) is not None:
                # .../<project>/<session>/subagents/workflows/<run id>/agent-<id>.jsonl
                return cls(path, run.project, run.session_id, agent_id, run.run_id)
        else:
            session_id = name[:-len(".jsonl")] if name.endswith(".jsonl") else None
            project = parts[-2] if len(parts) >= 2 else None
        return cls(path, project, session_id, agent_id)


def is_transcript(path: Path) -> bool:
    return path.suffix == ".jsonl"


def parse_meta(path: Path, batch: Batch) -> None:
    """``agent-<id>.meta.json``: the subagent's type (the stage), model and spawning tool call."""
    meta = json_object_file(path, batch, "subagent metadata")
    if meta is None:
        return
    batch.at = (str(path), None)
    name = path.name
    agent_id = name[len("agent-"):-len(".meta.json")] if name.startswith("agent-") else None
    if not agent_id:
        return
    parts = path.parts
    session_id = parts[-3] if len(parts) >= 3 and parts[-2] == "subagents" else None
    run = workflow_runs.RunPath.of(path)
    if run is not None:
        session_id = run.session_id
        # the agent of a Workflow run: the run is its workflow, its type (or label) its stage
        batch.add("agent_context", workflow_runs.agent_context(
            agent_id, run.run_id, workflow_runs.stage_of(meta.get("agentType"), meta.get("description"))))
    batch.add("agents", {
        "agent_id": agent_id,
        "session_id": session_id,
        "agent_type": meta.get("agentType"),
        "description": meta.get("description"),
        "spawn_tool_use_id": meta.get("toolUseId"),
        "spawn_depth": meta.get("spawnDepth"),
        "model": meta.get("model"),
    })


def parse_lines(tf: TranscriptFile, data: bytes, first_line: int, batch: Batch) -> int:
    """Parse complete JSONL lines in ``data`` (which starts at line ``first_line``).

    Returns the number of lines consumed. Bad lines are reported in ``batch.skipped``.
    """
    source = str(tf.path)
    lineno = first_line - 1
    session_seen: set = set()  # session ids and agent rows already sent for this file
    if tf.workflow_run_id and tf.agent_id:
        # its stage comes with its .meta.json (type or label); its workflow is the run its folder names
        batch.at = (source, first_line)
        batch.add("agent_context", workflow_runs.agent_context(tf.agent_id, tf.workflow_run_id))
    tools: dict[str, dict] = {}  # tool_use_id -> its row in this batch, to merge the result into
    if not data:
        batch.at = None
        return 0
    loads = orjson.loads
    find, rfind, startswith = data.find, data.rfind, data.startswith
    # lines are found in place, not split out: most bytes belong to records never read (attachments,
    # api-request shapes), and recognising those without copying or parsing them is most of import speed
    stop = len(data) - 1 if data.endswith(b"\n") else len(data)  # the last newline starts no line
    nxt = 0
    while nxt <= stop:
        pos = nxt
        end = find(b"\n", pos, stop)
        if end < 0:
            end = stop
        nxt = end + 1
        lineno += 1
        if end == pos:
            continue
        if data[end - 1] == 0x7D and (startswith(_SKIP_FIRST, pos, end) or _attachment(data, rfind(_ATTACHMENT, pos, end), end)):
            continue  # see _SKIP_FIRST and _attachment for why this is exact
        raw = data[pos:end]
        if raw.isspace():
            continue
        try:
            rec = loads(raw)
        except orjson.JSONDecodeError as e:
            batch.skip(source, lineno, f"not JSON ({e.args[0] if e.args else e})")
            continue
        if not isinstance(rec, dict):
            batch.skip(source, lineno, "not a JSON object")
            continue
        rtype = rec.get("type")
        batch.at = (source, lineno)
        try:
            if rtype == "assistant":
                _assistant(tf, rec, batch, session_seen, tools)
            elif rtype == "user":
                _user(tf, rec, batch, tools)
            elif rtype == "system":
                _system(tf, rec, batch)
            elif not isinstance(rtype, str) or rtype not in KNOWN_TYPES:
                batch.skip(source, lineno, f"unknown record type {str(rtype)[:80]!r}")
        except Exception as e:  # noqa: BLE001 - a line no check foresaw costs only itself
            batch.skip(source, lineno, unexpected(e))
    batch.at = None
    return lineno - first_line + 1


# Records we never read, recognised without parsing them (a line that ends with ``}``; one that is
# not JSON inside but looks like these records outside is skipped unreported, every other bad line
# is parsed and reported with its number).
#
# Claude Code writes compact JSON, and these types put "type" first, so the first key *is* the
# record type (exact, not a guess).
_SKIP_FIRST = tuple(sorted(("{\"type\":\"" + t + "\"").encode() for t in KNOWN_TYPES - {"user", "assistant", "system"}))
# Attachments (half of a transcript's bytes) write "type" after the nested attachment object,
# near the end of the line, so they are recognised from the end (see _attachment).
_ATTACHMENT = b'},"type":"attachment","uuid":"'
_NESTING = (b"{", b"}", b"[", b"]", b'"type"')


def _attachment(data: bytes, at: int, end: int) -> bool:
    """True when ``_ATTACHMENT`` found at ``at`` (-1: not found) is the top-level ``"type"`` of the
    line ending at ``end`` (exclusive; ``data[end - 1]`` is its closing brace): the record is an
    attachment, which holds nothing golem-mcp stores.

    Why this is exact for a JSON line: the marker's quotes are unescaped, so it is structure, not
    text in a string, and its ``"type"`` is a key of the object its ``},`` continues. When nothing
    between the marker and the line's last ``}`` opens or closes an object or array, that last brace
    closes this same object, so it is the record itself; and with no ``"type"`` key after it, this
    is the record's type (the last of duplicate keys wins in the JSON reader). Only the tail after
    the marker (a uuid, a time, a few short fields) is read, whatever the attachment's size.
    """
    if at < 0:
        return False
    tail = data[at + len(_ATTACHMENT):end - 1]
    return not any(t in tail for t in _NESTING)


def _session_row(tf: TranscriptFile, rec: dict, ts: int | None) -> dict:
    cwd = rec.get("cwd")
    return {
        "session_id": rec.get("sessionId") or tf.session_id,
        "project": tf.project or (os.path.basename(cwd) if cwd else None),
        "cwd": cwd,
        "git_branch": rec.get("gitBranch"),
        "version": rec.get("version"),
        "entrypoint": rec.get("entrypoint"),
        "transcript_path": str(tf.path) if tf.agent_id is None else None,
        "first_seen": ts,
        "last_seen": ts,
    }


def _assistant(tf: TranscriptFile, rec: dict, batch: Batch, session_seen: set, tools: dict[str, dict]) -> None:
    msg = rec.get("message")
    if not isinstance(msg, dict):
        return
    ts = iso_to_us(rec.get("timestamp"))
    session_id = rec.get("sessionId") or tf.session_id
    agent_id = rec.get("agentId") or tf.agent_id
    if session_id and session_id not in session_seen:
        session_seen.add(session_id)
        batch.add("sessions", _session_row(tf, rec, ts))
    if agent_id:
        attribution = rec.get("attributionAgent")
        agent = (agent_id, session_id, attribution if isinstance(attribution, str) else None)
        # every line of a subagent repeats this row; a repeat of an identical row changes nothing
        # in the merge (no "latest wins" column among these), so it is sent once per file
        if agent not in session_seen:
            session_seen.add(agent)
            batch.add("agents", {"agent_id": agent[0], "session_id": agent[1], "agent_type": agent[2]})
    model = msg.get("model")
    request_id = rec.get("requestId")
    usage = msg.get("usage")
    if rec.get("isApiErrorMessage"):
        batch.add("api_errors", {
            "error_key": "t:" + str(rec.get("uuid")),
            "session_id": session_id, "agent_id": agent_id, "request_id": request_id,
            "model": model if model != "<synthetic>" else None, "timestamp": ts,
            "status_code": _status_from_text(rec.get("error") or _first_text(msg)),
            "error": error_text(_first_text(msg) or rec.get("error")), "source": "transcript",
        })
        return
    if model == "<synthetic>" or not isinstance(usage, dict):
        return
    key = request_id or msg.get("id")
    if not key:
        return
    cc_raw = usage.get("cache_creation")
    cc: dict = cc_raw if isinstance(cc_raw, dict) else {}
    batch.add("api_requests", {
        "request_id": key,
        "message_id": msg.get("id"),
        "session_id": session_id,
        "agent_id": agent_id,
        "model": model,
        "timestamp": ts,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": usage.get("cache_read_input_tokens"),
        "cache_creation_tokens": usage.get("cache_creation_input_tokens"),
        "cache_creation_5m_tokens": cc.get("ephemeral_5m_input_tokens"),
        "cache_creation_1h_tokens": cc.get("ephemeral_1h_input_tokens"),
        "stop_reason": msg.get("stop_reason"),
        "success": True,
        "source_mask": SRC_TRANSCRIPT,
    })
    content = msg.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use" and block.get("id"):
                name = block.get("name")
                tinput = block.get("input")
                _add_tool(batch, tools, {
                    "tool_use_id": block["id"],
                    "session_id": session_id,
                    "agent_id": agent_id,
                    "request_id": request_id,
                    "tool_name": name,
                    "timestamp": ts,
                    "input_size_bytes": len(orjson.dumps(tinput)) if tinput is not None else None,
                    "tool_parameters": _params_json(name, tinput),
                    "source_mask": SRC_TRANSCRIPT,
                })


def _params_json(name: str | None, tinput: object) -> str | None:
    p = tool_parameters(name, tinput)
    return orjson.dumps(p).decode() if p else None


def _user(tf: TranscriptFile, rec: dict, batch: Batch, tools: dict[str, dict]) -> None:
    msg = rec.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if not isinstance(content, list):
        return
    session_id = rec.get("sessionId") or tf.session_id
    agent_id = rec.get("agentId") or tf.agent_id
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            continue
        tid = block.get("tool_use_id")
        if not tid:
            continue
        is_error = bool(block.get("is_error"))
        result = block.get("content")
        size = len(result) if isinstance(result, str) else len(orjson.dumps(result)) if result is not None else None
        _add_tool(batch, tools, {
            "tool_use_id": tid,
            "session_id": session_id,
            "agent_id": agent_id,
            "prompt_id": rec.get("promptId"),
            "success": not is_error,
            "error": error_text(result) if is_error else None,
            "error_type": _error_type(result) if is_error else None,
            "result_size_bytes": size,
            "source_mask": SRC_TRANSCRIPT,
        })


# How two rows of one tool call merge; mirrors the store's POLICY["tool_calls"] (the importer checks
# that they agree). Any other column: the first non-null value stays.
TOOL_MERGE = {"success": "and", "timestamp": "min", "source_mask": "or", "duration_ms": "new",
              "tool_name": "named"}


def _add_tool(batch: Batch, tools: dict[str, dict], row: dict) -> None:
    """Add a tool_calls row, or merge it into the row this file already gave for the same call.

    A call's tool_use (assistant line) and its tool_result (a later user line) are two rows that
    the store would merge by ``tool_use_id`` with :data:`TOOL_MERGE`; merging them here, in file
    order, gives the same row and halves the rows to write.
    """
    tid = row["tool_use_id"]
    prev = tools.get(tid)
    if prev is None:
        tools[tid] = row
        batch.add("tool_calls", row)
        return
    for k, v in row.items():
        if v is None:
            continue
        old = prev.get(k)
        if old is None:
            prev[k] = v
            continue
        how = TOOL_MERGE.get(k)
        if how == "named":
            if old == MCP_PLACEHOLDER:
                prev[k] = v
        elif how == "and":
            prev[k] = bool(old) and bool(v)
        elif how == "min":
            prev[k] = min(old, v)
        elif how == "or":
            prev[k] = old | v
        elif how == "new":
            prev[k] = v


def _system(tf: TranscriptFile, rec: dict, batch: Batch) -> None:
    if rec.get("subtype") != "api_error":
        return
    err = rec.get("error")
    status = None
    if isinstance(err, dict):
        status = err.get("status") or err.get("statusCode")
        inner = err.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("error"), dict):
            text = inner["error"].get("message")
        else:
            text = err.get("message") or str(err)
    else:
        text = str(err) if err is not None else None
    batch.add("api_errors", {
        "error_key": "t:" + str(rec.get("uuid")),
        "session_id": rec.get("sessionId") or tf.session_id,
        "agent_id": rec.get("agentId") or tf.agent_id,
        "timestamp": iso_to_us(rec.get("timestamp")),
        "status_code": int(status) if isinstance(status, int | str) and str(status).isdigit() else _status_from_text(text),
        "error": error_text(text),
        "attempt": rec.get("retryAttempt"),
        "source": "transcript",
    })


def _first_text(msg: dict) -> str | None:
    content = msg.get("content")
    if isinstance(content, list):
        for b in content:
            if isinstance(b, dict) and isinstance(b.get("text"), str):
                return b["text"]
    return content if isinstance(content, str) else None


def _status_from_text(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    for code in ("529", "429", "500", "502", "503", "504", "400", "401", "403", "404", "413"):
        if code in text:
            return int(code)
    return None


def _error_type(result: object) -> str | None:
    """A coarse category of a failed tool result (refined by the analysis engine)."""
    text = error_text(result, 300) or ""
    low = text.lower()
    if "does not exist" in low or "no such file" in low or "not found" in low:
        return "file_not_found"
    if "exit code" in low or low.startswith("error: exit"):
        return "shell_exit"
    if "permission" in low or "denied" in low:
        return "permission"
    if "timed out" in low or "timeout" in low:
        return "timeout"
    if "syntax" in low:
        return "syntax"
    return "tool_error"
