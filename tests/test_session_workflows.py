"""A workflow for every session: from transcripts alone (no launcher tag, no hooks, no agent call) each
root session of the real fixture is a workflow of its own, with its subagents' stages, a label a person
recognises, and every analysis working on it; a later tag (OTel ``workflow_id``) replaces it."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from golem_mcp.analysis.anomalies import detect_anomalies
from golem_mcp.analysis.loops import find_loops
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store
from support.fixture_data import FIXTURES as FIX
from support.fixture_data import TOKENS, token_counts

TRUTH = json.loads((FIX / "truth.json").read_text())
NOW = datetime(2026, 11, 25)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("sw")
    s = Store(d / "sw.duckdb")
    res = Importer(s, False).run([FIX / "home"])
    assert res.skipped == []
    yield s
    s.close()


def _session_workflow(store: Store, wf: str) -> str:
    return str(store.scalar("SELECT golem_session_workflow(?)", [TRUTH[wf]["session_id"]]))


def test_each_root_session_is_a_workflow_with_its_stages(store):
    got = token_counts(store, ("workflow_id", "stage"))
    want = {(_session_workflow(store, wf), stage): {k: s[k] for k in ("requests", *TOKENS)}
            for wf, t in TRUTH.items() for stage, s in t["stages"].items()}
    assert got == want
    assert store.scalar("SELECT count(*) FROM workflow_summary") == len(TRUTH) == 8


def test_labels_name_the_project_day_and_session_never_the_prompt(store):
    for wf, t in TRUTH.items():
        sw = _session_workflow(store, wf)
        assert sw == "session-" + t["session_id"][:13]
        label = store.scalar("SELECT label FROM workflow_summary WHERE workflow_id = ?", [sw])
        assert re.fullmatch(rf"~/work/{wf} · \d{{4}}-\d\d-\d\d · {t['session_id'][:8]}", label), label
    projects = {r["project"] for r in store.query("SELECT DISTINCT project FROM requests")}
    assert projects == {f"~/work/{wf}" for wf in TRUTH}


def test_loops_and_leaks_are_found_in_each_session_of_its_own(store):
    rep = find_loops(store, now=NOW)
    loopers = {_session_workflow(store, "wf-006"), _session_workflow(store, "wf-007")}
    assert set(rep.workflows_with_loops) == loopers
    # two sessions' loops stay two items, each in its own workflow
    assert sorted((x.workflow_id, x.stage, x.command, x.count) for x in rep.loops) == sorted(
        (w, "implementer", "exit 1", 9) for w in loopers)
    leaks = detect_anomalies(store, now=NOW)
    assert {a.workflow_id for a in leaks.anomalies if a.metric == "total_tokens"} == loopers


def test_a_later_tag_replaces_the_session_workflow(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path / "home"))
    store = Store(tmp_path / "t.duckdb")
    Importer(store, False).run([FIX / "home"])
    sw = _session_workflow(store, "wf-002")
    n = sum(s["requests"] for s in TRUTH["wf-002"]["stages"].values())
    assert store.scalar("SELECT count(*) FROM requests WHERE workflow_id = ?", [sw]) == n
    Importer(store, False).run([FIX / "otlp" / "00006_logs.json"])  # one OTLP body of wf-002, tagged
    assert store.scalar("SELECT count(*) FROM requests WHERE workflow_id = 'wf-002'") == n
    assert store.scalar("SELECT count(*) FROM requests WHERE workflow_id = ?", [sw]) == 0
    assert store.scalar("SELECT count(*) FROM workflow_summary WHERE workflow_id = ?", [sw]) == 0
    store.close()
