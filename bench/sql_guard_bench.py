"""Benchmark: what query_sql's walls cost, and the memory a hostile query takes.

    python bench/sql_guard_bench.py                         # 3M requests (built once into bench/.data)
    python bench/sql_guard_bench.py --requests 300000       # quick
    python bench/sql_guard_bench.py --before OLD/src        # also the hostile query on another checkout

1. Overhead: simple queries through ``run_read_only`` (parse-tree check, then a READ ONLY transaction
   rolled back afterwards, DuckDB's parser picking the one statement, the time and memory watch)
   against the path it replaced (the parse-tree check, then the query on a plain cursor with a
   timer). Median of 30 calls each, milliseconds, side by side.
2. The hostile query of the issue, ``string_agg`` over every request, each run in a fresh process
   (its store copied) whose RSS is sampled every 10 ms: peak RSS, seconds, and how it ended. With
   ``--before``, the same in a process that imports golem_mcp from that source folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import cached_store  # noqa: E402

HOSTILE = "SELECT string_agg(request_id || repeat('x', 2000), ',') AS s FROM api_requests"
SIMPLE = [
    ("SELECT 1", "SELECT 1"),
    ("count(*) one session", "SELECT count(*), sum(input_tokens) FROM api_requests WHERE session_id = 'sess-7'"),
    ("group by stage, 3M rows", "SELECT stage, sum(input_tokens) FROM api_requests GROUP BY stage"),
]

# run in a child process: argv = src folder, db, sql; prints one JSON line
CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from golem_mcp.analysis import sql_guard
from golem_mcp.config import Settings
from golem_mcp.store.db import Store

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
peak, done = [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.01)
st = Store(sys.argv[2], settings=Settings())
opened = rss()
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
try:
    out = sql_guard.run_read_only(st, sys.argv[3])
    ended = f"answered ({out['note']})"
except Exception as e:
    ended = f"{type(e).__name__}: {str(e)[:90]}"
took = time.perf_counter() - t
done.set()
print(json.dumps({"peak_mb": peak[0], "open_mb": opened, "s": took, "ended": ended}))
"""


def hostile(src: Path, db: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "golem.duckdb"
        shutil.copy(db, copy)
        out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(copy), HOSTILE],
                             capture_output=True, text=True, timeout=600)
    if out.returncode:
        return {"peak_mb": float("nan"), "open_mb": float("nan"), "s": float("nan"),
                "ended": f"process died ({out.returncode}): {out.stderr.strip()[-200:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def overhead(db: Path) -> list[tuple[str, float, float]]:
    from golem_mcp.analysis import sql_guard
    from golem_mcp.config import Settings
    from golem_mcp.store.db import Store

    def replaced(st: Store, sql: str) -> None:
        """What query_sql did before: the parse-tree check, then a plain cursor with a timer."""
        sql_guard.check_read_only(st, sql)
        with st.reader() as cur:
            timer = threading.Timer(10, cur.interrupt)
            timer.start()
            try:
                cur.execute(sql).fetchmany(101)
            finally:
                timer.cancel()

    rows = []
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "golem.duckdb"
        shutil.copy(db, copy)
        with Store(copy, settings=Settings()) as st:
            for name, sql in SIMPLE:
                times: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(30):
                    for kind in ("old", "new"):
                        t = time.perf_counter()
                        if kind == "old":
                            replaced(st, sql)
                        else:
                            sql_guard.run_read_only(st, sql)
                        times[kind].append((time.perf_counter() - t) * 1000)
                rows.append((name, statistics.median(times["old"]), statistics.median(times["new"])))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3_000_000)
    ap.add_argument("--before", type=Path, help="a golem_mcp source folder (its src/) to compare with")
    args = ap.parse_args()
    db = cached_store(args.requests)
    print(f"store: {args.requests:,} requests ({db.stat().st_size / 2**20:,.0f} MB)\n")
    print("1. simple queries, median ms of 30   before (check + cursor)   now (both walls + watch)")
    for name, old, new in overhead(db):
        print(f"   {name:28} {old:10.2f} {new:26.2f}   (+{new - old:.2f})")
    src_now = Path(__file__).resolve().parents[1] / "src"
    print(f"\n2. {HOSTILE}")
    runs = [("now", src_now)] + ([("before", args.before)] if args.before else [])
    for label, src in runs:
        r = hostile(src, db)
        print(f"   {label:7} peak RSS {r['peak_mb']:7,.0f} MB (at open {r['open_mb']:,.0f})  {r['s']:5.1f} s  {r['ended']}")


if __name__ == "__main__":
    main()
