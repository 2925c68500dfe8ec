"""What a checkpoint holds while OTLP records are written: in one process, ``Store.write`` of the OTLP
bench's bodies (four 500-record bodies a write, as the daemon's writer commits four exporters'), with
DuckDB's automatic checkpoint out of the way (threshold 1 GB) and an explicit ``CHECKPOINT`` each
time the WAL passes ``--checkpoint-mb``. For each checkpoint it prints the process's resident memory
before, at its highest 20 ms sample during, and after (with the kernel's ``LazyFree``: pages freed
but still counted as resident), the most DuckDB accounted for itself (``duckdb_memory()``, which its
memory limit bounds) and, where DuckDB's allocator is its own jemalloc, the most that allocator had
allocated: the difference is what DuckDB allocated outside its limit. Prints figures, asserts nothing.

Run: ``python bench/checkpoint_memory.py [--requests 310000] [--budget 400] [--checkpoint-mb 240]``
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otlp_ingest import MARK, body_template  # noqa: E402

from golem_mcp.config import Settings  # noqa: E402
from golem_mcp.ingestion.otlp import logs_to_batch  # noqa: E402
from golem_mcp.ingestion.records import Batch  # noqa: E402
from golem_mcp.store import Store  # noqa: E402
from golem_mcp.store import db as store_db  # noqa: E402


def proc_mb(field: str, name: str = "status") -> int:
    for line in Path(f"/proc/self/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def jemalloc_allocated() -> Any:
    """A function giving the MB DuckDB's jemalloc has allocated, or None where it has none."""
    import duckdb

    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(duckdb.__file__)), "_duckdb*.so"))
    try:
        mallctl = ctypes.CDLL(libs[0]).duckdb_je_mallctl
    except (IndexError, OSError, AttributeError):
        return None

    def allocated() -> int:
        epoch = ctypes.c_uint64(1)
        mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
        v, n = ctypes.c_size_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        mallctl(b"stats.allocated", ctypes.byref(v), ctypes.byref(n), None, ctypes.c_size_t(0))
        return v.value >> 20

    return allocated


def sample(cur: Any, je: Any, most: dict[str, float], stop: threading.Event) -> None:
    """The highest RSS, DuckDB's own accounting and its allocator's, every 20 ms until ``stop``."""
    while not stop.wait(0.02):
        most["rss"] = max(most["rss"], proc_mb("VmRSS"))
        own = cur.execute("SELECT sum(memory_usage_bytes) / 2**20 FROM duckdb_memory()").fetchone()
        most["duckdb"] = max(most["duckdb"], own[0] if own else 0.0)
        if je:
            most["jemalloc"] = max(most["jemalloc"], je())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=310_000, help="API requests' worth of records written")
    ap.add_argument("--budget", type=int, default=400, help="memory_budget_mb (DuckDB's limit: three quarters)")
    ap.add_argument("--checkpoint-mb", type=float, default=240, help="CHECKPOINT once the WAL passes this")
    args = ap.parse_args()

    config = store_db.Store._config

    def no_auto_checkpoint(self: Store, read_only: bool) -> dict[str, Any]:
        return {**config(self, read_only), "checkpoint_threshold": "1GB"}

    store_db.Store._config = no_auto_checkpoint  # type: ignore[method-assign]
    template = json.dumps(body_template(500))
    per_body = template.count('"api_request"')
    ids = iter(range(1, 10**9))
    je = jemalloc_allocated()
    settings = Settings()
    settings.memory_budget_mb = args.budget
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "s.duckdb", settings=settings) as store:
        wal = Path(d) / "s.duckdb.wal"
        print(f"budget {args.budget} MB (DuckDB's limit {store.memory_limit_mb} MB), CHECKPOINT past "
              f"{args.checkpoint_mb:.0f} MB of WAL, load average {os.getloadavg()[0]:.1f}; RSS open {proc_mb('VmRSS')} MB")
        c0, t0, n = time.process_time(), time.monotonic(), 0
        while n < args.requests:
            b = Batch()
            for _ in range(4):
                logs_to_batch(json.loads(template.replace(MARK, f"B{next(ids):012d}")), b)
            store.write(b)
            n += 4 * per_body
            size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
            if size < args.checkpoint_mb:
                continue
            most: dict[str, float] = {"rss": 0, "duckdb": 0, "jemalloc": 0}
            stop = threading.Event()
            before, s = proc_mb("VmRSS"), time.monotonic()
            cur = store.con.cursor()  # its own, closed after: a cursor kept open holds a transaction
            watch = threading.Thread(target=sample, args=(cur, je, most, stop))
            watch.start()
            store.con.execute("CHECKPOINT")
            stop.set()
            watch.join()
            cur.close()
            print(f"{n:>9,} requests, WAL {size:.0f} MB: RSS {before} MB before, at most {most['rss']:.0f} during "
                  f"({time.monotonic() - s:.1f} s), {proc_mb('VmRSS')} after (LazyFree "
                  f"{proc_mb('LazyFree', 'smaps_rollup')}); DuckDB's own at most {most['duckdb']:.0f} MB"
                  + (f", its allocator's at most {most['jemalloc']:.0f} MB" if je else ""), flush=True)
        print(f"{n:,} requests in {time.monotonic() - t0:.0f} s, {time.process_time() - c0:.0f} CPU-s; "
              f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
