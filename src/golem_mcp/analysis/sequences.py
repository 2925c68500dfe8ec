"""Tool sequences (seed 002's Read->Grep->Read->Glob): the most common n-grams of tool calls per stage,
their success and cost, the ones typical of workflows that went badly, and the reusable ones: sequences
learned from successful workflows (seed 002's "learning from successful sessions", its workflow
templates), each with its evidence.

A reusable sequence is a run of consecutive tool calls inside one stage (or a run of consecutive stages of a
workflow) that recurs in at least ``min_support`` successful workflows and goes with success: the
workflows containing it succeed more often than those without it, by more than chance (one-sided
hypergeometric test, Benjamini-Hochberg over every sequence tested), and at least 3 failed workflows lack
it. When every workflow has a sequence, nothing compares with it, and it is not reported. Whether a workflow went well is the view
``workflow_outcomes`` (the one definition); a session without a workflow is its own workflow (resolver).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

from ..errors import InvalidInput
from ..store.db import Store, dict_rows
from .common import window

EXAMPLES = 3
# a sequence goes with success only if at least this many failed workflows lack it: with one failure in
# 25,000 workflows, anything that one lacked would otherwise look significant
MIN_FAILED_WITHOUT = 3


class Sequence(BaseModel):
    stage: str
    sequence: str = Field(description="tool names joined by '->'")
    count: int
    success_rate: float = Field(description="share of occurrences where every call in it succeeded")
    workflows: int
    avg_stage_cost_usd: float | None = Field(default=None, description="mean cost of the stage runs it appears in")
    good_share: float | None = Field(default=None, description="share of occurrences in workflows that went well")


class ReusableSequence(BaseModel):
    kind: Literal["tools", "stages"] = Field(description="tools: tool calls in one stage; stages: a workflow's stages")
    stage: str | None = Field(description="the stage the tool calls ran in (None for stage sequences)")
    sequence: str = Field(description="steps joined by '->'")
    length: int
    successful_with: int = Field(description="successful workflows containing it (its support)")
    successful_total: int
    failed_with: int = Field(description="failed workflows containing it")
    failed_total: int
    with_success_rate: float
    without_success_rate: float
    lift: float = Field(description="success rate with it / success rate of all workflows")
    p_value: float
    q_value: float = Field(description="p adjusted for the number of sequences tested (Benjamini-Hochberg)")
    median_cost_with_usd: float | None
    median_cost_without_usd: float | None
    median_duration_with_seconds: float | None
    median_duration_without_seconds: float | None
    examples: list[str] = Field(description="successful workflows with it, most recent first")

    def line(self) -> str:
        where = f"{self.stage}: " if self.stage else "stages: "
        return (f"{where}{self.sequence} in {self.successful_with}/{self.successful_total} successful and "
                f"{self.failed_with}/{self.failed_total} failed workflows; success {self.with_success_rate:.0%} "
                f"with vs {self.without_success_rate:.0%} without (lift {self.lift:.2f}, q {self.q_value:.2g})")


class SequenceReport(BaseModel):
    n: int
    top: list[Sequence]
    reusable: list[ReusableSequence] = Field(description=(
        "sequences recurring in successful workflows that go with success, with the evidence"))
    typical_of_bad: list[Sequence]
    successful_workflows: int = 0
    failed_workflows: int = 0
    note: str | None = None


class Reusable(BaseModel):
    successful_workflows: int
    failed_workflows: int
    min_support: int
    lengths: list[int]
    tested: int = Field(description="sequences with at least min_support successful workflows")
    sequences: list[ReusableSequence]
    note: str | None = None


def tool_sequences(store: Store, n: int = 3, days: float = 30, now: datetime | None = None, stage: str | None = None,
                   limit: int = 10, min_support: int | None = None, max_length: int = 4,
                   learn: bool = True) -> SequenceReport:
    """Most common length-``n`` tool-call sequences per stage, with success, cost and outcome; and (``learn``)
    the reusable sequences (lengths 2..``max_length``) learned from successful workflows."""
    if not 2 <= n <= 6:
        raise InvalidInput("n must be between 2 and 6")
    start, end = window(now, days)
    from .snapshot import summaries

    with summaries(store) as reader:  # the stages' cost and outcome: the cache's rows, not the views' sums
        rows = _ngrams(reader, n, start, end, stage)
    seqs = [Sequence(stage=r["stage"] or "-", sequence=r["sequence"], count=r["count"],
                     success_rate=round(r["success_rate"], 3), workflows=r["workflows"],
                     avg_stage_cost_usd=r["avg_stage_cost_usd"],
                     good_share=round(r["good_share"], 3) if r["good_share"] is not None else None) for r in rows]
    supported = [s for s in seqs if s.count >= 3 and s.good_share is not None]
    overall = (sum((s.good_share or 0) * s.count for s in supported) / sum(s.count for s in supported)) if supported else 0
    bad = sorted([s for s in supported if (s.good_share or 0) < overall - 0.2], key=lambda s: (s.good_share or 0, -s.count))
    if not learn:
        return SequenceReport(n=n, top=seqs[:limit], reusable=[], typical_of_bad=bad[:limit])
    ru = reusable_sequences(store, days=days, now=now, stage=stage, min_support=min_support, max_length=max_length,
                            limit=limit)
    return SequenceReport(n=n, top=seqs[:limit], reusable=ru.sequences, typical_of_bad=bad[:limit],
                          successful_workflows=ru.successful_workflows, failed_workflows=ru.failed_workflows,
                          note=ru.note)


# The n-gram lengths the analysis cache keeps per day (analysis.snapshot: analysis_ngram_days): the dashboard's
# and the tool's default. Other lengths, and a stage filter (which takes the other stages' calls out of
# the runs), read the window's calls.
CACHED_LENGTHS = (3,)


def gram_rows(n: int, source: str) -> str:
    """The n-gram rule, the one definition: each run of ``n`` consecutive tool calls of one agent
    (``session_id``, ``agent_id``), in time order (ties: ``tool_use_id``), among the calls of ``source``
    (a SELECT of ``tools``' columns), is a sequence of the stage and workflow of its last call; ``ok``
    when every call in it succeeded. Also its first and last call's times. Read with ``lag`` (a window
    frame holding a list per call cost twice as much)."""
    back = range(int(n) - 1, 0, -1)
    names = ", ".join([*(f"lag(tool_name, {k}) OVER w" for k in back), "tool_name"])
    oks = ", ".join([*(f"lag(success, {k}) OVER w" for k in back), "success"])
    return f"""
        SELECT workflow_id, stage, array_to_string(gram, '->') AS sequence, ok, first_at, last_at FROM (
            SELECT workflow_id, stage, [{names}] AS gram, list_bool_and([{oks}]) AS ok,
                   lag("timestamp", {int(n) - 1}) OVER w AS first_at, "timestamp" AS last_at,
                   lag(1, {int(n) - 1}) OVER w IS NOT NULL AS whole
            FROM ({source})
            WINDOW w AS (PARTITION BY session_id, agent_id ORDER BY "timestamp", tool_use_id))
        WHERE whole"""


# The grams' sums per stage, sequence and workflow, with the workflow's outcome and the stage's cost:
# what the answer adds up (`weighed` over a SELECT of gram_rows' stage, sequence, workflow_id, ok).
def weighed(grams: str, by: str = "") -> str:
    """``by``: more columns of ``grams`` to sum by, each followed by a comma."""
    return f"""
        SELECT p.* EXCLUDE (workflow_id), CAST(p.workflow_id IS NOT NULL AS BIGINT) AS workflows,
               p.n * s.total_cost AS cost_sum, CASE WHEN s.total_cost IS NULL THEN 0 ELSE p.n END AS cost_n,
               p.n * CAST(o.successful AS BIGINT) AS good_sum, CASE WHEN o.successful IS NULL THEN 0 ELSE p.n END AS good_n
        FROM (SELECT {by}stage, sequence, workflow_id, count(*) AS n, count(*) FILTER (WHERE ok) AS ok_true,
                     count(ok) AS ok_known
              FROM ({grams}) GROUP BY ALL) p
        LEFT JOIN workflow_outcomes o ON o.workflow_id = p.workflow_id
        LEFT JOIN workflow_stage_summary s ON s.workflow_id = p.workflow_id AND s.stage = p.stage"""


# the answer from weighed rows (a workflow is in the rows of one part only, so its count adds up)
_ANSWER = """
    SELECT stage, sequence, CAST(sum(n) AS BIGINT) AS count,
           CAST(sum(ok_true) AS DOUBLE) / NULLIF(sum(ok_known), 0) AS success_rate,
           CAST(sum(workflows) AS BIGINT) AS workflows, sum(cost_sum) / NULLIF(sum(cost_n), 0) AS avg_stage_cost_usd,
           CAST(sum(good_sum) AS DOUBLE) / NULLIF(sum(good_n), 0) AS good_share
    FROM ({rows}) GROUP BY stage, sequence ORDER BY count DESC, stage, sequence"""


def _ngrams(store: Store, n: int, start: datetime, end: datetime, stage: str | None) -> list[dict[str, Any]]:
    """Per stage, each run of ``n`` calls by one agent (``gram_rows``) as a sequence: how often, how
    often all succeeded, in how many workflows, at what stage cost and outcome. From the analysis cache's
    per-day sums when the reader has it current (:func:`cached_ngrams`), else from the window's calls."""
    if stage is None:
        rows = cached_ngrams(store, n, start, end)
        if rows is not None:
            return rows
    calls = 'SELECT * FROM tools WHERE "timestamp" >= ? AND "timestamp" < ? AND (? IS NULL OR stage = ?)'
    return store.query(_ANSWER.format(rows=weighed(gram_rows(n, calls))), [start, end, stage, stage])


