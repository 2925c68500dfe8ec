"""The per-day aggregate cache kept between analysis runs gives the answers of a run without it,
after facts arrive (new days, the days the window's ends cut through, a merge that moves a request
to an earlier day, facts without a time) and after context changes late (a workflow link for an
old session, one starting inside its agents' work, declared agent context, and context that moves no
fact: a late review report, a workflow's status)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from golem_mcp.analysis.runs import run_analysis
from golem_mcp.analysis.snapshot import snapshot
from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import Store
from synthetic import EFFECTS, generate
from test_analysis_snapshot import TABLES, analyses, norm

GEN_NOW = datetime(2031, 3, 1)
NOW = GEN_NOW + timedelta(hours=12)  # not midnight: the window's ends cut through two days


def transcript_rows(b: Batch, sid: str, aid: str, at: datetime, n: int, prefix: str) -> None:
    """Rows without context on them (a transcript import): the workflow comes from links."""
    b.add("sessions", {"session_id": sid, "first_seen": at, "last_seen": at + timedelta(hours=1)})
    b.add("agents", {"agent_id": aid, "session_id": sid, "agent_type": "implementer", "model": "claude-sonnet-test"})
    for i in range(n):
        ts = at + timedelta(minutes=10 * i)
        b.add("api_requests", {"request_id": f"{prefix}-r{i}", "session_id": sid, "agent_id": aid if i % 2 else None,
                               "model": "claude-sonnet-test", "timestamp": ts, "input_tokens": 1000 + i,
                               "output_tokens": 200 + i, "cache_read_tokens": 50, "duration_ms": 1500.0 + 10 * i})
        b.add("tool_calls", {"tool_use_id": f"{prefix}-t{i}", "session_id": sid, "agent_id": aid, "tool_name": "Bash",
                             "timestamp": ts + timedelta(seconds=30), "success": i % 3 != 0,
                             "tool_parameters": '{"bash_command":"pytest -x"}', "error": None if i % 3 else "Exit code 1"})


def base(store: Store) -> None:
    generate(store, set(EFFECTS), days=95, per_day=2, now=GEN_NOW)
    b = Batch()
    transcript_rows(b, "sess-t1", "ag-t1", GEN_NOW - timedelta(days=20), 8, "t1")
    transcript_rows(b, "sess-t2", "ag-t2", GEN_NOW - timedelta(days=3), 8, "t2")
    b.add("workflow_links", {"session_id": "sess-t2", "valid_from": datetime(1970, 1, 1), "workflow_id": "wf-0003"})
    store.write(b)


def more(store: Store) -> None:
    """What arrives after the first run: facts on old and new days, and late context."""
    b = Batch()
    # new facts: the last full day, the day `now` cuts through, and one without a time
    transcript_rows(b, "sess-new", "ag-new", GEN_NOW - timedelta(hours=5), 6, "new")
    transcript_rows(b, "sess-cut", "ag-cut", GEN_NOW + timedelta(hours=2), 3, "cut")
    b.add("api_requests", {"request_id": "untimed", "session_id": "sess-new", "model": "claude-opus-test",
                           "input_tokens": 7, "output_tokens": 3})
    # the same request again from another source, a day earlier: the stored row moves to that day
    old = store.query('SELECT request_id, "timestamp", output_tokens FROM api_requests '
                      "WHERE request_id = 'req-0000050'")[0]
    b.add("api_requests", {"request_id": "req-0000050", "timestamp": old["timestamp"] - timedelta(days=1),
                           "output_tokens": old["output_tokens"] + 5000})
    # late context: sess-t1 (20 days old) gets a workflow; sess-t2's agent switches workflows halfway
    b.add("workflow_links", {"session_id": "sess-t1", "valid_from": datetime(1970, 1, 1), "workflow_id": "wf-0100"})
    b.add("workflow_links", {"session_id": "sess-t2", "valid_from": GEN_NOW - timedelta(days=3, minutes=-35),
                             "workflow_id": "wf-0101"})
    b.add("agent_context", {"agent_id": "ag-0150-analyst", "stage": "analysis", "workflow_id": "wf-0150"})
    b.add("agents", {"agent_id": "ag-t1", "agent_type": "reviewer"})
    store.write(b)


def context_only(store: Store) -> None:
    """Context that moves no fact (no day to refresh): a review sending a workflow back, another
    workflow's status and spec."""
    b = Batch()
    b.add("review_reports", {"report_id": "late-review", "ts": GEN_NOW - timedelta(days=2), "workflow_id": "wf-0180",
                             "critical": 2, "major": 1, "minor": 0, "rework": True})
    b.add("workflows", {"workflow_id": "wf-0181", "status": "failed", "spec_completeness": "incomplete"})
    store.write(b)


