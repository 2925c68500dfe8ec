"""Benchmark: reusable sequences (learned from successful workflows) on a large store, beside the n-gram
count it extends and the plain SQL of the same candidate counts.

    python bench/sequences_bench.py                      # 1M requests
    python bench/sequences_bench.py --requests 200000    # quick

The store of ``analysis_bench.py`` (cached in ``bench/.data`` or ``$GOLEM_BENCH_DATA``; a copy is used)
has almost no failed workflow, so the analysis would stop at its first check. The copy is given what it
needs to go the whole way: a major review finding for every 5th workflow, and in those workflows the
implementer's Grep calls become Glob (a sequence the successful ones have and the failed ones lack).
Then, each timed twice (best printed), wall and process CPU seconds with the load average:

- ``reusable_sequences``: the analysis (lengths 2-4, tool and stage sequences, the test, the evidence);
- ``tool_sequences(learn=False)``: the most common 3-grams per stage, what the report had before;
- plain SQL: the same 2-4-gram candidate counts per outcome as one GROUP BY, no statistics.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import DATA, NOW, cached_store  # noqa: E402

PLAIN = """
    WITH t AS (
        SELECT workflow_id, stage,
               list(tool_name) OVER (PARTITION BY workflow_id, stage, session_id, agent_id
                                     ORDER BY "timestamp", tool_use_id ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS tail
        FROM tools WHERE "timestamp" >= ? AND "timestamp" < ?),
    g AS (SELECT DISTINCT workflow_id, stage, array_to_string(tail[len(tail) - L + 1:], '->') AS gram
          FROM t, range(2, 5) r(L) WHERE len(tail) >= L)
    SELECT stage, gram, count(*) FILTER (WHERE o.successful) AS good, count(*) FILTER (WHERE NOT o.successful) AS bad
    FROM g JOIN workflow_outcomes o USING (workflow_id) GROUP BY ALL HAVING good >= 3"""


def prepare(db: Path) -> dict[str, int]:
    from golem_mcp.store.db import Store

    with Store(db) as st, st.memory.heavy():  # bulk SQL around Store.write: DuckDB's whole budget
        con = st.con
        con.execute("""
            INSERT INTO review_reports (report_id, v, ts, workflow_id, critical, major, minor, rework)
            SELECT 'bench-seq-' || workflow_id, 1, started_at, workflow_id, 0, 1, 0, false
            FROM workflows WHERE hash(workflow_id) % 5 = 0 ON CONFLICT DO NOTHING""")
        con.execute("""
            UPDATE tool_calls SET tool_name = 'Glob'
            WHERE tool_name = 'Grep' AND r_stage = 'implementer'
              AND r_workflow_id IN (SELECT workflow_id FROM review_reports WHERE report_id LIKE 'bench-seq-%')""")
        con.execute("CHECKPOINT")
        return {"workflows": st.scalar("SELECT count(*) FROM workflows"),
                "failed": st.scalar("SELECT count(*) FROM workflow_outcomes WHERE NOT successful"),
                "tool_calls": st.scalar("SELECT count(*) FROM tool_calls")}


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    best, cpu, out = float("inf"), 0.0, None
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        if time.perf_counter() - t < best:
            best, cpu = time.perf_counter() - t, time.process_time() - c
    return best, cpu, out


def main(argv: list[str] | None = None) -> int:
    from datetime import timedelta

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    src = cached_store(args.requests)
    with tempfile.TemporaryDirectory(prefix="golem-seq-", dir=DATA) as tmp:
        db = Path(tmp) / "bench.duckdb"
        shutil.copyfile(src, db)
        os.environ["GOLEM_HOME"] = tmp
        shape = prepare(db)
        from golem_mcp.analysis import sequences
        from golem_mcp.store.db import Store

        with Store(db) as st:
            start = NOW - timedelta(days=30)
            rows = [("reusable_sequences", timed(lambda: sequences.reusable_sequences(st, now=NOW))),
                    ("tool_sequences(learn=False)", timed(lambda: sequences.tool_sequences(st, now=NOW, learn=False))),
                    ("plain SQL candidate counts", timed(lambda: st.query(PLAIN, [start, NOW])))]
    found = rows[0][1][2]
    base = rows[2][1][0]
    print(f"{args.requests:,} requests: {shape['workflows']:,} workflows ({shape['failed']:,} failed), "
          f"{shape['tool_calls']:,} tool calls; window 30 days: {found.successful_workflows:,} successful, "
          f"{found.failed_workflows:,} failed, {found.tested} sequences tested, {len(found.sequences)} reported")
    for s in found.sequences[:3]:
        print("  " + s.line())
    print(f"{'call':32s}{'wall s':>9s}{'CPU s':>8s}{'x plain SQL':>13s}")
    for name, (wall, cpu, _) in rows:
        print(f"{name:32s}{wall:9.2f}{cpu:8.2f}{wall / base:13.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB; "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