def cached_ngrams(store: Any, n: int, start: datetime, end: datetime) -> list[dict[str, Any]] | None:
    """:func:`_ngrams` of every stage from the analysis cache: the window's whole days from
    ``analysis_ngram_days`` (a few rows per day and stage), the grams kept apart (``analysis_ngram_rows``:
    those of workflows with calls on more than one day and those spanning midnight) by their times, and
    the grams of the (at most two) days the window's ends cut through from their calls. None when the
    length is not cached, the window holds no whole day, or the reader's cache is not current."""
    from .snapshot import CacheReader

    if n not in CACHED_LENGTHS or not isinstance(store, CacheReader) or not store.cache_current():
        return None
    lo = start.date() + timedelta(days=0 if start.time() == datetime.min.time() else 1)
    hi = end.date()
    if lo >= hi:
        return None
    lo_at, hi_at = datetime.combine(lo, datetime.min.time()), datetime.combine(hi, datetime.min.time())
    # the ends' days: their grams lie wholly inside the cut part of the day (a gram reaching into the
    # day before is kept apart), but for those of workflows kept apart
    edge = ('SELECT * FROM tools WHERE "timestamp" >= ? AND "timestamp" < ?')
    apart = ("SELECT DISTINCT workflow_id FROM analysis_ngram_rows WHERE length = ? AND day = ? "
             "AND workflow_id IS NOT NULL")
    live = f"""
        SELECT stage, sequence, workflow_id, ok FROM ({gram_rows(n, edge)}) g
        WHERE g.workflow_id IS NULL OR g.workflow_id NOT IN ({apart})
        UNION ALL
        SELECT stage, sequence, workflow_id, ok FROM ({gram_rows(n, edge)}) g
        WHERE g.workflow_id IS NULL OR g.workflow_id NOT IN ({apart})
        UNION ALL
        SELECT stage, sequence, workflow_id, ok FROM analysis_ngram_rows
        WHERE length = ? AND first_at >= ? AND last_at < ?"""
    rows = f"""
        SELECT stage, sequence, n, ok_true, ok_known, workflows, cost_sum, cost_n, good_sum, good_n
        FROM analysis_ngram_days WHERE length = ? AND day >= ? AND day < ?
        UNION ALL BY NAME {weighed(live)}"""
    params = [n, lo, hi,
              start, lo_at, n, lo - timedelta(days=1),
              hi_at, end, n, hi,
              n, start, end]
    return store.query(_ANSWER.format(rows=rows), params)


