#!/usr/bin/env python3
"""The team store (DuckLake, catalog in PostgreSQL, data in a folder): push rate, and ``serve --team``
against ``serve`` on a local store of the same data, side by side.

1. Facts pushed per second: a local store of ``--push-requests`` synthetic API requests (with their
   sessions and workflows) pushed to an empty team store by :func:`golem_mcp.store.team.push`.
2. On a team store of ``--requests`` requests (made once under ``--data``, default
   ``$GOLEM_BENCH_DATA/team`` or bench/.data/team, and reused: ``local-N.duckdb`` and the lake pushed from it):
   ``serve`` on the local store and ``serve --team`` started cold (no replica: the lake copied and
   resolved), one after the other: the start (launch to the first answer) and RSS after it. Then,
   both running (after ``--settle`` seconds of their warm-up), ``query_workflow_cost`` (the MCP tool,
   through the real MCP client, over everything by stage) and the dashboard page, asked of each
   server in turn for ``--runs`` rounds after one unmeasured ask: medians, RSS now and at its peak;
   ``ratio_*`` is team / local, measured side by side.
3. ``serve --team`` started again (warm: its replica kept), a push of ``--late-requests`` new requests
   from another machine while it runs, and the seconds until its MCP answer counts them exactly.

A PostgreSQL server of its own is started in ``--data`` (binaries from ``--pg-bin``; as root through
``runuser -u postgres``) and stopped at the end (one already running on that folder is used and
left running). Load averages are printed with the figures.

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
START_WAIT_S = 7200  # a team server's cold start copies the whole lake (10M requests: ~10 min)
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
        """Start the server, or use the one already running on this data folder (another run's, or
        one started by hand to look at the lake): it is then left running at the end."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.started = False
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists() and subprocess.run(as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "status"),
                                                capture_output=True).returncode == 0:
            self.port = int(pid_file.read_text().splitlines()[3])  # postmaster.pid's 4th line: the port
            return
        if not self.data.exists():
            subprocess.run(as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"),
                           check=True, capture_output=True)
        subprocess.run(as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "pg.log"),
                                   "-o", f"-p {self.port} -k {self.root} -c listen_addresses=''", "start"),
                       check=True, capture_output=True)
        self.started = True

    def createdb(self, name: str) -> str:
        subprocess.run(as_postgres(str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U",
                                   "postgres", name), capture_output=True)
        return f"ducklake:postgres:dbname={name} host={self.root} port={self.port} user=postgres"

    def stop(self) -> None:
        if not self.started:
            return
        subprocess.run(as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                       capture_output=True)


# synthetic requests: 8 stages over workflows of ~40 requests, 4 models, 30 days
SYNTH = """
SELECT 'req-' || i AS request_id, 'msg-' || i AS message_id, 'sess-' || (i // 40) AS session_id,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'agent-' || (i // 8) END AS agent_id,
       ['claude-sonnet-4-5', 'claude-opus-4-1', 'claude-haiku-4-5', 'claude-sonnet-4'][1 + i % 4] AS model,
       TIMESTAMP '2026-11-01' + INTERVAL (i % 2592000) SECOND AS "timestamp", 1000 + i % 5000 AS input_tokens,
       100 + i % 900 AS output_tokens, 20000 + i % 30000 AS cache_read_tokens, i % 3000 AS cache_creation_tokens,
       (i % 1000) / 10000.0 AS recorded_cost_usd, 500 + i % 20000 AS duration_ms, i % 97 <> 0 AS success,
       'wf-' || (i // 40) AS workflow_id,
       ['main', 'analyst', 'planner', 'implementer', 'reviewer', 'tester', 'fixer', 'docs'][1 + i % 8] AS stage,
       ['baseline', 'arm-b'][1 + (i // 40) % 2] AS experiment_id, 2::UTINYINT AS source_mask,
       'bench-' || (i % 3) AS machine_id, $seq::BIGINT AS _change_seq
FROM range($lo, $hi) t(i)"""
SESSIONS = """
SELECT 'sess-' || s AS session_id, 'proj-' || (s % 7) AS project, TIMESTAMP '2026-11-01' AS first_seen,
       TIMESTAMP '2026-11-30' AS last_seen, 'bench-' || (s % 3) AS machine_id, $seq::BIGINT AS _change_seq
FROM range($lo, $hi) t(s)"""
WORKFLOWS = """
SELECT 'wf-' || w AS workflow_id, TIMESTAMP '2026-11-01' AS started_at, TIMESTAMP '2026-11-30' AS updated_at,
       $seq::BIGINT AS _change_seq FROM range($lo, $hi) t(w)"""
STEP = 1_000_000  # requests per generated step (a multiple of 40: a workflow's requests in one step)


