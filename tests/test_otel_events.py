"""``otel_events`` keeps every log record, and of a known event's attributes those its typed row
(``api_requests``, ``tool_calls``, ...) does not hold as they came: nothing is stored twice, and
nothing is lost (an attribute no column takes, a value a column could not take)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from golem_mcp.ingestion.otlp import body_to_batch

SID = "5e55i0n-0000-4000-8000-000000000001"


def _kv(k: str, v: Any) -> dict:
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": v}}


def _body(*records: dict[str, Any]) -> bytes:
    logs = [{"timeUnixNano": "1764583200000000000", "attributes": [_kv(k, v) for k, v in r.items()]} for r in records]
    res = {"attributes": [_kv("service.name", "claude-code"), _kv("workflow_id", "wf-1")]}
    return json.dumps({"resourceLogs": [{"resource": res, "scopeLogs": [{"logRecords": logs}]}]}).encode()


def _request(seq: int, **extra: Any) -> dict[str, Any]:
    return {"event.name": "api_request", "event.timestamp": "2026-12-01T10:00:00.000Z", "event.sequence": seq,
            "session.id": SID, "prompt.id": "p-1", "request_id": f"req_{seq}", "model": "claude-sonnet-4-5",
            "input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 5, "cost_usd": 0.25,
            "duration_ms": 1200, "ttft_ms": "300", "query_source": "sdk", "effort": "medium",
            "user.id": "u-hash", "terminal.type": "xterm", **extra}


def _write(store: Any, body: bytes) -> Any:
    batch, _ = body_to_batch("logs", body, "application/json")
    store.write(batch)
    return batch


def _attributes(store: Any, seq: int) -> dict[str, Any]:
    return orjson.loads(store.scalar("SELECT attributes FROM otel_events WHERE sequence = ?", [seq]))


def test_a_known_event_keeps_only_what_its_typed_row_does_not_hold(store: Any) -> None:
    tool = {"event.name": "tool_result", "event.timestamp": "2026-12-01T10:00:01.000Z", "event.sequence": 2,
            "session.id": SID, "tool_use_id": "toolu_2", "tool_name": "Bash", "success": "true",
            "duration_ms": "40", "tool_input_size_bytes": "12", "tool_parameters": '{"bash_command": "ls"}',
            "terminal.type": "xterm", "decision.source": "config"}
    _write(store, _body(_request(1, **{"new.attribute": "tomorrow's"}), tool))
    # the typed rows hold the values; otel_events the rest, and every record still has its row
    assert store.query("SELECT input_tokens, output_tokens, recorded_cost_usd, duration_ms, ttft_ms, effort "
                       "FROM api_requests") == [{"input_tokens": 100, "output_tokens": 20, "recorded_cost_usd": 0.25,
                                                 "duration_ms": 1200.0, "ttft_ms": 300.0, "effort": "medium"}]
    assert _attributes(store, 1) == {"user.id": "u-hash", "terminal.type": "xterm", "new.attribute": "tomorrow's"}
    assert _attributes(store, 2) == {"terminal.type": "xterm", "decision.source": "config"}
    assert store.query("SELECT event_name, session_id, prompt_id, request_id, workflow_id, "
                       "strftime(\"timestamp\", '%H:%M:%S') AS t FROM otel_events ORDER BY sequence") == [
        {"event_name": "api_request", "session_id": SID, "prompt_id": "p-1", "request_id": "req_1",
         "workflow_id": "wf-1", "t": "10:00:00"},
        {"event_name": "tool_result", "session_id": SID, "prompt_id": None, "request_id": None,
         "workflow_id": "wf-1", "t": "10:00:01"}]
    assert store.scalar("SELECT tool_parameters FROM tool_calls") == '{"bash_command":"ls"}'


def test_a_value_its_column_did_not_take_as_it_came_stays(store: Any) -> None:
    # a duration below zero, a cost past the checks' bound, a text as a duration: stored as NULL
    batch = _write(store, _body(_request(1, duration_ms=-5, cost_usd=20_000.0, ttft_ms="fast")))
    got = _attributes(store, 1)
    assert got == {"user.id": "u-hash", "terminal.type": "xterm", "duration_ms": -5,
                   "cost_usd": 20_000.0, "ttft_ms": "fast"}
    assert store.query("SELECT duration_ms, recorded_cost_usd, ttft_ms FROM api_requests") == [
        {"duration_ms": None, "recorded_cost_usd": None, "ttft_ms": None}]
    assert batch.skipped  # the store's checks said which values it did not take


@pytest.mark.parametrize("count", ["many", "12 tokens", 1.5, "1e400"])
def test_a_token_count_that_is_no_whole_number_leaves_its_request_out_and_says_so(store: Any, count: Any) -> None:
    """The README's rule, applied by the store's checks for every source: an unknown count would
    make every total wrong, so the request is not stored (its event keeps what came) and the
    sender is told; a count sent as a string or a double of a whole number is that number."""
    batch = _write(store, _body(_request(1, cache_read_tokens=count), _request(2, input_tokens="100.0"),
                                _request(3, output_tokens=7.0)))
    assert store.query("SELECT request_id, input_tokens, output_tokens FROM api_requests ORDER BY 1") == [
        {"request_id": "req_2", "input_tokens": 100, "output_tokens": 20},
        {"request_id": "req_3", "input_tokens": 100, "output_tokens": 7}]
    assert [str(s) for s in batch.skipped if "cache_read_tokens" in str(s)], batch.skipped
    assert _attributes(store, 1)["cache_read_tokens"] == count


def test_a_typed_row_the_store_rejects_leaves_every_attribute_in_otel_events(store: Any) -> None:
    batch = _write(store, _body(_request(1, output_tokens=-3), _request(2)))
    assert store.scalar("SELECT list(request_id ORDER BY request_id) FROM api_requests") == ["req_2"]
    assert any("output_tokens" in str(s) for s in batch.skipped)
    got = _attributes(store, 1)
    assert got["output_tokens"] == -3 and got["input_tokens"] == 100 and got["request_id"] == "req_1"
    assert got["event.timestamp"] == "2026-12-01T10:00:00.000Z" and got["session.id"] == SID


def test_an_unknown_event_keeps_all_its_attributes(store: Any) -> None:
    rec = {"event.name": "user_prompt", "event.timestamp": "2026-12-01T10:00:00.000Z", "event.sequence": 7,
           "session.id": SID, "prompt.id": "p-1", "prompt_length": 42}
    _write(store, _body(rec))
    assert _attributes(store, 7) == rec


def test_the_same_body_again_doubles_nothing(store: Any) -> None:
    body = _body(_request(1), _request(2, agent_id="a-1", **{"agent.name": "Explore"}))
    _write(store, body)
    before = store.table_counts()
    first = store.query("SELECT * EXCLUDE (_change_seq) FROM otel_events ORDER BY event_key")
    _write(store, body)
    assert store.table_counts() == before and before["otel_events"] == 2 and before["api_requests"] == 2
    assert store.query("SELECT * EXCLUDE (_change_seq) FROM otel_events ORDER BY event_key") == first
