"""The same facts seen on several machines by different sources, and the machine each fact must name
whatever order the sightings meet in: the rule at ``golem_mcp.store.db.SOURCE_RANK`` (the most
authoritative source, then the least machine id), written out here as the answers it must give."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from golem_mcp.ingestion.records import Batch

TRANSCRIPT, LOG, SPAN, HOOK, AGENT = 1, 2, 4, 8, 16
KEY = {"api_requests": "request_id", "tool_calls": "tool_use_id", "api_errors": "error_key", "spans": "span_id",
       "sessions": "session_id"}

# (table, key, machine, source_mask: None where the table has none or the sighting gave none)
SIGHTINGS: list[tuple[str, str, str, int | None]] = [
    ("api_requests", "r-transcript-over-otel", "m3", LOG), ("api_requests", "r-transcript-over-otel", "m1", TRANSCRIPT),
    ("api_requests", "r-both-transcripts", "m2", TRANSCRIPT), ("api_requests", "r-both-transcripts", "m1", TRANSCRIPT),
    ("api_requests", "r-log-over-span", "m1", SPAN), ("api_requests", "r-log-over-span", "m3", LOG),
    ("api_requests", "r-best-of-a-sighting", "m1", HOOK), ("api_requests", "r-best-of-a-sighting", "m3", TRANSCRIPT | LOG),
    ("api_requests", "r-three", "m2", SPAN), ("api_requests", "r-three", "m3", HOOK), ("api_requests", "r-three", "m1", LOG),
    ("api_requests", "r-one", "m3", LOG),
    ("tool_calls", "t-hook-over-span", "m1", SPAN), ("tool_calls", "t-hook-over-span", "m3", HOOK),
    ("tool_calls", "t-hook-over-agent", "m1", AGENT), ("tool_calls", "t-hook-over-agent", "m2", HOOK),
    ("tool_calls", "t-no-source", "m3", None), ("tool_calls", "t-no-source", "m2", None),
    ("tool_calls", "t-source-over-none", "m2", None), ("tool_calls", "t-source-over-none", "m3", SPAN),
    ("api_errors", "e-least", "m3", None), ("api_errors", "e-least", "m1", None),
    ("spans", "s-least", "m2", None), ("spans", "s-least", "m1", None),
    ("sessions", "s1", "m3", None), ("sessions", "s1", "m2", None),
]
# many facts at once (a write's key lookup rather than a few keys' ON CONFLICT): transcripts on m1
# and OTel on m3 for the even ones, spans on m2 and OTel logs on m3 for the odd ones
BULK = 40
for _i in range(BULK):
    SIGHTINGS += ([("api_requests", f"bulk-{_i}", "m1", TRANSCRIPT), ("api_requests", f"bulk-{_i}", "m3", LOG)]
                  if _i % 2 == 0 else
                  [("api_requests", f"bulk-{_i}", "m2", SPAN), ("api_requests", f"bulk-{_i}", "m3", LOG)])

EXPECTED: dict[tuple[str, str], str] = {
    ("api_requests", "r-transcript-over-otel"): "m1",
    ("api_requests", "r-both-transcripts"): "m1",
    ("api_requests", "r-log-over-span"): "m3",
    ("api_requests", "r-best-of-a-sighting"): "m3",
    ("api_requests", "r-three"): "m3",
    ("api_requests", "r-one"): "m3",
    ("tool_calls", "t-hook-over-span"): "m3",
    ("tool_calls", "t-hook-over-agent"): "m2",
    ("tool_calls", "t-no-source"): "m2",
    ("tool_calls", "t-source-over-none"): "m3",
    ("api_errors", "e-least"): "m1",
    ("spans", "s-least"): "m1",
    ("sessions", "s1"): "m2",
    **{("api_requests", f"bulk-{i}"): "m1" if i % 2 == 0 else "m3" for i in range(BULK)},
}
MACHINES = ("m1", "m2", "m3")


def row(table: str, key: str, machine: str, mask: int | None) -> dict[str, Any]:
    """One sighting as the row its machine's store holds (or a shard carries)."""
    r: dict[str, Any] = {KEY[table]: key, "machine_id": machine}
    if table != "sessions":
        r["session_id"] = "s1"
    if table in ("api_requests", "tool_calls", "api_errors"):
        r["timestamp"] = datetime(2026, 11, 2, 10)
    if table == "api_requests":
        r["input_tokens"] = 10
    if mask is not None:
        r["source_mask"] = mask
    return r


def batch(sightings: Iterable[tuple[str, str, str, int | None]]) -> Batch:
    b = Batch()
    for s in sightings:
        b.add(s[0], row(*s))
    return b


def of(machine: str) -> list[tuple[str, str, str, int | None]]:
    return [s for s in SIGHTINGS if s[2] == machine]


def named(con: Any, catalog: str = "") -> dict[tuple[str, str], str]:
    """The machine each fact of EXPECTED names in the tables of ``con`` (``catalog``: e.g. the lake's)."""
    prefix = f"{catalog}." if catalog else ""
    out: dict[tuple[str, str], str] = {}
    for table in sorted({t for t, _ in EXPECTED}):
        for key, machine in con.execute(f"SELECT {KEY[table]}, machine_id FROM {prefix}{table}").fetchall():
            if (table, key) in EXPECTED:
                out[(table, key)] = machine
    return out