def make_local(path: Path, requests: int, start: int = 0) -> None:
    """A local store of ``requests`` synthetic requests with their sessions and workflows, loaded in bulk
    and resolved as loaded (Store.load_resolved: a bench of reads, not of ingest); each step of
    ``STEP`` requests carries one change number, as one daemon write would."""
    import duckdb

    from golem_mcp.store import Store

    if path.exists():
        return
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    gen = duckdb.connect()
    with Store(tmp) as s:
        end = start + requests
        steps = [(lo, min(end, lo + STEP)) for lo in range(start, end, STEP)]
        seqs = [int(s.con.execute("SELECT nextval('change_seq')").fetchone()[0]) for _ in steps]  # type: ignore[index]

        def rows(sql: str, per: int) -> Any:
            def batches() -> Any:
                for (lo, hi), seq in zip(steps, seqs, strict=True):
                    yield from gen.execute(sql, {"lo": lo // per, "hi": (hi + per - 1) // per, "seq": seq}
                                           ).to_arrow_reader(200_000)
                    if per == 1:
                        print(f"  local store: {hi - start:,} requests", file=sys.stderr, flush=True)
            return batches

        s.load_resolved({"sessions": rows(SESSIONS, 40), "workflows": rows(WORKFLOWS, 40), "api_requests": rows(SYNTH, 1)})
        s.con.execute("CHECKPOINT")
    tmp.rename(path)


def reads(urls: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    """``query_workflow_cost`` (the MCP tool through the real MCP client) and the dashboard page on
    every server in ``urls``, side by side: each question is asked once of each server unmeasured
    (first-run caches are not the figure), then ``runs`` rounds in which every server answers it in
    turn, so load on the machine falls on all of them alike. Median seconds per server and question."""
    from mcp import Client

    from conftest import api, mcp_http

    def cost(url: str) -> None:
        async def ask() -> None:
            async with Client(mcp_http(url)) as c:
                r = await c.call_tool("query_workflow_cost", {"group_by": ["stage"], "since": "2026-01-01"})
                assert not r.is_error, r.content
        asyncio.run(ask())

    def dashboard(url: str) -> None:
        r = api.get(url + "/?days=90", timeout=READ_TIMEOUT_S)
        assert r.status_code == 200

    out: dict[str, dict[str, Any]] = {name: {} for name in urls}
    for question, fn in (("query_workflow_cost_s", cost), ("dashboard_s", dashboard)):
        times: dict[str, list[float]] = {name: [] for name in urls}
        try:
            for url in urls.values():
                fn(url)
            for _ in range(runs):
                for name, url in urls.items():
                    t = time.perf_counter()
                    fn(url)
                    times[name].append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 -- a read past the timeout is a figure too, said as such
            for name in urls:
                out[name][question] = f"failed or over {READ_TIMEOUT_S} s: {type(e).__name__}"
            continue
        for name in urls:
            out[name][question] = round(statistics.median(times[name]), 4)
        print(f"  {question}: " + ", ".join(f"{n} {out[n][question]}" for n in urls), file=sys.stderr, flush=True)
    return out


def cost_total(url: str) -> int:
    """Requests in the team's answer to query_workflow_cost over everything (one MCP call)."""
    from mcp import Client

    from conftest import mcp_http

    async def ask() -> int:
        async with Client(mcp_http(url)) as c:
            r = await c.call_tool("query_workflow_cost", {"group_by": [], "since": "2000-01-01"})
            assert not r.is_error, r.content
            return int(r.structured_content["total"]["requests"])

    return asyncio.run(ask())


def memory(pid: int) -> dict[str, int]:
    """The process' resident memory now and at its peak, MB (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = int(value.split()[0]) // 1024
    return out


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000_000, help="requests in the team store (default 10M)")
    ap.add_argument("--push-requests", type=int, default=200_000, help="requests pushed for the rate (default 200k)")
    ap.add_argument("--late-requests", type=int, default=10_000,
                    help="requests pushed while serve --team runs, for how soon it answers them (default 10k)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GOLEM_BENCH_DATA") or Path(__file__).resolve().parent / ".data") / "team")
    ap.add_argument("--pg-bin", type=Path, default=Path("/usr/lib/postgresql/15/bin"))
    ap.add_argument("--runs", type=int, default=5, help="rounds of reads, each server in turn (default 5)")
    ap.add_argument("--settle", type=float, default=30.0,
                    help="seconds both servers idle after starting, before the reads (default 30)")
    ap.add_argument("--memory-mb", type=int, default=4096, help="GOLEM_MEMORY_BUDGET_MB of both servers")
    ap.add_argument("--skip-push-rate", action="store_true", help="only the large store's figures")
    args = ap.parse_args()

    from conftest import launch_daemon
    from golem_mcp.store import Store
    from golem_mcp.store.team import push, team_config

    data: Path = args.data
    data.mkdir(parents=True, exist_ok=True)
    os.environ["GOLEM_HOME"] = str(data / "home")
    pg = Postgres(data / "pg", args.pg_bin)
    pg.start()
    out: dict[str, Any] = {"requests": args.requests, "memory_budget_mb": args.memory_mb, "load_at_start": load()}
    try:
        # 1. push rate, into a fresh catalog and folder
        if not args.skip_push_rate:
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
            print(f"  pushed {res.total:,} rows at {out['push_rows_per_s']:,} rows/s (load {load()})",
                  file=sys.stderr, flush=True)
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
            print(f"  pushed the large store: {out['big_push_s']} s (load {load()})", file=sys.stderr, flush=True)
            marker.write_text(json.dumps(res.as_dict()))
        # both servers: the same memory budget, and requests wait for a store that takes long to open
        common = {"GOLEM_MEMORY_BUDGET_MB": str(args.memory_mb), "GOLEM_STORE_WAIT_S": "7200"}
        team_env = {"GOLEM_TEAM_URL": os.environ["GOLEM_TEAM_URL"], "GOLEM_TEAM_DATA_PATH": os.environ["GOLEM_TEAM_DATA_PATH"],
                    "GOLEM_TEAM_REFRESH_SECONDS": "2", **common}
        # each server started alone (its start-up is a figure: launch to the first answer; the team
        # server's cold start copies and resolves the whole lake into its replica); then both run at
        # once and the reads alternate between them (the machine's load falls on both alike)
        daemons: dict[str, Any] = {}
        try:
            for mode in ("local", "team"):
                home = data / f"home-{mode}"
                if mode == "team":  # a cold start: no replica yet (the figure for a new team server)
                    shutil.rmtree(home / "team", ignore_errors=True)
                home.mkdir(exist_ok=True)
                extra = ("--team",) if mode == "team" else ()
                env = team_env if mode == "team" else {"GOLEM_TEAM_URL": "", "GOLEM_TEAM_DATA_PATH": "", **common}
                t = time.perf_counter()
                daemons[mode] = d = launch_daemon(home, big, *extra, env=env, wait_s=START_WAIT_S)
                total = cost_total(d.url)  # the first answer: the store is open (a team server: its replica built)
                out[f"{mode}_start_s"] = round(time.perf_counter() - t, 1)
                out[f"{mode}_requests"] = total  # the lake may hold an earlier run's late pushes too
                out[mode] = {"start": memory(d.proc.pid), "load_after_start": load()}
                print(f"  {mode}: start {out[f'{mode}_start_s']} s, {out[mode]}", file=sys.stderr, flush=True)
            time.sleep(args.settle)  # the daemons' warm-up after start (analysis cache) is not the figure
            out["load_during_reads"] = load()
            for mode, figures in reads({m: d.url for m, d in daemons.items()}, args.runs).items():
                out[mode].update(figures)
                out[mode].update(memory(daemons[mode].proc.pid))
        finally:
            for d in daemons.values():
                d.stop()
        print(f"  side by side: {json.dumps({m: out[m] for m in daemons})}", file=sys.stderr, flush=True)
        for k in out["local"]:
            if k.endswith("_s") and isinstance(out["team"].get(k), float) and isinstance(out["local"][k], float):
                out[f"ratio_{k.removesuffix('_s')}"] = round(out["team"][k] / out["local"][k], 2)

        # 3. serve --team again: a warm start (the replica kept), then a push from another machine
        # while it runs, and how soon its answer counts it
        home = data / "home-team"
        t = time.perf_counter()
        d = launch_daemon(home, big, "--team", env=team_env, wait_s=START_WAIT_S)
        try:
            before = cost_total(d.url)
            out["team_warm_start_s"] = round(time.perf_counter() - t, 1)
            late = data / f"late-{int(time.time())}.duckdb"
            # ids no one has, this run's own: an earlier run's late push is in the lake already, and the
            # same ids again would count once (as they should), never reaching before + late_requests
            make_local(late, args.late_requests, start=args.requests + 40 * int(time.time()))
            with Store(late, machine=("bench-late", "bench-late")) as s:
                t = time.perf_counter()
                push(s, team_config())
                pushed = time.perf_counter()
            out["late_push_s"] = round(pushed - t, 2)
            deadline = pushed + 300
            while (now := cost_total(d.url)) != before + args.late_requests and time.perf_counter() < deadline:
                time.sleep(0.2)
            out["late_answered_after_push_s"] = round(time.perf_counter() - pushed, 2)
            assert now == before + args.late_requests, (now, before)
            out["team_after_refresh"] = memory(d.proc.pid)
            late.unlink(missing_ok=True)
        finally:
            d.stop()
        out["load_at_end"] = load()
    finally:
        pg.stop()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
