#!/usr/bin/env python3
"""The team store (DuckLake, catalog in PostgreSQL, data in a folder): push rate, and reads through
``serve --team`` against the same reads on a local store.

1. Facts pushed per second: a local store of ``--push-requests`` synthetic API requests (with their
   sessions and agents) pushed to an empty team store by :func:`golem_mcp.store.team.push`.
2. On a team store of ``--requests`` requests (made once under ``--data``, default
   /work/bench-data/team, and reused): ``query_workflow_cost`` (the MCP tool, through the real MCP
   client) and the dashboard page, each timed through ``serve --team`` and through ``serve`` on a
   local store holding the same rows; the ratio team / local is the figure.

A PostgreSQL server of its own is started in ``--data`` (binaries from ``--pg-bin``; as root through
``runuser -u postgres``) and stopped at the end.

    python bench/team_bench.py --requests 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
READ_TIMEOUT_S = 600
sys.path.insert(0, str(HERE.parent / "tests"))


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root, self.bin = root, bin_dir
        self.data = root / "pgdata"
        self.port = free_port()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        if not self.data.exists():
            subprocess.run(as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"),
                           check=True, capture_output=True)
        subprocess.run(as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "pg.log"),
                                   "-o", f"-p {self.port} -k {self.root} -c listen_addresses=''", "start"),
                       check=True, capture_output=True)

    def createdb(self, name: str) -> str:
        subprocess.run(as_postgres(str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U",
                                   "postgres", name), capture_output=True)
        return f"ducklake:postgres:dbname={name} host={self.root} port={self.port} user=postgres"

    def stop(self) -> None:
        subprocess.run(as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                       capture_output=True)


# synthetic requests: 8 stages over workflows of ~40 requests, 4 models, 30 days
SYNTH = """
INSERT INTO api_requests (request_id, message_id, session_id, agent_id, model, "timestamp", input_tokens,
    output_tokens, cache_read_tokens, cache_creation_tokens, recorded_cost_usd, duration_ms, success,
    workflow_id, stage, experiment_id, source_mask, machine_id, _change_seq)
