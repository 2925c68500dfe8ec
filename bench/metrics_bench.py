"""Benchmark: what one reading of ``GET /metrics`` costs on a large store.

    python bench/metrics_bench.py                               # 1M requests + a 0.25 GB imported history
    python bench/metrics_bench.py --requests 1000000 10000000   # the generated stores of analysis_bench.py
    python bench/metrics_bench.py --size-gb 1.0 --requests      # only a gen_history.py history, imported

Two kinds of store: ``analysis_bench.py``'s generated ones (``--requests N ...``, cached in
``bench/.data``), and a Claude Code history written by ``gen_history.py`` (``--size-gb``; 0 skips it)
and imported with ``golem-mcp import`` into ``bench/.data/metrics-history.duckdb`` (reused while the
history's size is the same). Each store: ``store_metrics`` (the store's reading) three times, best
and median wall seconds plus CPU seconds, then the text rendering, the number of series and bytes.
The daemon reuses a reading for max(10 s, 10x its duration), so a reading's time bounds the share of
a core that scraping can take. Results also go to ``bench/.data/metrics_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import DATA, cached_store  # noqa: E402


def history_store(size_gb: float) -> Path:
    import gen_history

    out = DATA / "history"
    db = DATA / "metrics-history.duckdb"
    marker = DATA / "metrics-history.json"
    want = {"size_gb": size_gb}
    if db.exists() and marker.exists() and json.loads(marker.read_text()) == want:
        return db
    summary = gen_history.generate(out, size_gb)
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    t = time.perf_counter()
    env = {**os.environ, "GOLEM_HOME": str(DATA / "metrics-home")}
    subprocess.run([sys.executable, "-m", "golem_mcp", "import", summary["projects_dir"], "--db", str(db), "--create"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    print(f"  imported {summary['bytes'] / 1e9:.2f} GB of transcripts in {time.perf_counter() - t:.1f}s", flush=True)
    marker.write_text(json.dumps(want))
    return db


def measure(db: Path, runs: int = 3) -> dict[str, Any]:
    from golem_mcp.analysis.metrics import store_metrics
    from golem_mcp.interfaces.metrics import render
    from golem_mcp.store.db import Store

    walls, cpus = [], []
    with Store(db, read_only=True) as st:
        n = st.scalar("SELECT count(*) FROM api_requests")
        tools = st.scalar("SELECT count(*) FROM tool_calls")
        for _ in range(runs):
            t, c = time.perf_counter(), time.process_time()
            m = store_metrics(st)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        t = time.perf_counter()
        text = render(m)
        render_s = time.perf_counter() - t
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"store": db.name, "api_requests": n, "tool_calls": tools, "best_s": round(min(walls), 3),
            "median_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
            "render_s": round(render_s, 4), "series": series, "bytes": len(text.encode()),
            "load": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, nargs="*", default=[1_000_000],
                   help="sizes of analysis_bench.py's generated stores (none: skip them)")
    p.add_argument("--size-gb", type=float, default=0.25, help="GB of gen_history.py transcripts to import (0: skip)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    stores = [cached_store(n) for n in args.requests]
    if args.size_gb > 0:
        stores.append(history_store(args.size_gb))
    results = []
    for db in stores:
        r = measure(db, args.runs)
        results.append(r)
        print(f"{r['store']:>32}: {r['api_requests']:>10,} requests {r['tool_calls']:>10,} tool calls  "
              f"reading best {r['best_s']:.3f}s median {r['median_s']:.3f}s ({r['cpu_s']:.2f} CPU-s)  "
              f"render {r['render_s'] * 1000:.1f} ms  {r['series']} series, {r['bytes'] / 1000:.1f} kB  "
              f"(load {r['load']})", flush=True)
    (DATA / "metrics_bench.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
