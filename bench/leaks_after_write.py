"""Benchmark: ``find_token_leaks`` (``answers.leaks``, in process) called after a small write, the
case a daemon under ingestion meets: every write moves the newest request, so the 90-day history's
bounds and the analysis cache's state move with it, and the peer groups kept between calls
(``anomalies.PeerMemo``) do not serve.

    python bench/leaks_after_write.py --store COPY --base-src OLD/src --base-store COPY2 --rounds 12

Each round writes a small realistic batch (``analysis_bench.small_ingest``, a new tag and a time
10 minutes later each round), brings the analysis cache up to date (``warm_cache``: the catch-up,
timed apart) and then calls ``answers.leaks`` twice: right after the write (timed: the figure) and
again on the unchanged store. With ``--base-src``, a second worker runs the same rounds with that
source tree on its own copy of the store (the cache's versions differ: one copy each), the two
alternating round by round so the machine's load falls on both alike. Copies only: the rounds write.
The analyses' clock stands at ``--clock`` (GOLEM_CLOCK), after the generator's stores end: on the wall
clock their windows hold nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(path: str) -> None:
    sys.path.insert(0, str(HERE))
    import analysis_bench

    from golem_mcp.analysis import answers
    from golem_mcp.analysis.snapshot import warm_cache
    from golem_mcp.store.db import Store

    def timed(fn):  # type: ignore[no-untyped-def]
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        return out, round((time.process_time() - c) * 1000, 1), round((time.perf_counter() - w) * 1000, 1)

    with Store(path) as store:
        warm_cache(store)
        answers.leaks(store)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            r = int(line)
            _, ingest_cpu, _ = timed(lambda r=r: analysis_bench.small_ingest(
                store, now=analysis_bench.NOW + timedelta(minutes=10 * r), tag=f"r{r}"))
            _, warm_cpu, warm_wall = timed(lambda: warm_cache(store))
            ans, cpu, wall = timed(lambda: answers.leaks(store))
            _, cpu2, wall2 = timed(lambda: answers.leaks(store))
            print(json.dumps({"round": r, "ingest_cpu": ingest_cpu, "warm_cpu": warm_cpu, "warm_wall": warm_wall,
                              "cpu": cpu, "wall": wall, "again_cpu": cpu2, "again_wall": wall2,
                              "answer": hashlib.sha1(ans.model_dump_json().encode()).hexdigest()[:12]}),
                  flush=True)


def _spawn(src: str, store: str, clock: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": src, "GOLEM_CLOCK": clock}
    p = subprocess.Popen([sys.executable, __file__, "--worker", store], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and json.loads(p.stdout.readline()).get("ready")
    return p


def _p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--store", help="a copy of a prepared store (written to)")
    ap.add_argument("--base-src", help="the source tree (its src folder) to compare with")
    ap.add_argument("--base-store", help="another copy of the store, for --base-src")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--start", type=int, default=1, help="the first round's number (a store bench again: a later one)")
    ap.add_argument("--clock", default="2031-01-02T00:00:00",
                    help="the analyses' clock (GOLEM_CLOCK): after the generator's stores and their writes here")
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker)
    sides = {"this": _spawn(str(HERE.parent / "src"), a.store, a.clock)}
    if a.base_src:
        sides = {"base": _spawn(a.base_src, a.base_store, a.clock), **sides}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    loads = [os.getloadavg()[0]]
    for r in range(a.start, a.start + a.rounds):
        for name, p in sides.items():
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(f"{r}\n")
            p.stdin.flush()
            row = json.loads(p.stdout.readline())
            got[name].append(row)
            print(name, row, flush=True)
        loads.append(os.getloadavg()[0])
    for p in sides.values():
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    print(f"load (1 min) {min(loads):.1f}-{max(loads):.1f}")
    print("| side | leaks after a write: CPU-ms p50 / p95 | wall ms p50 / p95 | again (no write): CPU-ms p50 "
          "| catch-up (warm_cache) CPU-ms p50 |")
    for name, rows in got.items():
        def col(k: str, rows: list[dict[str, float]] = rows) -> list[float]:
            return [x[k] for x in rows]
        print(f"| {name} | {statistics.median(col('cpu')):.0f} / {_p95(col('cpu')):.0f} | "
              f"{statistics.median(col('wall')):.0f} / {_p95(col('wall')):.0f} | "
              f"{statistics.median(col('again_cpu')):.0f} | {statistics.median(col('warm_cpu')):.0f} |")


if __name__ == "__main__":
    main()