SELECT 'req-' || i, 'msg-' || i, 'sess-' || (i // 40), CASE WHEN i % 5 = 0 THEN NULL ELSE 'agent-' || (i // 8) END,
       ['claude-sonnet-4-5', 'claude-opus-4-1', 'claude-haiku-4-5', 'claude-sonnet-4'][1 + i % 4],
       TIMESTAMP '2026-11-01' + INTERVAL (i % 2592000) SECOND, 1000 + i % 5000, 100 + i % 900, 20000 + i % 30000,
       i % 3000, (i % 1000) / 10000.0, 500 + i % 20000, i % 97 <> 0,
       'wf-' || (i // 40), ['main', 'analyst', 'planner', 'implementer', 'reviewer', 'tester', 'fixer', 'docs'][1 + i % 8],
       ['baseline', 'arm-b'][1 + (i // 40) % 2], 2, 'bench-' || (i % 3), $seq
FROM range($lo, $hi) t(i)"""
SESSIONS = """
INSERT INTO sessions (session_id, project, first_seen, last_seen, machine_id, _change_seq)
SELECT 'sess-' || s, 'proj-' || (s % 7), TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-30', 'bench-' || (s % 3), $seq
FROM range($lo, $hi) t(s)"""
WORKFLOWS = """
INSERT INTO workflows (workflow_id, started_at, updated_at, _change_seq)
SELECT 'wf-' || w, TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-30', $seq FROM range($lo, $hi) t(w)"""


def make_local(path: Path, requests: int) -> None:
    """A local store of ``requests`` synthetic requests (made by SQL in bulk: a bench of reads, not of ingest)."""
    from golem_mcp.store import Store

    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with Store(tmp) as s:
        step = 200_000  # a multiple of 40: a workflow's requests in one step
        for lo in range(0, requests, step):
            hi = min(requests, lo + step)
            # each step is one "write" with its own change number, as the daemon's writes are
            seq = s.con.execute("SELECT nextval('change_seq')").fetchone()[0]
            s.con.execute(SYNTH, {"lo": lo, "hi": hi, "seq": seq})
            s.con.execute(SESSIONS, {"lo": lo // 40, "hi": (hi + 39) // 40, "seq": seq})
            s.con.execute(WORKFLOWS, {"lo": lo // 40, "hi": (hi + 39) // 40, "seq": seq})
            if hi % 1_000_000 == 0 or hi == requests:
                print(f"  local store: {hi:,} requests", file=sys.stderr)
        s.con.execute("CHECKPOINT")
    tmp.rename(path)


def timed(fn: Any, runs: int) -> float:
    fn()  # warm: first-run caches (the analysis' per-day aggregates, DuckDB's metadata) are not the figure
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reads(url: str, runs: int) -> dict[str, float]:
    from mcp import Client

    from conftest import api, mcp_http

    async def cost() -> None:
        async with Client(mcp_http(url)) as c:
            r = await c.call_tool("query_workflow_cost", {"group_by": ["stage"], "since": "2026-01-01"})
            assert not r.is_error, r.content

    def dashboard() -> None:
        r = api.get(url + "/?days=90", timeout=READ_TIMEOUT_S)
        assert r.status_code == 200

    out: dict[str, float | str] = {}
    for name, fn in (("query_workflow_cost_s", lambda: asyncio.run(cost())), ("dashboard_s", dashboard)):
        try:
            out[name] = timed(fn, runs)
        except Exception as e:  # noqa: BLE001 -- a read past the timeout is a figure too, said as such
            out[name] = f"failed or over {READ_TIMEOUT_S} s: {type(e).__name__}"
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000_000, help="requests in the team store (default 10M)")
    ap.add_argument("--push-requests", type=int, default=200_000, help="requests pushed for the rate (default 200k)")
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data/team"))
    ap.add_argument("--pg-bin", type=Path, default=Path("/usr/lib/postgresql/15/bin"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from conftest import launch_daemon
    from golem_mcp.store import Store
    from golem_mcp.store.team import push, team_config

    data: Path = args.data
    data.mkdir(parents=True, exist_ok=True)
    os.environ["GOLEM_HOME"] = str(data / "home")
    pg = Postgres(data / "pg", args.pg_bin)
    pg.start()
    out: dict[str, Any] = {"requests": args.requests}
    try:
        # 1. push rate, into a fresh catalog and folder
        run = data / f"push-{int(time.time())}"
        (run / "files").mkdir(parents=True)
        os.environ["GOLEM_TEAM_URL"] = pg.createdb(f"push{int(time.time())}")
        os.environ["GOLEM_TEAM_DATA_PATH"] = str(run / "files")
        small = run / "local.duckdb"
        make_local(small, args.push_requests)
        with Store(small) as s:
            rows = sum(int(s.scalar(f"SELECT count(*) FROM {t}")) for t in ("api_requests", "sessions", "workflows"))
            res = push(s, team_config())
        out["push_rows"] = res.total
        out["push_rows_per_s"] = round(res.total / res.seconds)
        out["push_transactions"] = res.transactions
        print(f"  pushed {res.total:,} rows at {out['push_rows_per_s']:,} rows/s", file=sys.stderr, flush=True)
        assert res.total >= rows, (res.total, rows)  # and the machine row opening the store notes
        shutil.rmtree(run, ignore_errors=True)

        # 2. the large team store, made once (pushed from a local store of the same rows)
        big = data / f"local-{args.requests}.duckdb"
        make_local(big, args.requests)
        lake_files = data / f"lake-{args.requests}"
        os.environ["GOLEM_TEAM_URL"] = pg.createdb(f"lake{args.requests}")
        os.environ["GOLEM_TEAM_DATA_PATH"] = str(lake_files)
        lake_files.mkdir(exist_ok=True)
        marker = data / f"lake-{args.requests}.done"
        if not marker.exists():
            t = time.perf_counter()
            with Store(big) as s:
                res = push(s, team_config(), max_rows=2_000_000)
            out["big_push_s"] = round(time.perf_counter() - t, 1)
            out["big_push_rows_per_s"] = round(res.total / res.seconds)
            marker.write_text(json.dumps(res.as_dict()))
        for mode in ("local", "team"):
            home = data / f"home-{mode}"
            home.mkdir(exist_ok=True)
            extra = ("--team",) if mode == "team" else ()
            d = launch_daemon(home, big, *extra, env={"GOLEM_TEAM_URL": os.environ["GOLEM_TEAM_URL"],
                                                      "GOLEM_TEAM_DATA_PATH": os.environ["GOLEM_TEAM_DATA_PATH"]}
                              if mode == "team" else {"GOLEM_TEAM_URL": "", "GOLEM_TEAM_DATA_PATH": ""})
            try:
                out[mode] = reads(d.url, args.runs)
            finally:
                d.stop()
            print(f"  {mode}: {out[mode]}", file=sys.stderr, flush=True)
        for k in out["local"]:
            if isinstance(out["team"][k], float) and isinstance(out["local"][k], float):
                out[f"ratio_{k.removesuffix('_s')}"] = round(out["team"][k] / out["local"][k], 2)
    finally:
        pg.stop()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
