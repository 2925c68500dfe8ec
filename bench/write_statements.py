"""Where a write's CPU goes: every statement of ``Store.write`` timed, for OTLP bodies written one
per transaction and merged several per transaction (as the daemon's writer merges the bodies of
exporters posting at once).

In-process, no HTTP: the bodies are ``otlp_ingest.py``'s (the fixtures' ``api_request`` and
``tool_result`` records with fresh ids), mapped by ``ingestion.otlp.logs_to_batch`` outside the
timer, written into a store that first takes ``--prefill`` writes. For each ``--merge`` value it
prints the CPU milliseconds of this process (DuckDB's threads included) per write and the records
per CPU-second (and the median write's CPU, less swayed by other
work on a shared machine), then the statements by CPU (per write), so the fixed cost of a write (its ~30
statements) shows beside what grows with its rows. Prints figures, asserts nothing. Run:
``python bench/write_statements.py [--prefill 60] [--writes 20] [--merge 1,4] [--top 25]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otlp_ingest import MARK, body_template  # noqa: E402

from golem_mcp.ingestion.otlp import logs_to_batch  # noqa: E402
from golem_mcp.ingestion.records import Batch  # noqa: E402
from golem_mcp.store import Store  # noqa: E402


class Timed:
    """The store's connection, every ``execute`` timed (CPU of the process, wall) by its statement's start."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.on = False
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def execute(self, sql: str, *args: Any, **kw: Any) -> Any:
        if not self.on:
            return self._con.execute(sql, *args, **kw)
        t, c = time.perf_counter(), time.process_time()
        out = self._con.execute(sql, *args, **kw)
        st = self.stats[re.sub(r"\s+", " ", sql)[:90]]
        st[0] += 1
        st[1] += time.process_time() - c
        st[2] += time.perf_counter() - t
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prefill", type=int, default=60, help="writes of one body each before measuring")
    ap.add_argument("--writes", type=int, default=20, help="writes measured per --merge value")
    ap.add_argument("--merge", default="1,4", help="bodies per write, comma-separated")
    ap.add_argument("--batch", type=int, default=500, help="log records per body")
    ap.add_argument("--top", type=int, default=25, help="statements listed")
    args = ap.parse_args()
    template = json.dumps(body_template(args.batch))
    ids = iter(range(1, 10**9))

    def batch(bodies: int) -> Batch:
        b = Batch()
        for _ in range(bodies):
            logs_to_batch(json.loads(template.replace(MARK, f"B{next(ids):012d}")), b)
        return b

    print(f"Store.write of OTLP bodies ({args.batch} records each), load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "s.duckdb") as store:
        for _ in range(args.prefill):
            store.write(batch(1))
        timed = Timed(store.con)
        store.con = timed  # type: ignore[assignment]
        for merge in (int(m) for m in args.merge.split(",")):
            batches = [batch(merge) for _ in range(args.writes)]
            timed.stats.clear()
            timed.on = True
            c0, t0 = time.process_time(), time.perf_counter()
            each = []
            for b in batches:
                c1 = time.process_time()
                store.write(b)
                each.append(time.process_time() - c1)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            timed.on = False
            n = args.writes
            records = n * merge * args.batch
            in_sql = sum(v[1] for v in timed.stats.values())
            print(f"\n{merge} bodies a write ({merge * args.batch} records): {cpu / n * 1000:,.0f} CPU-ms a write "
                  f"({wall / n * 1000:,.0f} ms wall), {records / cpu:,.0f} records per CPU-second; "
                  f"{sum(v[0] for v in timed.stats.values()) / n:.1f} statements a write, "
                  f"{in_sql / n * 1000:,.0f} CPU-ms of it in them; median {statistics.median(each) * 1000:,.0f} CPU-ms")
            print(f"{'CPU-ms':>8}{'count':>7}  statement (per write)")
            for sql, (count, c, _) in sorted(timed.stats.items(), key=lambda kv: -kv[1][1])[:args.top]:
                print(f"{c / n * 1000:>8.1f}{count / n:>7.1f}  {sql}")
        store.con = timed._con
    print(f"\nload average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