def results(store: Store, use_cache: bool) -> tuple[dict[str, Any], dict[str, float]]:
    timings: dict[str, float] = {}
    out: dict[str, Any] = {}
    with snapshot(store, now=NOW, days=7, timings=timings, use_cache=use_cache) as snap:
        for k, q in TABLES.items():
            out[k] = norm(snap.query(q))
        out["stage_models"] = norm(snap.query("SELECT * FROM stage_models ORDER BY 1, 2"))
        for k, f in analyses(NOW).items():
            out[k] = norm(f(snap))
    return out, timings


def fresh_cache(store: Store) -> dict[str, Any]:
    """The cache's tables as a build from every fact gives them."""
    out = {}
    for t in ("analysis_request_days", "analysis_tool_days"):
        out[t] = norm(store.query(f"SELECT * FROM {t} ORDER BY ALL"))
    return out


def two_copies(tmp_path, monkeypatch, *writes: Callable[[Store], None]) -> tuple[Path, Path]:
    """Two store files holding the same facts (``writes`` in order), under a private GOLEM_HOME."""
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    with Store(a) as st:
        for write in writes:
            write(st)
    shutil.copyfile(a, b)
    return a, b


def test_cache_answers_as_without(tmp_path, monkeypatch) -> None:
    a, b = two_copies(tmp_path, monkeypatch, base)
    with Store(a) as st:
        first = run_analysis(st, now=NOW, days=7)
        assert first.status == "succeeded", first.error_detail
        assert first.scanned and first.scanned["seconds"]["snapshot.cache_days"] == -1  # built
        before, _ = results(st, use_cache=True)
        more(st)
        assert st.scalar("SELECT count(*) FROM fact_changes WHERE seq > (SELECT seen_seq FROM analysis_cache_state "
                         "WHERE name = 'facts')") > 0
        warm, timings = results(st, use_cache=True)
        assert timings["snapshot.cache_days"] > 0
        cached = fresh_cache(st)
        again, timings = results(st, use_cache=True)
        assert timings["snapshot.cache_days"] == 0 and again == warm
        context_only(st)
        latest, timings = results(st, use_cache=True)
        assert timings["snapshot.cache_days"] == 0 and latest != warm
        second = run_analysis(st, now=NOW, days=7)
    with Store(b) as st:  # the same store, never analysed: no cache at all
        more(st)
        context_only(st)
        cold, _ = results(st, use_cache=False)
        assert not st.query("SELECT * FROM analysis_cache_state")
        ref = run_analysis(st, now=NOW, days=7, use_cache=False)
        assert not st.query("SELECT * FROM analysis_cache_state")
        results(st, use_cache=True)  # builds the cache from every fact
        assert fresh_cache(st) == cached
    assert warm != before  # the ingest and the late context changed answers...
    for k in cold:
        assert latest[k] == cold[k], k  # ...exactly as a run without the cache sees them
    assert second.status == ref.status == "succeeded"
    skip = {"items_created", "items_skipped_dedupe", "items_skipped_rate_limit", "alerts"}
    assert {k: v for k, v in (second.produced or {}).items() if k not in skip} == \
        {k: v for k, v in (ref.produced or {}).items() if k not in skip}


def test_warm_cache_between_runs_keeps_the_summaries(tmp_path, monkeypatch) -> None:
    """The daemon refreshes the cache between runs (warm_cache): the workflows of the days it
    refreshes get their summary rows summed again then, not left for a run that sees no dirty day."""
    from golem_mcp.analysis.snapshot import warm_cache

    a, b = two_copies(tmp_path, monkeypatch, base)
    with Store(a) as st:
        results(st, use_cache=True)  # the first run builds the cache, summaries included
        more(st)
        context_only(st)
        assert warm_cache(st) > 0
        warm, timings = results(st, use_cache=True)
        assert timings["snapshot.cache_days"] == 0
    with Store(b) as st:
        more(st)
        context_only(st)
        cold, _ = results(st, use_cache=False)
    for k in cold:
        assert warm[k] == cold[k], k


