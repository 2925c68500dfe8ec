"""find_slow_stages' model and tool percentiles from the duration rollups (whole days) and the rows of
the days the windows cut through: within 1 % of the exact quantiles over every row (0.5 ms under 1 ms,
rounded to 0.1 ms), the sample counts and the baselines' sources equal, on a real store written
through ``Store.write`` in several writes (so the rollups were folded, not only built)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.bottlenecks import find_bottlenecks
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

NOW = datetime(2026, 11, 21, 13, 37, 5)  # the windows cut through days at both ends


def _close(got: float | None, exact: float | None) -> bool:
    if got is None or exact is None:
        return got is exact
    return abs(got - exact) <= 0.01 * abs(exact) + 0.55


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bucketed_percentiles_are_within_one_percent_of_the_exact_ones(tmp_path, seed):
    rnd = random.Random(seed)
    with Store(tmp_path / "p.duckdb") as s:
        for w in range(4):  # four writes: the later ones fold into the rollups
            b = Batch()
            for i in range(400):
                ts = NOW - timedelta(seconds=rnd.uniform(0, 9 * 86400))
                dur = rnd.choice([rnd.lognormvariate(7, 1.2), rnd.uniform(0, 2), 2000.0, None])
                b.add("api_requests", {"request_id": f"r{w}-{i}", "session_id": f"s{i % 7}",
                                       "model": rnd.choice(["claude-sonnet-4-5", "claude-haiku-4-5", None]),
                                       "timestamp": ts, "duration_ms": dur, "source_mask": 2})
                b.add("tool_calls", {"tool_use_id": f"t{w}-{i}", "session_id": f"s{i % 7}",
                                     "tool_name": rnd.choice(["Read", "Bash"]), "timestamp": ts,
                                     "duration_ms": rnd.choice([rnd.lognormvariate(5, 2), 0.25, None]),
                                     "success": True, "source_mask": 1})
            s.write(b)
        for days, history in ((3, 4), (1.5, 2), (0.25, 1)):
            got, exact = (find_bottlenecks(s, days=days, now=NOW, history_days=history, dimensions=["model", "tool"],
                                           buckets=bk) for bk in (True, False))
            assert got.samples_scanned == exact.samples_scanned > 0
            assert got.no_baseline == exact.no_baseline
            g = {(d["dimension"], d["key"]): d for d in got.durations}
            e = {(d["dimension"], d["key"]): d for d in exact.durations}
            assert g.keys() == e.keys() and len(e) == 4
            for k, x in e.items():
                y = g[k]
                assert y["samples"] == x["samples"]
                for c in ("p50_ms", "p95_ms", "p99_ms", "baseline_p50_ms"):
                    assert _close(y.get(c), x.get(c)), (days, k, c, y.get(c), x.get(c))
