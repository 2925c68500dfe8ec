"""The analysis run's snapshot (aggregate first, resolve context per group) gives what the views give:
the summaries, the per-agent spans, the usual model per stage and every analysis the run calls.
Edge cases: a session switching workflows while an agent runs, requests without a timestamp,
unpriced and dated model names, TTL-split cache writes, context declared per agent and per session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from golem_mcp.analysis import snapshot as snapshot_module
from golem_mcp.analysis.anomalies import detect_anomalies
from golem_mcp.analysis.bottlenecks import find_bottlenecks
from golem_mcp.analysis.budgets import _other_alerts, budget_alert_candidates
from golem_mcp.analysis.error_patterns import query_error_patterns
from golem_mcp.analysis.experiments import compare_experiments
from golem_mcp.analysis.loops import find_loops
from golem_mcp.analysis.predict import model_advice, predict_cost
from golem_mcp.analysis.snapshot import snapshot
from golem_mcp.analysis.trends import query_quality
from golem_mcp.store.db import Store
from synthetic import EFFECTS, generate

NOW = datetime(2031, 1, 1)


def norm(x: Any) -> Any:
    if isinstance(x, list):
        return sorted((norm(i) for i in x), key=repr)
    if hasattr(x, "model_dump"):
        return norm(x.model_dump())
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, float):
        return round(x, 9)  # sums in another order
    return x


def analyses(now: datetime) -> dict[str, Any]:
    return {"bottlenecks": lambda s: find_bottlenecks(s, days=7, now=now),
            "anomalies": lambda s: detect_anomalies(s, days=7, now=now),
            "loops": lambda s: find_loops(s, days=7, now=now),
            "errors": lambda s: query_error_patterns(s, days=7, now=now),
            "models": lambda s: model_advice(s, now=now),
            "budgets": lambda s: budget_alert_candidates(s, 7, now),
            "other_alerts": lambda s: _other_alerts(s, now),
            # not in the run, but on a store they read its snapshot (summaries()) for speed
            "quality": lambda s: query_quality(s, days=30, now=now),
            "predict": lambda s: predict_cost(s, path="full", now=now),
            "experiments": lambda s: _experiments(s)}


def _experiments(s: Any) -> Any:
    try:
        return compare_experiments(s, metric="tokens", min_runs=2)
    except Exception as e:  # noqa: BLE001 - too few arms in a history is an answer too, and must agree
        return f"{type(e).__name__}: {e}"


@contextmanager
def _views(store: Any, now: datetime | None = None) -> Iterator[Any]:
    """summaries() that reads the views themselves: what the snapshot must agree with."""
    yield store


TABLES = {"wss": "SELECT * FROM workflow_stage_summary ORDER BY workflow_id, stage",
          "ws": "SELECT * FROM workflow_summary ORDER BY workflow_id",
          "spans": "SELECT * FROM stage_agent_spans ORDER BY ALL",
          "agent_spans": "SELECT * FROM agent_request_spans ORDER BY ALL"}


def assert_same(store: Store, now: datetime) -> dict[str, Any]:
    fns = analyses(now)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(snapshot_module, "summaries", _views)
        direct = {k: norm(f(store)) for k, f in fns.items()}

    direct_tables = {k: norm(store.query(q)) for k, q in TABLES.items()}
    models = norm(store.query("""SELECT workflow_id, stage, first(model ORDER BY n DESC, model) AS model
        FROM (SELECT workflow_id, stage, model, count(*) AS n FROM requests
              WHERE "timestamp" >= ? AND "timestamp" < ? AND workflow_id IS NOT NULL AND model IS NOT NULL GROUP BY ALL)
        GROUP BY 1, 2 ORDER BY 1, 2""", [now - timedelta(days=90), now]))
    with snapshot(store, now=now, days=7) as snap:
        for k, q in TABLES.items():
            assert norm(snap.query(q)) == direct_tables[k], k
        assert norm(snap.query("SELECT * FROM stage_models ORDER BY 1, 2")) == models
        for k, f in fns.items():
            assert norm(f(snap)) == direct[k], k
    for k in ("anomalies", "quality", "experiments", "bottlenecks", "models", "predict", "loops"):  # on the store: summaries()
        assert norm(fns[k](store)) == direct[k], k
    return direct


def test_synthetic_history(store):
    p = generate(store, set(EFFECTS))
    direct = assert_same(store, p.now)
    assert isinstance(direct["experiments"], dict) and len(direct["experiments"]["arms"]) >= 2, direct["experiments"]
    assert direct["quality"]["reports"] > 0 and direct["anomalies"]["anomalies"]
    assert direct["predict"]["matched_workflows"] > 0 and direct["predict"]["by_stage"]


def test_edge_cases(store):
    con = store.con
    day = NOW - timedelta(days=2)
    switch = day + timedelta(hours=1)
    con.execute("INSERT INTO workflows (workflow_id, path, experiment_id) VALUES ('wf-a', 'full', 'arm-x'), "
                "('wf-b', 'fast-track', NULL), ('wf-c', NULL, 'arm-y')")
    # s1 works for wf-a, then for wf-b from `switch` on; s2 only from `switch` on
    con.execute("INSERT INTO workflow_links (session_id, valid_from, workflow_id, task_id, experiment_id, source) "
                "VALUES ('s1', TIMESTAMP '1970-01-01', 'wf-a', 't-1', NULL, 'mcp'), "
                "('s1', ?, 'wf-b', NULL, 'arm-z', 'mcp'), ('s2', ?, 'wf-c', NULL, NULL, 'mcp')", [switch, switch])
    con.execute("INSERT INTO agents (agent_id, session_id, agent_type) VALUES ('ag-1', 's1', 'implementer'), "
                "('ag-2', 's2', 'custom'), ('ag-3', 's3', 'reviewer'), ('ag-4', 's3', 'implementer')")
    con.execute("INSERT INTO agent_context (agent_id, workflow_id, stage, task_id) VALUES "
                "('ag-3', 'wf-c', 'review', 't-9'), ('s3', 'wf-c', 'orchestrate', NULL)")
    reqs = []
    models = ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "no-such-model", None, "claude-haiku-4-5"]
    sessions = [("s1", "ag-1"), ("s1", None), ("s2", "ag-2"), ("s3", "ag-3"), ("s3", None), ("s3", "ag-4"),
                ("s4", "ag-unknown")]
    i = 0
    for sess, agent in sessions:
        for k in range(12):
            i += 1
            ts = None if k == 11 else day + timedelta(minutes=10 * k)  # spans `switch`; one without a time
            split = k % 3 == 0
            reqs.append((f"r{i}", sess, agent, models[i % len(models)], ts, 1000 + i, 100 + i, 500, 300,
                         120 if split else None, 180 if split else None,
                         0.01 * i if k % 4 == 0 else None, None if k in (3, 10) else 1000.0 + 37 * i, 1 + (k == 5),
                         "wf-c" if (sess == "s4" and k < 6) else None, "explicit" if k == 7 else None,
                         None))  # (experiment ids that disagree inside a stage make any_value arbitrary)
    con.executemany("""INSERT INTO api_requests (request_id, session_id, agent_id, model, "timestamp", input_tokens,
        output_tokens, cache_read_tokens, cache_creation_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens,
        recorded_cost_usd, duration_ms, attempt, workflow_id, stage, experiment_id) VALUES
        (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", reqs)
    tools = []
    for j, (sess, agent) in enumerate(sessions * 3):
        ts = None if j % 10 == 9 else day + timedelta(minutes=7 * j)
        tools.append((f"tu{j}", sess, agent, ["Bash", "Edit", "Read"][j % 3], ts, j % 4 != 0,
                      '{"bash_command":"pytest"}' if j % 3 == 0 else None, "Exit code 1" if j % 4 == 0 else None))
    con.executemany("""INSERT INTO tool_calls (tool_use_id, session_id, agent_id, tool_name, "timestamp", success,
        tool_parameters, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""", tools)
    con.executemany("""INSERT INTO api_errors (error_key, session_id, agent_id, "timestamp", status_code, error)
        VALUES (?, ?, ?, ?, ?, ?)""", [(f"e{k}", s, a, day + timedelta(minutes=13 * k), 529, "overloaded")
                                      for k, (s, a) in enumerate(sessions)])
    store.resolve_all()  # written around Store.write: resolved here
    # wf-a, wf-b, wf-c, and the untagged parts of s2 (before its link), s3 (ag-4) and s4 as their sessions' own
    assert {r["workflow_id"] for r in store.query("SELECT DISTINCT workflow_id FROM requests")} == {
        "wf-a", "wf-b", "wf-c", "session-s2", "session-s3", "session-s4"}
    assert_same(store, NOW)


def test_summaries_read_the_cache_brought_up_to_date(store):
    """Outside a run, summaries() reads the cache's summary rows; a write since (new facts, late
    context, a review) is summed in before the answer, which stays what the views give."""
    from golem_mcp.ingestion.records import Batch

    p = generate(store, set(EFFECTS))
    assert_same(store, p.now)
    assert snapshot_module.cache_current(store)
    t = p.now - timedelta(days=1)
    b = Batch()
    b.add("workflows", {"workflow_id": p.workflows[-1], "experiment_id": "arm-b", "updated_at": t})  # late context
    b.add("workflows", {"workflow_id": "wf-new", "experiment_id": "arm-a", "path": "full", "started_at": t})
    b.add("api_requests", {"request_id": "req-new", "session_id": "sess-new", "model": "claude-sonnet-4-5",
                           "timestamp": t, "input_tokens": 90_000, "output_tokens": 9_000, "workflow_id": "wf-new",
                           "stage": "analyst", "duration_ms": 1500.0})
    b.add("review_reports", {"report_id": "rr-new", "ts": t, "task": "t-new", "parent": "wf-new", "critical": 1,
                             "major": 0, "minor": 2, "rework": True})
    store.write(b)
    fns = {k: f for k, f in analyses(p.now).items() if k in ("anomalies", "quality", "experiments", "bottlenecks", "loops",
                                                              "models", "predict")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(snapshot_module, "summaries", _views)
        direct = {k: norm(f(store)) for k, f in fns.items()}
    assert not snapshot_module.cache_current(store)
    for k, f in fns.items():  # the first refreshes the cache; every one reads it
        assert norm(f(store)) == direct[k], k
        assert snapshot_module.cache_current(store)
    arms = direct["experiments"]["arms"]
    assert sum(a["n"] for a in arms.values()) == len(p.workflows) + 1  # wf-new counted


def test_model_advice_counts_the_models_only_of_stages_with_several(store):
    """summaries() puts up the usual models only of the stages whose workflow stages may have different
    ones in the model-advice window (one model: nothing cheaper to compare). On random models per stage
    (one; several; one inside the window and another only before it), requests across the window's
    start, some without a time or a model, random findings and rework, the advice is the views'."""
    import random

    from golem_mcp.ingestion.records import Batch

    rng = random.Random(10)
    # stage -> models inside the window, models before it
    pools = {"analyst": (["m-a"], ["m-a"]), "planner": (["m-a", "m-b"], ["m-a"]),
             "implementer": (["m-b", "m-c", "m-a"], ["m-c"]), "reviewer": (["m-c"], ["m-old"])}
    b = Batch()
    n = 0
    for w in range(80):
        wf = f"wf-{w:03d}"
        b.add("workflows", {"workflow_id": wf, "path": rng.choice(["full", "fast-track", None])})
        if rng.random() < 0.4:
            b.add("review_reports", {"report_id": f"rr-{w}", "ts": NOW - timedelta(days=rng.uniform(1, 80)),
                                     "workflow_id": wf, "critical": rng.randint(0, 2), "major": rng.randint(0, 3),
                                     "minor": 0, "rework": rng.choice([True, False, None])})
        for stage, (inside, before) in pools.items():
            for _ in range(rng.randint(1, 4)):
                n += 1
                age = rng.uniform(85, 95)  # days: across the 90-day window's start
                model = rng.choice(inside if age < 90 else before) if rng.random() > 0.1 else None
                b.add("api_requests", {
                    "request_id": f"r-{n}", "session_id": f"s-{w}", "model": model,
                    "timestamp": None if rng.random() < 0.05 else NOW - timedelta(days=age),
                    "input_tokens": rng.randint(100, 9000), "output_tokens": rng.randint(10, 900),
                    "recorded_cost_usd": rng.choice([None, rng.uniform(0.01, 2.0)]), "workflow_id": wf,
                    "stage": stage, "duration_ms": 1000.0})
    store.write(b)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(snapshot_module, "summaries", _views)
        direct = norm(model_advice(store, now=NOW))
    assert {a["stage"] for a in direct} == {"planner", "implementer"}, direct
    assert norm(model_advice(store, now=NOW)) == direct
    with snapshot_module.summaries(store, now=NOW) as reader:  # the single-model stages were left out
        counted = {r["stage"] for r in reader.query("SELECT DISTINCT stage FROM stage_model_runs")}
    assert counted == {"planner", "implementer", "reviewer"}  # (reviewer: m-old before the window)
    # predict_cost's answer reads the estimate and the advice through one such reader: the same as each alone
    from golem_mcp.analysis import answers, known

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLEM_CLOCK", NOW.isoformat())  # (the data is in 2030: the window ends at its newest request)
        got = answers.predict(store, path="full")
        now = known.data_now(store)
    assert got.model_advice and norm(got.model_advice) == norm(model_advice(store, now=now))
    assert got.prediction.matched_workflows and norm(got.prediction) == norm(predict_cost(store, path="full", now=now))


def test_an_agents_late_type_reaches_its_bottleneck_label(tmp_path):
    """The agent dimension's key is the resolver's label carried by the cached agent spans: an agent
    type written after the agents' requests is read by the next answer, as the views read it."""
    from golem_mcp.ingestion.records import Batch

    now = datetime(2026, 11, 21)
    with Store(tmp_path / "late.duckdb") as s:
        b = Batch()
        for a in range(6):
            for k in range(2):
                b.add("api_requests", {"request_id": f"r{a}-{k}", "session_id": "s1", "agent_id": f"ag-{a}",
                                       "model": "claude-sonnet-4-5", "duration_ms": 100.0 * (a + 1),
                                       "timestamp": now - timedelta(days=1, minutes=10 * a + k)})
        s.write(b)

        def keys() -> dict[str, int]:
            rep = find_bottlenecks(s, days=7, now=now, dimensions=["agent"])
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(snapshot_module, "summaries", _views)
                assert norm(find_bottlenecks(s, days=7, now=now, dimensions=["agent"])) == norm(rep)
            return {d["key"]: d["samples"] for d in rep.durations}

        assert keys() == {"subagent": 6}
        b = Batch()
        for a in range(3):
            b.add("agents", {"agent_id": f"ag-{a}", "session_id": "s1", "agent_type": "tester"})
        s.write(b)
        assert keys() == {"tester": 3, "subagent": 3}


def test_predict_cost_from_stage_rows_carrying_their_workflow(store):
    """On a store, predict_cost picks the matched workflows' stage runs from the cache's stage rows,
    which carry their workflow's recorded path, complexity and start; the runs of workflows without a
    path are matched on the path their stages show. On random workflows (paths recorded or not, some
    recorded later, complexities, starts across the window's, unpriced stages) every prediction is the
    views', before and after a write that changes workflows' paths and adds a stage to others."""
    import random

    from golem_mcp.analysis.predict import FULL_PATH_STAGES, INFERRED_PATH
    from golem_mcp.ingestion.records import Batch

    rng = random.Random(12)
    b = Batch()
    n = 0
    wfs = []
    for w in range(120):
        wf = f"wf-{w:03d}"
        wfs.append(wf)
        b.add("workflows", {"workflow_id": wf, "path": rng.choice(["full", "fast-track", None, None]),
                            "complexity": rng.choice(["simple", "complex", None])})
        start = rng.uniform(0.5, 40)  # days before NOW: across the 20-day window's start
        stages = [s for s in ("analyst", "planner", "implementer", "reviewer")
                  if s not in FULL_PATH_STAGES or rng.random() < 0.6]
        for k, stage in enumerate(stages):
            for _ in range(rng.randint(1, 3)):
                n += 1
                b.add("api_requests", {
                    "request_id": f"r-{n}", "session_id": f"s-{w}", "model": rng.choice(["claude-sonnet-4-5", "nope"]),
                    "timestamp": NOW - timedelta(days=start - 0.01 * k - 0.001 * n / 100),
                    "input_tokens": rng.randint(100, 9000), "output_tokens": rng.randint(10, 900),
                    "recorded_cost_usd": rng.choice([None, rng.uniform(0.01, 2.0)]), "workflow_id": wf,
                    "stage": stage})
    store.write(b)

    def every(s: Any) -> list[Any]:
        return [norm(predict_cost(s, path=p, complexity=c, days=d, now=NOW, min_samples=1))
                for p in (None, "full", "fast-track") for c in (None, "simple", "complex") for d in (90, 20)]

    def old_matched(p: str | None, c: str | None, d: float) -> dict[str, Any]:
        """The matched workflows as the prediction's query had them (a LEFT JOIN with the inferred paths,
        three quantiles apart), on the views."""
        r = store.query(f"""WITH {INFERRED_PATH},
            w AS (SELECT s.workflow_id, s.total_cost FROM workflow_summary s LEFT JOIN ip USING (workflow_id)
                  WHERE s.started_at >= ? AND s.started_at < ? AND s.total_cost IS NOT NULL
                    AND (? IS NULL OR COALESCE(s.workflow_path, ip.inferred_path) = ?)
                    AND (? IS NULL OR s.complexity_assessment = ?))
            SELECT count(*) AS n, quantile_cont(total_cost, 0.5) AS p50, quantile_cont(total_cost, 0.1) AS p10,
                   quantile_cont(total_cost, 0.9) AS p90 FROM w""",
            [*FULL_PATH_STAGES, NOW - timedelta(days=d), NOW, p, p, c, c])[0]
        return {"matched_workflows": r["n"], "expected_usd": None if r["p50"] is None else round(r["p50"], 4),
                "low_usd": None if r["p10"] is None else round(r["p10"], 4),
                "high_usd": None if r["p90"] is None else round(r["p90"], 4)}

    def check() -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(snapshot_module, "summaries", _views)
            direct = every(store)
        assert sum(1 for x in direct if x["by_stage"]) > 10, direct
        assert every(store) == direct
        olds = [norm(old_matched(p, c, d)) for p in (None, "full", "fast-track") for c in (None, "simple", "complex")
                for d in (90, 20)]
        assert [{k: x[k] for k in olds[0]} for x in direct] == olds

    check()
    b = Batch()
    for wf in rng.sample(wfs, 30):  # late context: paths recorded, changed or cleared
        b.add("workflows", {"workflow_id": wf, "path": rng.choice(["full", "fast-track"]), "complexity": "complex"})
    for i, wf in enumerate(rng.sample(wfs, 10)):  # a stage later (earlier than the others for some)
        b.add("api_requests", {"request_id": f"late-{i}", "session_id": "s-late", "model": "claude-sonnet-4-5",
                               "timestamp": NOW - timedelta(days=rng.uniform(0.1, 45)), "input_tokens": 10,
                               "output_tokens": 1, "recorded_cost_usd": 0.5, "workflow_id": wf, "stage": "planner"})
    store.write(b)
    check()


def test_three_quantiles_in_one_aggregate_are_each_alone(store):
    """predict_cost takes the matched costs' 10th, 50th and 90th percentiles in one quantile_cont: each
    is what it is alone, on random costs with ties and NULLs, few and many."""
    import random

    rng = random.Random(13)
    for n in (1, 2, 3, 7, 10, 101, 5000):
        vals = [None if rng.random() < 0.1 else round(rng.lognormvariate(0, 1), rng.choice([1, 9])) for _ in range(n)]
        store.con.execute("CREATE OR REPLACE TEMP TABLE q (c DOUBLE)")
        store.con.executemany("INSERT INTO q VALUES (?)", [[v] for v in vals])
        one, *alone = store.con.execute("SELECT quantile_cont(c, [0.5, 0.1, 0.9]), quantile_cont(c, 0.5), "
                                        "quantile_cont(c, 0.1), quantile_cont(c, 0.9) FROM q").fetchone()
        assert (one or [None] * 3) == alone, n
