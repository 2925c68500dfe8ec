"""The statistics behind compare_experiments, at the sizes a busy user reaches (tens of thousands of
workflows per arm), against their textbook definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from golem_mcp.analysis import experiments


def test_cliffs_delta_from_u_equals_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(3)
    for n, m in ((1, 1), (5, 9), (200, 150)):
        x = rng.integers(0, 12, n).astype(float)  # many ties
        y = rng.integers(2, 14, m).astype(float)
        pairwise = ((x[:, None] > y[None, :]).sum() - (x[:, None] < y[None, :]).sum()) / (n * m)
        assert experiments._cliffs_delta(x, y) == pytest.approx(pairwise, abs=1e-12)


def test_welch_interval_agrees_with_the_bootstrap_where_both_apply() -> None:
    rng = np.random.default_rng(5)
    x = rng.lognormal(10, 0.8, 1800)   # skewed, like token counts
    y = rng.lognormal(10.1, 0.8, 1900)
    boot = stats.bootstrap((x, y), lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                           confidence_level=0.95, n_resamples=4000, method="percentile", vectorized=True,
                           rng=np.random.default_rng(1)).confidence_interval
    lo, hi = experiments._welch_ci(x, y, 0.05)
    width = boot.high - boot.low
    assert abs(lo - boot.low) < 0.05 * width and abs(hi - boot.high) < 0.05 * width


def test_large_arms_are_compared_without_pairwise_matrices() -> None:
    rng = np.random.default_rng(7)
    base = rng.lognormal(11, 0.5, 60_000)          # 60,000 x 54,000 pairs: 3.2 GB as booleans before
    arm = rng.lognormal(11, 0.5, 54_000) * 0.9     # a 10% cut
    out = experiments._compare(list(base), list(arm), 0.05)
    assert out["ci_method"].startswith("Welch")
    true_diff = arm.mean() - base.mean()
    assert out["ci_low"] < true_diff < out["ci_high"] < 0
    assert out["p_value"] < 1e-6 and -0.3 < out["cliffs_delta"] < -0.05
    small = experiments._compare(list(base[:50]), list(arm[:60]), 0.05)
    assert small["ci_method"].startswith("bootstrap")


def test_a_metric_and_its_guardrails_read_together_as_each_alone(store) -> None:
    """metrics_values reads each summary once for several metrics: each metric's values per arm are
    what it gives alone, for whole workflows and for one stage (review findings stay per workflow)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import EFFECTS, generate

    generate(store, set(EFFECTS))
    ms = list(experiments.METRICS)
    for stage in (None, "implementer"):
        together = experiments.metrics_values(store, ms, stage, None)
        for m in ms:
            alone = experiments.metrics_values(store, [m], stage, None)[m]
            # (float sums of the views may come in another order from one read to the next)
            assert together[m].keys() == alone.keys() and len(alone) == 2, (m, stage)
            assert all(together[m][a] == pytest.approx(alone[a], rel=1e-12) for a in alone), (m, stage)
    assert experiments.metrics_values(store, ["tokens", "errors"], "implementer", ["arm-a"])["errors"].keys() == {"arm-a"}


def _old_metrics_values(store, metrics: list[str], stage: str | None, arms: list[str] | None) -> dict:
    """metrics_values as it was: a list per arm, ordered by workflow in SQL (the reference)."""
    out: dict = {}
    for staged in (True, False):
        ms = [m for m in metrics if bool(stage and m not in experiments.WORKFLOW_ONLY) == staged]
        if not ms:
            continue
        if staged:
            cols = ", ".join(f"sum({experiments.METRICS[m]}) AS v{i}" for i, m in enumerate(ms))
            sql = (f"SELECT experiment_id, workflow_id, {cols} FROM workflow_stage_summary WHERE stage = ? "
                   "AND experiment_id IS NOT NULL AND (? IS NULL OR list_contains(?, experiment_id)) GROUP BY 1, 2")
            params: list = [stage]
        else:
            cols = ", ".join(f"{experiments.METRICS[m]} AS v{i}" for i, m in enumerate(ms))
            sql = (f"SELECT experiment_id, workflow_id, {cols} FROM workflow_summary "
                   "WHERE experiment_id IS NOT NULL AND (? IS NULL OR list_contains(?, experiment_id))")
            params = []
        lists = ", ".join(f"list(CAST(COALESCE(v{i}, 0) AS DOUBLE) ORDER BY workflow_id) AS v{i}" for i in range(len(ms)))
        rows = store.query(f"SELECT experiment_id, {lists} FROM ({sql}) GROUP BY 1 ORDER BY 1",
                           [*params, arms or None, arms or None])
        for i, m in enumerate(ms):
            out[m] = {r["experiment_id"]: r[f"v{i}"] for r in rows}
    return out


