"""Parent/child workflows (seed 004's gap): a workflow started by another names it, through
record_workflow or the OTel resource attribute; costs roll up to the parent; cycles are refused."""

from __future__ import annotations

import pytest

from golem_mcp.analysis.workflows import Caller, record_workflow
from golem_mcp.errors import InvalidInput, NotFound
from golem_mcp.ingestion.otlp import logs_to_batch
from golem_mcp.ingestion.records import Batch
from golem_mcp.store import Store

T0 = 1795301160000000


def _request(b: Batch, rid: str, session: str, cost: float) -> None:
    b.add("api_requests", {"request_id": rid, "session_id": session, "model": "claude-sonnet-4-5",
                           "timestamp": T0, "input_tokens": 100, "output_tokens": 10, "recorded_cost_usd": cost})


def _otlp_request(session: str, workflow: str, parent: str | None, cost: float) -> dict:
    res = [{"key": "workflow_id", "value": {"stringValue": workflow}}]
    if parent:
        res.append({"key": "parent_workflow_id", "value": {"stringValue": parent}})
    attrs = {"event.name": "api_request", "session.id": session, "model": "claude-sonnet-4-5",
             "input_tokens": "100", "output_tokens": "10", "cost_usd": str(cost), "request_id": f"req-{session}"}
    return {"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [{"logRecords": [{
        "timeUnixNano": str(T0 * 1000), "body": {"stringValue": "claude_code.api_request"},
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}]}]}]}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "pw.duckdb")
    yield s
    s.close()


def test_children_from_record_workflow_and_otel_roll_up(store):
    b = Batch()
    _request(b, "r-parent", "s-parent", 1.0)
    _request(b, "r-a", "s-a", 2.0)
    store.write(b)
    record_workflow(store, Caller("s-parent", None, None, "argument"), "wf-parent")
    record_workflow(store, Caller("s-a", None, None, "argument"), "wf-child-a", parent_workflow_id="wf-parent")
    b = Batch()
    logs_to_batch(_otlp_request("s-b", "wf-child-b", "wf-child-a", 4.0), b)  # a grandchild, from OTel
    store.write(b)
    tree = {r["workflow_id"]: r for r in store.query("SELECT * FROM workflow_tree")}
    assert tree["wf-child-b"]["parent_workflow_id"] == "wf-child-a"
    assert tree["wf-child-b"]["root_workflow_id"] == "wf-parent" and tree["wf-child-b"]["depth"] == 2
    roll = {r["workflow_id"]: r for r in store.query("SELECT * FROM workflow_rollup")}
    assert roll["wf-parent"]["descendants"] == 2
    assert roll["wf-parent"]["own_cost"] == pytest.approx(1.0)
    assert roll["wf-parent"]["total_cost_with_children"] == pytest.approx(7.0)
    assert roll["wf-child-a"]["total_cost_with_children"] == pytest.approx(6.0)
    assert roll["wf-child-b"]["total_cost_with_children"] == pytest.approx(4.0)


def test_unknown_parent_and_cycles_are_refused(store):
    caller = Caller("s1", None, None, "argument")
    with pytest.raises(NotFound):
        record_workflow(store, caller, "wf-x", parent_workflow_id="wf-nope")
    record_workflow(store, caller, "wf-1")
    record_workflow(store, Caller("s2", None, None, "argument"), "wf-2", parent_workflow_id="wf-1")
    with pytest.raises(InvalidInput, match="descends"):
        record_workflow(store, caller, "wf-1", parent_workflow_id="wf-2")
    with pytest.raises(InvalidInput, match="descends"):
        record_workflow(store, caller, "wf-1", parent_workflow_id="wf-1")


def test_a_root_sessions_own_workflow_is_known_before_any_request_names_it(store):
    """A master session that recorded no workflow is its own (``session-`` and the id's start). Its
    children may name it as their parent once its hooks came in, before its first request lands:
    the one rule of what the store knows (``known``) says so, for record_workflow as for every tool."""
    from golem_mcp.ingestion.hooks import hook_to_batch

    b = Batch()
    assert hook_to_batch({"hook_event_name": "SessionStart", "session_id": "master-0123456789", "source": "startup",
                          "cwd": "/tmp/project"}, b, received_us=T0)
    store.write(b)
    parent = store.scalar("SELECT workflow_id FROM session_workflows WHERE session_id = 'master-0123456789'")
    assert parent == "session-master-012345"
    record_workflow(store, Caller("s-child", None, None, "argument"), "wf-child", parent_workflow_id=parent)
    tree = {r["workflow_id"]: r for r in store.query("SELECT * FROM workflow_tree")}
    assert tree["wf-child"]["parent_workflow_id"] == parent
    with pytest.raises(NotFound, match="closest: session-master-012345"):
        record_workflow(store, Caller("s-child", None, None, "argument"), "wf-child", parent_workflow_id="session-master-01234x")
