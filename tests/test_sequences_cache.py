"""Tool sequences from the analysis cache's per-day n-grams (snapshot: analysis_ngram_days, _rows) equal
the frame reference of ``test_sequences_reference`` read from the store's views, in windows whose ends
cut through days or fall on midnight: after the first writes and after later ones that continue an
agent's run of calls in another write, put late calls before earlier ones of the same agent (on the
same day and days back), spread a one-day workflow over a second day, and change a workflow's cost.
The cache refreshed that way holds what a cache built whole from the same facts holds."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from golem_mcp.analysis import snapshot as snapshot_module
from golem_mcp.analysis.sequences import CACHED_LENGTHS, _ngrams, cached_ngrams
from golem_mcp.store.batch import Batch
from golem_mcp.store.db import Store
from test_sequences_reference import REFERENCE, close, same

NOW = datetime(2031, 3, 1, 12, 0)
TOOLS = ["Read", "Edit", "Bash", "Grep"]
STAGES = ["implementer", "reviewer", "tester"]
# (end, days): ends inside a day and at midnight; windows of many days, a few, and one and a half
WINDOWS = [(NOW, 30), (NOW, 7), (NOW, 1.5), (NOW.replace(hour=0), 30), (NOW - timedelta(days=3, hours=5), 10.25),
           (NOW - timedelta(days=12), 20), (NOW + timedelta(days=10), 30)]


def episode(b: Batch, rnd: random.Random, wf: str | None, sid: str, start: datetime, hours: float, calls: int,
            tag: str, stages: list[str] | None = None) -> None:
    """A workflow's tool calls over ``hours`` from ``start``, by a few agents of session ``sid`` (one
    without an id), at times on the half minute (equal times: the id orders them); one request per stage
    to give it a cost."""
    for i in range(calls):
        ts = (start + timedelta(hours=rnd.uniform(0, hours))).replace(microsecond=0, second=rnd.choice([0, 30]))
        stage = rnd.choice(stages or STAGES)
        b.add("tool_calls", {"tool_use_id": f"t-{tag}-{i:03d}", "session_id": sid,
                             "agent_id": rnd.choice([None, "a1", "a2"]), "tool_name": rnd.choice(TOOLS),
                             "timestamp": ts, "success": rnd.choice([True, True, True, False, None]),
                             "workflow_id": wf, "stage": stage})
    if wf:
        for stage in stages or STAGES:
            b.add("api_requests", {"request_id": f"r-{tag}-{stage}", "session_id": sid, "timestamp": start,
                                   "input_tokens": rnd.randint(100, 5000), "output_tokens": 10,
                                   "model": "claude-sonnet-4-5", "workflow_id": wf, "stage": stage})


def first(rnd: random.Random) -> Batch:
    b = Batch()
    for j in range(60):
        start = NOW - timedelta(days=rnd.uniform(0.2, 40))
        # most workflows within hours (some across midnight), a few over days; sessions shared by workflows
        hours = rnd.choice([0.5, 2, 5, 5, 8, 30, 60])
        episode(b, rnd, None if j % 13 == 0 else f"wf-{j}", f"s{j % 17}", start, hours, rnd.randint(6, 30), f"a{j}")
    # a one-day workflow that a later write spreads over the next day (midnight before NOW's day - 4)
    episode(b, rnd, "wf-spread", "s-spread", NOW.replace(hour=0) - timedelta(days=4, hours=6), 3, 12, "sp")
    # a workflow on two days whose runs do not reach over midnight (one agent a day)
    day = NOW.replace(hour=10) - timedelta(days=8)
    for k, aid in enumerate(("d1", "d2")):
        for i, tool in enumerate(("Read", "Grep", "Edit", "Bash")):
            b.add("tool_calls", {"tool_use_id": f"t-two-{k}{i}", "session_id": "s-two", "agent_id": aid,
                                 "tool_name": tool, "timestamp": day + timedelta(days=k, minutes=i), "success": True,
                                 "workflow_id": "wf-two", "stage": "implementer"})
    # an agent with one call every other day after the others' (without a session: no workflow's days are
    # read again for it): a run's first calls lie days back
    for i in range(3):
        b.add("tool_calls", {"tool_use_id": f"t-sparse-{i}", "session_id": None, "agent_id": "sp",
                             "tool_name": TOOLS[i], "timestamp": NOW.replace(hour=9) + timedelta(days=3 + 2 * i),
                             "success": True})
    # a call that a later write moves to another agent and day (see later), before another workflow's
    a = NOW.replace(hour=9) - timedelta(days=15)
    for i, (tid, ts, wf) in enumerate((("t-mv-x", a, "wf-mvx"), ("t-mv-1", a + timedelta(days=1), "wf-mvy"),
                                      ("t-mv-2", a + timedelta(days=1, minutes=10), "wf-mvy"),
                                      ("t-mv-3", a + timedelta(days=1, minutes=20), "wf-mvy"))):
        b.add("tool_calls", {"tool_use_id": tid, "session_id": "s-mv", "agent_id": None, "tool_name": TOOLS[i],
                             "timestamp": ts, "success": True, "workflow_id": wf, "stage": "reviewer"})
    # calls without a session (no workflow): a run from before the 30-day window's start over the
    # midnight after it
    start = NOW - timedelta(days=30)
    for i, ts in enumerate((start - timedelta(hours=1), start + timedelta(hours=12, minutes=30),
                            start + timedelta(hours=13), start + timedelta(hours=13, minutes=30))):
        b.add("tool_calls", {"tool_use_id": f"t-lone-{i}", "session_id": None, "agent_id": "lone",
                             "tool_name": TOOLS[i], "timestamp": ts, "success": True})
    return b


def later(rnd: random.Random) -> Batch:
    b = Batch()
    # new workflows on the newest days, some in sessions (and agents) that already have calls
    for j in range(8):
        start = NOW - timedelta(hours=rnd.uniform(1, 50))
        episode(b, rnd, f"wf-n{j}", f"s{j % 17}", start, rnd.choice([0.5, 3, 20]), rnd.randint(5, 15), f"n{j}")
    # late calls between earlier ones of the same agents: the same days and days back
    for j in range(6):
        start = NOW - timedelta(days=rnd.uniform(0.5, 35))
        episode(b, rnd, f"wf-{j * 7}", f"s{(j * 7) % 17}", start, 6, 8, f"late{j}")
    # the one-day workflow's calls after midnight; a cost for an old workflow's stage
    episode(b, rnd, "wf-spread", "s-spread", NOW.replace(hour=0) - timedelta(days=3, hours=1), 2, 6, "sp2")
    b.add("api_requests", {"request_id": "r-more-cost", "session_id": "s3", "timestamp": NOW - timedelta(days=9),
                           "input_tokens": 90000, "output_tokens": 10, "model": "claude-sonnet-4-5",
                           "workflow_id": "wf-3", "stage": "reviewer"})
    return b


def far_back(rnd: random.Random) -> Batch:
    """Calls of existing agents weeks back, before their earlier calls: runs on later days shift."""
    b = Batch()
    for j in range(3):
        episode(b, rnd, f"wf-{j + 20}", f"s{(j + 20) % 17}", NOW - timedelta(days=21 + j), 4, 5, f"far{j}")
    # a call without a session (no workflow) between two of the run over midnight
    b.add("tool_calls", {"tool_use_id": "t-lone-late", "session_id": None, "agent_id": "lone", "tool_name": "Bash",
                         "timestamp": NOW - timedelta(days=30) + timedelta(hours=12, minutes=45), "success": False})
    return b


def sparse(rnd: random.Random) -> Batch:
    """The sparse agent's call on its last day, later in it: the run before it starts four days back."""
    b = Batch()
    b.add("tool_calls", {"tool_use_id": "t-sparse-3", "session_id": None, "agent_id": "sp", "tool_name": "Bash",
                         "timestamp": NOW.replace(hour=15) + timedelta(days=7), "success": False})
    return b


