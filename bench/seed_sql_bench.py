"""Benchmark: seed 003's and 004's read queries (tests/seed_sql/seed003.sql, seed004.sql) through
query_sql, on the generated stores of ``analysis_bench.py`` (cached in ``bench/.data``; a copy is
opened, since opening migrates). Each query runs twice; the best wall time and its CPU seconds are
printed, with the load average (on a shared 2-core machine the CPU time is the steadier figure).

    python bench/seed_sql_bench.py                       # 1M requests
    python bench/seed_sql_bench.py --requests 200000     # quick
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import DATA, cached_store  # noqa: E402

SEED_SQL = Path(__file__).resolve().parents[1] / "tests" / "seed_sql"


def queries() -> list[tuple[str, str]]:
    out = []
    for f in ("seed003.sql", "seed004.sql"):
        for part in (SEED_SQL / f).read_text().split("-- name: ")[1:]:
            head, body = part.split("\n", 1)
            if "(write)" not in head:
                out.append((re.sub(r"\s*\(read\)", "", head.strip()), body.strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    from golem_mcp.analysis.sql_guard import run_read_only
    from golem_mcp.store.db import Store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000, help="store size in API requests (default 1M)")
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    src = cached_store(args.requests)
    with tempfile.TemporaryDirectory(prefix="golem-seedsql-", dir=DATA) as tmp:
        db = Path(tmp) / "bench.duckdb"
        shutil.copyfile(src, db)
        os.environ["GOLEM_HOME"] = tmp
        with Store(db) as st:
            print(f"{args.requests:,} requests; seconds per query through query_sql (best of 2), CPU seconds")
            for name, sql in queries():
                best, cpu = float("inf"), 0.0
                for _ in range(2):
                    t, c = time.perf_counter(), time.process_time()
                    run_read_only(st, sql, max_rows=1000, timeout_s=600)
                    best, cpu = min(best, time.perf_counter() - t), time.process_time() - c
                print(f"  {name:34s} {best:7.2f} s  {cpu:6.1f} CPU-s", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
