"""Each analysis finds exactly what was planted in a synthetic history, and nothing on a control."""

from __future__ import annotations

from datetime import timedelta

from golem_mcp.analysis.anomalies import detect_anomalies
from golem_mcp.analysis.bottlenecks import find_bottlenecks, set_threshold
from golem_mcp.analysis.error_patterns import query_error_patterns
from golem_mcp.analysis.loops import find_loops
from golem_mcp.analysis.predict import model_advice, predict_cost
from golem_mcp.analysis.sequences import tool_sequences
from golem_mcp.analysis.trends import query_quality, query_trends
from synthetic import generate


def test_control_history_has_no_findings(store):
    p = generate(store)
    assert find_bottlenecks(store, now=p.now).bottlenecks == []
    assert detect_anomalies(store, now=p.now).anomalies == []
    lp = find_loops(store, now=p.now)
    assert (lp.loops, lp.retries, lp.rework, lp.edit_fail_cycles, lp.thrashing) == ([], [], [], [], [])
    ep = query_error_patterns(store, now=p.now)
    assert ep.bursts == [] and ep.repeated_failures == []
    assert all(a.verdict != "switch" for a in model_advice(store, now=p.now))


def test_slow_stage_is_the_only_bottleneck(store):
    p = generate(store, {"slow_stage"})
    found = find_bottlenecks(store, now=p.now).bottlenecks
    assert ("stage", "implementer") in {(b.dimension, b.key) for b in found}
    assert all("implementer" in b.key for b in found)
    stage = next(b for b in found if b.dimension == "stage")
    assert 2.6 < stage.severity < 3.5 and stage.baseline_source == "history"
    assert stage.line().startswith(f"{stage.severity:.1f}x stage:implementer (p50=")


def test_configured_threshold_overrides_history(store):
    p = generate(store)
    set_threshold(store, "stage", "planner", baseline_p50_ms=10_000, multiplier=2.0)
    found = find_bottlenecks(store, now=p.now, dimensions=["stage"]).bottlenecks
    assert [(b.key, b.baseline_source) for b in found] == [("planner", "configured")]
    assert 2.2 < found[0].severity < 3.0   # first-to-last event of a 40 s stage vs 10 s


def test_token_leak_is_flagged_with_its_ratio(store):
    p = generate(store, {"token_leak"})
    found = detect_anomalies(store, now=p.now).anomalies
    assert {(a.workflow_id, a.stage) for a in found if a.level == "stage"} == {(p.leak_workflow, "analyst")}
    tok = next(a for a in found if a.metric == "total_tokens" and a.level == "stage")
    assert 5.0 < tok.ratio < 7.0
    assert {a.workflow_id for a in found} == {p.leak_workflow}
    # peers, normal and robust z are DuckDB's median and MAD over the same stage (or all workflows) in
    # the 90-day history, computed here apart, for every leak at both levels
    assert {a.level for a in found} == {"stage", "workflow"}
    hist = p.now - timedelta(days=90)
    for a in found:
        src, cond = ("workflow_stage_summary", "stage = ?") if a.level == "stage" else ("workflow_summary", "? IS NULL")
        med, mad, n = store.query(f"SELECT median(CAST({a.metric} AS DOUBLE)) AS med, mad(CAST({a.metric} AS DOUBLE)) AS mad, "
                                  f"count(*) AS n FROM {src} WHERE {cond} AND started_at >= ? AND started_at < ?",
                                  [a.stage, hist, p.now])[0].values()
        assert (a.normal, a.peers, a.robust_z) == (med, n, round((a.value - med) / (1.4826 * mad), 1) if mad else None)


def test_kept_peer_groups_follow_a_write(store):
    """The peers' medians kept between calls (anomalies.PeerMemo) are computed again once a write
    changes the history: cheap analyst runs written 60 days back (in the history, not the window)
    lower the analyst's normal, and every leak's normal is DuckDB's median of the history as it is."""
    from golem_mcp.ingestion.records import Batch

    p = generate(store, {"token_leak"})

    def leaks():
        found = detect_anomalies(store, now=p.now).anomalies
        hist = p.now - timedelta(days=90)
        for a in found:
            src, cond = ("workflow_stage_summary", "stage = ?") if a.level == "stage" else ("workflow_summary", "? IS NULL")
            med = store.scalar(f"SELECT median(CAST({a.metric} AS DOUBLE)) FROM {src} WHERE {cond} "
                               "AND started_at >= ? AND started_at < ?", [a.stage, hist, p.now])
            assert a.normal == med
        return {(a.level, a.metric): a.normal for a in found}

    before = leaks()
    assert leaks() == before  # the same store: the same normals, from the kept groups
    b = Batch()
    for k in range(120):
        b.add("api_requests", {"request_id": f"cheap-{k}", "session_id": "s-cheap", "model": "claude-sonnet-4",
                               "timestamp": p.now - timedelta(days=60, minutes=k), "input_tokens": 10,
                               "output_tokens": 1, "workflow_id": f"wf-cheap-{k}", "stage": "analyst"})
    store.write(b)
    after = leaks()
    assert after[("stage", "total_tokens")] < before[("stage", "total_tokens")]


