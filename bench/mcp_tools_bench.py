"""Benchmark: every agent-facing MCP tool through the real MCP client on a real daemon, side by side
with the same question asked as plain DuckDB SQL (issue 10's targets: query_workflow_cost and
budget_status p95 <= 50 ms, every other tool <= 250 ms, tool / SQL <= 1.5). The tools that write
(record_workflow, record_stage_usage, report_review_findings) have no plain SQL beside them: their
p95 is measured against the 250 ms alone, each call linking a recent session with facts.

    python bench/mcp_tools_bench.py                           # 1M and 10M requests (figure of record)
    python bench/mcp_tools_bench.py --requests 200000 --calls 10
    GOLEM_BENCH_DATA=/big/disk python bench/mcp_tools_bench.py

The stores are ``analysis_bench.py``'s (generated once, cached in ``$GOLEM_BENCH_DATA`` or
``bench/.data``). Each is prepared once more into ``analysis-N.prepared-sV.duckdb`` (V: the schema
version; the source is not opened again once it exists): opened by this
checkout's ``Store`` (its migrations: resolved facts, rollups) and, because the generator writes its
facts around ``Store.write``, its rollups built from them. Per size:

1. a copy of the prepared store is served by ``golem-mcp serve`` (a subprocess, loopback, its own
   GOLEM_HOME); once ``/healthz`` says its store is open, the daemon is given ``--warm`` seconds,
   then measuring waits until it is idle (its CPU under 5 % for 3 s): its start-up work (building
   the analysis cache: ~4 CPU-s at 1M requests, more at 10M; the first alert evaluation, 20 s after
   the start) otherwise runs beside the calls and is counted in their wall and CPU time;
2. another copy, opened once by this checkout's ``Store`` (what the daemon's open adds: its indexes)
   and then read-only by plain ``duckdb`` in this process, answers the same question as plain SQL
   (``CALLS`` below: on the rollups and resolved columns when the store has them, else on the views);
3. per tool, side by side: its SQL ``--calls`` times, then the tool ``--calls`` times through one MCP
   client session (the SDK's streamable HTTP client, with the install's token), each after one
   unmeasured run; wall time per call (the tool's from the client's side), and CPU per call (this
   process's for the SQL, the daemon's for the tool: the steadier figure on a shared machine).

Both sides ask the same clock (``--now``, default the generator's 2031-01-01, when its stores end): the
daemon runs with ``GOLEM_CLOCK`` set to it, so the tools' default windows ("the last 30 days" up to the
newest request or now, whichever is earlier; today's spend) are of the store's days, and the plain SQL's
windows are taken from the same time. ``--now wall`` leaves the daemon on the wall clock (as before).

Printed: p50 / p95 ms per tool and per SQL, the ratio of the p95s, CPU ms per call and their ratio, the target and whether it is met,
and the load average (the machine is shared: read the ratio, and rerun when the load is high).
Results also go to ``$DATA/mcp_tools_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis_bench import DATA, GENERATOR, NOW, cached_store  # noqa: E402

FAST = ("query_workflow_cost", "budget_status")
FAST_MS, OTHER_MS, RATIO = 50.0, 250.0, 1.5

# tool -> (arguments, {store shape: the same question as plain SQL}). "{wf}" is a recent workflow id.
# "rolled": the store has the rollups and resolved columns; "views": it has not (an older checkout).
CALLS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "query_workflow_cost": ({"workflow_id": "{wf}"}, {
        # the tool's whole answer: per stage tokens by kind, cost (recorded, calculated), unpriced
        # requests, cache hit rate, retries, first and last request; and whether the id is known
        "rolled": "SELECT stage, sum(requests), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
                  "sum(cache_creation_tokens), sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) "
                  "AS t, sum(cost_usd), sum(recorded_cost_usd), sum(calculated_cost_usd), "
                  "sum(requests) FILTER (WHERE cost_source = 'unpriced'), "
                  "sum(cache_read_tokens) / sum(input_tokens + cache_read_tokens + cache_creation_tokens), sum(retries), "
                  "min(first_at), max(last_at) FROM rollup_requests WHERE workflow_id = '{wf}' GROUP BY stage ORDER BY t DESC",
        "views": "SELECT stage, count(*), sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens), "
                 "sum(cost_usd) FROM requests WHERE workflow_id = '{wf}' GROUP BY stage"}),
    "query_workflow_cost (30 days)": ({}, {
        "rolled": "SELECT stage, sum(requests), sum(cost_usd) FROM rollup_requests WHERE day >= DATE '{start}' GROUP BY stage",
        "views": "SELECT stage, count(*), sum(cost_usd) FROM requests WHERE \"timestamp\" >= TIMESTAMP '{start}' GROUP BY stage"}),
    "budget_status": ({"workflow_id": "{wf}", "stage": "implementer"}, {
        # the tool's whole answer: today's spend (the clock's day, as the tool's), the last 3 hours'
        # (burn rate), the workflow's and the stage's
        "rolled": "SELECT (SELECT sum(cost_usd) FROM rollup_requests WHERE day = DATE '{today}'), "
                  "(SELECT sum(r_cost_usd) FROM api_requests WHERE \"timestamp\" >= TIMESTAMP '{now}' - INTERVAL 3 HOUR "
                  "AND \"timestamp\" < TIMESTAMP '{now}'), "
                  "sum(cost_usd), sum(cost_usd) FILTER (WHERE stage = 'implementer') FROM rollup_requests "
                  "WHERE workflow_id = '{wf}'",
        "views": "SELECT sum(cost_usd), sum(cost_usd) FILTER (WHERE stage = 'implementer') FROM requests "
                 "WHERE workflow_id = '{wf}'"}),
    "query_errors_and_loops": ({"workflow_id": "{wf}"}, {
        "rolled": "SELECT tool_name, r_stage, count(*) FROM tool_calls WHERE r_workflow_id = '{wf}' AND success = false "
                  "GROUP BY ALL",
        "views": "SELECT tool_name, stage, count(*) FROM tools WHERE workflow_id = '{wf}' AND success = false GROUP BY ALL"}),
    "query_errors_and_loops (30 days)": ({}, {
        "rolled": "SELECT tool_parameters->>'bash_command', r_stage, r_workflow_id, count(*) FROM tool_calls "
                  "WHERE \"timestamp\" >= TIMESTAMP '{start}' AND success = false GROUP BY ALL HAVING count(*) >= 2",
        "views": "SELECT tool_parameters->>'bash_command', stage, workflow_id, count(*) FROM tools "
                 "WHERE \"timestamp\" >= TIMESTAMP '{start}' AND success = false GROUP BY ALL HAVING count(*) >= 2"}),
    "compare_experiments": ({"metric": "tokens"}, {
        "rolled": "SELECT experiment_id, count(*), avg(t) FROM (SELECT experiment_id, workflow_id, "
                  "sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS t "
                  "FROM rollup_requests WHERE experiment_id IS NOT NULL GROUP BY ALL) GROUP BY 1",
        "views": "SELECT experiment_id, count(*), avg(t) FROM (SELECT experiment_id, workflow_id, "
                 "sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS t "
                 "FROM requests WHERE experiment_id IS NOT NULL GROUP BY ALL) GROUP BY 1"}),
    "find_slow_stages": ({}, {
        "rolled": "SELECT r_stage, quantile_cont(duration_ms, [0.5, 0.95, 0.99]) FROM api_requests "
                  "WHERE \"timestamp\" >= TIMESTAMP '{start}' GROUP BY 1",
        "views": "SELECT stage, quantile_cont(duration_ms, [0.5, 0.95, 0.99]) FROM requests "
                 "WHERE \"timestamp\" >= TIMESTAMP '{start}' GROUP BY 1"}),
    "find_token_leaks": ({}, {
        "rolled": "WITH g AS (SELECT workflow_id, stage, sum(input_tokens + output_tokens) AS t FROM rollup_requests "
                  "WHERE day >= DATE '{start}' GROUP BY ALL), m AS (SELECT stage, median(t) AS med FROM g GROUP BY 1) "
                  "SELECT g.* FROM g JOIN m USING (stage) WHERE t > 3 * med",
        "views": "WITH g AS (SELECT workflow_id, stage, sum(input_tokens + output_tokens) AS t FROM requests "
                 "WHERE \"timestamp\" >= TIMESTAMP '{start}' GROUP BY ALL), m AS (SELECT stage, median(t) AS med FROM g "
                 "GROUP BY 1) SELECT g.* FROM g JOIN m USING (stage) WHERE t > 3 * med"}),
    "query_review_findings": ({}, {
        "rolled": "SELECT lower(severity), count(*) FROM review_issue_rows WHERE ts >= TIMESTAMP '{start}' GROUP BY 1",
        "views": "SELECT lower(severity), count(*) FROM review_issue_rows WHERE ts >= TIMESTAMP '{start}' GROUP BY 1"}),
    "list_improvements": ({}, {
        "rolled": "SELECT * FROM improvement_items WHERE status = 'open' ORDER BY severity DESC LIMIT 5",
        "views": "SELECT * FROM improvement_items WHERE status = 'open' ORDER BY severity DESC LIMIT 5"}),
    "predict_cost": ({"path": "full"}, {
        "rolled": "SELECT quantile_cont(c, [0.1, 0.5, 0.9]) FROM (SELECT workflow_id, sum(cost_usd) AS c FROM rollup_requests "
                  "WHERE workflow_path = 'full' AND day >= DATE '{start90}' GROUP BY 1)",
        "views": "SELECT quantile_cont(c, [0.1, 0.5, 0.9]) FROM (SELECT workflow_id, sum(cost_usd) AS c FROM requests "
                 "WHERE workflow_path = 'full' AND \"timestamp\" >= TIMESTAMP '{start90}' GROUP BY 1)"}),
    "describe_schema": ({}, {
        "rolled": "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal",
        "views": "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal"}),
    # the tools that write (a master's first and last call, each stage's, a reviewer's): no plain SQL
    # asks the same, so only their time is measured. "{n}" is the call's number and "{sid}" a different
    # recent session per call, so each call links a session with facts to a new workflow (its facts
    # re-resolved, its rollup groups moved), as a master's first call does.
    "record_workflow": ({"workflow_id": "wf-bench-{n}", "path": "full", "experiment_id": "arm-b", "task_id": "T-{n}",
                         "session_id": "{sid}"}, {}),
    "record_stage_usage": ({"workflow_id": "wf-bench-{n}", "stage": "implementer", "status": "succeeded",
                            "session_id": "{sid}"}, {}),
    "report_review_findings": ({"task": "T-{n}", "severity": {"critical": 0, "major": 1, "minor": 1},
                                "issues": [{"severity": "major", "file": "src/a.py", "line": 3, "summary": "unchecked input"},
                                           {"severity": "minor", "summary": "naming"}], "parent": "wf-bench-{n}"}, {}),
    "record_workflow (done)": ({"workflow_id": "wf-bench-{n}", "status": "completed", "session_id": "{sid}"}, {}),
    # a session's next workflow, recorded as Claude Code calls the tool: its tool-use id in _meta, so
    # the link holds from that call on (here the session's latest call) and the facts before it stay
    "record_workflow (next)": ({"workflow_id": "wf-next-{n}", "task_id": "T-{n}", "session_id": "{sid}",
                                "_meta": {"claudecode/toolUseId": "{tuid}"}}, {}),
    "query_sql": ({"sql": "SELECT stage, sum(cost_usd) AS cost FROM otel_api_request_events "
                          "WHERE workflow_id = '{wf}' GROUP BY stage"}, {
        "rolled": "SELECT stage, sum(cost_usd) AS cost FROM otel_api_request_events WHERE workflow_id = '{wf}' GROUP BY stage",
        "views": "SELECT stage, sum(cost_usd) AS cost FROM otel_api_request_events WHERE workflow_id = '{wf}' GROUP BY stage"}),
}


def prepared_store(n: int) -> Path:
    """``analysis-N.prepared.duckdb``: the generated store migrated by this checkout, rollups built."""
    import duckdb

    from golem_mcp.store.db import SCHEMA_VERSION, Store

    # named by schema version: checkouts of different schemas sharing $GOLEM_BENCH_DATA keep their own
    out = DATA / f"analysis-{n}.prepared-s{SCHEMA_VERSION}.duckdb"

    def ready(path: Path, version: int) -> bool:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return bool(con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == version  # type: ignore[index]
                        and con.execute("SELECT value FROM settings WHERE key = 'bench_prepared'").fetchall() == [("1",)]
                        and con.execute("SELECT value FROM settings WHERE key = 'bench_generator'").fetchall()
                        == [(GENERATOR,)])
        finally:
            con.close()

    if out.exists() and ready(out, SCHEMA_VERSION):  # (not by file times: cached_store opening the source touches it)
        return out
    # A store prepared by an older schema is carried forward by this checkout's migrations (those that
    # change what is rolled up mark the rollups, which the open rebuilds): a 10M store is prepared from
    # its source in ~10 minutes, a column added in seconds.
    older = sorted(((v, p) for v in range(SCHEMA_VERSION - 1, 0, -1)
                    if (p := DATA / f"analysis-{n}.prepared-s{v}.duckdb").exists() and ready(p, v)), reverse=True)
    if older:
        tmp = out.with_suffix(".building")
        shutil.copyfile(older[0][1], tmp)
        t = time.perf_counter()
        with Store(tmp) as st:
            st.con.execute("CHECKPOINT")
        tmp.rename(out)
        print(f"  prepared {out.name} from {older[0][1].name} in {time.perf_counter() - t:.1f} s", flush=True)
        return out
    src = cached_store(n)
    tmp = out.with_suffix(".building")
    shutil.copyfile(src, tmp)
    t = time.perf_counter()
    con = duckdb.connect(str(tmp))
    try:  # rollup tables from an older checkout of this branch: built again by the migrations (008 makes
        # them, 013 gives their sums the BIGINT type every store has; 008 alone left HUGEINT columns,
        # which DuckDB reads ~20x slower, so every prepared store read its token sums slowly)
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rollup_requests'").fetchone()[0]:  # type: ignore[index]
            con.execute("DROP TABLE IF EXISTS rollup_requests; DROP TABLE IF EXISTS rollup_tools; "
                        "DROP TABLE IF EXISTS rollup_errors; DELETE FROM schema_migrations WHERE version IN (8, 13)")
    finally:
        con.close()
    with Store(tmp) as st:  # migrations: resolved columns (backfilled), rollups (built)
        rolled = _shape(st.con) == "rolled"
        if rolled:  # the generator wrote facts around Store.write: rollups from them once
            st.rebuild_rollups()
        st.con.execute("INSERT OR REPLACE INTO settings VALUES ('bench_prepared', '1')")
        st.con.execute("CHECKPOINT")
    tmp.rename(out)
    print(f"  prepared {out.name} in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def _shape(con: Any) -> str:
    have = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'api_requests' "
                       "AND column_name = 'r_workflow_id'").fetchone()[0]
    rolled = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rollup_requests'").fetchone()[0]
    return "rolled" if have and rolled else "views"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def start_daemon(db: Path, home: Path, clock: datetime | None = None,
                 src: str | None = None) -> tuple[subprocess.Popen, str, str]:
    """``golem-mcp serve`` on ``db``; with ``clock``, its analyses' clock stands at that time (GOLEM_CLOCK);
    with ``src``, another checkout's code (its ``src`` folder first on PYTHONPATH)."""
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "daemon.out", "ab")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "GOLEM_HOME": str(home)}
    if clock is not None:
        env["GOLEM_CLOCK"] = clock.isoformat()
    if src is not None:
        env["PYTHONPATH"] = src
    proc = subprocess.Popen([sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--no-watch", "--db", str(db)],
                            stdout=log, stderr=log, env=env)
    import httpx

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited:\n{(home / 'daemon.out').read_text()[-3000:]}")
        try:
            state = json.loads((home / "daemon.json").read_text())
            r = httpx.get(state["url"] + "/healthz", timeout=2)
            # it answers while the store still opens ("store": "opening"): wait for the store too
            if r.status_code == 200 and r.json().get("store", "ready") == "ready":
                return proc, state["url"], state["token"]
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("daemon did not answer /healthz in 15 minutes")


def wait_idle(pid: int, most_s: float = 900.0, window_s: float = 3.0, share: float = 0.05) -> float:
    """Wait until process ``pid`` used under ``share`` of a core for ``window_s`` seconds (at most
    ``most_s``); the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < most_s:
        c0 = _cpu_s(pid)
        time.sleep(window_s)
        if _cpu_s(pid) - c0 < share * window_s:
            break
    return time.monotonic() - t0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sql_of(shape: str, wf: str, clock: datetime | None) -> dict[str, str | None]:
    """The plain SQL of each row, its windows taken from ``clock`` (the daemon's), else the wall clock."""
    now = clock or datetime.now(UTC).replace(tzinfo=None)
    fill = {"wf": wf, "start": f"{now - timedelta(days=30):%Y-%m-%d %H:%M:%S}", "today": f"{now:%Y-%m-%d}",
            "now": f"{now:%Y-%m-%d %H:%M:%S}", "start90": f"{now - timedelta(days=90):%Y-%m-%d}"}
    out: dict[str, str | None] = {}
    for name, (_, sql) in CALLS.items():
        if not sql:  # a tool that writes: no plain SQL
            out[name] = None
            continue
        q = sql[shape]
        for k, v in fill.items():
            q = q.replace("{" + k + "}", v)
        out[name] = q
    return out


async def time_both(url: str, token: str, pid: int, plain: Path, wf: str, calls: int, clock: datetime | None,
                    sessions: list[tuple[str, str | None]]) -> tuple[str, dict[str, dict[str, Any]]]:
    """Per tool, side by side: ``calls`` runs of its plain SQL on the read-only copy in this process,
    then ``calls`` calls through MCP (each after one unmeasured run). Wall ms per call, and CPU ms per
    call: this process's for the SQL, the daemon's for the tool (the steadier figures when shared)."""
    import duckdb
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    con = duckdb.connect(str(plain), read_only=True)
    shape = _shape(con)
    sqls = _sql_of(shape, wf, clock)
    out: dict[str, dict[str, Any]] = {}
    # the SDK's client (its default timeouts: 30 s to connect, 300 s to read)
    transport = streamable_http_client(url + "/mcp", http_client=create_mcp_http_client(
        headers={"authorization": f"Bearer {token}"}))
    try:
        async with Client(transport) as c:
            for name, (args, _) in CALLS.items():
                sql_ms: list[float] = []
                sql_cpu = None
                if (sql := sqls[name]) is not None:
                    con.execute(sql).fetchall()
                    cpu0 = time.process_time()
                    for _ in range(calls):
                        t = time.perf_counter()
                        con.execute(sql).fetchall()
                        sql_ms.append((time.perf_counter() - t) * 1000)
                    sql_cpu = (time.process_time() - cpu0) / calls * 1000
                tool = name.split(" (")[0]
                tool_ms: list[float] = []
                for i in range(calls + 1):
                    if i == 1:
                        cpu0 = _cpu_s(pid)
                    sid, tuid = sessions[i % len(sessions)]
                    fill = {"{wf}": wf, "{n}": str(i), "{sid}": sid, "{tuid}": tuid or "none"}
                    a = {k: _fill(v, fill) for k, v in args.items()}
                    meta = a.pop("_meta", None)
                    t = time.perf_counter()
                    res = await c.call_tool(tool, a, meta=meta)
                    if i:
                        tool_ms.append((time.perf_counter() - t) * 1000)
                    if getattr(res, "is_error", False) or getattr(res, "isError", False):
                        raise SystemExit(f"{tool} failed: {res.content}")
                tool_cpu = (_cpu_s(pid) - cpu0) / calls * 1000
                out[name] = {"tool": tool_ms, "sql": sql_ms, "tool_cpu": tool_cpu, "sql_cpu": sql_cpu}
                sql_part = (f"SQL p50 {statistics.median(sql_ms):7.1f} p95 {_pct(sql_ms, 0.95):7.1f} ({sql_cpu:6.1f} CPU-ms)"
                            if sql_cpu is not None else "(writes: no plain SQL)")
                print(f"    {name:36s} MCP p50 {statistics.median(tool_ms):8.1f} p95 {_pct(tool_ms, 0.95):8.1f} "
                      f"({tool_cpu:6.1f} CPU-ms) | {sql_part}", flush=True)
    finally:
        con.close()
    return shape, out


def _fill(v: Any, fill: dict[str, str]) -> Any:
    """``v`` (an argument, or a list or object of them) with each placeholder of ``fill`` replaced."""
    if isinstance(v, str):
        for k, x in fill.items():
            v = v.replace(k, x)
        return v
    if isinstance(v, list):
        return [_fill(x, fill) for x in v]
    if isinstance(v, dict):
        return {k: _fill(x, fill) for k, x in v.items()}
    return v


def measure(n: int, calls: int, warm: float, clock: datetime | None) -> dict[str, Any]:
    import duckdb

    from golem_mcp.store.db import Store

    src = prepared_store(n)
    with tempfile.TemporaryDirectory(prefix="golem-mcp-bench-", dir=DATA) as tmp:
        served, plain = Path(tmp) / "served.duckdb", Path(tmp) / "plain.duckdb"
        shutil.copyfile(src, served)
        shutil.copyfile(src, plain)
        with Store(plain):  # what the daemon's open adds (indexes, views of this checkout): the same tables
            pass
        con = duckdb.connect(str(plain), read_only=True)
        wf = con.execute('SELECT workflow_id FROM api_requests WHERE workflow_id IS NOT NULL ORDER BY "timestamp" DESC '
                         "LIMIT 1").fetchone()[0]  # type: ignore[index]
        # recent sessions, one per call of a tool that writes (each links a session with facts), with
        # each one's latest tool call
        sessions = [(r[0], r[1]) for r in con.execute(
            'SELECT s.session_id, (SELECT arg_max(tool_use_id, "timestamp") FROM tool_calls c WHERE c.session_id = s.session_id) '
            'FROM (SELECT session_id, max("timestamp") AS t FROM api_requests '
            "WHERE session_id IS NOT NULL AND \"timestamp\" >= (SELECT max(\"timestamp\") - INTERVAL 7 DAY FROM api_requests) "
            "GROUP BY 1) s ORDER BY t DESC LIMIT ?", [calls + 1]).fetchall()]
        con.close()
        proc, url, token = start_daemon(served, Path(tmp) / "home", clock)
        try:
            time.sleep(warm)
            idle = wait_idle(proc.pid)
            print(f"  the daemon went idle {idle:.0f} s after the --warm {warm:.0f} s (its start-up work done)",
                  flush=True)
            print(f"  {n:,} requests: per tool, plain SQL on a read-only copy, then the tool through MCP on the "
                  f"daemon ({url})", flush=True)
            load0 = os.getloadavg()[0]
            shape, got = asyncio.run(time_both(url, token, proc.pid, plain, wf, calls, clock, sessions))
            load1 = os.getloadavg()[0]
        finally:
            proc.terminate()
            proc.wait(60)
    rows = []
    for name in CALLS:
        g = got[name]
        tp95 = _pct(g["tool"], 0.95)
        sp95 = _pct(g["sql"], 0.95) if g["sql"] else None
        target = FAST_MS if name.split(" (")[0] in FAST else OTHER_MS
        ratio = (tp95 / sp95 if sp95 else float("inf")) if sp95 is not None else None
        rows.append({"tool": name, "tool_p50_ms": round(statistics.median(g["tool"]), 1), "tool_p95_ms": round(tp95, 1),
                     "sql_p50_ms": round(statistics.median(g["sql"]), 1) if g["sql"] else None,
                     "sql_p95_ms": round(sp95, 1) if sp95 is not None else None,
                     "ratio": round(ratio, 2) if ratio is not None else None, "tool_cpu_ms": round(g["tool_cpu"], 1),
                     "sql_cpu_ms": round(g["sql_cpu"], 1) if g["sql_cpu"] is not None else None,
                     "cpu_ratio": round(g["tool_cpu"] / g["sql_cpu"], 2) if g["sql_cpu"] else None,
                     # a tool that writes has no plain SQL beside it: its time is its target
                     "target_ms": target, "met": tp95 <= target and (ratio is None or ratio <= RATIO)})
    return {"requests": n, "sql_on": shape, "clock": clock.isoformat() if clock else "wall", "calls": calls,
            "load_average": [round(load0, 2), round(load1, 2)],
            "idle_after_s": round(idle, 1),
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", default="1000000,10000000", help="store sizes (default 1000000,10000000)")
    ap.add_argument("--calls", type=int, default=20, help="measured calls per tool and per SQL (default 20)")
    ap.add_argument("--warm", type=float, default=20.0, help="seconds the daemon gets once its store is open, before "
                    "waiting until it is idle (default 20)")
    ap.add_argument("--only", default="", help="comma-separated rows of the table to run (default all), e.g. "
                    "query_workflow_cost,budget_status")
    ap.add_argument("--now", default=NOW.isoformat(), help="the clock of both sides: the daemon's (GOLEM_CLOCK) and "
                    "the plain SQL's windows; ISO time, or 'wall' for the wall clock (default the generated "
                    f"stores' end, {NOW:%Y-%m-%d})")
    args = ap.parse_args(argv)
    try:
        clock = None if args.now == "wall" else datetime.fromisoformat(args.now)
    except ValueError:
        raise SystemExit(f"--now {args.now!r}: give an ISO time or 'wall'") from None
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if only:
        unknown = [x for x in only if x not in CALLS]
        if unknown:
            raise SystemExit(f"unknown rows {', '.join(unknown)}; choose from {', '.join(CALLS)}")
        for name in list(CALLS):
            if name not in only:
                del CALLS[name]
    DATA.mkdir(parents=True, exist_ok=True)
    results = []
    for n in [int(x.replace("_", "")) for x in args.requests.split(",") if x.strip()]:
        r = measure(n, args.calls, args.warm, clock)
        results.append(r)
        la = r["load_average"]
        print(f"\n{n:,} requests (SQL on {r['sql_on']}; clock {r['clock']}; load average {la[0]} at the start, {la[1]} at the end):")
        print(f"{'tool':36s} {'tool p50':>9s} {'tool p95':>9s} {'SQL p50':>9s} {'SQL p95':>9s} {'ratio':>6s} "
              f"{'tool CPU':>9s} {'SQL CPU':>8s} {'ratio':>6s} {'target':>7s}  met")
        for x in r["rows"]:
            def f(v: Any, spec: str, width: int) -> str:
                return format(v, spec) if v is not None else "-".rjust(width)

            print(f"{x['tool']:36s} {x['tool_p50_ms']:9.1f} {x['tool_p95_ms']:9.1f} {f(x['sql_p50_ms'], '9.1f', 9)} "
                  f"{f(x['sql_p95_ms'], '9.1f', 9)} {f(x['ratio'], '6.2f', 6)} {x['tool_cpu_ms']:9.1f} "
                  f"{f(x['sql_cpu_ms'], '8.1f', 8)} {f(x['cpu_ratio'], '6.2f', 6)} "
                  f"{x['target_ms']:7.0f}  {'yes' if x['met'] else 'no'}")
    (DATA / "mcp_tools_bench.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
