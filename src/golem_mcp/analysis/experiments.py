"""Experiment arms compared on a metric, as seed 000's hypothesis process asks.

Unit of analysis: one workflow (its whole run, or one stage of it). Per arm: n, mean, median, sd.
Each arm against the baseline arm: the difference of means with a bootstrap confidence interval
(scipy, percentile method, seeded so answers repeat; a Welch interval past ``BOOTSTRAP_MAX_N``
workflows, where the bootstrap costs gigabytes and the central limit theorem holds), a two-sided
Mann-Whitney U test (exact for small samples, no normality assumed: token counts are skewed),
Cliff's delta and the relative change.
Guardrails (errors, review findings) are compared the same way.

Verdict:
- ``confirmed``: p < alpha, the CI excludes 0, the change goes the expected way (if one was given),
  no guardrail got significantly worse, and every arm has at least ``min_runs`` workflows;
- ``rejected``: enough runs and either no significant difference or the wrong direction or a worse
  guardrail;
- ``inconclusive``: too few runs; ``more_runs_needed`` says how many more per arm (the larger of
  what ``min_runs`` asks and a normal-approximation power estimate for the observed effect).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound
from ..formatting import p_value
from ..store.db import Store
from . import known
from .common import rounded

# metric -> (expression over workflow_stage_summary / workflow_summary, which table may give it)
METRICS: dict[str, str] = {
    "tokens": "input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cost": "total_cost",
    "duration": "duration_seconds",
    "errors": "error_count",
    "requests": "api_requests",
    "tool_calls": "tool_calls",
    "review_findings": "critical_issues + major_issues + minor_issues",
}
WORKFLOW_ONLY = {"review_findings"}
Values = list[float] | np.ndarray  # one value per workflow of an arm
GUARDRAILS = ("errors", "review_findings")


def metrics_values(store: Store, metrics: list[str], stage: str | None,
                   arms: list[str] | None) -> dict[str, dict[str, np.ndarray]]:
    """metric -> experiment arm -> one value per workflow, ascending; each summary read once
    for all the metrics it gives (a metric and its guardrails: three scans of 250k workflows were most
    of a comparison at 10M requests)."""
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise InvalidInput(f"unknown metric {bad[0]!r}; choose from {', '.join(METRICS)}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for staged in (True, False):
        ms = [m for m in metrics if bool(stage and m not in WORKFLOW_ONLY) == staged]
        if not ms:
            continue
        # one row per workflow either way: the stage summary has one per workflow and stage (its
        # groups' key), so one stage's rows need no GROUP BY (250,000 string keys at 10M requests)
        cols = ", ".join(f"CAST(COALESCE({METRICS[m]}, 0) AS DOUBLE) AS v{i}" for i, m in enumerate(ms))
        src, params = ("workflow_stage_summary WHERE stage = ? AND", [stage]) if staged else ("workflow_summary WHERE", [])
        # the values as numpy columns, each row with its arm (an arm's values are its rows): a list per
        # arm made a Python float of every value (1.5M at 10M requests; with each list's own sort,
        # ~0.45 CPU-s). One scan, in no order: the arms' names come from the arm column, dictionary-
        # encoded by Arrow (a DISTINCT first read the summary twice), and each arm's values are sorted
        # here, which makes them the same from one read to the next (ordering 250,000 workflows by id
        # in SQL took ~50 ms) and is the order the rank test wants
        with store.reader() as cur:
            got = cur.execute(f"SELECT experiment_id, {cols} FROM {src} experiment_id IS NOT NULL "
                              "AND (? IS NULL OR list_contains(?, experiment_id))",
                              [*params, arms or None, arms or None]).to_arrow_table()
        arm = got.column("experiment_id").combine_chunks().dictionary_encode()
        codes = arm.indices.to_numpy(zero_copy_only=False)
        rows = {name: codes == k for k, name in sorted(enumerate(arm.dictionary.to_pylist()), key=lambda kn: kn[1])}
        for i, m in enumerate(ms):
            v = got.column(f"v{i}").to_numpy()
            out[m] = {name: np.sort(v[at]) for name, at in rows.items()}
    return out


def known_arms(store: Store) -> list[str]:
    return [r["experiment_id"] for r in store.query(
        "SELECT experiment_id, count(*) AS n FROM workflow_summary WHERE experiment_id IS NOT NULL "
        "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 20")]


def _describe(v: Values) -> dict[str, Any]:
    a = np.asarray(v, dtype=float)
    return {"n": int(a.size), "mean": float(a.mean()) if a.size else None,
            "median": float(np.median(a)) if a.size else None,
            "sd": float(a.std(ddof=1)) if a.size > 1 else None,
            "min": float(a.min()) if a.size else None, "max": float(a.max()) if a.size else None}


def _stats() -> Any:
    """``scipy.stats``, imported when a comparison first needs it: it is ~60 MB of the daemon's memory,
    and most daemons never compare arms."""
    from scipy import stats

    return stats


def _cliffs_delta(x: np.ndarray, y: np.ndarray, u_x: float | None = None) -> float:
    """P(x > y) - P(x < y): rank-based effect size, -1..1, robust to skew.

    From the Mann-Whitney U of x (pairs x > y, ties counting one half): #gt - #lt = 2U - n*m. The
    pairwise comparison it replaces needed n*m booleans: 2.5 GB for two arms of 25,000 workflows."""
    if u_x is None:
        u_x = float(_stats().mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic)
    return float((2 * u_x - x.size * y.size) / (x.size * y.size))


# Up to this many workflows in both arms together the CI of the difference of means is a percentile
# bootstrap (no normality assumed, 4,000 resamples); past it the bootstrap's resample matrix grows
# to gigabytes and seconds, and the means are normal enough by the central limit theorem that a
# Welch interval agrees with it: that is used instead (``ci_method`` says which).
BOOTSTRAP_MAX_N = 4000


def _runs_for_power(x: np.ndarray, y: np.ndarray, alpha: float, power: float = 0.8) -> int | None:
    """Runs per arm a two-sample test needs for the observed standardized effect (normal approx.)."""
    sd = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2) if x.size > 1 and y.size > 1 else 0.0
    diff = abs(x.mean() - y.mean())
    if diff == 0:
        return None  # no effect seen: no number of runs will show one
    if sd == 0:
        return 2
    d = diff / sd
    z = _stats().norm.ppf(1 - alpha / 2) + _stats().norm.ppf(power)
    # Mann-Whitney's efficiency relative to the t-test is about 0.955 (3/pi) for normal data
    return math.ceil(2 * (z / d) ** 2 / (3 / math.pi))


def _welch_ci(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float]:
    """Confidence interval of mean(x) - mean(y), unequal variances (Welch-Satterthwaite df)."""
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    se = math.sqrt(vx + vy)
    if se == 0:
        return diff, diff
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    half = float(_stats().t.ppf(1 - alpha / 2, df)) * se
    return diff - half, diff + half


def _compare(base: Values, other: Values, alpha: float) -> dict[str, Any]:
    x, y = np.asarray(other, dtype=float), np.asarray(base, dtype=float)
    out: dict[str, Any] = {"difference": float(x.mean() - y.mean()),
                           "relative_change": float((x.mean() - y.mean()) / y.mean()) if y.mean() else None}
    if x.size < 2 or y.size < 2:
        out.update({"ci_low": None, "ci_high": None, "ci_method": None, "p_value": None, "test": None,
                    "cliffs_delta": None})
        return out
    if np.all(np.concatenate([x, y]) == x[0]):
        out.update({"ci_low": 0.0, "ci_high": 0.0, "ci_method": None, "p_value": 1.0, "test": "none: all values equal",
                    "cliffs_delta": 0.0})
        return out
    # on the values sorted: the ranks, U and the tie counts are the same in any order (U is a sum of
    # halves, exact), and ranking two sorted runs is a merge, not a sort of both arms (~60 CPU-ms a
    # test at 250,000 workflows per arm). (metrics_values gives them sorted: sorting again is a pass.)
    sx, sy = np.sort(x, kind="stable"), np.sort(y, kind="stable")  # (a sorted run: one pass)
    res = _stats().mannwhitneyu(sx, sy, alternative="two-sided", method="auto")
    if x.size + y.size <= BOOTSTRAP_MAX_N:
        boot = _stats().bootstrap((x, y), lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                               confidence_level=1 - alpha, n_resamples=4000, method="percentile",
                               vectorized=True, rng=np.random.default_rng(12345))
        lo, hi = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
        ci_method = "bootstrap, percentile, 4000 resamples"
    else:
        lo, hi = _welch_ci(x, y, alpha)
        ci_method = f"Welch t (more than {BOOTSTRAP_MAX_N} workflows)"
    both = np.concatenate([sx, sy])
    both.sort(kind="stable")  # two sorted runs: a merge
    ties = bool((both[1:] == both[:-1]).any())
    how = "normal approximation (ties)" if ties or max(x.size, y.size) > 8 else "exact"
    out.update({"ci_low": lo, "ci_high": hi, "ci_method": ci_method,
                "p_value": float(res.pvalue), "test": f"Mann-Whitney U, two-sided, {how}",
                "cliffs_delta": _cliffs_delta(x, y, float(res.statistic))})
    return out


def compare_experiments(store: Store, metric: str = "tokens", stage: str | None = None,
                        arms: list[str] | None = None, baseline: str | None = None,
                        expected: str | None = None, alpha: float = 0.05, min_runs: int = 10) -> dict[str, Any]:
    """Compare experiment arms on a metric; see the module docstring for the method and verdict."""
    if expected not in (None, "decrease", "increase"):
        raise InvalidInput("expected must be 'decrease', 'increase' or omitted")
    if not 0 < alpha < 0.5:
        raise InvalidInput("alpha must be between 0 and 0.5 (e.g. 0.05)")
    if min_runs < 2:
        raise InvalidInput("min_runs must be at least 2")
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    from .snapshot import summaries

    with summaries(store) as reader:  # it reads the summary views only, several times
        return _compare_arms(reader, metric, stage, arms, baseline, expected, alpha, min_runs)


def _compare_arms(store: Store, metric: str, stage: str | None, arms: list[str] | None, baseline: str | None,
                  expected: str | None, alpha: float, min_runs: int) -> dict[str, Any]:
    every = metrics_values(store, list(dict.fromkeys([metric, *GUARDRAILS])), stage, arms)
    values = every[metric]
    if arms:
        missing = [a for a in arms if a not in values]
        if missing:
            raise NotFound(f"no workflows for arm(s) {', '.join(missing)}"
                           + (f" at stage {stage!r}" if stage else "")
                           + f"; known experiment arms: {', '.join(known_arms(store)) or 'none yet'}")
    order = list(arms) if arms else sorted(values, key=lambda a: (-len(values[a]), a))
    if len(order) < 2:
        raise InvalidInput(f"need at least two experiment arms with data; known: "
                           f"{', '.join(known_arms(store)) or 'none'}. "
                           "Tag workflows with experiment_id (record_workflow or OTEL_RESOURCE_ATTRIBUTES).")
    base = baseline or ("baseline" if "baseline" in order else order[0])
    if base not in values:
        raise NotFound(f"baseline arm {base!r} has no data; arms: {', '.join(order)}")
    per_arm = {a: _describe(values[a]) for a in order}
    comparisons = []
    for arm in order:
        if arm == base:
            continue
        c = {"arm": arm, "vs": base, **_compare(values[base], values[arm], alpha)}
        guard = {}
        for g in GUARDRAILS:
            gv = every[g]  # (the arms' values are the same whichever other arms are read with them)
            if base in gv and arm in gv:
                gc = _compare(gv[base], gv[arm], alpha)
                guard[g] = {"baseline_mean": float(np.mean(gv[base])), "arm_mean": float(np.mean(gv[arm])),
                            "difference": gc["difference"], "p_value": gc["p_value"],
                            "worse": bool(gc["difference"] > 0 and gc["p_value"] is not None
                                          and gc["p_value"] < alpha)}
        c["guardrails"] = guard
        c.update(_verdict(c, values[base], values[arm], alpha, min_runs, expected))
        comparisons.append(c)
    return {"metric": metric, "stage": stage, "unit": "one workflow" + (f" (stage {stage})" if stage else ""),
            "baseline": base, "alpha": alpha, "min_runs": min_runs, "arms": per_arm, "comparisons": comparisons}


def _verdict(c: dict[str, Any], base: Values, arm: Values, alpha: float, min_runs: int,
             expected: str | None) -> dict[str, Any]:
    n = min(len(base), len(arm))
    p, lo, hi = c["p_value"], c["ci_low"], c["ci_high"]
    significant = p is not None and p < alpha and lo is not None and (lo > 0 or hi < 0)
    direction_ok = expected is None or (expected == "decrease" and c["difference"] < 0) or (
        expected == "increase" and c["difference"] > 0)
    guard_worse = [g for g, v in c.get("guardrails", {}).items() if v.get("worse")]
    power_n = _runs_for_power(np.asarray(arm, float), np.asarray(base, float), alpha) if n >= 2 else None
    needed = max(min_runs, power_n or 0) if not significant else min_runs
    more = max(0, needed - n)
    pct = f"{c['relative_change']:+.0%}" if c.get("relative_change") is not None else "n/a"
    pv = p_value(p) if p is not None else "no test (fewer than 2 runs)"
    if n >= min_runs and guard_worse:
        return {"verdict": "rejected", "more_runs_needed": 0,
                "reason": f"guardrail(s) got worse: {', '.join(guard_worse)}"}
    if significant and direction_ok and n >= min_runs:
        return {"verdict": "confirmed", "more_runs_needed": 0,
                "reason": f"{pct} vs {c['vs']}, {pv}, CI excludes 0, {n}+ runs per arm"}
    if n >= min_runs and not significant and power_n is not None and power_n > n and more > 0:
        return {"verdict": "inconclusive", "more_runs_needed": more,
                "reason": f"{pct}, {pv}: not significant yet; about {needed} runs per arm would show this effect"}
    if n >= min_runs:
        why = "the change goes the other way" if significant and not direction_ok else f"no significant difference ({pv})"
        return {"verdict": "rejected", "more_runs_needed": 0, "reason": why}
    what = "significant" if significant else "not significant"
    return {"verdict": "inconclusive", "more_runs_needed": more,
            "reason": f"{pct} vs {c['vs']}, {pv} ({what}), but only {n} runs per arm; the hypothesis process asks "
                      f"for at least {min_runs}: run {more} more per arm"}


# --- the answer agents get ------------------------------------------------------------------------

class ArmStats(BaseModel):
    n: int = Field(description="workflows in the arm")
    mean: float | None = None
    median: float | None = None
    sd: float | None = None
    min: float | None = None
    max: float | None = None


class Guardrail(BaseModel):
    baseline_mean: float
    arm_mean: float
    difference: float
    p_value: float | None = None
    worse: bool = Field(description="significantly worse in the arm")


class Comparison(BaseModel):
    arm: str
    vs: str = Field(description="the baseline arm")
    difference: float = Field(description="mean(arm) - mean(baseline)")
    relative_change: float | None = Field(None, description="difference / mean(baseline)")
    ci_low: float | None = Field(None, description="confidence interval of the difference")
    ci_high: float | None = None
    ci_method: str | None = None
    p_value: float | None = Field(None, description="two-sided Mann-Whitney U")
    test: str | None = None
    cliffs_delta: float | None = Field(None, description="effect size -1..1")
    guardrails: dict[str, Guardrail] = Field(default_factory=dict)
    verdict: Literal["confirmed", "rejected", "inconclusive"]
    more_runs_needed: int = Field(description="more workflows per arm before a verdict (0 = enough)")
    reason: str


class ExperimentAnswer(BaseModel):
    summary: str
    experiment_id: str | None = Field(None, description="the stored definition the defaults came from")
    hypothesis: str | None = None
    metric: str
    stage: str | None = None
    unit: str = Field(description="what one observation is")
    baseline: str
    alpha: float
    min_runs: int
    arms: dict[str, ArmStats]
    comparisons: list[Comparison]


def _round_tree(v: Any, key: str = "") -> Any:
    if isinstance(v, dict):
        return {k: _round_tree(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_round_tree(x, key) for x in v]
    return rounded(key, v)


def compare_by_definition(store: Store, metric: str | None = None, stage: str | None = None,
                          arms: list[str] | None = None, baseline: str | None = None,
                          expected: str | None = None, alpha: float | None = None, min_runs: int | None = None,
                          experiment_id: str | None = None) -> ExperimentAnswer:
    """:func:`compare_experiments` with the defaults of a stored definition (``experiment_id``), if named."""
    from .experiment_defs import get_experiment

    known.require(store, "stage", stage)
    for a in arms or []:
        known.require(store, "experiment_id", a)
    d = get_experiment(store, experiment_id) if experiment_id else {}
    pct = d.get("expected_change_pct")
    out = compare_experiments(
        store, metric or d.get("metric") or "tokens", stage or d.get("stage"), arms or d.get("arms"),
        baseline or (d["arms"][0] if d else None),
        expected or d.get("expected") or (None if pct is None else "decrease" if pct < 0 else "increase"),
        alpha or d.get("alpha") or 0.05, min_runs or d.get("min_runs_per_arm") or 10)
    if d:
        out = {**out, "experiment_id": d["experiment_id"], "hypothesis": d["hypothesis"]}
    verdicts = "; ".join(f"{c['arm']} vs {c['vs']}: {c['verdict']} ({c['reason']})" for c in out["comparisons"])
    return ExperimentAnswer.model_validate({**_round_tree(out), "summary": f"{out['metric']}: {verdicts}"})