def moved(rnd: random.Random) -> Batch:
    """The moved call again, with its agent and a day earlier: the runs of the agent it left change."""
    b = Batch()
    b.add("tool_calls", {"tool_use_id": "t-mv-x", "session_id": "s-mv", "agent_id": "z", "tool_name": TOOLS[0],
                         "timestamp": NOW.replace(hour=9) - timedelta(days=16), "success": True,
                         "workflow_id": "wf-mvx", "stage": "reviewer"})
    return b


def answers(st: Store) -> dict[Any, Any]:
    """For every window and cached length: the cache's answer, and the frame reference over the views."""
    out = {}
    with snapshot_module.summaries(st) as reader:
        assert reader.cache_current()
        for end, days in WINDOWS:
            start = end - timedelta(days=days)
            for n in CACHED_LENGTHS:
                got = cached_ngrams(reader, n, start, end)
                assert got is not None, (end, days, n)
                # _ngrams reads the cache too, and the window's rows with a stage filter
                assert same(_ngrams(reader, n, start, end, None), got)
                want = st.query(REFERENCE.format(back=n - 1), [start, end, None, None, n])
                out[end, days, n] = (got, want)
    return out


def cache_tables(st: Store) -> dict[str, list[dict[str, Any]]]:
    return {t: st.query(f"SELECT * FROM {t} ORDER BY ALL") for t in (snapshot_module.NGRAM_DAYS, snapshot_module.NGRAM_ROWS)}


