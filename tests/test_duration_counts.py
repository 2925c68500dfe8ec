"""find_slow_stages' stage, stage x experiment, workflow path and agent percentiles from the analysis
cache's duration counts (per day of the start, key and bucket: analysis_duration_days) and the rows of
the days the windows cut through. On a real store written in several writes (so the counts were
refreshed with the cache, not only built): the counts equal a count of the cache's rows, the answer
equals the one counted from the views' rows (an uncached snapshot), and each percentile is within 1 % of
the exact one over every row, the sample counts equal."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis import snapshot as snapshot_module
from golem_mcp.analysis.bottlenecks import CACHED, bucket_rows, find_bottlenecks
from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import Store
from synthetic import generate

NOW = datetime(2031, 3, 1, 13, 37, 5)  # the windows cut through days at both ends
DIMS = list(CACHED)


def _close(got: float | None, exact: float | None) -> bool:
    if got is None or exact is None:
        return got is exact
    return abs(got - exact) <= 0.01 * abs(exact) + 0.55


def _counts_differ(store: Store) -> list[tuple]:
    """Rows of the cache's duration counts that a count of the cache's own rows does not give, both ways."""
    recount = " UNION ALL ".join(
        f"SELECT '{dim}' AS dim, key, key2, day, bucket, count(*) AS n FROM "
        f"({bucket_rows(dim, f'(SELECT * FROM {src} WHERE {where})')}) GROUP BY ALL"
        for src, (dim, where) in snapshot_module._DURATION_SOURCES.items())
    return store.con.execute(f"""
        (SELECT * FROM {snapshot_module.DURATIONS} EXCEPT ALL SELECT * FROM ({recount}))
        UNION ALL (SELECT * FROM ({recount}) EXCEPT ALL SELECT * FROM {snapshot_module.DURATIONS})""").fetchall()


def _check(store: Store) -> None:
    for days, history in ((7, 14), (2.5, 3), (0.6, 1)):
        ask = {"days": days, "now": NOW, "history_days": history, "dimensions": DIMS, "min_samples": 1,
               "min_history": 2}
        cached = find_bottlenecks(store, **ask)
        assert snapshot_module.cache_current(store)
        assert not _counts_differ(store)
        with snapshot_module.snapshot(store, now=NOW, use_cache=False) as snap:  # the views' rows, counted
            assert snap.durations is None
            rows = find_bottlenecks(snap, **ask)
        assert cached.model_dump() == rows.model_dump()
        exact = find_bottlenecks(store, **ask, buckets=False)
        assert cached.samples_scanned == exact.samples_scanned > 0
        assert cached.no_baseline == exact.no_baseline
        g = {(d["dimension"], d["key"]): d for d in cached.durations}
        e = {(d["dimension"], d["key"]): d for d in exact.durations}
        assert g.keys() == e.keys() and {d for d, _ in e} == set(DIMS)
        for k, x in e.items():
            y = g[k]
            assert y["samples"] == x["samples"]
            for c in ("p50_ms", "p95_ms", "p99_ms", "baseline_p50_ms"):
                assert _close(y.get(c), x.get(c)), (days, k, c, y.get(c), x.get(c))


@pytest.mark.parametrize("seed", [1, 2])
def test_cached_duration_counts_give_the_rows_answer_after_each_refresh(tmp_path, seed):
    rnd = random.Random(seed)
    with Store(tmp_path / "d.duckdb") as s:
        p = generate(s, {"slow_stage", "cheap_model"}, days=20, per_day=3, now=NOW, seed=seed)
        _check(s)
        for w in range(3):
            b = Batch()
            for i in range(30):
                # new workflows, and requests added to existing ones (their stages and agents grow longer
                # or start earlier: counted out of one bucket and day into another)
                wf = rnd.choice(p.workflows) if i % 2 else f"wf-new-{w}-{i}"
                ts = NOW - timedelta(seconds=rnd.uniform(0, 25 * 86400))
                if not i % 2:
                    b.add("workflows", {"workflow_id": wf, "path": rnd.choice(["full", "fast-track", None]),
                                        "experiment_id": rnd.choice(["arm-a", "arm-b", None]), "started_at": ts})
                b.add("api_requests", {"request_id": f"x{w}-{i}", "session_id": f"sx{w}-{i % 5}",
                                       "agent_id": f"ax{w}-{i % 7}", "workflow_id": wf,
                                       "stage": rnd.choice(["analyst", "implementer", "tester"]),
                                       "model": "claude-sonnet-test", "timestamp": ts,
                                       "duration_ms": rnd.choice([rnd.lognormvariate(8, 1.5), 0.4, None]),
                                       "input_tokens": 100, "output_tokens": 10})
            b.add("agents", {"agent_id": f"ax{w}-0", "session_id": f"sx{w}-0", "agent_type": "late-type"})
            s.write(b)
            assert not snapshot_module.cache_current(s)
            _check(s)


def _rounded(got: tuple[list, int]) -> tuple[list, int]:
    """(queue waits are sums of doubles, in the order of the plan's threads)"""
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in w.model_dump().items()} for w in got[0]], got[1]


@pytest.mark.parametrize("effects", [{"slow_stage"}, {"slow_stage", "traces"}])
def test_longest_workflows_from_the_cache_are_the_views(tmp_path, effects):
    """The window's workflows ranked by their span (find_slow_stages' workflows) from the cache's workflow
    rows, those with phase spans from their stage_phases rows, equal the ranking over the views' stage
    rows, before and after writes that lengthen workflows and add new ones."""
    from golem_mcp.analysis.bottlenecks import longest_workflows

    rnd = random.Random(5)
    with Store(tmp_path / "w.duckdb") as s:
        p = generate(s, effects, days=20, per_day=3, now=NOW)

        def same() -> None:
            for days, wf, limit in ((7, None, 5), (3, None, None), (20, p.workflows[-1], 5), (20, "wf-new-1-0", 5)):
                want = _rounded(longest_workflows(s, days, NOW, wf, limit))  # the store's views
                with snapshot_module.summaries(s) as reader:
                    assert reader.workflow_spans is not None
                    assert _rounded(longest_workflows(reader, days, NOW, wf, limit)) == want, (days, wf, limit)
                assert want[1] > 0 or wf == "wf-new-1-0", (days, wf)

        same()
        for w in range(2):
            b = Batch()
            for i in range(12):
                wf = rnd.choice(p.workflows) if i % 2 else f"wf-new-{w}-{i}"
                ts = NOW - timedelta(seconds=rnd.uniform(0, 10 * 86400))
                b.add("api_requests", {"request_id": f"y{w}-{i}", "session_id": f"sy{w}", "workflow_id": wf,
                                       "stage": rnd.choice(["analyst", "implementer"]), "model": "claude-sonnet-test",
                                       "timestamp": ts, "duration_ms": 1000.0})
            s.write(b)
            same()