def reusable_sequences(store: Store, days: float = 30, now: datetime | None = None, stage: str | None = None,
                       min_support: int | None = None, min_length: int = 2, max_length: int = 4,
                       kinds: tuple[str, ...] = ("tools", "stages"), alpha: float = 0.05,
                       limit: int = 10) -> Reusable:
    """Sequences of ``min_length``..``max_length`` steps in at least ``min_support`` successful workflows
    (default: 3, or 5 % of the successful workflows when more) whose workflows succeed more often than the
    others (q <= ``alpha``). Sub-sequences of a reported sequence with the same support are left out."""
    if not 1 <= min_length <= max_length <= 8:
        raise InvalidInput("lengths must satisfy 1 <= min_length <= max_length <= 8")
    if min_support is not None and min_support < 1:
        raise InvalidInput("min_support must be at least 1")
    if not set(kinds) <= {"tools", "stages"} or not kinds:
        raise InvalidInput("kinds are tools and/or stages")
    if not 0 < alpha <= 1:
        raise InvalidInput("alpha must be in (0, 1]")
    start, end = window(now, days)
    # the workflows looked at: those with a tool call in the window, judged (not still running), numbered
    judged = """
        SELECT o.workflow_id, o.successful, o.total_cost, o.duration_seconds, o.started_at,
               row_number() OVER (ORDER BY o.started_at DESC NULLS LAST, o.workflow_id) - 1 AS idx
        FROM workflow_outcomes o
        WHERE o.successful IS NOT NULL AND o.workflow_id IN (
            SELECT DISTINCT workflow_id FROM tools
            WHERE "timestamp" >= $start AND "timestamp" < $end AND workflow_id IS NOT NULL)"""
    from .snapshot import summaries

    # workflow_outcomes from the cache's rows, not the views' sums (4.5 s at 10M requests)
    with summaries(store) as reader, reader.reader() as cur:
        # judged once: their rows here, and the same table registered for the sequence query (passing 25k ids
        # as a list parameter cost seconds; workflow_outcomes evaluated twice, 0.4 CPU-s at 1M requests)
        judged_rows = cur.execute(judged + " ORDER BY idx", {"start": start, "end": end}).arrow()
        if not isinstance(judged_rows, pa.Table):   # DuckDB 1.4+ returns a reader
            judged_rows = judged_rows.read_all()
        cur.register("golem_judged_workflows", judged_rows)
        return _learn(cur, judged_rows.to_pylist(), start, end, stage, min_support, (min_length, max_length),
                      kinds, alpha, limit)