def _peer_groups_equal_duckdbs(store, now, history_days):
    """Every peer group's count, medians and MADs as a call finds them (the cache's bucket counts and
    the middle buckets' rows) equal DuckDB's count, median() and mad() over the summary rows of the
    history as the store has them now; and the cache's counts equal a count of its summary rows."""
    from golem_mcp.analysis.anomalies import METRICS, _peers_from_buckets, _spread_from_buckets, peer_day_rows
    from golem_mcp.analysis.snapshot import PEER_DAYS, summaries

    hist = now - timedelta(days=history_days)
    checked = 0
    for level, src, stage in (("stage", "workflow_stage_summary", "stage"), ("workflow", "workflow_summary", "NULL")):
        cols = ", ".join(f"median(CAST({m} AS DOUBLE)) AS med_{m}, mad(CAST({m} AS DOUBLE)) AS mad_{m}" for m in METRICS)
        with summaries(store) as reader:
            assert reader.peer_days
            # (the cache's summary rows: their costs are sums in another order than the views', a last bit
            # apart at times; that they hold the views' rows is test_analysis_snapshot's)
            want = {r["stage"]: r for r in reader.query(f"SELECT {stage} AS stage, count(*) AS n, {cols} FROM {src} "
                                                         "WHERE started_at >= ? AND started_at < ? GROUP BY 1", [hist, now])}
            peers = _peers_from_buckets(reader, reader.peer_days, level, src, stage, hist, now)
            g = peers["groups"]
            need = [(s, m, g[m][i]) for i, s in enumerate(g["stage"]) for m in METRICS if g[m][i] is not None]
            mads = _spread_from_buckets(reader, peers, need)
        got = {s: {"stage": s, "n": g["n"][i], **{f"med_{m}": g[m][i] for m in METRICS},
                   **{f"mad_{m}": mads.get((s, m)) for m in METRICS}} for i, s in enumerate(g["stage"])}
        assert got == want
        checked += len(want)
    assert checked
    kept = store.query(f"SELECT level, stage, day, metric, bucket, n, vals FROM {PEER_DAYS} ORDER BY ALL")
    counted = store.query(f"SELECT * FROM ({peer_day_rows('analysis_stage_summary', 'stage', 'stage')} UNION ALL "
                          f"{peer_day_rows('analysis_workflow_summary', 'workflow', 'NULL::VARCHAR')}) ORDER BY ALL")
    assert kept == counted


