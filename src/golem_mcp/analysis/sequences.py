"""Tool sequences (seed 002's Read->Grep->Read->Glob): the most common n-grams of tool calls per stage,
their success and cost, and the ones typical of workflows that went well vs badly.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store
from .common import window


class Sequence(BaseModel):
    stage: str
    sequence: str = Field(description="tool names joined by '->'")
    count: int
    success_rate: float = Field(description="share of occurrences where every call in it succeeded")
    workflows: int
    avg_stage_cost_usd: float | None = Field(default=None, description="mean cost of the stage runs it appears in")
    good_share: float | None = Field(default=None, description="share of occurrences in workflows that went well")


class SequenceReport(BaseModel):
    n: int
    top: list[Sequence]
    typical_of_good: list[Sequence] = Field(description="sequences seen mostly in workflows without findings, rework or repeated failures")
    typical_of_bad: list[Sequence]


def tool_sequences(store: Store, n: int = 3, days: float = 30, now: datetime | None = None, stage: str | None = None,
                   limit: int = 10, min_support: int = 3) -> SequenceReport:
    """Most common length-``n`` tool-call sequences per stage, with success, cost and outcome."""
    if not 2 <= n <= 6:
        raise InvalidInput("n must be between 2 and 6")
    start, end = window(now, days)
    rows = store.query(f"""
        WITH t AS (
            SELECT workflow_id, stage, success,
                   list(tool_name) OVER w AS gram, bool_and(success) OVER w AS ok, count(*) OVER w AS len
            FROM tools WHERE "timestamp" >= ? AND "timestamp" < ? AND (? IS NULL OR stage = ?)
            WINDOW w AS (PARTITION BY session_id, agent_id ORDER BY "timestamp", tool_use_id
                         ROWS BETWEEN {int(n) - 1} PRECEDING AND CURRENT ROW)),
        outcome AS (
            SELECT workflow_id, (COALESCE(critical_issues, 0) + COALESCE(major_issues, 0) = 0
                                 AND NOT COALESCE(rework, false) AND COALESCE(tool_failures, 0) < 3) AS good
            FROM workflow_summary),
        g AS (
            SELECT t.stage, array_to_string(t.gram, '->') AS sequence, t.ok, t.workflow_id, o.good, s.total_cost
            FROM t LEFT JOIN outcome o USING (workflow_id)
            LEFT JOIN workflow_stage_summary s ON s.workflow_id = t.workflow_id AND s.stage = t.stage
            WHERE t.len = ?)
        SELECT stage, sequence, count(*) AS count, avg(CAST(ok AS INTEGER)) AS success_rate,
               count(DISTINCT workflow_id) AS workflows, avg(total_cost) AS avg_stage_cost_usd,
               avg(CAST(good AS INTEGER)) AS good_share
        FROM g GROUP BY stage, sequence ORDER BY count DESC""", [start, end, stage, stage, n])
    seqs = [Sequence(stage=r["stage"] or "-", sequence=r["sequence"], count=r["count"],
                     success_rate=round(r["success_rate"], 3), workflows=r["workflows"],
                     avg_stage_cost_usd=r["avg_stage_cost_usd"],
                     good_share=round(r["good_share"], 3) if r["good_share"] is not None else None) for r in rows]
    supported = [s for s in seqs if s.count >= min_support and s.good_share is not None]
    overall = (sum((s.good_share or 0) * s.count for s in supported) / sum(s.count for s in supported)) if supported else 0
    good = sorted([s for s in supported if (s.good_share or 0) > overall + 0.2], key=lambda s: -(s.good_share or 0) * s.count)
    bad = sorted([s for s in supported if (s.good_share or 0) < overall - 0.2], key=lambda s: (s.good_share or 0, -s.count))
    return SequenceReport(n=n, top=seqs[:limit], typical_of_good=good[:limit], typical_of_bad=bad[:limit])
