"""The unit of ingestion: a batch of rows per store table, plus what was skipped and why."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

# source_mask bits (see store/sql/001_init.sql)
SRC_TRANSCRIPT = 1
SRC_OTEL_LOG = 2
SRC_OTEL_SPAN = 4
SRC_HOOK = 8
SRC_AGENT = 16

CONTEXT_KEYS = ("workflow_id", "stage", "task_id", "experiment_id")


@dataclass
class Skipped:
    """One piece of input that was not imported, with where it was and why."""

    source: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}"


@dataclass
class Batch:
    rows: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, table: str, row: dict) -> None:
        self.rows[table].append(row)

    def skip(self, source: str, line: int | None, reason: str) -> None:
        self.skipped.append(Skipped(source, line, reason))

    def extend(self, other: Batch) -> None:
        for t, rs in other.rows.items():
            self.rows[t].extend(rs)
        self.skipped.extend(other.skipped)

    def count(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def clear_rows(self) -> None:
        self.rows = defaultdict(list)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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

# --- privacy: secrets in commands are redacted before anything is stored -----------------------

_SECRET_PATTERNS = [
    # key=value / KEY: value where the key names a secret
    re.compile(
        r"(?i)\b([A-Z0-9_.-]*(?:api[_-]?key|token|secret|passw(?:or)?d|pwd|auth|credential|private[_-]?key)[A-Z0-9_.-]*)"
        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
    ),
    # --token X, --password X, -p X is too ambiguous to touch
    re.compile(r"(?i)(--(?:api-?key|token|secret|password|passwd|auth|access-key|private-key))(\s+|=)(\"[^\"]*\"|'[^']*'|\S+)"),
    # Authorization headers
    re.compile(r"(?i)(authorization:\s*(?:bearer|basic|token)?\s*)(\S+)"),
]
_TOKEN_SHAPES = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
)
_URL_CREDS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@")
REDACTED = "[REDACTED]"


def redact(text: str | None) -> str | None:
    """Remove secrets from a command line or error text; keeps its shape so patterns still group."""
    if not text:
        return text
    out = _URL_CREDS.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    out = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)
    out = _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{REDACTED}", out)
    out = _TOKEN_SHAPES.sub(REDACTED, out)
    return out


# Claude Code's OTel tool_result events name every MCP tool 'mcp_tool' (the real name only with
# OTEL_LOG_TOOL_DETAILS=1); transcripts and hooks name it. Whichever arrives first, the real name wins
# (the store's merge policy "named", mirrored by the transcript reader).
MCP_PLACEHOLDER = "mcp_tool"

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
        params["bash_command"] = redact(cmd[:2000])
    for k in _KEEP_PARAMS:
        v = tool_input.get(k)
        if v is not None and isinstance(v, str | int | float | bool):
            params[k] = redact(v[:500]) if isinstance(v, str) else v
    if tool_name and tool_name.startswith("mcp__"):
        params["mcp_tool"] = tool_name
    return params or None


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
    return redact(value[:limit])
