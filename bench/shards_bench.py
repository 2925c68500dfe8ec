#!/usr/bin/env python3
"""Shard export and import (issue 11): rows per second each way, on a history from ``gen_history.py``.

    python bench/shards_bench.py --size-gb 0.1

Imports the generated transcripts into store A (library path, not timed), then times:
(a) ``export`` of everything into an empty folder: rows/s and the shards' size;
(b) an export right after it (nothing new): the cost of asking;
(c) ``import_shards`` of that folder into a fresh store B: rows/s;
(d) importing the folder again (every file listed as merged) and merging it again anyway
    (``imported_shards`` emptied: every row goes through Store.write and changes nothing).
Checks that B's requests table holds A's rows exactly. Results on stdout and in
bench/.data/shards_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import gen_history  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=0.1)
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    hist = DATA / f"shards-history-{args.size_gb}"
    if not hist.exists():
        gen_history.main(["--out", str(hist), "--size-gb", str(args.size_gb)])
    projects = hist / ".claude" / "projects"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GOLEM_HOME"] = str(Path(tmp) / "home-a")
        os.environ["GOLEM_MACHINE"] = "bench-a"
        from golem_mcp.ingestion.importer import Importer
        from golem_mcp.store.db import Store
        from golem_mcp.store.shards import export, import_shards

        out: dict[str, object] = {"size_gb": args.size_gb}
        folder = Path(tmp) / "shards"
        with Store(Path(tmp) / "a.duckdb") as a:
            Importer(a).run([projects])
            t = time.perf_counter()
            res = export(a, folder)
            dt = time.perf_counter() - t
            rows = sum(res["rows"].values())
            size = sum(f.stat().st_size for f in folder.iterdir())
            out.update(export_rows=rows, export_s=round(dt, 3), export_rows_per_s=round(rows / dt),
                       shard_mb=round(size / 1e6, 2), files=len(res["files"]))
            t = time.perf_counter()
            again = export(a, folder)
            out["export_nothing_new_s"] = round(time.perf_counter() - t, 3)
            assert not again["files"], again
            requests_a = a.scalar("SELECT count(*) FROM api_requests")
        os.environ["GOLEM_HOME"] = str(Path(tmp) / "home-b")
        os.environ["GOLEM_MACHINE"] = "bench-b"
        with Store(Path(tmp) / "b.duckdb") as b:
            t = time.perf_counter()
            got = import_shards(b, [folder])
            dt = time.perf_counter() - t
            n = sum(got["rows"].values())
            out.update(import_rows=n, import_s=round(dt, 3), import_rows_per_s=round(n / dt))
            t = time.perf_counter()
            import_shards(b, [folder])
            out["reimport_listed_s"] = round(time.perf_counter() - t, 3)
            b.con.execute("DELETE FROM imported_shards")
            t = time.perf_counter()
            import_shards(b, [folder])
            out["remerge_s"] = round(time.perf_counter() - t, 3)
            assert b.scalar("SELECT count(*) FROM api_requests") == requests_a
    for k, v in out.items():
        print(f"{k:24} {v}")
    (DATA / "shards_bench.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
