"""The agent-facing tools with arguments other than the defaults ``mcp_tools_bench.py`` times, on a
large store through the real MCP client and daemon: a sweep for arguments that take a slow path
(grouping by workflow over 30 days, a stage filter, a year's window, ...). Three calls each; prints
the median and the slowest, and marks a median over the 250 ms target with ``<<<``. Asserts nothing.

    GOLEM_BENCH_DATA=DIR python bench/tool_args_sweep.py 10000000

The store is ``mcp_tools_bench.py``'s prepared one (built once, cached in ``$GOLEM_BENCH_DATA``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import duckdb  # noqa: E402
from analysis_bench import DATA, NOW  # noqa: E402
from mcp_tools_bench import prepared_store, start_daemon, wait_idle  # noqa: E402


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    src = prepared_store(n)
    con = duckdb.connect(str(src), read_only=True)
    r = con.execute('SELECT workflow_id, session_id, agent_id, r_task_id, r_experiment_id, model FROM api_requests WHERE workflow_id IS NOT NULL AND agent_id IS NOT NULL ORDER BY "timestamp" DESC LIMIT 1').fetchone()
    wf, sid, aid, task, exp, model = r
    stage = con.execute("SELECT r_stage FROM api_requests WHERE r_stage IS NOT NULL AND r_stage <> 'main' LIMIT 1").fetchone()[0]
    exps = [x[0] for x in con.execute("SELECT DISTINCT experiment_id FROM rollup_requests_coarse WHERE experiment_id IS NOT NULL LIMIT 2").fetchall()]
    con.close()
    print(wf, sid, aid, task, exp, stage, exps, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="golem-mcp-sweep-", dir=DATA))
    served = tmp / "served.duckdb"
    shutil.copyfile(src, served)
    proc, url, token = start_daemon(served, tmp / "home", NOW)
    time.sleep(20)
    wait_idle(proc.pid)
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    transport = streamable_http_client(url + "/mcp", http_client=create_mcp_http_client(headers={"authorization": f"Bearer {token}"}))
    calls = [
        ("query_workflow_cost", {"workflow_id": wf, "group_by": ["model"]}),
        ("query_workflow_cost", {"group_by": ["session"]}),
        ("query_workflow_cost", {"group_by": ["workflow"]}),
        ("query_workflow_cost", {"group_by": ["skill"]}),
        ("query_workflow_cost", {"group_by": ["day", "model"]}),
        *([("query_workflow_cost", {"task_id": task})] if task else []),
        ("query_workflow_cost", {"experiment_id": exp} if exp else {"stage": stage}),
        ("query_workflow_cost", {"stage": stage, "group_by": ["workflow"]}),
        ("query_workflow_cost", {"since": "2030-06-01T00:00:00Z", "until": "2030-06-15T12:00:00Z"}),
        ("query_workflow_cost", {"since": "2030-01-01T00:00:00Z", "group_by": ["top_stage"]}),
        ("query_workflow_cost", {"machine_id": "m-1"}),
        ("budget_status", {"stage": stage}),
        ("budget_status", {}),
        ("query_errors_and_loops", {"stage": stage}),
        ("query_errors_and_loops", {"days": 365}),
        ("query_errors_and_loops", {"workflow_id": wf, "sections": ["sequences"]}),
        ("find_slow_stages", {"workflow_id": wf}),
        ("find_slow_stages", {"days": 365}),
        ("find_token_leaks", {"days": 365}),
        ("find_token_leaks", {"workflow_id": wf}),
        ("query_review_findings", {"days": 365}),
        ("predict_cost", {"path": "fast-track", "complexity": "simple"}),
        ("predict_cost", {}),
        ("compare_experiments", {"metric": "cost", "stage": stage}),
        ("compare_experiments", {"metric": "duration"}),
        ("compare_experiments", {"metric": "errors"}),
        ("compare_experiments", {"metric": "review_findings"}),
        ("list_improvements", {}),
        ("describe_schema", {"view": "requests"}),
        ("query_sql", {"sql": "SELECT count(*) FROM requests"}),
        ("query_sql", {"sql": "SELECT stage, count(*) FROM tools GROUP BY 1"}),
    ]
    async with Client(transport) as c:
        for name, args in calls:
            ms = []
            err = None
            for _ in range(3):
                t = time.perf_counter()
                try:
                    res = await c.call_tool(name, args)
                    if res.is_error:
                        err = res.content[0].text[:160]
                except Exception as e:  # noqa: BLE001 - a failed call is printed, the sweep goes on
                    err = repr(e)[:160]
                ms.append((time.perf_counter() - t) * 1000)
            flag = " <<<" if statistics.median(ms) > 250 else ""
            print(f"{statistics.median(ms):8.1f} ms  max {max(ms):8.1f}  {name} {json.dumps(args)[:90]}{'  ERROR ' + err if err else ''}{flag}", flush=True)
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    asyncio.run(main())
