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
