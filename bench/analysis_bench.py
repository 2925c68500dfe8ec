"""Benchmark: the full analysis run on a store of N API requests (default 10 million).

Default 1 million requests so that it finishes in a few minutes; ``--requests 10000000`` for the
issue's size. The store is built inside DuckDB with ``range()`` inserts (no Python rows): workflows of 4 stages, 5
requests and 3 tool calls per stage, spread over 60 days, with one slow stage and one loop planted.

    python bench/analysis_bench.py [--requests 10000000] [--db FILE] [--keep]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from golem_mcp.analysis.runs import run_analysis
from golem_mcp.store.db import Store

STAGES = "['analyst', 'planner', 'implementer', 'reviewer']"
MODELS = "['claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-sonnet-4-5', 'claude-opus-4-1']"
REQ_PER_STAGE = 5


def build(store: Store, n_requests: int, now: datetime) -> dict[str, int]:
    n_stage_runs = max(n_requests // REQ_PER_STAGE, 4)
    n_wf = n_stage_runs // 4
    con = store.con
    t0 = f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' - INTERVAL 60 DAY"
    # one workflow every (60 days / n_wf); stages follow each other, requests inside a stage 20 s apart
    con.execute(f"""
        INSERT INTO workflows (workflow_id, path, complexity, experiment_id, started_at)
        SELECT 'wf-' || i, CASE WHEN i % 3 = 0 THEN 'fast-track' ELSE 'full' END,
               CASE WHEN i % 2 = 0 THEN 'simple' ELSE 'complex' END, 'arm-' || (i % 2),
               {t0} + to_microseconds(CAST(i * (60 * 86400e6 / {n_wf}) AS BIGINT))
        FROM range({n_wf}) t(i)""")
    con.execute(f"""
        INSERT INTO agents (agent_id, session_id, agent_type, model, started_at)
        SELECT 'ag-' || i, 'sess-' || (i // 4), {STAGES}[i % 4 + 1], {MODELS}[i % 4 + 1], NULL
        FROM range({n_wf * 4}) t(i)""")
    con.execute(f"""
        INSERT INTO api_requests (request_id, session_id, agent_id, model, "timestamp", input_tokens, output_tokens,
                                  cache_read_tokens, cache_creation_tokens, recorded_cost_usd, duration_ms, attempt,
                                  success, workflow_id, stage, experiment_id, source_mask)
        SELECT 'r-' || i, 'sess-' || (i // {4 * REQ_PER_STAGE}), 'ag-' || (i // {REQ_PER_STAGE}),
               {MODELS}[(i // {REQ_PER_STAGE}) % 4 + 1],
               {t0} + to_microseconds(CAST((i // {4 * REQ_PER_STAGE}) * (60 * 86400e6 / {n_wf}) AS BIGINT))
                    + to_seconds(((i // {REQ_PER_STAGE}) % 4) * 120
                                 + (i % {REQ_PER_STAGE}) * 20 * CASE WHEN (i // {REQ_PER_STAGE}) % 4 = 2
                                     AND i > {n_wf * 4 * REQ_PER_STAGE} * 0.9 THEN 3 ELSE 1 END),
               5000 + hash(i) % 2000, 500 + hash(i + 1) % 300, 4000, 100, 0.01 + (hash(i) % 100) / 10000.0,
               1500 + hash(i + 2) % 1000, CASE WHEN i % 9973 = 0 THEN 2 ELSE 1 END, true,
               'wf-' || (i // {4 * REQ_PER_STAGE}), {STAGES}[(i // {REQ_PER_STAGE}) % 4 + 1], 'arm-' || ((i // {4 * REQ_PER_STAGE}) % 2), 2
        FROM range({n_wf * 4 * REQ_PER_STAGE}) t(i)""")
    tools = "['Read', 'Grep', 'Bash']"
    con.execute(f"""
        INSERT INTO tool_calls (tool_use_id, session_id, agent_id, request_id, tool_name, "timestamp", success,
                                duration_ms, error, error_type, tool_parameters, workflow_id, stage, experiment_id, source_mask)
        SELECT 'tu-' || i, 'sess-' || (i // 12), 'ag-' || (i // 3), 'r-' || ((i // 3) * {REQ_PER_STAGE} + i % 3),
               {tools}[i % 3 + 1],
               {t0} + to_microseconds(CAST((i // 12) * (60 * 86400e6 / {n_wf}) AS BIGINT)) + to_seconds(((i // 3) % 4) * 120 + (i % 3) * 25 + 5),
               NOT (i % 3 = 2 AND (i % 17 = 0 OR i // 12 = {n_wf - 3})), 200 + hash(i) % 100,
               CASE WHEN i % 3 = 2 AND (i % 17 = 0 OR i // 12 = {n_wf - 3}) THEN 'Exit code 1' END,
               CASE WHEN i % 3 = 2 AND (i % 17 = 0 OR i // 12 = {n_wf - 3}) THEN 'shell_exit' END,
               CASE WHEN i // 12 = {n_wf - 3} AND i % 3 = 2 THEN '{{"bash_command":"pytest -x"}}'
                    ELSE '{{"file_path":"/src/f' || i || '.py"}}' END,
               'wf-' || (i // 12), {STAGES}[(i // 3) % 4 + 1], 'arm-' || ((i // 12) % 2), 2
        FROM range({n_wf * 4 * 3}) t(i)""")
    con.execute("CHECKPOINT")
    return store.table_counts()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000,
                    help="API requests to generate (default 1,000,000; the issue's target size is 10,000,000)")
    ap.add_argument("--db", help="DuckDB file (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="golem-bench-")
    db = Path(args.db) if args.db else Path(tmp) / "bench.duckdb"
    now = datetime(2031, 1, 1)
    with Store(db) as store:
        t = time.perf_counter()
        counts = build(store, args.requests, now)
        built = time.perf_counter() - t
        print(f"built {counts['api_requests']:,} requests, {counts['tool_calls']:,} tool calls, "
              f"{counts['workflows']:,} workflows in {built:.1f}s")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        run = run_analysis(store, now=now, days=7, trigger="bench", alert=True)
        secs = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"analysis run {run.status} in {secs:.2f}s; peak RSS {rss / 1024:.0f} MB "
              f"(before the run {rss0 / 1024:.0f} MB)")
        print(f"  steps: {run.scanned and run.scanned.get('seconds')}")
        print(f"  produced: {run.produced}")
        if run.error_detail:
            print(f"  error: {run.error_detail}", file=sys.stderr)
    if not args.keep and not args.db:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