def _learn(cur: Any, wf: list[dict[str, Any]], start: datetime, end: datetime, stage: str | None,
           min_support: int | None, lengths: tuple[int, int], kinds: tuple[str, ...], alpha: float,
           limit: int) -> Reusable:
    """The sequences of the judged workflows ``wf`` (registered on ``cur`` as golem_judged_workflows)."""
    min_length, max_length = lengths
    lengths_l = list(range(min_length, max_length + 1))
    ok = np.array([bool(r["successful"]) for r in wf], dtype=bool)
    n_all, n_good = len(wf), int(ok.sum())
    n_bad = n_all - n_good
    support = min_support if min_support is not None else max(3, -(-n_good * 5 // 100))
    empty = Reusable(successful_workflows=n_good, failed_workflows=n_bad, min_support=support, lengths=lengths_l,
                     tested=0, sequences=[])
    if n_good < support:
        empty.note = f"{n_good} successful workflow(s) in the window: fewer than min_support {support}"
        return empty
    if n_bad < MIN_FAILED_WITHOUT:
        empty.note = (f"{n_bad} failed workflow(s) in the window: too few (under {MIN_FAILED_WITHOUT}) to tell "
                      "what goes with success")
        return empty
    # one window pass keeps each call's last max_length tool names; every length is a suffix of it
    grams = []
    if "tools" in kinds:
        grams.append(f"""
            SELECT 'tools' AS kind, stage, workflow_id, tail, L FROM (
                SELECT workflow_id, COALESCE(stage, '-') AS stage,
                       list(tool_name) OVER (PARTITION BY workflow_id, stage, session_id, agent_id
                                             ORDER BY "timestamp", tool_use_id
                                             ROWS BETWEEN {max_length - 1} PRECEDING AND CURRENT ROW) AS tail
                FROM tools WHERE "timestamp" >= $start AND "timestamp" < $end AND workflow_id IS NOT NULL
                             AND ($stage IS NULL OR stage = $stage)
            ), (SELECT unnest(range($lo, $hi + 1)) AS L)""")
    if "stages" in kinds and stage is None:
        grams.append(f"""
            SELECT 'stages' AS kind, NULL AS stage, workflow_id, tail, L FROM (
                SELECT workflow_id, list(stage) OVER (PARTITION BY workflow_id ORDER BY started_at, stage
                                                      ROWS BETWEEN {max_length - 1} PRECEDING AND CURRENT ROW) AS tail
                FROM workflow_stage_summary WHERE workflow_id IN (SELECT workflow_id FROM ids)
                                              AND started_at IS NOT NULL
            ), (SELECT unnest(range($lo, $hi + 1)) AS L)""")
    if not grams:
        return empty
    rows = dict_rows(cur, f"""
        WITH ids AS (FROM golem_judged_workflows),
        g AS (SELECT DISTINCT kind, stage, workflow_id, L,
                              array_to_string(tail[len(tail) - L + 1:], '->') AS sequence
              FROM ({' UNION ALL '.join(grams)}) WHERE len(tail) >= L)
        SELECT kind, stage, sequence, L AS length,
               count(*) FILTER (WHERE ids.successful) AS good, count(*) FILTER (WHERE NOT ids.successful) AS bad,
               list(ids.idx ORDER BY ids.idx) AS idx
        FROM g JOIN ids USING (workflow_id)
        GROUP BY ALL HAVING count(*) FILTER (WHERE ids.successful) >= $support""",
        {"lo": min_length, "hi": max_length, "support": support,
         **({"start": start, "end": end, "stage": stage} if "tools" in kinds else {})})
    out, sets = _evidence(rows, wf, ok, alpha)
    out = _condense(out, sets)
    out.sort(key=lambda s: (s.q_value, -s.successful_with, -s.length, s.sequence))
    return Reusable(successful_workflows=n_good, failed_workflows=n_bad, min_support=support, lengths=lengths_l,
                    tested=len(rows), sequences=out[:limit],
                    note=None if out else f"no sequence in {support}+ successful workflows goes with success "
                                          f"({len(rows)} tested)")


def _evidence(rows: list[dict[str, Any]], wf: list[dict[str, Any]], ok: np.ndarray,
              alpha: float) -> tuple[list[ReusableSequence], list[frozenset[int]]]:
    """Test each candidate (one-sided hypergeometric: more successes among its workflows than chance),
    adjust for the number tested and give the kept ones their medians and examples."""
    if not rows:
        return [], []
    n_all, n_good = len(wf), int(ok.sum())
    a = np.array([r["good"] for r in rows])
    n = a + np.array([r["bad"] for r in rows])
    from scipy.stats import hypergeom  # here, not at import: ~60 MB most daemons never need

    p = hypergeom.sf(a - 1, n_all, n_good, n)
    order = np.argsort(p)
    m = len(p)
    q = np.empty(m)
    q[order] = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    q = np.minimum(q, 1.0)
    cost = np.array([np.nan if r["total_cost"] is None else float(r["total_cost"]) for r in wf])
    dur = np.array([np.nan if r["duration_seconds"] is None else float(r["duration_seconds"]) for r in wf])
    overall = n_good / n_all
    out, sets = [], []
    for i, r in enumerate(rows):
        without = n_all - n[i]
        if without == 0 or q[i] > alpha or (n_all - n_good) - (n[i] - a[i]) < MIN_FAILED_WITHOUT:
            continue
        rate_with, rate_without = a[i] / n[i], (n_good - a[i]) / without
        if rate_with <= rate_without:
            continue
        mask = np.zeros(n_all, dtype=bool)
        mask[r["idx"]] = True
        out.append(ReusableSequence(
            kind=r["kind"], stage=r["stage"], sequence=r["sequence"], length=r["length"],
            successful_with=int(a[i]), successful_total=n_good, failed_with=int(n[i] - a[i]),
            failed_total=n_all - n_good, with_success_rate=round(float(rate_with), 3),
            without_success_rate=round(float(rate_without), 3), lift=round(float(rate_with / overall), 3),
            p_value=float(f"{p[i]:.3g}"), q_value=float(f"{q[i]:.3g}"),
            median_cost_with_usd=_median(cost[mask]), median_cost_without_usd=_median(cost[~mask]),
            median_duration_with_seconds=_median(dur[mask]), median_duration_without_seconds=_median(dur[~mask]),
            examples=[wf[j]["workflow_id"] for j in sorted(r["idx"]) if ok[j]][:EXAMPLES]))
        sets.append(frozenset(r["idx"]))
    return out, sets


def _median(v: np.ndarray) -> float | None:
    v = v[~np.isnan(v)]
    return round(float(np.median(v)), 6) if len(v) else None


def _condense(seqs: list[ReusableSequence], sets: list[frozenset[int]]) -> list[ReusableSequence]:
    """Leave out a sequence when a longer one containing it is in the same workflows, and join sequences
    that overlap (one's last steps are the other's first) and are in exactly the same workflows into one
    chain: fixed steps around a planted or habitual run otherwise show as several shifted windows."""
    def steps(s: ReusableSequence) -> list[str]:
        return s.sequence.split("->")

    def inside(a: list[str], b: list[str]) -> bool:
        return len(a) < len(b) and any(b[k:k + len(a)] == a for k in range(len(b) - len(a) + 1))

    groups: dict[tuple[str, str | None, frozenset[int]], list[ReusableSequence]] = {}
    for s, w in zip(seqs, sets, strict=True):
        groups.setdefault((s.kind, s.stage, w), []).append(s)
    out: list[ReusableSequence] = []
    for group in groups.values():
        kept = sorted((s for s in group if not any(inside(steps(s), steps(o)) for o in group)),
                      key=lambda s: s.sequence)
        merged = True
        while merged:
            merged = False
            for a in kept:
                for b in kept:
                    sa, sb = steps(a), steps(b)
                    k = min(len(sa), len(sb)) - 1   # all but one step of the shorter: a's end is b's start
                    if (a is not b and k >= 1 and sa[len(sa) - k:] == sb[:k]
                            and not inside(sb, sa) and not inside(sa, sb)):
                        chain = sa + sb[k:]
                        best = a if a.q_value <= b.q_value else b
                        kept = [s for s in kept if s is not a and s is not b]
                        kept.append(best.model_copy(update={"sequence": "->".join(chain), "length": len(chain)}))
                        merged = True
                        break
                if merged:
                    break
        out += kept
    return out