def test_writes_stamp_days(tmp_path, monkeypatch) -> None:
    """Store.write stamps the days its facts land on, the merged row's day included."""
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(tmp_path / "s.duckdb") as st:
        day = datetime(2031, 1, 5, 10)
        b = Batch()
        b.add("api_requests", {"request_id": "r1", "session_id": "s", "timestamp": day})
        b.add("tool_calls", {"tool_use_id": "t1", "session_id": "s"})
        st.write(b)
        rows = st.query("SELECT fact, CAST(day AS VARCHAR) AS day, seq FROM fact_changes ORDER BY fact")
        assert [(r["fact"], r["day"]) for r in rows] == [("api_requests", "2031-01-05"), ("tool_calls", "2262-01-01")]
        b = Batch()  # a merge without a time: the stored row's day is stamped again
        b.add("api_requests", {"request_id": "r1", "output_tokens": 9})
        st.write(b)
        seq = st.scalar("SELECT seq FROM fact_changes WHERE fact = 'api_requests'")
        assert seq > rows[0]["seq"]
        assert st.scalar("SELECT count(*) FROM fact_changes") == 2


def test_concurrent_snapshots_and_writes_do_not_conflict(tmp_path, monkeypatch) -> None:
    """Agents call the summary tools at once from several sessions while the daemon writes and keeps
    the cache warm: each refresh of the cache's rows must finish its transaction before the next."""
    import threading

    from golem_mcp.analysis.anomalies import detect_anomalies
    from golem_mcp.analysis.snapshot import warm_cache
    from golem_mcp.ingestion.records import Batch

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    errors: list[BaseException] = []
    with Store(tmp_path / "c.duckdb") as st:
        generate(st, set(EFFECTS), now=NOW)
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                b = Batch()
                for k in range(20):  # new facts on a few days: each write dirties cached days
                    b.add("api_requests", {"request_id": f"late-{i}-{k}", "session_id": f"s-late-{i % 5}",
                                           "timestamp": NOW - timedelta(days=k % 4, hours=1), "input_tokens": 10})
                st.write(b)
                i += 1

        def reader(n: int) -> None:
            try:
                for _ in range(4):
                    if n % 2:
                        detect_anomalies(st, days=7, now=NOW)
                    else:
                        warm_cache(st)
            except BaseException as e:  # noqa: BLE001 - collected for the assertion below
                errors.append(e)

        w = threading.Thread(target=writer)
        w.start()
        threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        w.join(30)
        assert not errors, errors
        # and the cache agrees with the facts once the writes stopped
        warm_cache(st)
        cached = st.scalar("SELECT sum(n) FROM analysis_request_days")
        assert cached == st.scalar("SELECT count(*) FROM api_requests")


