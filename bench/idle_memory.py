"""An idle daemon's memory on a large store (issue 10: <= 300 MB idle): ``golem-mcp serve`` on a copy of
``mcp_tools_bench``'s prepared store of N requests, its resident memory (RSS) and high-water mark when
``/healthz`` says the store is ready, once it has gone idle (its warm-up refresh of the analysis
cache done), and ``--after`` seconds later (its first alert check, 20 s after start, behind it).

Each side runs once unmeasured first, so the analysis cache of its copy is current (as on a daemon
that ran before). With ``--baseline SRC`` (another checkout's ``src``) the rounds alternate between the
two. Prints the figures, asserts nothing.

Run: ``GOLEM_BENCH_DATA=DIR python bench/idle_memory.py --requests 10000000 [--rounds 2] [--baseline SRC]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_tools_bench as mb  # noqa: E402  (the prepared stores and the idle wait)

SRC = str(Path(__file__).resolve().parents[1] / "src")
CLOCK = mb.NOW  # the bench stores' clock


def memory(pid: int) -> tuple[int, int]:
    """RSS and its high-water mark, MB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024


def one(src: str, db: Path, home: Path, after: float) -> dict[str, tuple[int, int]]:
    shutil.rmtree(home, ignore_errors=True)
    proc, _, _ = mb.start_daemon(db, home, CLOCK, src)
    try:
        got = {"ready": memory(proc.pid)}
        mb.wait_idle(proc.pid, most_s=600)
        got["idle"] = memory(proc.pid)
        time.sleep(after)
        got[f"+{after:g} s"] = memory(proc.pid)
        return got
    finally:
        proc.terminate()
        proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000, help="the prepared store's size (mcp_tools_bench)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--after", type=float, default=30.0, help="seconds after going idle for the last figure")
    ap.add_argument("--baseline", help="another checkout's src folder, measured alternately")
    args = ap.parse_args(argv)
    store = mb.prepared_store(args.requests)
    sides = [("this", SRC)] + ([("baseline", str(Path(args.baseline).resolve()))] if args.baseline else [])
    with tempfile.TemporaryDirectory(dir=store.parent, prefix="idle-memory-") as tmp:
        dbs = {}
        for name, src in sides:
            dbs[name] = Path(tmp) / f"{name}.duckdb"
            shutil.copyfile(store, dbs[name])
            print(f"{name}: warming its copy (analysis cache built or refreshed) ...", flush=True)
            one(src, dbs[name], Path(tmp) / "home", 0)
        print(f"{args.requests:,} requests, RSS / high-water MB; load {os.getloadavg()[0]:.2f}", flush=True)
        for r in range(args.rounds):
            for name, src in (sides if r % 2 == 0 else sides[::-1]):
                got = one(src, dbs[name], Path(tmp) / "home", args.after)
                print(f"  {name:8s} " + "  ".join(f"{k} {v[0]} / {v[1]}" for k, v in got.items()), flush=True)
        print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
