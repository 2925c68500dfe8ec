"""Recovery per stage (seed 004: a failed tool call recovered when the same agent's next call of that
tool succeeds, and how long that took) equals a reference walked call by call in Python, on random
sequences with ties in time, agents without an id, calls without a stage and sequences that end on a
failure. The answer orders only the sequences that hold a failure; the reference orders them all."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np
import pytest

from golem_mcp.analysis.error_patterns import query_error_patterns
from golem_mcp.store.batch import Batch
from golem_mcp.store.db import Store

NOW = datetime(2031, 1, 1)


@pytest.mark.parametrize("seed", [1, 2])
def test_recovery_equals_a_call_by_call_reference(tmp_path, seed: int) -> None:
    rnd = random.Random(seed)
    calls = []
    for i in range(1500):
        ts = NOW - timedelta(days=rnd.uniform(0, 40), seconds=rnd.choice([0, 0, 7]))
        ts = ts.replace(microsecond=0) if rnd.random() < 0.3 else ts  # equal times: the id decides
        calls.append({"tool_use_id": f"t{i:05d}", "session_id": f"s{rnd.randint(0, 30)}",
                      "agent_id": rnd.choice([None, "a1", "a2"]), "tool_name": rnd.choice(["Bash", "Read", "Edit"]),
                      "timestamp": ts, "success": rnd.random() > 0.25})
    with Store(tmp_path / "s.duckdb") as store:
        b = Batch()
        for c in calls:
            b.add("tool_calls", dict(c))
        store.write(b)
        stage_of = {r["tool_use_id"]: r["stage"] for r in store.query("SELECT tool_use_id, stage FROM tools")}
        got = {s.stage: s for s in query_error_patterns(store, days=30, now=NOW).by_stage}

    start = NOW - timedelta(days=30)
    seqs: dict[tuple, list[dict]] = {}
    for c in sorted((c for c in calls if start <= c["timestamp"] < NOW), key=lambda c: (c["timestamp"], c["tool_use_id"])):
        seqs.setdefault((c["session_id"], c["agent_id"], c["tool_name"]), []).append(c)
    want: dict[str, dict] = {}
    for seq in seqs.values():
        for c, nxt in zip(seq, seq[1:] + [None], strict=True):
            w = want.setdefault(stage_of[c["tool_use_id"]] or "-", {"fails": 0, "recovered": 0, "secs": []})
            if not c["success"]:
                w["fails"] += 1
                if nxt is not None and nxt["success"]:
                    w["recovered"] += 1
                    w["secs"].append((nxt["timestamp"] - c["timestamp"]).total_seconds())
    assert want and sum(w["recovered"] for w in want.values()) > 20
    assert set(got) == set(want)
    for stage, w in want.items():
        g = got[stage]
        assert (g.recovered, round(g.recovered / w["fails"], 3) if w["fails"] else None) == \
            (w["recovered"], g.recovery_rate)
        if w["secs"]:
            p50, p95 = np.quantile(w["secs"], [0.5, 0.95])
            assert (g.recovery_p50_s, g.recovery_p95_s) == (round(p50, 3), round(p95, 3))
        else:
            assert g.recovery_p50_s is None
