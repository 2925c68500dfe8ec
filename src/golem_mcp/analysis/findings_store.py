"""Improvement items (seed 003's continuous_improvements): rate-limited to 3 new per dimension per run
and deduplicated against open items, each with its evidence and a recommendation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound
from ..redaction import redact_value
from ..store.db import Store
from .common import as_naive, dumps, execute

MAX_PER_DIMENSION = 3


class Candidate(BaseModel):
    """A finding that may become an improvement item."""

    kind: str
    dimension: str
    key: str
    title: str
    severity: float
    recommendation: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class Item(BaseModel):
    item_id: int
    kind: str = Field(description="bottleneck, token_leak, loop, error_pattern, retry, model_advice")
    dimension: str
    key: str
    title: str
    severity: float = Field(description="observed / baseline, or ratio to normal")
    recommendation: str
    evidence: dict[str, Any] | None = None
    status: str
    times_seen: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SaveResult(BaseModel):
    created: int = 0
    refreshed_duplicates: int = Field(default=0, description="already open: times_seen bumped, not created again")
    skipped_rate_limit: int = 0


def save_items(store: Store, run_id: int | None, candidates: list[Candidate], now: datetime | None = None,
               max_per_dimension: int = MAX_PER_DIMENSION) -> SaveResult:
    """Create items for new problems (worst first, at most ``max_per_dimension`` per kind:dimension)."""
    ts = as_naive(now)
    res = SaveResult()
    per_dim: dict[str, int] = {}
    # written beside Store.write: a candidate quotes stored (redacted) facts, and is redacted again
    # here so nothing an analysis adds (a key, an example) can bring a secret back
    candidates = [c.model_copy(update=redact_value(c.model_dump(include={"key", "title", "recommendation", "evidence"})))
                  for c in candidates]
    for c in sorted(candidates, key=lambda c: -c.severity):
        open_ = execute(store, "SELECT item_id FROM improvement_items WHERE kind = ? AND dimension = ? AND key = ? "
                        "AND status = 'open'", [c.kind, c.dimension, c.key])
        if open_:
            execute(store, "UPDATE improvement_items SET times_seen = times_seen + 1, last_run_id = ?, updated_at = ?, "
                    "severity = ?, evidence = ? WHERE item_id = ?", [run_id, ts, c.severity, dumps(c.evidence), open_[0][0]])
            res.refreshed_duplicates += 1
            continue
        dim = f"{c.kind}:{c.dimension}"
        if per_dim.get(dim, 0) >= max_per_dimension:
            res.skipped_rate_limit += 1
            continue
        per_dim[dim] = per_dim.get(dim, 0) + 1
        execute(store, "INSERT INTO improvement_items (kind, dimension, key, title, severity, recommendation, evidence, "
                "first_run_id, last_run_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [c.kind, c.dimension, c.key, c.title, c.severity, c.recommendation, dumps(c.evidence), run_id, run_id, ts, ts])
        res.created += 1
    return res


def list_findings(store: Store, status: str | None = "open", kind: str | None = None, limit: int = 20,
                  with_evidence: bool = False) -> list[Item]:
    """Improvement items, worst first."""
    rows = store.query("""SELECT item_id, kind, dimension, key, title, severity, recommendation,
                                 CAST(evidence AS VARCHAR) AS evidence, status, times_seen, created_at, updated_at
                          FROM improvement_items WHERE (? IS NULL OR status = ?) AND (? IS NULL OR kind = ?)
                          ORDER BY severity DESC, item_id LIMIT ?""", [status, status, kind, kind, limit])
    return [Item(**{**r, "evidence": json.loads(r["evidence"]) if with_evidence and r["evidence"] else None}) for r in rows]


def set_status(store: Store, item_id: int, status: str) -> None:
    if status not in ("open", "done", "dismissed"):
        raise InvalidInput("status must be open, done or dismissed")
    if not execute(store, "UPDATE improvement_items SET status = ?, updated_at = current_timestamp WHERE item_id = ? "
                   "RETURNING item_id", [status, item_id]):
        raise NotFound(f"no improvement item {item_id}; list them with `golem-mcp findings`")
