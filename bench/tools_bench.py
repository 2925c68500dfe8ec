"""Benchmark: how long each question an agent or the maintainer asks takes on a large store.

    python bench/tools_bench.py                          # 1M and 10M requests side by side
    python bench/tools_bench.py --requests 200000        # quick

The analysis functions behind the MCP tools, called as the tools call them (on the store, the
daemon's way: its per-day analysis cache warm), on the generated stores of ``analysis_bench.py``
(built there and cached in ``bench/.data``; a copy is used, since warming the cache writes). Each
call is timed twice (the first also fills DuckDB's buffers; the best of the two is printed), then the
dashboard page is built once. Wall seconds per call, the CPU seconds of the process, and the load
average: on a shared 2-core machine the CPU time is the steadier figure. Results also go to
``bench/.data/tools_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import DATA, NOW, cached_store  # noqa: E402


def calls(st: Any, wf: str) -> list[tuple[str, Callable[[], Any]]]:
    from golem_mcp.analysis import (
        anomalies,
        bottlenecks,
        budgets,
        error_patterns,
        errors_loops,
        experiments,
        loops,
        predict,
        sequences,
        trends,
        workflows,
    )

    return [
        ("query_workflow_cost(workflow)", lambda: workflows.query_workflow_cost(st, workflow_id=wf)),
        ("budget_status(workflow, stage)", lambda: budgets.budget_status(st, workflow_id=wf, stage="implementer",
                                                                        now=NOW)),
        ("query_errors(workflow)", lambda: workflows.query_errors(st, workflow_id=wf)),
        ("find_loops(workflow)", lambda: loops.find_loops(st, workflow_id=wf, now=NOW)),
        ("detect_anomalies(workflow)", lambda: anomalies.detect_anomalies(st, workflow_id=wf, now=NOW)),
        ("compare_experiments", lambda: experiments.compare_experiments(st)),
        ("query_quality", lambda: trends.query_quality(st, now=NOW)),
        ("detect_anomalies", lambda: anomalies.detect_anomalies(st, now=NOW)),
        ("find_bottlenecks", lambda: bottlenecks.find_bottlenecks(st, now=NOW)),
        ("find_loops", lambda: loops.find_loops(st, now=NOW)),
        ("query_error_patterns", lambda: error_patterns.query_error_patterns(st, now=NOW)),
        ("query_trends", lambda: trends.query_trends(st, now=NOW)),
        ("tool_sequences", lambda: sequences.tool_sequences(st, now=NOW)),
        ("reusable_sequences", lambda: sequences.reusable_sequences(st, now=NOW)),
        ("errors_and_loops(sequences)", lambda: errors_loops.errors_and_loops(st, sections=["sequences"])),
        ("predict_cost", lambda: predict.predict_cost(st, now=NOW)),
        ("model_advice", lambda: predict.model_advice(st, now=NOW)),
    ]


def measure(db: Path) -> list[dict[str, Any]]:
    from golem_mcp.analysis.snapshot import warm_cache
    from golem_mcp.interfaces.dashboard import render
    from golem_mcp.store.db import Store

    out: list[dict[str, Any]] = []
    with Store(db) as st:
        warm_cache(st)  # what the daemon has done by the time anyone asks
        wf = st.scalar('SELECT workflow_id FROM api_requests WHERE workflow_id IS NOT NULL ORDER BY "timestamp" DESC '
                       "LIMIT 1")
        for name, fn in [*calls(st, wf), ("dashboard page (30 days)", lambda: render(st, 30, now=NOW))]:
            best, cpu = float("inf"), 0.0
            for _ in range(2 if not name.startswith("dashboard") else 1):
                t, c = time.perf_counter(), time.process_time()
                fn()
                best = min(best, time.perf_counter() - t)
                cpu = time.process_time() - c
            out.append({"call": name, "seconds": round(best, 3), "cpu_seconds": round(cpu, 2),
                        "load_average": round(os.getloadavg()[0], 2)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", default="1000000,10000000",
                    help="comma-separated store sizes in API requests (default 1000000,10000000)")
    args = ap.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.requests.split(",") if x.strip()]
    DATA.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for n in sizes:
        src = cached_store(n)
        with tempfile.TemporaryDirectory(prefix="golem-tools-", dir=DATA) as tmp:
            db = Path(tmp) / "bench.duckdb"
            shutil.copyfile(src, db)
            os.environ["GOLEM_HOME"] = tmp
            results[str(n)] = measure(db)
    names = [r["call"] for r in next(iter(results.values()))]
    print(f"{'call':32s}" + "".join(f"{f'{int(n):,} req':>24s}" for n in results))
    for i, name in enumerate(names):
        cells = [f"{r[i]['seconds']:8.2f} s ({r[i]['cpu_seconds']:.1f} CPU-s)" for r in results.values()]
        print(f"{name:32s}" + "".join(f"{c:>24s}" for c in cells))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    (DATA / "tools_bench.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
