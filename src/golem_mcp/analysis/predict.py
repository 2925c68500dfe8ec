"""Cost prediction and model advice from history (seed 002's model recommendation, seed 004's cost
prediction): an estimate with a range and its sample size, never a guess without data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..store.db import Store
from .common import window


class StageEstimate(BaseModel):
    stage: str
    p50_usd: float
    runs: int


class CostPrediction(BaseModel):
    matched_workflows: int = Field(description="past workflows with the same path/complexity/model")
    expected_usd: float | None = Field(default=None, description="median cost of the matched workflows")
    low_usd: float | None = Field(default=None, description="10th percentile")
    high_usd: float | None = Field(default=None, description="90th percentile")
    by_stage: list[StageEstimate] = Field(default_factory=list)
    note: str | None = None


FULL_PATH_STAGES = ("analyst", "planner")  # the stages a fast-track workflow skips
# a workflow without a recorded path gets the one its stages show: analyst and planner ran = full
# (a CTE ``ip``: workflow_id, inferred_path; its parameters are FULL_PATH_STAGES). Only those
# workflows' stages are grouped: grouping every workflow's was most of predict_cost's cost.
INFERRED_PATH = """ip AS (SELECT workflow_id, CASE WHEN count(DISTINCT stage) FILTER (WHERE stage IN (?, ?)) = 2
                                        THEN 'full' ELSE 'fast-track' END AS inferred_path
               FROM workflow_stage_summary
               WHERE workflow_id IN (SELECT workflow_id FROM workflow_summary WHERE workflow_path IS NULL)
               GROUP BY 1)"""


def predict_cost(store: Store, path: str | None = None, complexity: str | None = None, model: str | None = None,
                 days: float = 90, now: datetime | None = None, min_samples: int = 3) -> CostPrediction:
    """Expected cost of a workflow like this one, from the last ``days`` of history.

    ``model`` keeps workflows where some stage ran mostly on that model.
    """
    start, end = window(now, days)
    if model is None:
        # the summary views only (no request rows): on a store, from the analysis snapshot
        from .snapshot import CacheReader, summaries

        with summaries(store) as reader:
            return _predict(reader, start, end, "", [], path, complexity, min_samples,
                            stage_rows=isinstance(reader, CacheReader))
    models = """sm AS (SELECT workflow_id, stage, mode(model) AS model FROM requests
                    WHERE "timestamp" >= ? AND "timestamp" < ? AND workflow_id IS NOT NULL GROUP BY 1, 2),"""
    return _predict(store, start, end, models, [start, end], path, complexity, min_samples, model)


# The matched workflows' stage runs from the cache's stage summaries (``stage_rows``), which carry their
# workflow's recorded path, complexity and start (snapshot._STAGE_WORKFLOW_COLS): the runs of workflows with
# a recorded path are filtered, only those without one are joined with their inferred path. The same
# runs as joining the stage summary with ``w`` below: a workflow's cost is NULL only when each of its
# stages' is, and those are left out either way. Parameters: FULL_PATH_STAGES, then (start, end, path,
# path, complexity, complexity) twice.
_MATCHED_STAGE_RUNS = f"""
    WITH {INFERRED_PATH}
    SELECT stage, total_cost FROM analysis_stage_summary
    WHERE wf_started_at >= ? AND wf_started_at < ? AND (? IS NULL OR wf_path = ?) AND (? IS NULL OR wf_complexity = ?)
    UNION ALL
    SELECT ss.stage, ss.total_cost FROM analysis_stage_summary ss JOIN ip USING (workflow_id)
    WHERE ss.wf_path IS NULL AND ss.wf_started_at >= ? AND ss.wf_started_at < ? AND ? IS NOT NULL
      AND ip.inferred_path = ? AND (? IS NULL OR ss.wf_complexity = ?)"""


def _predict(store: Store, start: datetime, end: datetime, models: str, model_params: list[Any], path: str | None,
             complexity: str | None, min_samples: int, model: str | None = None,
             stage_rows: bool = False) -> CostPrediction:
    by_model = " AND s.workflow_id IN (SELECT workflow_id FROM sm WHERE model = ?)" if models else ""
    # the workflows with a recorded path filtered, those without one joined with the path their stages
    # show (a LEFT JOIN of every workflow with the few inferred paths cost ~15 CPU-ms at 10M for none)
    wf = f"""
        WITH {models}
        {INFERRED_PATH},
        w AS (SELECT s.workflow_id, s.total_cost FROM workflow_summary s
              WHERE s.started_at >= ? AND s.started_at < ? AND s.total_cost IS NOT NULL
                AND (? IS NULL OR s.workflow_path = ?) AND (? IS NULL OR s.complexity_assessment = ?){by_model}
              UNION ALL
              SELECT s.workflow_id, s.total_cost FROM workflow_summary s JOIN ip USING (workflow_id)
              WHERE s.workflow_path IS NULL AND s.started_at >= ? AND s.started_at < ? AND s.total_cost IS NOT NULL
                AND ? IS NOT NULL AND ip.inferred_path = ? AND (? IS NULL OR s.complexity_assessment = ?){by_model})"""
    match = [start, end, path, path, complexity, complexity, *([model] if models else [])]
    p = [*model_params, *FULL_PATH_STAGES, *match, *match]
    # the three quantiles in one aggregate: one selection over the matched costs, not three (~20 CPU-ms at 10M)
    r = store.query(wf + """
        SELECT count(*) AS n, quantile_cont(total_cost, [0.5, 0.1, 0.9]) AS q FROM w""", p)[0]
    r["p50"], r["p10"], r["p90"] = r["q"] or (None, None, None)
    if r["n"] < min_samples:
        return CostPrediction(matched_workflows=r["n"],
                              note=f"only {r['n']} past workflow(s) match; need {min_samples} for an estimate "
                                   "(loosen path/complexity/model)")
    if stage_rows:
        match = [start, end, path, path, complexity, complexity]
        runs, runs_params = f"WITH ss AS ({_MATCHED_STAGE_RUNS})", [*FULL_PATH_STAGES, *match, *match]
    else:
        runs, runs_params = wf + ", ss AS (SELECT ss.* FROM workflow_stage_summary ss JOIN w USING (workflow_id))", p
    stages = store.query(runs + """
        SELECT stage, quantile_cont(total_cost, 0.5) AS p50_usd, count(*) AS runs FROM ss
        WHERE total_cost IS NOT NULL  -- a stage of unpriced requests only has no cost to estimate from
        GROUP BY 1 ORDER BY p50_usd DESC""", runs_params)
    return CostPrediction(matched_workflows=r["n"], expected_usd=round(r["p50"], 4), low_usd=round(r["p10"], 4),
                          high_usd=round(r["p90"], 4), by_stage=[StageEstimate(**s) for s in stages])


class ModelRun(BaseModel):
    model: str
    runs: int
    avg_cost_usd: float
    findings_per_run: float = Field(description="critical + major review findings of the workflow")
    error_rate: float = Field(description="errors per operation in the stage")
    rework_rate: float


class ModelAdvice(BaseModel):
    stage: str
    current_model: str = Field(description="the most used model for this stage")
    suggested_model: str | None = Field(default=None, description="a cheaper model that did as well, when one did")
    saving_pct: float | None = None
    verdict: str = Field(description="'switch', 'keep: cheaper model did worse' or 'not enough data'")
    evidence: list[ModelRun]


def model_advice(store: Store, days: float = 90, now: datetime | None = None, min_runs: int = 3,
                 findings_tolerance: float = 0.25, error_tolerance: float = 0.05) -> list[ModelAdvice]:
    """Per stage: did a cheaper model do as well (findings, errors, rework) in past runs?"""
    from .snapshot import MODEL_ADVICE_DAYS, CacheReader, SnapshotReader, summaries

    start, end = window(now, days)
    if days == MODEL_ADVICE_DAYS and not isinstance(store, SnapshotReader | CacheReader):
        # the cache's summaries up to the same end have the usual model per stage for this very window
        with summaries(store, now=end) as reader:
            if getattr(reader, "stage_models_window", None) == (start, end):
                return model_advice(reader, days, end, min_runs, findings_tolerance, error_tolerance)
        # (a snapshot for another window would hold too few request rows: the views below then)
    if getattr(store, "stage_models_window", None) == (start, end):
        # an analysis run's snapshot has each workflow stage with its usual model for this very window
        src, params = "stage_model_runs", []
    else:
        # the most used model; a tie goes to the first name (mode() alone picks either)
        src, params = ("(SELECT workflow_id, stage, sm.model, ss.total_cost, ss.error_count, ss.tool_calls, "
                        "ss.api_requests FROM workflow_stage_summary ss JOIN "
                        "(SELECT workflow_id, stage, first(model ORDER BY n DESC, model) AS model FROM "
                        "(SELECT workflow_id, stage, model, count(*) AS n FROM requests "
                        'WHERE "timestamp" >= ? AND "timestamp" < ? AND workflow_id IS NOT NULL AND model IS NOT NULL '
                        "GROUP BY ALL) GROUP BY 1, 2) sm USING (workflow_id, stage))"), [start, end]
    # per run, the workflow's findings and rework: a workflow with neither adds nothing to their sums,
    # so only the workflows with some are joined (joining every stage run with every workflow was
    # most of the advice's cost); the means are their sums over all the runs
    rows = store.query(f"""
        SELECT ss.stage, ss.model, count(*) AS runs, avg(ss.total_cost) AS avg_cost_usd,
               COALESCE(sum(w.findings), 0) / count(*) AS findings_per_run,
               sum(ss.error_count) / NULLIF(sum(ss.tool_calls + ss.api_requests), 0) AS error_rate,
               COALESCE(sum(w.rework), 0) / count(*) AS rework_rate
        FROM {src} ss LEFT JOIN (
            SELECT workflow_id, COALESCE(critical_issues, 0) + COALESCE(major_issues, 0) AS findings,
                   CAST(COALESCE(rework, false) AS INTEGER) AS rework
            FROM workflow_summary WHERE COALESCE(critical_issues, 0) + COALESCE(major_issues, 0) <> 0 OR rework) w
          USING (workflow_id)
        WHERE ss.model IS NOT NULL GROUP BY 1, 2 ORDER BY 1, runs DESC""", params)
    by_stage: dict[str, list[ModelRun]] = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(ModelRun(model=r["model"], runs=r["runs"],
                                                            avg_cost_usd=r["avg_cost_usd"] or 0.0,
                                                            findings_per_run=r["findings_per_run"] or 0.0,
                                                            error_rate=r["error_rate"] or 0.0,
                                                            rework_rate=r["rework_rate"] or 0.0))
    out = []
    for stage, runs in by_stage.items():
        if len(runs) < 2:
            continue
        current = max(runs, key=lambda m: (m.runs, m.avg_cost_usd))
        cheaper = [m for m in runs if m.avg_cost_usd < current.avg_cost_usd and m.model != current.model]
        if current.runs < min_runs or not cheaper or all(m.runs < min_runs for m in cheaper):
            out.append(ModelAdvice(stage=stage, current_model=current.model, verdict="not enough data", evidence=runs))
            continue
        good = [m for m in cheaper if m.runs >= min_runs
                and m.findings_per_run <= current.findings_per_run + findings_tolerance
                and m.error_rate <= current.error_rate + error_tolerance
                and m.rework_rate <= current.rework_rate + 0.1]
        if good:
            best = min(good, key=lambda m: m.avg_cost_usd)
            out.append(ModelAdvice(stage=stage, current_model=current.model, suggested_model=best.model,
                                   saving_pct=round(100 * (1 - best.avg_cost_usd / current.avg_cost_usd), 1),
                                   verdict="switch", evidence=runs))
        else:
            out.append(ModelAdvice(stage=stage, current_model=current.model,
                                   verdict="keep: cheaper model did worse", evidence=runs))
    return out


class PathCost(BaseModel):
    path: str = Field(description="fast-track or full (recorded, else inferred from the stages that ran)")
    workflows: int
    inferred: int = Field(description="of those, workflows whose path was inferred, not recorded")
    avg_cost_usd: float | None = Field(description="mean cost per workflow")
    median_cost_usd: float | None
    avg_tokens: float | None = Field(description="mean tokens per workflow (input + output + cache)")
    median_duration_seconds: float | None


def compare_paths(store: Store, days: float = 30, now: datetime | None = None) -> list[PathCost]:
    """Cost, tokens and duration per workflow on the fast-track and the full path, for workflows started
    in the last ``days``.

    Example: ``compare_paths(store, 30)[0].avg_cost_usd`` -> ``0.42``
    """
    start, end = window(now, days)
    from .snapshot import summaries

    with summaries(store) as reader:
        rows = reader.query(f"""
            WITH {INFERRED_PATH}
            SELECT COALESCE(s.workflow_path, ip.inferred_path) AS path, count(*) AS workflows,
                   count(*) FILTER (WHERE s.workflow_path IS NULL) AS inferred,
                   avg(s.total_cost) AS avg_cost_usd, quantile_cont(s.total_cost, 0.5) AS median_cost_usd,
                   avg(s.total_tokens) AS avg_tokens,
                   quantile_cont(s.duration_seconds, 0.5) AS median_duration_seconds
            FROM workflow_summary s LEFT JOIN ip USING (workflow_id)
            WHERE s.started_at >= ? AND s.started_at < ?
            GROUP BY 1 ORDER BY 1""", [*FULL_PATH_STAGES, start, end])
    return [PathCost(**r) for r in rows]