def test_cache_built_in_parts_as_at_once(tmp_path, monkeypatch) -> None:
    """A cache built in many small parts (by days, by key hash, summaries by workflow) holds what one
    built at once holds, and the runs on it answer alike."""
    import golem_mcp.analysis.snapshot as snap

    a, b = two_copies(tmp_path, monkeypatch, base, more)  # more: facts without a time too
    levels = [*snap._CACHE_TABLES, *snap._GROUPS, *snap._SUMMARIES]

    def built(path: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        with Store(path) as st:
            answers, timings = results(st, use_cache=True)
            assert timings["snapshot.cache_days"] == -1
            return answers, {t: norm(st.query(f"SELECT * FROM {t} ORDER BY ALL")) for t in levels}

    whole = built(a)
    monkeypatch.setattr(snap, "BUILD_CHUNK_ROWS", 7)
    parts = built(b)
    assert parts[1] == whole[1]
    assert parts[0] == whole[0]
    # every level holds rows (the synthetic history has no API errors)
    assert [t for t in levels if not whole[1][t]] == ["analysis_error_days", "analysis_error_stage_groups"]


def cache_tables(store: Store) -> dict[str, Any]:
    """Every table of the analysis cache, as rows (order aside)."""
    from golem_mcp.analysis import snapshot as sn

    tables = [*sn._CACHE_TABLES, *sn._GROUPS, *sn._STAGE_DAYS, *sn._FAILURES, *sn._SUMMARIES, sn.DURATIONS,
              sn.NGRAM_DAYS, sn.NGRAM_ROWS, sn.NGRAM_AGENTS, sn.PEER_DAYS]
    return {t: norm(store.query(f"SELECT * FROM {t}")) for t in tables}


def keyless(store: Store) -> None:
    """Facts whose cache keys have no first column: a request without a session (so no workflow) and
    requests of the main agent (no agent id) on a day already cached."""
    b = Batch()
    at = GEN_NOW - timedelta(days=4, hours=3)
    b.add("api_requests", {"request_id": "no-session", "model": "claude-sonnet-test", "timestamp": at,
                           "input_tokens": 11, "output_tokens": 7, "duration_ms": 900.0})
    b.add("api_requests", {"request_id": "no-agent", "session_id": "sess-t2", "model": "claude-sonnet-test",
                           "timestamp": at + timedelta(minutes=5), "input_tokens": 13, "output_tokens": 2})
    b.add("tool_calls", {"tool_use_id": "no-session-t", "tool_name": "Read", "timestamp": at, "success": True})
    store.write(b)


def test_refreshed_cache_tables_are_those_of_a_build(tmp_path, monkeypatch) -> None:
    """After refreshes by written workflows and keys (keys without a workflow or an agent among them),
    every cache table holds what a build from every fact gives: not only what the answers read."""
    from golem_mcp.analysis.snapshot import warm_cache

    a, b = two_copies(tmp_path, monkeypatch, base)
    with Store(a) as st:
        assert warm_cache(st) == -1  # built
        for write in (more, keyless, context_only):
            write(st)
            warm_cache(st)
        refreshed = cache_tables(st)
    with Store(b) as st:
        for write in (more, keyless, context_only):
            write(st)
        assert warm_cache(st) == -1
        built = cache_tables(st)
    assert refreshed.keys() == built.keys()
    for t in built:
        assert refreshed[t] == built[t], t


def test_facts_written_around_the_write_are_refreshed(tmp_path, monkeypatch) -> None:
    """Facts inserted or deleted with plain SQL (no ``Store.write``: no day stamped, no rollup kept) on
    a store whose cache is current: the next refresh finds their days, and the cache then holds what
    a build from every fact holds."""
    import golem_mcp.analysis.snapshot as snap

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(tmp_path / "a.duckdb") as st:
        base(st)
        assert snap.warm_cache(st) == -1
        seen = st.scalar("SELECT seen_seq FROM analysis_cache_state WHERE name = 'facts'")
        con = st.con
        # a request copied onto its day under another id, a tool call of another day gone, an API
        # error on a day without facts, two tool calls without a time. (Not caught: as many facts of
        # a table deleted as inserted around Store.write, or a time changed in place: see _DIRTY.)
        con.execute("INSERT INTO api_requests SELECT * REPLACE ('raw-r1' AS request_id) FROM api_requests "
                    "WHERE request_id = 'req-0000050'")
        gone = con.execute('SELECT tool_use_id FROM tool_calls WHERE "timestamp" IS NOT NULL '
                           'ORDER BY "timestamp" LIMIT 1').fetchone()[0]
        con.execute("DELETE FROM tool_calls WHERE tool_use_id = ?", [gone])
        con.execute("INSERT INTO api_errors (error_key, session_id, \"timestamp\", status_code, error) "
                    "VALUES ('raw-e1', 'sess-t1', ?, 529, 'overloaded')", [GEN_NOW - timedelta(days=200)])
        con.execute("INSERT INTO tool_calls SELECT tool_calls.* REPLACE (x || tool_use_id AS tool_use_id, NULL::TIMESTAMP AS \"timestamp\") "
                    "FROM tool_calls, (VALUES ('raw-'), ('raw2-')) v(x) WHERE tool_use_id = 't1-t0'")
        assert st.scalar("SELECT max(seq) FROM fact_changes") == seen  # nothing stamped
        assert snap.warm_cache(st) == 4  # the request's day, the tool calls' two days, the error's day
        refreshed = cache_tables(st)
        assert snap.warm_cache(st) == 0
        st.con.execute("DELETE FROM analysis_cache_state")
        assert snap.warm_cache(st) == -1
        assert cache_tables(st) == refreshed


def test_a_merge_moving_a_fact_refreshes_the_day_it_left(tmp_path, monkeypatch) -> None:
    """A write that only merges a request into an earlier time (no new fact: every count stays) moves
    it to another day; Store.write stamps the day it lands on, the refresh finds the day it left."""
    import golem_mcp.analysis.snapshot as snap

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(tmp_path / "a.duckdb") as st:
        base(st)
        assert snap.warm_cache(st) == -1
        old = st.query('SELECT request_id, "timestamp" FROM api_requests WHERE request_id = \'req-0000050\'')[0]
        b = Batch()
        b.add("api_requests", {"request_id": "req-0000050", "timestamp": old["timestamp"] - timedelta(days=3)})
        st.write(b)
        assert st.scalar("SELECT count(*) FROM fact_changes WHERE seq > (SELECT seen_seq FROM analysis_cache_state "
                         "WHERE name = 'facts')") == 1
        assert snap.warm_cache(st) == 2  # the day stamped and the day left
        refreshed = cache_tables(st)
        st.con.execute("DELETE FROM analysis_cache_state")
        assert snap.warm_cache(st) == -1
        assert cache_tables(st) == refreshed
