"""Synthetic workflow histories with planted effects, written through ``store.write(Batch)``.

Every workflow runs analyst (haiku) -> planner (sonnet) -> implementer (sonnet) -> reviewer (opus) with
+-10 % noise. Effects (each optional) are planted so that tests can check that an analysis finds exactly
them and nothing on a control history:

- ``slow_stage``: the implementer takes 3x longer from ``slow_from`` on (the last 7 days)
- ``token_leak``: one workflow's analyst reads 6x the tokens
- ``loop``: one workflow's implementer runs the same failing command 8 times
- ``error_burst``: one day gets 24 extra failing (timed-out) Bash calls
- ``cheap_model``: every other workflow's reviewer runs on sonnet instead of opus, with the same findings
- ``traces``: each workflow also sends the tracing convention's spans (golem_mcp.tracing): a handoff,
  a phase per stage (queue wait ~0.5 s), a subagent span in each phase and a gate in the implementer's
- ``queue_wait``: with ``traces``, the planner phase waits ~40 s for a worker from ``slow_from`` on
  (its execution unchanged)
- ``good_sequence``: the implementer first runs Grep -> Read -> Edit (``Planted.good_sequence``) in 9 of
  10 workflows that go well and in 1 of 6 of those that do not (a major finding every 5th workflow)

``idle_days`` (day indexes from 0) get no workflow at all: intermittent use, for calendar-day axes.
``fast_track_every`` = n: every n-th workflow is on the fast-track path and skips analyst and planner.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from golem_mcp.ingestion.records import Batch
from golem_mcp.store.db import Store

STAGES = (("analyst", "claude-haiku-test", 60.0, 30_000, 1_500, ["Read", "Grep", "Read", "Glob"]),
          ("planner", "claude-sonnet-test", 40.0, 10_000, 2_000, ["Read"]),
          ("implementer", "claude-sonnet-test", 100.0, 20_000, 3_000, ["Write", "Bash", "Edit", "Bash"]),
          ("reviewer", "claude-opus-test", 50.0, 10_000, 1_000, ["Read", "Grep"]))
PRICES = {"claude-haiku-test": (1.0, 5.0), "claude-sonnet-test": (3.0, 15.0), "claude-opus-test": (15.0, 75.0)}
EFFECTS = ("slow_stage", "token_leak", "loop", "error_burst", "cheap_model", "traces", "queue_wait", "good_sequence")
REQUESTS_PER_STAGE = 3


@dataclass
class Planted:
    now: datetime
    start: datetime
    slow_from: datetime
    leak_workflow: str | None = None
    loop_workflow: str | None = None
    loop_command: str = "pytest -x tests/test_app.py"
    loop_count: int = 8
    burst_day: str | None = None
    workflows: list[str] = field(default_factory=list)
    failed_workflows: list[str] = field(default_factory=list)
    good_sequence: tuple[str, ...] = ("Grep", "Read", "Edit")
    with_good_sequence: list[str] = field(default_factory=list)


def generate(store: Store, effects: set[str] | frozenset[str] = frozenset(), days: int = 28, per_day: int = 3,
             now: datetime = datetime(2031, 3, 1), seed: int = 7, idle_days: frozenset[int] = frozenset(),
             fast_track_every: int = 0) -> Planted:
    bad = set(effects) - set(EFFECTS)
    if bad:
        raise ValueError(f"unknown effects {bad}")
    rnd = random.Random(seed)
    start = now - timedelta(days=days)
    planted = Planted(now=now, start=start, slow_from=now - timedelta(days=7))
    n_total = days * per_day
    leak_idx, loop_idx = n_total - 5, n_total - 4   # both inside the last week
    burst_day_idx = days - 3
    b = Batch()
    seq = 0
    for d in range(days):
        if d in idle_days:
            continue
        for k in range(per_day):
            i = d * per_day + k
            wf = f"wf-{i:04d}"
            planted.workflows.append(wf)
            sid = f"sess-{i:04d}"
            t = start + timedelta(days=d, hours=9 + 3 * k)
            exp = "arm-a" if i % 2 == 0 else "arm-b"
            fast = bool(fast_track_every) and i % fast_track_every == fast_track_every - 1
            b.add("workflows", {"workflow_id": wf, "path": "fast-track" if fast else "full", "complexity": "simple", "experiment_id": exp,
                                "started_at": t, "updated_at": t})
            b.add("sessions", {"session_id": sid, "first_seen": t, "last_seen": t + timedelta(hours=1), "project": "demo"})
            trace = f"{i:032x}"
            if "traces" in effects:
                slow = "slow_stage" in effects and t >= planted.slow_from
                total = sum(x[2] * (3 if slow and x[0] == "implementer" else 1) for x in STAGES)
                b.add("spans", _span(trace, f"{i:08x}00000000", None, "handoff", "LEAD->EXEC", t, total * 1000, wf,
                                     None, None))
            for si, (stage, model, secs, tin, tout, tools) in enumerate(STAGES):
                if fast and stage in ("analyst", "planner"):
                    continue
                if stage == "reviewer" and "cheap_model" in effects and i % 2 == 1:
                    model = "claude-sonnet-test"
                dur = secs * rnd.uniform(0.9, 1.1)
                if stage == "implementer" and "slow_stage" in effects and t >= planted.slow_from:
                    dur *= 3
                aid = f"ag-{i:04d}-{stage}"
                b.add("agents", {"agent_id": aid, "session_id": sid, "agent_type": stage, "model": model,
                                 "started_at": t, "ended_at": t + timedelta(seconds=dur)})
                tin_eff = tin * (6 if stage == "analyst" and "token_leak" in effects and i == leak_idx else 1)
                if stage == "analyst" and "token_leak" in effects and i == leak_idx:
                    planted.leak_workflow = wf
                pin, pout = PRICES[model]
                for r in range(REQUESTS_PER_STAGE):
                    seq += 1
                    it = int(tin_eff / REQUESTS_PER_STAGE * rnd.uniform(0.9, 1.1))
                    ot = int(tout / REQUESTS_PER_STAGE * rnd.uniform(0.9, 1.1))
                    b.add("api_requests", {
                        "request_id": f"req-{seq:07d}", "session_id": sid, "agent_id": aid, "model": model,
                        "timestamp": t + timedelta(seconds=dur * r / REQUESTS_PER_STAGE),
                        "input_tokens": it, "output_tokens": ot, "cache_read_tokens": it, "cache_creation_tokens": 0,
                        "recorded_cost_usd": (it * pin + ot * pout) / 1e6, "duration_ms": 2000 * rnd.uniform(0.9, 1.1),
                        "attempt": 1, "success": True, "workflow_id": wf, "stage": stage, "experiment_id": exp,
                        "source_mask": 2})
                calls = [(name, {"file_path": f"/src/{wf}/{stage}/{j}.py"} if name != "Bash"
                          else {"bash_command": f"pytest tests/{wf}_{j}.py"}, True, None) for j, name in enumerate(tools)]
                if stage == "implementer" and "good_sequence" in effects and (
                        (i % 5 != 0 and i % 10 != 3) or (i % 5 == 0 and i % 30 == 0)):
                    planted.with_good_sequence.append(wf)
                    calls[0:0] = [(name, {"file_path": f"/src/{wf}/{stage}/s{j}.py"}, True, None)
                                  for j, name in enumerate(planted.good_sequence)]
                if stage == "reviewer":   # a normal level of errors: one missing file per workflow
                    calls.append(("Read", {"file_path": f"/src/{wf}/missing.py"}, False, "File does not exist."))
                if stage == "implementer" and "loop" in effects and i == loop_idx:
                    planted.loop_workflow = wf
                    calls[1:1] = [("Bash", {"bash_command": planted.loop_command}, False, "Exit code 1")] * planted.loop_count
                if stage == "implementer" and "error_burst" in effects and d == burst_day_idx:
                    planted.burst_day = (start + timedelta(days=d)).date().isoformat()
                    calls += [("Bash", {"bash_command": f"make build-{k}-{j}"}, False, "Command timed out after 120s")
                              for j in range(8)]
                for j, (name, params, ok, err) in enumerate(calls):
                    seq += 1
                    import json as _json

                    b.add("tool_calls", {
                        "tool_use_id": f"tu-{seq:07d}", "session_id": sid, "agent_id": aid, "tool_name": name,
                        "timestamp": t + timedelta(seconds=dur * (j + 0.5) / (len(calls) + 0.5)), "success": ok,
                        "duration_ms": 300 * rnd.uniform(0.9, 1.1), "error": err,
                        "tool_parameters": _json.dumps(params), "workflow_id": wf, "stage": stage,
                        "experiment_id": exp, "source_mask": 2})
                if "traces" in effects:
                    phase_id = f"{i:08x}{si + 1:08x}"
                    wait = 500 * rnd.uniform(0.9, 1.1)
                    if stage == "planner" and "queue_wait" in effects and t >= planted.slow_from:
                        wait = 40_000 * rnd.uniform(0.9, 1.1)
                    b.add("spans", _span(trace, phase_id, f"{i:08x}00000000", "phase", stage.upper(), t, dur * 1000,
                                         wf, stage, wait))
                    b.add("spans", _span(trace, phase_id[:8] + "a" + phase_id[9:], phase_id, "subagent", stage, t,
                                         dur * 900, wf, stage, None))
                    if stage == "implementer":
                        b.add("spans", _span(trace, phase_id[:8] + "b" + phase_id[9:], phase_id, "gate", "GATE_TESTS",
                                             t + timedelta(seconds=dur * 0.9), dur * 100, wf, stage, None))
                t += timedelta(seconds=dur)
            major = 1 if i % 5 == 0 else 0
            if major:
                planted.failed_workflows.append(wf)
            rid = f"rep-{i:04d}"
            b.add("review_reports", {"report_id": rid, "v": 1, "ts": t, "task": f"task-{i}", "parent": wf,
                                     "workflow_id": wf, "critical": 0, "major": major, "minor": 1, "rework": False})
            b.add("review_issues", {"report_id": rid, "idx": 0, "severity": "minor", "category": "style",
                                    "file": f"src/mod{i % 4}.py", "line": 10, "summary": "naming"})
            if major:
                b.add("review_issues", {"report_id": rid, "idx": 1, "severity": "major", "category": "bug",
                                        "file": "src/core.py", "line": 3, "summary": "edge case"})
    store.write(b)
    return planted


def _span(trace: str, span_id: str, parent: str | None, kind: str, name: str, start: datetime, dur_ms: float,
          workflow_id: str, stage: str | None, wait_ms: float | None) -> dict:
    """A span row as the OTLP mapping writes one for the tracing convention's spans."""
    return {"span_id": span_id, "trace_id": trace, "parent_span_id": parent, "name": name, "span_type": kind,
            "start_time": start, "end_time": start + timedelta(milliseconds=dur_ms), "duration_ms": dur_ms,
            "status_code": 1, "queue_wait_ms": wait_ms, "attempt": 1, "workflow_id": workflow_id, "stage": stage}
