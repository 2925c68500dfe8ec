"""Benchmark: the analysis cache's catch-up after a small write (what a tool call that reads the cache,
such as find_slow_stages or predict_cost, pays first when a write came since it was last refreshed).

    python bench/catchup_bench.py STORE                 # 20 new workflows, ids sorting after the store's
    python bench/catchup_bench.py STORE --scatter       # ids among the store's, as random ids fall
    python bench/catchup_bench.py STORE --profile       # and the statements that cost most

STORE is a copy of a prepared store (``mcp_tools_bench.py``'s ``analysis-N.prepared-sV.duckdb``) that
the bench may write to: each run brings its cache up to date, writes ``--workflows`` new workflows on
the last day (``analysis_bench.small_ingest``, with ids of their own each run) through ``Store.write``,
then times one ``warm_cache``: wall and this process's CPU (DuckDB's threads included). To compare two
checkouts, run each on the same copy in turn, alternating (``PYTHONPATH=<checkout>/src``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GOLEM_CLOCK", "2031-01-01T00:00:00")  # the generator's stores end then

from analysis_bench import small_ingest  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="a copy of a prepared store; it is written to")
    ap.add_argument("--workflows", type=int, default=20, help="workflows written before the catch-up (default 20)")
    ap.add_argument("--scatter", action="store_true", help="ids among the store's ids, not after them")
    ap.add_argument("--profile", action="store_true", help="also print the statements that cost most CPU")
    args = ap.parse_args()

    from golem_mcp.analysis.snapshot import warm_cache
    from golem_mcp.store.db import Store

    store = Store(args.store)
    warm_cache(store)  # current before the write: the catch-up below is the write's alone
    small_ingest(store, n_workflows=args.workflows, tag=f"late{time.time_ns() % 10**9}", scatter=args.scatter)
    cost: dict[str, float] = {}
    if args.profile:
        reader = Store.reader

        class Timed:
            def __init__(self, cur: Any) -> None:
                self._cur = cur

            def execute(self, sql: str, *a: Any) -> Any:
                c = time.process_time()
                r = self._cur.execute(sql, *a)
                key = " ".join(sql.split())[:100]
                cost[key] = cost.get(key, 0.0) + time.process_time() - c
                return r

            def __getattr__(self, name: str) -> Any:
                return getattr(self._cur, name)

        @contextlib.contextmanager
        def timed_reader(self: Store) -> Iterator[Any]:
            with reader(self) as cur:
                yield Timed(cur)

        Store.reader = timed_reader  # type: ignore[method-assign,assignment]
    c, t = time.process_time(), time.perf_counter()
    days = warm_cache(store)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    load = os.getloadavg()[0]
    print(f"catch-up after {args.workflows} workflows{' (scattered ids)' if args.scatter else ''}: "
          f"{days} day(s), {wall:.2f} s wall, {cpu:.2f} CPU-s (load {load:.1f})")
    for k, v in sorted(cost.items(), key=lambda x: -x[1])[:15]:
        print(f"  {v * 1000:6.0f} CPU-ms  {k}")
    store.close()


if __name__ == "__main__":
    main()