@pytest.fixture()
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def test_cached_sequences_equal_the_reference_through_refreshes(store: Store) -> None:
    rnd = random.Random(5)
    steps = [first(rnd), later(rnd), far_back(rnd), sparse(rnd), moved(rnd)]
    for i, batch in enumerate(steps):
        store.write(batch)
        assert not snapshot_module.cache_current(store)
        refreshed = snapshot_module.warm_cache(store)
        assert refreshed == -1 if i == 0 else refreshed > 0  # built whole first, then refreshed
        for key, (got, want) in answers(store).items():
            assert len(want) > 5, key
            assert same(got, want), (i, key)
    # what the refreshes left equals a cache built whole from the same facts
    refreshed_tables = cache_tables(store)
    apart = store.scalar(f"SELECT count(DISTINCT workflow_id) FROM {snapshot_module.NGRAM_ROWS}")
    midnight = store.scalar(f"SELECT count(*) FROM {snapshot_module.NGRAM_ROWS} "
                            "WHERE CAST(first_at AS DATE) <> day")
    assert apart >= 5 and midnight >= 3  # the test holds workflows kept apart and runs over midnight
    assert store.scalar(f"SELECT sum(workflows) FROM {snapshot_module.NGRAM_DAYS}") > 20
    store.con.execute("DELETE FROM analysis_cache_state")
    assert snapshot_module.warm_cache(store) == -1
    rebuilt = cache_tables(store)
    assert all(close(rebuilt[t], refreshed_tables[t]) for t in rebuilt)


def test_other_lengths_and_a_stage_read_the_calls(store: Store) -> None:
    store.write(first(random.Random(3)))
    snapshot_module.warm_cache(store)
    start = NOW - timedelta(days=30)
    with snapshot_module.summaries(store) as reader:
        assert cached_ngrams(reader, 2, start, NOW) is None  # not a cached length
        assert cached_ngrams(reader, 3, NOW - timedelta(hours=20), NOW) is None  # no whole day
        assert cached_ngrams(store, 3, start, NOW) is None  # the store itself: no cache reader
        for n, stage in ((2, None), (3, "reviewer"), (4, None)):
            want = store.query(REFERENCE.format(back=n - 1), [start, NOW, stage, stage, n])
            assert same(_ngrams(reader, n, start, NOW, stage), want)