def test_peer_groups_after_writes_equal_duckdbs_median_and_mad(store):
    """The peers' bucket counts (snapshot.PEER_DAYS) follow every write: after a write that changes
    workflows already counted (one stage's tokens and cost grow, another's run starts a day earlier,
    leaving its day for the one before), and after one that moves the data's end
    two days on (so a 20-day history drops its first days' runs off its start and takes in new ones),
    each call's medians and MADs are DuckDB's over the history as it is, whole days and the days its
    ends cut through alike; and so are the leaks' normals."""
    from golem_mcp.analysis.snapshot import summaries
    from golem_mcp.ingestion.records import Batch

    p = generate(store, {"token_leak"})
    for days in (90, 20, 7.5):
        _peer_groups_equal_duckdbs(store, p.now, days)
    # a workflow already counted: more tokens (and cost) in its analyst stage, on its own day
    row = store.query("SELECT workflow_id, started_at FROM workflow_stage_summary WHERE stage = 'analyst' "
                      "ORDER BY started_at DESC, workflow_id LIMIT 1 OFFSET 20")[0]
    wf, started = row["workflow_id"], row["started_at"]
    before = detect_anomalies(store, now=p.now, history_days=20, min_ratio=1.01, min_z=-99).anomalies
    b = Batch()
    for k in range(3):
        b.add("api_requests", {"request_id": f"more-{k}", "session_id": "s-more", "model": "claude-sonnet-4",
                               "timestamp": started + timedelta(minutes=5 + k), "input_tokens": 90_000,
                               "output_tokens": 4_000, "workflow_id": wf, "stage": "analyst"})
    # and another's analyst stage starts a day earlier now (its run moves to another day)
    row = store.query("SELECT workflow_id, started_at FROM workflow_stage_summary WHERE stage = 'analyst' "
                      "ORDER BY started_at DESC, workflow_id LIMIT 1 OFFSET 25")[0]
    b.add("api_requests", {"request_id": "earlier", "session_id": "s-more", "model": "claude-sonnet-4",
                           "timestamp": row["started_at"] - timedelta(days=1), "input_tokens": 5, "output_tokens": 1,
                           "workflow_id": row["workflow_id"], "stage": "analyst"})
    store.write(b)
    assert store.scalar("SELECT started_at FROM workflow_stage_summary WHERE workflow_id = ? AND stage = 'analyst'",
                        [row["workflow_id"]]) == row["started_at"] - timedelta(days=1)
    for days in (90, 20):
        _peer_groups_equal_duckdbs(store, p.now, days)
    after = detect_anomalies(store, now=p.now, history_days=20, min_ratio=1.01, min_z=-99).anomalies
    assert after != before
    # the data's end two days on: new workflows' runs, late in the day
    late = p.now + timedelta(days=2, hours=15)
    b = Batch()
    for k in range(8):
        for j, stage in enumerate(("analyst", "implementer")):
            b.add("api_requests", {"request_id": f"late-{k}-{j}", "session_id": f"s-late-{k}", "model": "claude-sonnet-4",
                                   "timestamp": late - timedelta(hours=k, minutes=j), "input_tokens": 1000 * (k + 1),
                                   "output_tokens": 100, "workflow_id": f"wf-late-{k}", "stage": stage})
    store.write(b)
    end = late + timedelta(minutes=1)
    dropped = store.scalar("SELECT count(*) FROM workflow_stage_summary WHERE started_at >= ? AND started_at < ?",
                           [p.now - timedelta(days=20), end - timedelta(days=20)])
    assert dropped  # runs the 20-day history held before and not now
    for days in (90, 20):
        _peer_groups_equal_duckdbs(store, end, days)
    found = detect_anomalies(store, now=end, history_days=20, min_ratio=1.01, min_z=-99).anomalies
    assert found
    with summaries(store) as reader:  # (the cache's summary rows: see _peer_groups_equal_duckdbs)
        for a in found:
            src, cond = ("workflow_stage_summary", "stage = ?") if a.level == "stage" else ("workflow_summary", "? IS NULL")
            med, n = reader.query(f"SELECT median(CAST({a.metric} AS DOUBLE)) AS med, count(*) AS n FROM {src} "
                                  f"WHERE {cond} AND started_at >= ? AND started_at < ?",
                                  [a.stage, end - timedelta(days=20), end])[0].values()
            assert (a.normal, a.peers) == (med, n)


def test_short_history_is_reported_not_flagged(store):
    p = generate(store, {"token_leak"}, days=1)
    rep = detect_anomalies(store, now=p.now)
    assert rep.anomalies == [] and rep.insufficient_history and rep.note


def test_loop_found_with_command_and_count(store):
    p = generate(store, {"loop"})
    rep = find_loops(store, now=p.now)
    assert rep.workflows_with_loops == [p.loop_workflow]
    assert [(x.command, x.count, x.kind) for x in rep.loops] == [(p.loop_command, p.loop_count, "failing_repeat")]


def test_error_burst_found_on_its_day(store):
    p = generate(store, {"error_burst"})
    rep = query_error_patterns(store, now=p.now)
    assert [(b.day, b.top_category) for b in rep.bursts] == [(p.burst_day, "timeout")]
    assert {c.category for c in rep.categories} == {"timeout", "file_not_found"}
    assert all(c.fix for c in rep.categories)


def test_cheaper_model_that_does_as_well_is_advised(store):
    p = generate(store, {"cheap_model"})
    adv = [a for a in model_advice(store, now=p.now) if a.verdict == "switch"]
    assert [(a.stage, a.current_model, a.suggested_model) for a in adv] == [
        ("reviewer", "claude-opus-test", "claude-sonnet-test")]
    assert adv[0].saving_pct and adv[0].saving_pct > 50


def test_prediction_needs_data_and_gives_a_range(store):
    p = generate(store)
    est = predict_cost(store, path="full", now=p.now)
    assert est.matched_workflows == 84 and est.low_usd <= est.expected_usd <= est.high_usd
    none = predict_cost(store, path="fast-track", now=p.now)
    assert none.expected_usd is None and "need" in (none.note or "")


def test_trends_quality_and_sequences(store):
    p = generate(store)
    tr = query_trends(store, now=p.now, days=28)
    assert len(tr.points) == 28 and tr.points[-1].cost_ma7 is not None
    assert sum(pt.findings_major for pt in tr.points) == sum(1 for i in range(84) if i % 5 == 0)
    q = query_quality(store, now=p.now, days=28)
    assert q.top_files[0].file == "src/core.py" and q.cleanest_workflows
    seq = tool_sequences(store, now=p.now, stage="analyst")
    assert seq.top[0].sequence in ("Read->Grep->Read", "Grep->Read->Glob") and seq.top[0].count == 84
