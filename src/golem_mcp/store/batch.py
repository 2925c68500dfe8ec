"""The unit of writing: a batch of rows per store table, plus what was skipped and why.

Parsers (``golem_mcp.ingestion``) fill batches; the store writes them (:meth:`Store.write`, or
:meth:`Store.submit` through its one writer). It lives with the store so the store imports nothing
from ingestion.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

# Claude Code's OTel tool_result events name every MCP tool 'mcp_tool' (the real name only with
# OTEL_LOG_TOOL_DETAILS=1); transcripts and hooks name it. Whichever arrives first, the real name wins
# (the store's merge policy "named", mirrored by the transcript reader).
MCP_PLACEHOLDER = "mcp_tool"


@dataclass
class Skipped:
    """One piece of input that was not imported (``dropped``), or imported with a field left out,
    with where it was and why."""

    source: str
    line: int | None
    reason: str
    dropped: bool = True

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.reason}"


# Each row remembers the input it came from (source, line or record index) under this key, so the
# store's field checks can name the file and line of a bad value; the store never writes it.
ORIGIN = "_at"


@dataclass
class Batch:
    rows: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    skipped: list[Skipped] = field(default_factory=list)
    # where the rows added next come from; parsers set it per line / record
    at: tuple[str, int | None] | None = None
    # the write inbox numbers of these rows (Store.land): their write deletes them (store/inbox.py)
    landed: list[int] = field(default_factory=list)
    # per table, its rows as Store.land checked and redacted them (Arrow tables, in the rows' order)
    staged: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: str, row: dict) -> None:
        if self.at is not None:
            row[ORIGIN] = self.at
        self.rows[table].append(row)

    def skip(self, source: str, line: int | None, reason: str) -> None:
        self.skipped.append(Skipped(source, line, reason))

    def extend(self, other: Batch) -> None:
        for t, rs in other.rows.items():
            self.rows[t].extend(rs)
        self.skipped.extend(other.skipped)
        self.landed.extend(other.landed)
        for t, tables in other.staged.items():
            self.staged[t].extend(tables)

    def count(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def clear_rows(self) -> None:
        self.rows = defaultdict(list)
        self.staged = defaultdict(list)

    def rejected(self) -> int:
        """Pieces of input (lines, payloads, records) of which something was not stored."""
        return len({(s.source, s.line) for s in self.skipped if s.dropped})
