"""Tool sequences per stage (the dashboard's table, the CLI's ``sequences``) equal a reference that
takes each run of n calls as a window frame holding their list: on random calls with equal times (the
id orders them), agents without an id, tool names and outcomes missing, for every n the tool takes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from golem_mcp.analysis.sequences import _ngrams
from golem_mcp.store.batch import Batch
from golem_mcp.store.db import Store

NOW = datetime(2031, 1, 1)
REFERENCE = """
    WITH t AS (
        SELECT workflow_id, stage, success,
               list(tool_name) OVER w AS gram, bool_and(success) OVER w AS ok, count(*) OVER w AS len
        FROM tools WHERE "timestamp" >= ? AND "timestamp" < ? AND (? IS NULL OR stage = ?)
        WINDOW w AS (PARTITION BY session_id, agent_id ORDER BY "timestamp", tool_use_id
                     ROWS BETWEEN {back} PRECEDING AND CURRENT ROW)),
    g AS (
        SELECT t.stage, array_to_string(t.gram, '->') AS sequence, t.ok, t.workflow_id, o.successful AS good,
               s.total_cost
        FROM t LEFT JOIN workflow_outcomes o USING (workflow_id)
        LEFT JOIN workflow_stage_summary s ON s.workflow_id = t.workflow_id AND s.stage = t.stage
        WHERE t.len = ?)
    SELECT stage, sequence, count(*) AS count, avg(CAST(ok AS INTEGER)) AS success_rate,
           count(DISTINCT workflow_id) AS workflows, avg(total_cost) AS avg_stage_cost_usd,
           avg(CAST(good AS INTEGER)) AS good_share
    FROM g GROUP BY stage, sequence"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rnd = random.Random(7)
    b = Batch()
    for i in range(1200):
        ts = (NOW - timedelta(days=rnd.uniform(0, 35))).replace(microsecond=0, second=rnd.choice([0, 0, 30]))
        sid = f"s{rnd.randint(0, 12)}"
        b.add("tool_calls", {"tool_use_id": f"t{i:05d}", "session_id": sid, "agent_id": rnd.choice([None, "a1", "a2"]),
                             "tool_name": rnd.choice(["Read", "Edit", "Bash", "Grep", None]), "timestamp": ts,
                             "success": rnd.choice([True, True, True, False, None])})
        if i % 100 == 0:
            b.add("api_requests", {"request_id": f"r{i}", "session_id": sid, "timestamp": ts, "input_tokens": 100,
                                   "output_tokens": 10, "model": "claude-sonnet-4-5", "workflow_id": f"wf-{i % 3}",
                                   "stage": rnd.choice(["implementer", "reviewer"])})
    with Store(tmp_path_factory.mktemp("seq") / "s.duckdb") as s:
        s.write(b)
        yield s


@pytest.mark.parametrize("n", [2, 3, 4, 6])
@pytest.mark.parametrize("stage", [None, "main"])
def test_sequences_equal_the_frame_reference(store: Store, n: int, stage: str | None) -> None:
    start = NOW - timedelta(days=30)
    got = _ngrams(store, n, start, NOW, stage)
    want = store.query(REFERENCE.format(back=n - 1), [start, NOW, stage, stage, n])
    assert len(want) > 5
    assert same(got, want)


def same(got: list[dict], want: list[dict]) -> bool:
    """The same rows in any order, averages equal but for their last bits (sums in another order)."""
    def key(r: dict) -> tuple[str, str]:
        return r["stage"] or "", r["sequence"] or ""

    return close(sorted(got, key=key), sorted(want, key=key))


def close(a: list[dict], b: list[dict]) -> bool:
    """The same rows in the same order, floats equal but for their last bits."""
    return len(a) == len(b) and all(x.keys() == y.keys() and all(
        x[k] == pytest.approx(y[k], rel=1e-9) if isinstance(y[k], float) else x[k] == y[k] for k in y)
        for x, y in zip(a, b, strict=True))
