"""Reusable sequences learned from successful workflows (seed 002): a planted sequence is found with its
support and evidence, checked against a GROUP BY written here; a control history and the real fixtures
give nothing spurious; the MCP tool and the CLI show it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from statistics import median

import pytest
from mcp import Client

from golem_mcp.analysis.errors_loops import errors_and_loops
from golem_mcp.analysis.sequences import reusable_sequences, tool_sequences
from golem_mcp.analysis.weekly import weekly_report
from golem_mcp.errors import InvalidInput
from golem_mcp.ingestion.importer import Importer
from golem_mcp.interfaces.mcp_server import build_server
from golem_mcp.store.db import Store
from synthetic import generate

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
NOW = datetime(2031, 3, 1)


def _by_hand(store: Store, stage: str, sequence: str, failed: set[str]) -> dict[str, object]:
    """Workflows whose ``stage`` ran ``sequence`` as consecutive calls of one agent, counted by a GROUP BY
    over the tool calls (outcome from the planted failures, cost summed from the requests)."""
    calls = store.query("""
        WITH c AS (SELECT workflow_id, string_agg(tool_name, '->' ORDER BY "timestamp", tool_use_id) AS calls
                   FROM tools WHERE stage = ? GROUP BY workflow_id, session_id, agent_id),
             w AS (SELECT workflow_id, bool_or(('->' || calls || '->') LIKE ('%->' || ? || '->%')) AS has
                   FROM c GROUP BY workflow_id),
             k AS (SELECT workflow_id, sum(cost_usd) AS cost FROM requests GROUP BY workflow_id)
        SELECT w.workflow_id, w.has, k.cost FROM w JOIN k USING (workflow_id) ORDER BY 1""", [stage, sequence])
    has = {r["workflow_id"] for r in calls if r["has"]}
    every = {r["workflow_id"] for r in calls}
    cost = {r["workflow_id"]: r["cost"] for r in calls}
    return {"successful_with": len(has - failed), "successful_total": len(every - failed),
            "failed_with": len(has & failed), "failed_total": len(every & failed),
            "median_cost_with_usd": median(cost[w] for w in has),
            "median_cost_without_usd": median(cost[w] for w in every - has)}


def test_planted_sequence_is_found_with_its_evidence(store):
    p = generate(store, {"good_sequence"})
    failed = set(p.failed_workflows)
    rep = reusable_sequences(store, now=p.now, days=30)
    assert (rep.successful_workflows, rep.failed_workflows) == (67, 17)
    planted = "->".join(p.good_sequence)
    assert len(rep.sequences) == 1, [s.line() for s in rep.sequences]
    found = rep.sequences[0]
    # the planted run, with the calls that always follow it (one chain, not its shifted windows)
    assert found.kind == "tools" and found.stage == "implementer" and planted in found.sequence
    assert found.sequence == "Grep->Read->Edit->Write->Bash->Edit" and found.length == 6
    hand = _by_hand(store, "implementer", found.sequence, failed)
    assert hand == _by_hand(store, "implementer", planted, failed)   # the chain is in the same workflows
    assert hand["successful_with"] == len(set(p.with_good_sequence) - failed) == 58
    assert hand["failed_with"] == len(set(p.with_good_sequence) & failed) == 3
    for k, v in hand.items():
        assert getattr(found, k) == pytest.approx(v, abs=1e-6), k
    assert found.with_success_rate == round(58 / 61, 3) and found.without_success_rate == round(9 / 23, 3)
    assert found.lift == round((58 / 61) / (67 / 84), 3)
    assert found.q_value < 1e-4 and found.p_value <= found.q_value
    assert len(found.examples) == 3 and set(found.examples) <= set(p.with_good_sequence) - failed
    assert found.examples == sorted(found.examples, reverse=True)   # most recent first
    assert found.median_duration_with_seconds is not None and found.median_duration_without_seconds is not None
    # min_support is the bar: one more than the support leaves nothing
    assert reusable_sequences(store, now=p.now, days=30, min_support=59).sequences == []
    assert reusable_sequences(store, now=p.now, days=30, min_support=58).sequences[0].sequence == found.sequence
    # the existing report carries it (the old typical_of_good found nothing when most workflows succeed)
    seq = tool_sequences(store, now=p.now)
    assert [s.sequence for s in seq.reusable] == [found.sequence]


def test_control_history_finds_nothing(store):
    p = generate(store, fast_track_every=4)   # fast-track workflows skip stages: sequences not in every workflow
    rep = reusable_sequences(store, now=p.now, days=30)
    assert rep.tested > 10 and rep.sequences == []
    assert rep.note and "goes with success" in rep.note
    assert rep.successful_workflows + rep.failed_workflows == 84


def test_stage_sequences_and_bad_input(store):
    p = generate(store, {"good_sequence"})
    # every workflow runs the same stages: no stage sequence stands out
    assert reusable_sequences(store, now=p.now, kinds=("stages",)).sequences == []
    assert reusable_sequences(store, now=p.now, kinds=("stages",), min_support=1).tested > 0
    for bad in ({"max_length": 9}, {"min_length": 3, "max_length": 2}, {"min_support": 0}, {"kinds": ("x",)},
                {"alpha": 0}):
        with pytest.raises(InvalidInput):
            reusable_sequences(store, now=p.now, **bad)
    # a window without failures has nothing to compare with, and says so
    rep = reusable_sequences(store, now=p.now, days=0.2)
    assert rep.sequences == [] and rep.note


def test_too_few_failures_teach_nothing(store):
    # 6 workflows, 2 with a major finding: the planted sequence is in the 4 others (and in wf-0000), but two
    # failures are an anecdote
    p = generate(store, {"good_sequence"}, days=2)
    rep = reusable_sequences(store, now=p.now, days=30)
    assert (rep.successful_workflows, rep.failed_workflows) == (4, 2)
    assert rep.sequences == [] and "too few" in (rep.note or "")


def test_real_fixtures_give_nothing_spurious(tmp_path, monkeypatch):
    if not FIXTURES.exists():
        pytest.skip("fixtures not available")
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    s = Store(tmp_path / "fx.duckdb")
    try:
        Importer(s, False).run([FIXTURES])
        rep = reusable_sequences(s, now=datetime(2026, 11, 25), days=30)
        # 8 workflows: wf-003 (3 failed tool calls), wf-006 and wf-007 (loops) did not go well
        assert (rep.successful_workflows, rep.failed_workflows) == (5, 3)
        assert rep.sequences == [] and rep.min_support == 3
        # what was tested: each stage's runs of 2-4 consecutive calls in 3+ successful workflows, by hand
        tested = s.scalar("""
            WITH c AS (SELECT workflow_id, COALESCE(stage, '-') AS stage,
                              list(tool_name ORDER BY "timestamp", tool_use_id) AS calls
                       FROM tools WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage, session_id, agent_id),
                 g AS (SELECT DISTINCT workflow_id, stage, array_to_string(calls[i:i + L - 1], '->') AS gram
                       FROM c, range(2, 5) l(L), range(1, 100) j(i) WHERE i + L - 1 <= len(calls)),
                 ok AS (SELECT workflow_id FROM workflow_summary
                        WHERE workflow_id NOT IN ('wf-003', 'wf-006', 'wf-007'))
            SELECT count(*) FROM (SELECT stage, gram FROM g JOIN ok USING (workflow_id)
                                  GROUP BY ALL HAVING count(*) >= 3)""")
        stage_grams = s.scalar("""
            WITH o AS (SELECT workflow_id, list(stage ORDER BY started_at, stage) AS st FROM workflow_stage_summary
                       WHERE workflow_id NOT IN ('wf-003', 'wf-006', 'wf-007') GROUP BY 1),
                 g AS (SELECT DISTINCT workflow_id, array_to_string(st[i:i + L - 1], '->') AS gram
                       FROM o, range(2, 5) l(L), range(1, 20) j(i) WHERE i + L - 1 <= len(st))
            SELECT count(*) FROM (SELECT gram FROM g GROUP BY gram HAVING count(*) >= 3)""")
        assert rep.tested == tested + stage_grams and tested > 0
    finally:
        s.close()


async def test_mcp_section_shows_the_evidence(store):
    p = generate(store, {"good_sequence"}, now=datetime.now().replace(microsecond=0) - timedelta(hours=1))
    async with Client(build_server(lambda: store)) as c:
        r = await c.call_tool("query_errors_and_loops", {"sections": ["sequences"]})
        default = await c.call_tool("query_errors_and_loops", {})
    assert not r.is_error, r
    seq = r.structured_content["sequences"]
    row = dict(zip(seq["columns"], seq["rows"][0], strict=True))
    assert row["stage"] == "implementer" and "->".join(p.good_sequence) in row["sequence"]
    assert (row["successful"], row["failed"]) == ("58/67", "3/17")
    assert row["with_success_rate"] == round(58 / 61, 3) and float(row["q"]) < 1e-4
    # not part of the default answer (what went right is asked for)
    assert default.structured_content.get("sequences") is None
    same = errors_and_loops(store, sections=["sequences"])
    assert same.sequences is not None and same.sequences.rows == seq["rows"]


def test_cli_and_weekly_report(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home), "COLUMNS": "80"}
    env.pop("GOLEM_DB", None)
    s = Store(home / "golem.duckdb")
    try:
        p = generate(s, {"good_sequence"})
    finally:
        s.close()
    run = [sys.executable, "-m", "golem_mcp"]
    base = ["analyze", "sequences", "--db", str(home / "golem.duckdb"), "--now", p.now.isoformat(), "--days", "30"]
    out = subprocess.run([*run, *base, "--width", "80"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Reusable sequences" in out.stdout and "implementer" in out.stdout
    assert all(len(line) <= 80 for line in out.stdout.splitlines()), out.stdout
    assert not re.search(r"\d[eE][+-]?\d", out.stdout), out.stdout
    data = json.loads(subprocess.run([*run, *base, "--format", "json"], capture_output=True, text=True, env=env,
                                     timeout=120).stdout)
    assert [(r["successful_with"], r["failed_with"]) for r in data["reusable"]] == [(58, 3)]
    none = subprocess.run([*run, *base, "--min-support", "59", "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert json.loads(none.stdout)["reusable"] == []
    bad = subprocess.run([*run, *base, "--max-length", "9"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "max_length" in bad.stderr
    s = Store(home / "golem.duckdb")
    try:
        md = weekly_report(s, tmp_path / "out", now=p.now).read_text()
    finally:
        s.close()
    assert "## Reusable sequences" in md and "Grep->Read->Edit" in md and "58 of 67 successful" in md


def test_overlapping_windows_join_into_one_chain_in_any_order():
    from itertools import permutations

    from golem_mcp.analysis.sequences import ReusableSequence, _condense

    def seq(s: str) -> ReusableSequence:
        return ReusableSequence(kind="tools", stage="implementer", sequence=s, length=len(s.split("->")),
                                successful_with=5, successful_total=9, failed_with=0, failed_total=4,
                                with_success_rate=1.0, without_success_rate=0.2, lift=1.8, p_value=0.01,
                                q_value=0.02, median_cost_with_usd=None, median_cost_without_usd=None,
                                median_duration_with_seconds=None, median_duration_without_seconds=None, examples=[])

    same = frozenset({1, 2, 3, 4, 5})
    windows = ["Grep->Read->Edit->Write", "Read->Edit->Write->Bash", "Edit->Write->Bash->Edit", "Grep->Read->Edit"]
    for order in permutations(windows):
        assert [s.sequence for s in _condense([seq(w) for w in order], [same] * 4)] == [
            "Grep->Read->Edit->Write->Bash->Edit"]
    # in other workflows: kept apart
    out = _condense([seq(windows[0]), seq(windows[1])], [same, frozenset({1, 2, 3, 4, 6})])
    assert sorted(s.sequence for s in out) == sorted(windows[:2])
