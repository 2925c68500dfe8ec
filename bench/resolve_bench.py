"""Resolved facts (issue 10): what resolving on write costs the write path, and what late context costs.

Run it with this checkout and with another (the code before resolved facts) to compare, e.g.::

    python bench/resolve_bench.py                                   # this checkout
    PYTHONPATH=/path/to/other/src python bench/resolve_bench.py     # another checkout's golem_mcp

In-process, no HTTP: every batch is a real OTLP/JSON logs request (the fixtures' ``api_request``
and ``tool_result`` records, fresh session / request / tool-use ids per batch, mapped by
``ingestion.otlp.logs_to_batch`` outside the timer) written by ``Store.write``, so the figures are
the store's own cost. Prints:

- **ingest**: records/s of ``Store.write`` while the store grows to ``--prefill`` requests, and over
  ``--batches`` more batches once it has them (median batch time too);
- **late context** (resolved facts only): a session of ``--session`` requests by one subagent is
  written before its ``SubagentStart`` (the agents row with its type), before ``record_workflow``
  (a workflow link from the session's start) and before the workflow's path: the time of each of
  those writes, which re-resolve the whole session, and the rows they changed; then the session's
  next workflow, linked from its last hour and after its last request (only the facts from then
  are read again), and a new subagent's ``SubagentStart`` (nothing of the session read again);
- **a question**: cost per workflow and stage over ``requests`` (p50 of 5), for scale.

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otlp_ingest import MARK, body_template  # noqa: E402

from golem_mcp.ingestion.otlp import logs_to_batch  # noqa: E402
from golem_mcp.ingestion.records import Batch  # noqa: E402
from golem_mcp.store import Store  # noqa: E402


def batches(template: str, start: int, n: int) -> list[Batch]:
    out = []
    for i in range(start, start + n):
        b = Batch()
        logs_to_batch(json.loads(template.replace(MARK, f"B{i:012d}")), b)
        out.append(b)
    return out


CPU: list[float] = []  # CPU seconds of this process per write (all threads), less sensitive to a busy machine


def write_all(store: Store, bs: list[Batch]) -> list[float]:
    times = []
    for b in bs:
        t, c = time.perf_counter(), time.process_time()
        store.write(b)
        times.append(time.perf_counter() - t)
        CPU.append(time.process_time() - c)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", type=int, default=200_000, help="requests in the store before measuring")
    ap.add_argument("--batch", type=int, default=500, help="log records per batch")
    ap.add_argument("--batches", type=int, default=100, help="batches measured after the prefill")
    ap.add_argument("--session", type=int, default=100_000, help="requests of the late-context session")
    args = ap.parse_args()

    import golem_mcp.store as gs

    resolved = hasattr(gs, "resolve") or Path(gs.__file__).with_name("resolve.py").exists()
    print(f"golem_mcp from {Path(gs.__file__).parent.parent}; resolved facts: {'yes' if resolved else 'no'}")
    template = json.dumps(body_template(args.batch))
    per_batch = sum(len(v) for t, v in batches(template, 0, 1)[0].rows.items() if t == "api_requests") or 1
    with tempfile.TemporaryDirectory(prefix="golem-resolve-bench-") as d:
        import os

        os.environ["GOLEM_HOME"] = d
        store = Store(Path(d) / "bench.duckdb")
        n_pre = max(1, args.prefill // per_batch)
        t0 = time.perf_counter()
        done = 0
        step = max(1, n_pre // 4)
        while done < n_pre:
            k = min(step, n_pre - done)
            times = write_all(store, batches(template, done, k))
            done += k
            print(f"  ingest while growing: {done * per_batch:>9,} requests  {k * args.batch / sum(times):>8,.0f} records/s "
                  f"(median batch {statistics.median(times) * 1000:.1f} ms)")
        print(f"prefill: {done * args.batch:,} records in {time.perf_counter() - t0:.1f} s")
        CPU.clear()
        times = write_all(store, batches(template, done, args.batches))
        print(f"ingest at {done * per_batch:,} requests: {args.batches * args.batch / sum(times):,.0f} records/s, "
              f"median batch {statistics.median(times) * 1000:.1f} ms, p95 "
              f"{sorted(times)[int(len(times) * 0.95) - 1] * 1000:.1f} ms ({args.batch} records a batch); "
              f"CPU {args.batches * args.batch / sum(CPU):,.0f} records per CPU-second, median "
              f"{statistics.median(CPU) * 1000:.1f} CPU-ms a batch")

        # a big session written before its context
        t0 = datetime(2026, 11, 1)
        for lo in range(0, args.session, 5000):
            b = Batch()
            for i in range(lo, min(args.session, lo + 5000)):
                b.add("api_requests", {"request_id": f"big-{i}", "session_id": "big-session", "agent_id": "big-agent",
                                       "model": "claude-sonnet-4-5", "timestamp": t0 + timedelta(seconds=i),
                                       "input_tokens": 10, "output_tokens": 20, "cache_read_tokens": 100})
            store.write(b)
        for what, table, row in (
                ("SubagentStart (the agent's type)", "agents", {"agent_id": "big-agent", "session_id": "big-session",
                                                                 "agent_type": "implementer"}),
                ("record_workflow (a link from the start)", "workflow_links",
                 {"session_id": "big-session", "valid_from": t0 - timedelta(hours=1), "workflow_id": "wf-big"}),
                ("the workflow's path", "workflows", {"workflow_id": "wf-big", "path": "full"}),
                # a session's next workflow: a link from a time on moves only the facts from then
                ("the session's next workflow, from its last hour", "workflow_links",
                 {"session_id": "big-session", "valid_from": t0 + timedelta(seconds=args.session - 3600),
                  "workflow_id": "wf-next"}),
                ("a workflow recorded after the session's last request", "workflow_links",
                 {"session_id": "big-session", "valid_from": t0 + timedelta(seconds=args.session + 60),
                  "workflow_id": "wf-after"}),
                # the SubagentStart of the session's next subagent, before its first request (as it comes)
                ("a new subagent's SubagentStart", "agents", {"agent_id": "big-agent-2", "session_id": "big-session",
                                                              "agent_type": "reviewer"}),
                ("an unrelated session's context", "sessions", {"session_id": "other-session", "cwd": "/tmp/x"})):
            b = Batch()
            b.add(table, row)
            t, c = time.perf_counter(), time.process_time()
            store.write(b)
            dt = time.perf_counter() - t
            print(f"late context, {what}: {dt * 1000:,.0f} ms ({(time.process_time() - c) * 1000:,.0f} CPU-ms)")
        got = store.query("SELECT stage, workflow_id, workflow_path, count(*) AS n FROM requests "
                          "WHERE session_id = 'big-session' GROUP BY ALL")
        print(f"  the session's requests now: {got}")

        qt = []
        for _ in range(5):
            t = time.perf_counter()
            store.query("SELECT workflow_id, stage, sum(cost_usd) AS cost, sum(input_tokens + output_tokens) AS tokens "
                        "FROM requests GROUP BY ALL")
            qt.append(time.perf_counter() - t)
        n = store.scalar("SELECT count(*) FROM api_requests")
        print(f"cost per workflow and stage over {n:,} requests: p50 {statistics.median(qt) * 1000:.0f} ms")
        store.close()


if __name__ == "__main__":
    main()