def test_values_per_arm_are_the_old_lists_sorted(store) -> None:
    """The arms' values come as numpy columns now, not a SQL list per arm, read in one scan in no order
    and sorted per arm: on random workflows (three arms, untagged ones, NULL tokens, stages some
    workflows skip, review findings) each metric's values per arm are the old lists sorted, element by
    element, whole and per stage, with and without chosen arms; and the rank test on the sorted values
    is the test on them as they come."""
    import random
    from datetime import datetime, timedelta

    from golem_mcp.ingestion.records import Batch

    rng = random.Random(11)
    t0 = datetime(2030, 12, 1)
    b = Batch()
    n = 0
    for w in range(150):
        wf = f"wf-{rng.randint(0, 10**6):07d}-{w}"  # workflow order is not insertion order
        b.add("workflows", {"workflow_id": wf, "experiment_id": rng.choice(["arm-a", "arm-b", "arm-c", None])})
        if rng.random() < 0.3:
            b.add("review_reports", {"report_id": f"rr-{w}", "ts": t0, "workflow_id": wf,
                                     "critical": rng.randint(0, 2), "major": rng.randint(0, 2),
                                     "minor": rng.randint(0, 3), "rework": False})
        for stage in ("analyst", "implementer", "reviewer"):
            if rng.random() < 0.2:
                continue
            for _ in range(rng.randint(1, 3)):
                n += 1
                b.add("api_requests", {
                    "request_id": f"r-{n}", "session_id": f"s-{w}", "model": "claude-sonnet-4-5",
                    "timestamp": t0 + timedelta(minutes=n), "workflow_id": wf, "stage": stage,
                    "input_tokens": rng.choice([None, rng.randint(0, 5000)]),
                    "output_tokens": rng.randint(0, 900), "cache_read_tokens": rng.choice([None, 0, 7000]),
                    "duration_ms": rng.choice([None, 1000.0 * rng.random()])})
    store.write(b)
    ms = list(experiments.METRICS)
    for stage in (None, "implementer"):
        for arms in (None, ["arm-c", "arm-a"]):
            new, old = experiments.metrics_values(store, ms, stage, arms), _old_metrics_values(store, ms, stage, arms)
            for m in ms:
                assert new[m].keys() == old[m].keys() and len(old[m]) == (2 if arms else 3), (m, stage, arms)
                for a, v in old[m].items():  # (cost: float sums of the views, in any order from one read to the next)
                    assert isinstance(new[m][a], np.ndarray) and len(new[m][a]) == len(v), (m, stage, arms, a)
                    v = sorted(v)
                    assert new[m][a].tolist() == (v if m != "cost" else pytest.approx(v, rel=1e-12)), (m, stage, arms, a)
    x = np.asarray(old["tokens"]["arm-a"])
    y = np.asarray(old["tokens"]["arm-c"])
    for u, v in ((x, y), (np.round(x / 1000), np.round(y / 1000))):  # (the second: many ties)
        as_they_come = stats.mannwhitneyu(u, v, alternative="two-sided", method="auto")
        assert experiments._compare(list(v), list(u), 0.05)["p_value"] == float(as_they_come.pvalue)
