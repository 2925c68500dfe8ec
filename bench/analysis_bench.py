"""Benchmark: the full analysis run (``run_analysis``) on stores of N API requests; issue 5 asks for
10 million in under 10 s.

    python bench/analysis_bench.py                          # 1M and 10M side by side (figure of record)
    python bench/analysis_bench.py --requests 200000        # quick
    python bench/analysis_bench.py --requests 1000000 --runs 3

Each store is generated inside DuckDB with ``INSERT ... SELECT FROM range()`` (no Python rows) and
cached as ``bench/.data/analysis-N.duckdb`` (``--regen`` to rebuild; about 60 s for 10M). Every run
works on a fresh copy of the cached file, in its own process, so the run's writes (runs, items,
alerts) never carry over and the peak RSS is that run's alone. Per copy two runs: cold (the first
run on the store, which builds the analysis' per-day aggregate cache) and warm (another process
ingests a few thousand requests on the last day through ``Store.write``, then runs again).

What a store holds: one workflow per session, 4 stages (analyst, planner, implementer, reviewer) run
by one subagent each, 5 API requests and 3 tool calls per stage, spread evenly over 60 days. Half the
workflows look like transcript imports (no context on the rows: workflow from ``workflow_links``,
stage from the agent's type, cost from the price table); the other half like OTel (workflow, stage,
experiment and Claude Code's cost on every row). About 1 request in 200 has an API error row (429,
529, 500), 1 in 9973 was retried, 1 in 17 Bash calls fails, 1 agent in 1000 declared its stage
(``agent_context``). Planted: the implementer is 3x slower in the last 10% of workflows, and one
workflow repeats a failing ``pytest -x`` (a loop).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

# generated stores are large (10M requests: ~1.4 GB) and slow to build: GOLEM_BENCH_DATA puts them elsewhere
DATA = Path(os.environ.get("GOLEM_BENCH_DATA") or Path(__file__).resolve().parent / ".data")
GENERATOR = "analysis-bench-v4"  # bump when build() changes: cached stores are rebuilt
STAGES = "['analyst', 'planner', 'implementer', 'reviewer']"
MODELS = "['claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-sonnet-4-5', 'claude-opus-4-1']"
REQ_PER_STAGE = 5
TOOLS_PER_STAGE = 3
NOW = datetime(2031, 1, 1)


def build(store, n_requests: int, now: datetime = NOW) -> dict[str, int]:  # type: ignore[no-untyped-def]
    n_wf = max(n_requests // (4 * REQ_PER_STAGE), 1)
    con = store.con
    t0 = f"(TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' - INTERVAL 60 DAY - INTERVAL 1 HOUR)"  # the last one ends before now
    step = f"(60 * 86400e6 / {n_wf})"  # microseconds between workflow starts
    wf_start = f"{t0} + to_microseconds(CAST(w * {step} AS BIGINT))"
    # w = workflow index; odd workflows are transcript-like (no context on their rows)
    otel = "w % 2 = 0"
    con.execute(f"""
        INSERT INTO workflows (workflow_id, path, complexity, experiment_id, started_at)
        SELECT 'wf-' || w, CASE WHEN w % 3 = 0 THEN 'fast-track' ELSE 'full' END,
               CASE WHEN w % 2 = 0 THEN 'simple' ELSE 'complex' END, 'arm-' || (w // 2 % 2), {wf_start}
        FROM range({n_wf}) t(w)""")
    con.execute(f"""
        INSERT INTO sessions (session_id, project, cwd, git_branch, version, first_seen, last_seen)
        SELECT 'sess-' || w, 'proj-' || (w % 7), '/work/proj-' || (w % 7), 'main', '2.1.328',
               {wf_start}, {wf_start} + INTERVAL 10 MINUTE
        FROM range({n_wf}) t(w)""")
    con.execute(f"""
        INSERT INTO workflow_links (session_id, valid_from, workflow_id, experiment_id, source)
        SELECT 'sess-' || w, TIMESTAMP '1970-01-01', 'wf-' || w, 'arm-' || (w // 2 % 2), 'mcp'
        FROM range({n_wf}) t(w)""")
    con.execute(f"""
        INSERT INTO agents (agent_id, session_id, agent_type, description, model, started_at)
        SELECT 'ag-' || a, 'sess-' || (a // 4), {STAGES}[a % 4 + 1], 'stage ' || (a % 4), {MODELS}[a % 4 + 1],
               {t0} + to_microseconds(CAST((a // 4) * {step} AS BIGINT)) + to_seconds((a % 4) * 120)
        FROM range({n_wf * 4}) t(a)""")
    con.execute(f"""
        INSERT INTO agent_context (agent_id, workflow_id, stage, source, updated_at)
        SELECT 'ag-' || a, 'wf-' || (a // 4), {STAGES}[a % 4 + 1], 'mcp', TIMESTAMP '{now:%Y-%m-%d}'
        FROM range({n_wf * 4}) t(a) WHERE a % 1000 = 7""")
    # request i: workflow w = i // 20, agent a = i // 5 (stage a % 4), 20 s apart inside a stage
    slow = f"CASE WHEN a % 4 = 2 AND w >= {n_wf} * 0.9 THEN 3 ELSE 1 END"
    con.execute(f"""
        INSERT INTO api_requests (request_id, message_id, session_id, agent_id, model, "timestamp", input_tokens,
                                  output_tokens, cache_read_tokens, cache_creation_tokens, recorded_cost_usd,
                                  duration_ms, ttft_ms, attempt, success, stop_reason, workflow_id, stage,
                                  experiment_id, source_mask)
        SELECT 'req_' || i, 'msg_' || i, 'sess-' || w, 'ag-' || a, {MODELS}[a % 4 + 1],
               {wf_start} + to_seconds((a % 4) * 120 + (i % {REQ_PER_STAGE}) * 20 * {slow}),
               in_tok, out_tok, cr_tok, cw_tok,
               -- Claude Code's own figure: the price table's, give or take 2%
               CASE WHEN {otel} THEN (in_tok * p.input_per_mtok + out_tok * p.output_per_mtok + cr_tok * p.cache_read_per_mtok
                                      + cw_tok * p.cache_write_5m_per_mtok) / 1e6 * (0.98 + (hash(i) % 40) / 1000.0) END,
               (1500 + hash(i + 2) % 1000) * {slow}, 400 + hash(i + 5) % 200,
               CASE WHEN i % 9973 = 0 THEN 2 ELSE 1 END, true, 'tool_use',
               CASE WHEN {otel} THEN 'wf-' || w END, CASE WHEN {otel} THEN {STAGES}[a % 4 + 1] END,
               CASE WHEN {otel} THEN 'arm-' || (w // 2 % 2) END, CASE WHEN {otel} THEN 2 ELSE 1 END
        FROM (SELECT i, i // {4 * REQ_PER_STAGE} AS w, i // {REQ_PER_STAGE} AS a, 5000 + hash(i) % 2000 AS in_tok,
                     500 + hash(i + 1) % 300 AS out_tok, 4000 + hash(i + 3) % 4000 AS cr_tok, 100 + hash(i + 4) % 400 AS cw_tok
              FROM range({n_wf * 4 * REQ_PER_STAGE}) t(i))
        JOIN prices p ON p.model = {MODELS}[a % 4 + 1]""")
    con.execute(f"""
        INSERT INTO api_errors (error_key, session_id, agent_id, request_id, model, "timestamp", status_code,
                                error, attempt, duration_ms, workflow_id, stage, experiment_id, source)
        SELECT 'err_' || i, 'sess-' || w, 'ag-' || a, 'req_' || i, {MODELS}[a % 4 + 1],
               {wf_start} + to_seconds((a % 4) * 120 + (i % {REQ_PER_STAGE}) * 20 - 5),
               ([429, 529, 500])[i // 200 % 3 + 1],
               (['rate_limit_error: too many requests', 'overloaded_error: Overloaded',
                 'api_error: Internal server error'])[i // 200 % 3 + 1], 1, 300,
               CASE WHEN {otel} THEN 'wf-' || w END, CASE WHEN {otel} THEN {STAGES}[a % 4 + 1] END,
               CASE WHEN {otel} THEN 'arm-' || (w // 2 % 2) END, CASE WHEN {otel} THEN 'otel' ELSE 'transcript' END
        FROM (SELECT i, i // {4 * REQ_PER_STAGE} AS w, i // {REQ_PER_STAGE} AS a
              FROM range({n_wf * 4 * REQ_PER_STAGE}) t(i)) WHERE i % 200 = 3""")
    # tool call j: agent a = j // 3, made by that agent's request (a * 5 + j % 3); Read, Grep, Bash
    looping = f"(w = {max(n_wf - 3, 0)} AND a % 4 = 2)"  # this implementer runs a failing `pytest -x` 3 times
    fails = f"({looping} OR (j % 3 = 2 AND j % 17 = 0))"
    con.execute(f"""
        INSERT INTO tool_calls (tool_use_id, session_id, agent_id, request_id, tool_name, "timestamp", success,
                                duration_ms, error, error_type, input_size_bytes, result_size_bytes, tool_parameters,
                                workflow_id, stage, experiment_id, source_mask)
        SELECT 'toolu_' || j, 'sess-' || w, 'ag-' || a, 'req_' || (a * {REQ_PER_STAGE} + j % 3),
               CASE WHEN {looping} THEN 'Bash' ELSE (['Read', 'Grep', 'Bash'])[j % 3 + 1] END,
               {wf_start} + to_seconds((a % 4) * 120 + (j % 3) * 25 + 5),
               NOT {fails}, 200 + hash(j) % 100,
               CASE WHEN {fails} THEN 'Exit code 1' END, CASE WHEN {fails} THEN 'shell_exit' END,
               80 + hash(j) % 50, 1000 + hash(j + 1) % 5000,
               CASE WHEN {looping} THEN '{{"bash_command":"pytest -x"}}'
                    WHEN j % 3 = 2 THEN '{{"bash_command":"make test-' || (j % 50) || '"}}'
                    WHEN j % 3 = 1 THEN '{{"pattern":"def f' || (j % 1000) || '"}}'
                    ELSE '{{"file_path":"/src/f' || j || '.py"}}' END,
               CASE WHEN {otel} THEN 'wf-' || w END, CASE WHEN {otel} THEN {STAGES}[a % 4 + 1] END,
               CASE WHEN {otel} THEN 'arm-' || (w // 2 % 2) END, CASE WHEN {otel} THEN 2 ELSE 1 END
        FROM (SELECT j, j // {4 * TOOLS_PER_STAGE} AS w, j // {TOOLS_PER_STAGE} AS a
              FROM range({n_wf * 4 * TOOLS_PER_STAGE}) t(j))""")
    store.resolve_all()  # written around Store.write: every fact resolved once (and the rollups built)
    con.execute("INSERT OR REPLACE INTO settings VALUES ('bench_generator', ?)", [GENERATOR])
    con.execute("CHECKPOINT")
    return store.table_counts()


def cached_store(n: int, regen: bool = False) -> Path:
    """bench/.data/analysis-N.duckdb, built when missing, stale or asked to."""
    from golem_mcp.store.db import Store

    path = DATA / f"analysis-{n}.duckdb"
    if path.exists() and not regen:
        import duckdb

        con = duckdb.connect(str(path), read_only=True)  # not a Store: its migrations would rewrite the file
        try:
            if con.execute("SELECT value FROM settings WHERE key = 'bench_generator'").fetchall() == [(GENERATOR,)]:
                return path
        finally:
            con.close()
    path.unlink(missing_ok=True)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    t = time.perf_counter()
    with Store(tmp) as st, st.memory.heavy():  # bulk SQL around Store.write: DuckDB's whole budget
        counts = build(st, n)
    tmp.rename(path)
    print(f"  built {path.name}: {counts['api_requests']:,} requests, {counts['tool_calls']:,} tool calls, "
          f"{counts['api_errors']:,} API errors, {counts['workflows']:,} workflows in {time.perf_counter() - t:.1f}s",
          flush=True)
    return path


def current_store(n: int, regen: bool = False) -> Path:
    """The cached store carried forward to this checkout's schema, once: ``analysis-N.sV.duckdb`` (V: the
    schema version) when the generated store is older, else the generated store itself. Without it every
    run's copy would be migrated in its cold run (minutes at 10M when a migration rebuilds rollups)."""
    import duckdb

    from golem_mcp.store.db import SCHEMA_VERSION

    src = cached_store(n, regen)

    def current(path: Path) -> bool:
        """Of this schema and generator (not by file times: an older checkout opening the source touches it)."""
        con = duckdb.connect(str(path), read_only=True)
        try:
            return bool(con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION  # type: ignore[index]
                        and con.execute("SELECT value FROM settings WHERE key = 'bench_generator'").fetchall()
                        == [(GENERATOR,)])
        finally:
            con.close()

    if current(src):
        return src
    out = DATA / f"analysis-{n}.s{SCHEMA_VERSION}.duckdb"
    if out.exists() and not regen and current(out):
        return out
    tmp = out.with_suffix(".building")
    shutil.copyfile(src, tmp)
    t = time.perf_counter()
    # the migrations, in a process of their own: this one starts every run's process
    subprocess.run([sys.executable, "-c", "import sys; from golem_mcp.store.db import Store; Store(sys.argv[1]).close()",
                    str(tmp)], check=True)
    tmp.rename(out)
    print(f"  carried {src.name} forward to schema {SCHEMA_VERSION} in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def small_ingest(store, n_workflows: int = 150, now: datetime = NOW, tag: str = "late",  # type: ignore[no-untyped-def]
                 scatter: bool = False) -> int:
    """A few thousand new requests on the last day, through Store.write like any ingest: whole workflows,
    half with context on every row (OTel), half transcript-like (context from workflow links).
    ``tag``: in every id (another tag, other workflows). ``scatter``: ids begin with a hash instead, so
    they fall among the store's ids as random ones do (with the tag, they sort after the store's: the
    cache's tables then skip row groups by their range of ids)."""
    import hashlib

    from golem_mcp.ingestion.records import Batch

    stages = ["analyst", "planner", "implementer", "reviewer"]
    models = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
    b = Batch()
    base = now - timedelta(hours=20)
    n = 0
    for w in range(n_workflows):
        key = f"{hashlib.md5(f'{tag}-{w}'.encode()).hexdigest()[:6]}-{w}" if scatter else f"{tag}-{w}"
        wf, sid, otel = f"wf-{key}", f"sess-{key}", w % 2 == 0
        t0 = base + timedelta(seconds=300 * w)
        b.add("workflows", {"workflow_id": wf, "path": "full", "complexity": "simple", "started_at": t0})
        b.add("sessions", {"session_id": sid, "first_seen": t0, "last_seen": t0 + timedelta(minutes=10)})
        b.add("workflow_links", {"session_id": sid, "valid_from": datetime(1970, 1, 1), "workflow_id": wf})
        for k, (stage, model) in enumerate(zip(stages, models, strict=True)):
            aid = f"ag-{key}-{k}"
            b.add("agents", {"agent_id": aid, "session_id": sid, "agent_type": stage, "model": model})
            for i in range(REQ_PER_STAGE):
                n += 1
                ts = t0 + timedelta(seconds=120 * k + 20 * i)
                b.add("api_requests", {"request_id": f"req-{key}-{k}-{i}", "session_id": sid, "agent_id": aid,
                                       "model": model, "timestamp": ts, "input_tokens": 6000, "output_tokens": 600,
                                       "cache_read_tokens": 5000, "cache_creation_tokens": 200, "duration_ms": 1800.0,
                                       "attempt": 1, "success": True, "workflow_id": wf if otel else None,
                                       "stage": stage if otel else None, "source_mask": 2 if otel else 1})
            for j in range(TOOLS_PER_STAGE):
                b.add("tool_calls", {"tool_use_id": f"toolu-{key}-{k}-{j}", "session_id": sid, "agent_id": aid,
                                     "tool_name": ["Read", "Grep", "Bash"][j], "success": True, "duration_ms": 250.0,
                                     "timestamp": t0 + timedelta(seconds=120 * k + 25 * j + 5),
                                     "tool_parameters": '{"file_path":"/src/late.py"}',
                                     "workflow_id": wf if otel else None, "stage": stage if otel else None})
    store.write(b)
    return n


def peak_rss_kb() -> int:
    """This process's peak RSS (KiB): the kernel's high-water mark of its memory (VmHWM), which starts
    afresh at exec. ``ru_maxrss`` does not: a child started by a parent that had grown (a store carried
    forward in it) reported the parent's peak as its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one_run(db: str, warm: bool = False, now: datetime | None = None) -> dict:
    """Child process: open the store, run the analysis once, report seconds and peak RSS. ``warm``:
    first a small ingest on the last day (timed apart), on a copy whose cache a cold run built."""
    from golem_mcp.analysis.runs import run_analysis
    from golem_mcp.store.db import Store

    t = time.perf_counter()
    with Store(db) as store:
        opened = time.perf_counter() - t
        ingested, ingest_s = 0, 0.0
        if warm:
            t = time.perf_counter()
            ingested = small_ingest(store, now=now or NOW)
            ingest_s = time.perf_counter() - t
        rss0 = peak_rss_kb()
        t, cpu = time.perf_counter(), time.process_time()
        run = run_analysis(store, now=now or NOW, days=7, trigger="bench", alert=True)
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        rss = peak_rss_kb()
        n = store.scalar("SELECT count(*) FROM api_requests")
    return {"requests": n, "kind": "warm" if warm else "cold", "ingested_requests": ingested,
            "ingest_seconds": round(ingest_s, 2), "status": run.status, "seconds": round(secs, 2),
            "cpu_seconds": round(cpu, 2), "open_seconds": round(opened, 2), "load_average": round(os.getloadavg()[0], 2),
            "peak_rss_mb": round(rss / 1024), "rss_before_mb": round(rss0 / 1024),
            "steps": (run.scanned or {}).get("seconds"), "produced": run.produced, "error": run.error_detail}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", default="1000000,10000000",
                    help="comma-separated store sizes in API requests (default 1000000,10000000)")
    ap.add_argument("--runs", type=int, default=1, help="analysis runs per size, each on a fresh copy (default 1)")
    ap.add_argument("--regen", action="store_true", help="rebuild the cached stores")
    ap.add_argument("--one", help="run once on this store file (it is written to: pass a copy) and print JSON")
    ap.add_argument("--warm", action="store_true", help="with --one: ingest 3,000 requests on the last day first")
    ap.add_argument("--now", help="with --one: the run's end (ISO time; default 2031-01-01, the generated stores')")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one, args.warm, datetime.fromisoformat(args.now) if args.now else None)))
        return 0
    sizes = [int(x.replace("_", "")) for x in args.requests.split(",") if x.strip()]
    DATA.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        src = current_store(n, args.regen)
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="golem-bench-", dir=DATA) as tmp:
                db = Path(tmp) / "bench.duckdb"
                shutil.copyfile(src, db)
                # cold: the first run on the store builds the aggregate cache; warm: a second process
                # ingests a few thousand requests on the last day, then runs again on that cache
                for mode in ("cold", "warm"):
                    cmd = [sys.executable, __file__, "--one", str(db)] + (["--warm"] if mode == "warm" else [])
                    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GOLEM_HOME": tmp})
                    if out.returncode != 0:
                        print(out.stderr, file=sys.stderr)
                        return 1
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    results.append(r)
                    extra = (f" after ingesting {r['ingested_requests']:,} requests in {r['ingest_seconds']:.2f}s"
                             if mode == "warm" else "")
                    print(f"{r['requests']:>11,} requests, {mode}{extra}: analysis run {r['status']} in "
                          f"{r['seconds']:.2f}s ({r['cpu_seconds']:.1f} CPU-s; load average {r['load_average']}), "
                          f"peak RSS {r['peak_rss_mb']} MB (store open {r['rss_before_mb']} MB)", flush=True)
                    print(f"    steps: {r['steps']}")
                    print(f"    produced: {r['produced']}")
                    if r["error"]:
                        print(f"    error: {r['error']}", file=sys.stderr)
    (DATA / "analysis_bench.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r["status"] == "succeeded" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
