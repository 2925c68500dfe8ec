#!/usr/bin/env python3
"""What the store's value checks (``store/checks.py``) cost on the write path, against the Arrow
conversion they ride on: rows of a generated history (``gen_history.py``) and of OTLP bodies are
staged per table both ways, in one process, back to back, so a busy machine slows both alike.

    python bench/checks_bench.py [--size-mb 60] [--repeat 3]

Prints rows per table, the best time of ``pa.Table.from_pylist`` (what the store did before) and of
``checks.stage`` (conversion plus every check), and the difference per million rows. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def transcript_rows(size_mb: float) -> dict[str, list[dict]]:
    from golem_mcp.ingestion.importer import read_file
    from golem_mcp.ingestion.records import Batch

    hist = HERE / ".data" / "history-0.25gb" / ".claude" / "projects"
    if not hist.exists():
        import gen_history

        gen_history.main(["--out", str(HERE / ".data" / "history-0.25gb"), "--size-gb", "0.25"])
    batch = Batch()
    done = 0
    for f in sorted(hist.rglob("*.jsonl")):
        st = f.stat()
        read_file(f, st, "transcript", None, batch)
        done += st.st_size
        if done >= size_mb * 1e6:
            break
    return dict(batch.rows)


def otlp_rows(records: int) -> dict[str, list[dict]]:
    import json

    import otlp_ingest

    from golem_mcp.ingestion import otlp
    from golem_mcp.ingestion.records import Batch

    batch = Batch()
    body = json.dumps(otlp_ingest.body_template(records)).encode()
    otlp.to_batch("logs", otlp.decode("logs", body, "application/json"), batch)
    return dict(batch.rows)


def bench(name: str, rows_by_table: dict[str, list[dict]], repeat: int) -> None:
    import pyarrow as pa

    from golem_mcp.config import Settings
    from golem_mcp.ingestion.records import ORIGIN
    from golem_mcp.store import Store
    from golem_mcp.store.checks import arrow_types, stage
    from golem_mcp.store.db import KEYS

    store = Store(":memory:", settings=Settings.load())
    _, arrow = arrow_types()
    print(f"\n{name}")
    print(f"{'table':<16}{'rows':>10}{'from_pylist ms':>16}{'stage ms':>10}{'checks ms':>11}{'per 1M rows':>13}")
    tot = [0, 0.0, 0.0]
    for table, rows in sorted(rows_by_table.items()):
        types = store._types[table]
        present = {k for r in rows for k in r} - {ORIGIN}
        cols = [c for c in types if c in present or c in KEYS[table]]
        schema = pa.schema([(c, arrow.get(types[c], pa.string())) for c in cols])
        plain = checked = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            pa.Table.from_pylist(rows, schema=schema)
            plain = min(plain, time.perf_counter() - t)
            t = time.perf_counter()
            stage(table, rows, cols, types, KEYS[table], lambda row, p: None)
            checked = min(checked, time.perf_counter() - t)
        extra = checked - plain
        tot[0] += len(rows)
        tot[1] += plain
        tot[2] += checked
        print(f"{table:<16}{len(rows):>10,}{plain * 1e3:>16.1f}{checked * 1e3:>10.1f}{extra * 1e3:>11.1f}"
              f"{extra / max(1, len(rows)) * 1e9:>10.0f} ms")
    extra = tot[2] - tot[1]
    print(f"{'all':<16}{tot[0]:>10,}{tot[1] * 1e3:>16.1f}{tot[2] * 1e3:>10.1f}{extra * 1e3:>11.1f}"
          f"{extra / max(1, tot[0]) * 1e9:>10.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=60.0, help="transcript megabytes to stage")
    ap.add_argument("--otlp-records", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("GOLEM_HOME", str(HERE / ".data" / "checks-home"))
    print(f"load average {os.getloadavg()[0]:.1f}")
    bench(f"transcripts ({args.size_mb:g} MB of a generated history)", transcript_rows(args.size_mb), args.repeat)
    bench(f"OTLP logs ({args.otlp_records:,} api_request and tool_result records)", otlp_rows(args.otlp_records),
          args.repeat)


if __name__ == "__main__":
    main()
