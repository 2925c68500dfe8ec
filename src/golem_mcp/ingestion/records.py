"""What parsers share: source bits, timestamps, tool parameters and error texts (redacted); the batch
they fill is the store's (:mod:`golem_mcp.store.batch`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..redaction import REDACTED, redact

# the unit of writing is the store's (it owns the write path); re-exported for the parsers
from ..store.batch import MCP_PLACEHOLDER, ORIGIN, Batch, Skipped

# the one redaction rule lives in golem_mcp.redaction
__all__ = ["MCP_PLACEHOLDER", "ORIGIN", "REDACTED", "Batch", "Skipped", "redact"]

# source_mask bits (see store/sql/001_init.sql)
SRC_TRANSCRIPT = 1
SRC_OTEL_LOG = 2
SRC_OTEL_SPAN = 4
SRC_HOOK = 8
SRC_AGENT = 16

CONTEXT_KEYS = ("workflow_id", "stage", "task_id", "experiment_id")


def unexpected(e: BaseException) -> str:
    """Why a line, payload or record was skipped when reading it failed in a way no check foresaw
    (what was read of it before is kept, every value checked like any other)."""
    return f"not read ({type(e).__name__}: {str(e)[:200]})"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def json_object_file(path: Path, batch: Batch, what: str) -> dict[str, Any] | None:
    """A small JSON file that holds one object (a subagent's ``.meta.json``, a workflow run's record),
    or None with the reason in ``batch.skipped``; ``what`` names it in that reason."""
    try:
        obj = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        batch.skip(str(path), None, f"unreadable {what}: {e}")
        return None
    if not isinstance(obj, dict):
        batch.skip(str(path), None, f"{what} is not a JSON object")
        return None
    return obj


def iso_to_us(value: object) -> int | None:
    """ISO-8601 text (as Claude Code writes it) to epoch microseconds; None when unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def now_us() -> int:
    return (datetime.now(UTC) - _EPOCH) // _US


_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


# Parameters worth keeping per tool call; content, old/new strings and prompts are never stored.
_KEEP_PARAMS = ("file_path", "path", "pattern", "glob", "description", "subagent_type", "url", "query",
                "skill", "notebook_path", "type", "output_mode", "timeout", "run_in_background", "limit",
                "offset")


def tool_parameters(tool_name: str | None, tool_input: object) -> dict | None:
    """Selected, redacted parameters of a tool call (seed 000 reads ``tool_parameters->>'bash_command'``)."""
    if not isinstance(tool_input, dict):
        return None
    params: dict[str, object] = {}
    cmd = tool_input.get("command")
    if isinstance(cmd, str):
        params["bash_command"] = _redact_cut(cmd, 2000)
    for k in _KEEP_PARAMS:
        v = tool_input.get(k)
        if v is not None and isinstance(v, str | int | float | bool):
            params[k] = _redact_cut(v, 500) if isinstance(v, str) else v
    if isinstance(tool_name, str) and tool_name.startswith("mcp__"):
        params["mcp_tool"] = tool_name
    return params or None


def mcp_names(tool_name: object, params: object = None) -> tuple[str | None, str | None]:
    """(MCP server, MCP tool) of a tool call: split from ``mcp__<server>__<tool>`` as Claude Code splits
    it (the server is the part before the second ``__``, the tool all after), else from the
    ``mcp_server_name``/``mcp_tool_name`` its tool_result event puts in ``tool_parameters``."""
    if isinstance(tool_name, str) and tool_name.startswith("mcp__"):
        parts = tool_name.split("__")
        if len(parts) >= 3 and parts[1] and "__".join(parts[2:]):
            return parts[1], "__".join(parts[2:])
    if isinstance(params, dict):
        server, tool = params.get("mcp_server_name"), params.get("mcp_tool_name")
        return (server if isinstance(server, str) and server else None,
                tool if isinstance(tool, str) and tool else None)
    return None, None


def error_text(value: object, limit: int = 500) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        parts = []
        for b in value:
            if isinstance(b, dict) and isinstance(b.get("text"), str):
                parts.append(b["text"])
            elif isinstance(b, str):
                parts.append(b)
        value = "\n".join(parts)
    if not isinstance(value, str):
        value = str(value)
    return _redact_cut(value, limit)


def _redact_cut(text: str, limit: int) -> str:
    """The first ``limit`` characters, redacted before the cut (a cut through a secret would leave a
    piece no rule recognises). Only a margin past ``limit`` is read: any secret that starts before
    the cut ends within it (or is a PEM block or an assignment, which are redacted cut too).

    A text that needs no cut is returned as it is: every text and JSON column is redacted by the
    store on its way in (``Store.write``, the one privacy wall), and redacting it here as well cost
    a transcript import ~8% of its parsing time."""
    if len(text) <= limit:
        return text
    return redact(text[:limit * 2 + 1000])[:limit]
