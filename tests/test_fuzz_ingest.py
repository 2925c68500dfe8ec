"""Fuzz tests (Hypothesis) of everything that reads outside input: the transcript reader, the hook
mapper and spool drain, the OTLP decoder (JSON and protobuf) and the daemon's OTLP route. Random and
mutated input is mixed with valid records; whatever it is, no exception escapes (the daemon answers
200 or 400, never 500) and every valid record in the input is stored. Bounded: a few hundred
examples in all, well under a minute."""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, api, launch_daemon
from golem_mcp.errors import InvalidInput
from golem_mcp.ingestion import otlp, spool
from golem_mcp.ingestion.hooks import parse_hook_lines
from golem_mcp.ingestion.records import Batch
from golem_mcp.ingestion.transcripts import TranscriptFile, parse_lines
from golem_mcp.store import Store

# GOLEM_FUZZ_EXAMPLES=1000 for a longer hunt; the default keeps the file well under a minute
FUZZ = settings(max_examples=int(os.environ.get("GOLEM_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# any JSON value, with the shapes that broke ingestion: huge ints, NaN/inf, long and odd text, nesting
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["", "NaN", "Infinity", "-1", "1e300", "9999-12-31T23:59:59Z", "\x00", "\ud800"])
           | st.integers(min_value=1025, max_value=70_000).map(lambda n: "x" * n))  # past the id and text caps
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=8)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    os.environ.setdefault("GOLEM_HOME", str(tmp_path_factory.mktemp("home")))
    with Store(tmp_path_factory.mktemp("db") / "fuzz.duckdb") as s:
        yield s


def set_path(doc: Any, path: tuple, value: Any) -> None:
    """Set ``doc[path]``, making the containers on the way (a mutation may replace one with junk)."""
    for k in path[:-1]:
        if isinstance(doc, list) and isinstance(k, int):
            if not doc:
                return
            doc = doc[k % len(doc)]
        elif isinstance(doc, dict) and isinstance(k, str):
            doc = doc.setdefault(k, {})
        else:
            return
    k = path[-1]
    if isinstance(doc, dict) and isinstance(k, str):
        doc[k] = value
    elif isinstance(doc, list) and doc and isinstance(k, int):
        doc[k % len(doc)] = value


def stored(s: Store, table: str, key: str, ids: list[str], cols: str = "*") -> dict[str, dict]:
    if not ids:
        return {}
    rows = s.query(f"SELECT {cols} FROM {table} WHERE {key} IN ({', '.join('?' * len(ids))})", ids)
    return {r[key]: r for r in rows}


# --- transcripts ----------------------------------------------------------------------------------

SESSION = FIXTURES / "home/.claude/projects/-home-dev-work-wf-001/e0012828-f4f9-49e1-a3e1-72267cbe7974.jsonl"
TEMPLATES = [json.loads(x) for x in SESSION.read_text().splitlines()]
ASSISTANT = next(r for r in TEMPLATES if r["type"] == "assistant" and r["message"].get("usage"))
USER = next(r for r in TEMPLATES if r["type"] == "user" and isinstance(r["message"].get("content"), list))
TRANSCRIPT_PATHS = [("requestId",), ("message", "model"), ("message", "usage", "input_tokens"),
                    ("message", "usage", "output_tokens"), ("message", "usage", "cache_read_input_tokens"),
                    ("message", "usage", "cache_creation"), ("message", "usage"), ("message", "content"),
                    ("message", "content", 0, "input"), ("message", "content", 0, "id"), ("message", "id"),
                    ("message",), ("timestamp",), ("sessionId",), ("agentId",), ("cwd",), ("type",),
                    ("isApiErrorMessage",), ("subtype",), ("error",), ("uuid",), ("attributionAgent",),
                    ("message", "content", 0, "tool_use_id"), ("message", "content", 0, "content"),
                    ("message", "content", 0, "is_error"), ("promptId",), ("message", "stop_reason")]

mutation = st.tuples(st.sampled_from([ASSISTANT, USER]), st.lists(
    st.tuples(st.sampled_from(TRANSCRIPT_PATHS), json_values), min_size=1, max_size=3))


def mutated_line(m: tuple[dict, list]) -> bytes:
    rec = copy.deepcopy(m[0])
    for path, value in m[1]:
        set_path(rec, path, value)
    if m[1] and m[1][0][0] == ("type",) and isinstance(m[1][0][1], str):
        rec["type"] = "system"  # reach the api_error reader too
        rec["subtype"] = "api_error"
    try:
        return json.dumps(rec).encode()  # NaN and Infinity come out as JSON would not have them: a bad line
    except (TypeError, ValueError):
        return b"{not json"


def valid_line(n: int, tag: str) -> tuple[bytes, str, int]:
    rec = copy.deepcopy(ASSISTANT)
    rid = f"req_valid_{tag}_{n}"
    rec["requestId"] = rid
    rec["message"]["id"] = f"msg_valid_{tag}_{n}"
    rec["message"]["content"] = []
    rec["message"]["usage"]["input_tokens"] = 1000 + n
    return json.dumps(rec).encode(), rid, 1000 + n


@FUZZ
@given(st.lists(st.one_of(mutation.map(mutated_line), json_values.map(lambda v: json.dumps(v).encode()),
                          st.binary(max_size=40)), max_size=12),
       st.integers(min_value=1, max_value=5), st.randoms(use_true_random=False))
def test_transcript_reader_keeps_every_valid_line_whatever_surrounds_it(store, junk, n_valid, rnd):
    tag = uuid.uuid4().hex[:12]
    valid = [valid_line(i, tag) for i in range(n_valid)]
    lines = [v[0] for v in valid] + [j.replace(b"\n", b" ") for j in junk]
    rnd.shuffle(lines)
    tf = TranscriptFile.from_path(Path(f"/fuzz/-proj/{tag}.jsonl"))
    batch = Batch()
    parse_lines(tf, b"\n".join(lines) + b"\n", 1, batch)
    store.write(batch)
    got = stored(store, "api_requests", "request_id", [rid for _, rid, _ in valid], "request_id, input_tokens")
    assert {rid: got.get(rid, {}).get("input_tokens") for _, rid, _ in valid} == {rid: t for _, rid, t in valid}


# --- hooks ----------------------------------------------------------------------------------------

HOOKS = [json.loads(x) for x in (FIXTURES / "hooks.jsonl").read_text().splitlines() if x.strip()]
HOOK_KEYS = sorted({k for p in HOOKS for k in p} | {"tool_response", "duration_ms", "error", "agentId"})
hook_payloads = st.one_of(
    st.tuples(st.sampled_from(HOOKS), st.dictionaries(st.sampled_from(HOOK_KEYS), json_values, max_size=4)).map(
        lambda t: {**t[0], **t[1]}),
    st.dictionaries(st.sampled_from(HOOK_KEYS), json_values, max_size=6),
    json_values)


def valid_hook(n: int, tag: str) -> dict:
    return {"session_id": f"s-{tag}", "hook_event_name": "PostToolUse", "tool_name": "Read",
            "tool_use_id": f"toolu_{tag}_{n}", "tool_input": {"file_path": f"/x/{n}"}, "tool_response": {"ok": True},
            "duration_ms": 12, "_golem_received_us": 1_764_000_000_000_000 + n}


def hook_file(junk: list, n_valid: int, rnd: Any, tag: str) -> tuple[bytes, list[dict]]:
    valid = [valid_hook(i, tag) for i in range(n_valid)]
    lines = [orjson.dumps(v) for v in valid]
    for j in junk:
        try:
            lines.append(json.dumps(j).encode())
        except (TypeError, ValueError):
            lines.append(b"{broken")
    rnd.shuffle(lines)
    return b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n", valid


@FUZZ
@given(st.lists(hook_payloads, max_size=8), st.integers(min_value=1, max_value=5), st.randoms(use_true_random=False))
def test_hook_mapper_keeps_every_valid_payload(store, junk, n_valid, rnd):
    tag = uuid.uuid4().hex[:12]
    data, valid = hook_file(junk, n_valid, rnd, tag)
    batch = Batch()
    parse_hook_lines(data, "fuzz-hooks.jsonl", batch)
    store.write(batch)
    ids = [v["tool_use_id"] for v in valid]
    assert set(stored(store, "tool_calls", "tool_use_id", ids)) == set(ids)
    assert set(stored(store, "hook_events", "tool_use_id", ids)) == set(ids)


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))
@given(st.lists(hook_payloads, min_size=1, max_size=6), st.integers(min_value=1, max_value=4),
       st.randoms(use_true_random=False))
def test_spool_drain_stores_every_valid_payload_and_quarantines_or_reports_the_rest(store, junk, n_valid, rnd):
    tag = uuid.uuid4().hex[:12]
    data, valid = hook_file(junk, n_valid, rnd, tag)
    with tempfile.TemporaryDirectory() as d:
        sdir = Path(d) / "spool"
        sdir.mkdir()
        (sdir / "hooks-20261121.jsonl").write_bytes(data)
        res = spool.drain(store, sdir)
        assert res.failed == [] and res.files == 1 and not list(sdir.iterdir())
        q = Path(spool.quarantine_path(sdir))
        assert spool.quarantined(str(q)) == res.quarantined
        if res.quarantined:
            assert oct(q.stat().st_mode & 0o777) == "0o600"
    ids = [v["tool_use_id"] for v in valid]
    assert set(stored(store, "tool_calls", "tool_use_id", ids)) == set(ids)


# --- OTLP -----------------------------------------------------------------------------------------

def _attr(k: str, v: Any) -> dict:
    return {"key": k, "value": {"stringValue": v}}


def valid_record(n: int, tag: str) -> dict:
    attrs = {"event.name": "api_request", "session.id": f"s-{tag}", "request_id": f"req_{tag}_{n}",
             "model": "claude-sonnet-4-5", "input_tokens": str(100 + n), "output_tokens": "7", "cost_usd": "0.01",
             "event.timestamp": "2026-11-21T10:00:00Z"}
    return {"timeUnixNano": "1795000000000000000", "body": {"stringValue": "claude_code.api_request"},
            "attributes": [_attr(k, v) for k, v in attrs.items()]}


ATTR_KEYS = ["input_tokens", "output_tokens", "cache_read_tokens", "cost_usd", "duration_ms", "model", "session.id",
             "request_id", "event.timestamp", "event.sequence", "event.name", "tool_use_id", "success", "workflow_id",
             "tool_parameters", "attempt", "status_code", "agent_id"]
any_value = st.recursive(
    st.one_of(st.builds(lambda v: {"stringValue": v}, st.text(max_size=12) | st.sampled_from(["NaN", "-5", "1e400"])),
              st.builds(lambda v: {"intValue": v}, st.integers() | st.text(max_size=5)),
              st.builds(lambda v: {"doubleValue": v}, st.floats() | st.sampled_from(["NaN", "Infinity", "x"])),
              st.builds(lambda v: {"boolValue": v}, json_values), json_values),
    lambda c: st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(c, max_size=3))
    | st.builds(lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv.items()]}},
                st.dictionaries(st.text(max_size=4), c, max_size=3)),
    max_leaves=6)
hostile_record = st.one_of(
    json_values,
    st.builds(lambda base, attrs, t: {**base, "timeUnixNano": t,
                                      "attributes": base["attributes"] + [{"key": k, "value": v} for k, v in attrs]},
              st.builds(lambda: valid_record(0, "hostile")),
              st.lists(st.tuples(st.sampled_from(ATTR_KEYS), any_value), max_size=4), json_values))


def logs_body(tag: str, n_valid: int, junk_records: list, junk_resources: list, rnd: Any) -> tuple[dict, list[str]]:
    recs: list[Any] = [valid_record(i, tag) for i in range(n_valid)]
    recs += [dict(r, attributes=[a if a["key"] != "request_id" else _attr("request_id", f"junk_{tag}_{i}")
                                 for a in r["attributes"]]) if isinstance(r, dict) and isinstance(r.get("attributes"), list)
             else r for i, r in enumerate(junk_records)]
    rnd.shuffle(recs)
    resources: list[Any] = [{"resource": {"attributes": [_attr("service.name", "claude-code")]},
                             "scopeLogs": [{"logRecords": recs}]}, *junk_resources]
    rnd.shuffle(resources)
    return {"resourceLogs": resources}, [f"req_{tag}_{i}" for i in range(n_valid)]


def request_ids(batch: Batch) -> set[str]:
    return {r["request_id"] for r in batch.rows.get("api_requests", [])}


@FUZZ
@given(st.integers(min_value=1, max_value=4), st.lists(hostile_record, max_size=5), st.lists(json_values, max_size=2),
       st.randoms(use_true_random=False))
def test_otlp_json_decoder_keeps_every_valid_record(store, n_valid, junk, junk_res, rnd):
    tag = uuid.uuid4().hex[:12]
    doc, ids = logs_body(tag, n_valid, junk, junk_res, rnd)
    batch = Batch()
    otlp.to_batch("logs", otlp.decode("logs", json.dumps(doc).encode(), "application/json"), batch)
    store.write(batch)
    got = stored(store, "api_requests", "request_id", ids, "request_id, input_tokens")
    assert {i: got.get(i, {}).get("input_tokens") for i in ids} == {f"req_{tag}_{n}": 100 + n for n in range(n_valid)}


def _pb_request(doc: dict) -> Any:
    """The protobuf form of a JSON body; parts protobuf cannot carry (a wrong type) are dropped."""
    from google.protobuf.json_format import ParseDict, ParseError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    req = ExportLogsServiceRequest()
    for rl in doc["resourceLogs"]:
        if not isinstance(rl, dict) or not isinstance(rl.get("scopeLogs"), list):
            continue
        out = req.resource_logs.add()
        for sl in rl["scopeLogs"]:
            if not isinstance(sl, dict) or not isinstance(sl.get("logRecords"), list):
                continue
            scope = out.scope_logs.add()
            for r in sl.get("logRecords") or []:
                if not isinstance(r, dict):
                    continue
                try:
                    rec = ParseDict(r, LogRecord(), ignore_unknown_fields=True)
                except (ParseError, TypeError, ValueError, AttributeError, RecursionError, SystemError):
                    continue  # not expressible in protobuf (the JSON test has these)
                scope.log_records.add().CopyFrom(rec)
    return req


@FUZZ
@given(st.integers(min_value=1, max_value=4), st.lists(hostile_record, max_size=5), st.randoms(use_true_random=False),
       st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.binary(min_size=1, max_size=4)), max_size=3))
def test_otlp_protobuf_decoder_keeps_every_valid_record_and_mutated_bytes_never_escape(store, n_valid, junk, rnd, flips):
    tag = uuid.uuid4().hex[:12]
    doc, ids = logs_body(tag, n_valid, junk, [], rnd)
    body = _pb_request(doc).SerializeToString()
    batch = Batch()
    otlp.to_batch("logs", otlp.decode("logs", body, "application/x-protobuf"), batch)
    store.write(batch)
    got = stored(store, "api_requests", "request_id", ids, "request_id, input_tokens")
    assert {i: got.get(i, {}).get("input_tokens") for i in ids} == {f"req_{tag}_{n}": 100 + n for n in range(n_valid)}
    # the same body with bytes overwritten: it decodes (and is then read record by record) or is refused
    mutated = bytearray(body)
    for at, b in flips:
        at %= max(1, len(mutated))
        mutated[at:at + len(b)] = b
    try:
        doc2 = otlp.decode("logs", bytes(mutated), "application/x-protobuf")
    except InvalidInput:
        return
    b2 = Batch()
    otlp.to_batch("logs", doc2, b2)
    store.write(b2)


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("daemon-home")
    d = launch_daemon(home, home / "fuzz.duckdb")
    try:
        yield d.url
    finally:
        d.stop()


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 2))
@given(st.sampled_from(["logs", "traces", "metrics"]), st.sampled_from(["json", "protobuf"]),
       st.integers(min_value=0, max_value=3), st.lists(hostile_record, max_size=4), st.lists(json_values, max_size=2),
       st.binary(max_size=64), st.randoms(use_true_random=False))
def test_the_daemon_answers_200_or_400_never_500(fuzz_daemon, signal, kind, n_valid, junk, junk_res, noise, rnd):
    tag = uuid.uuid4().hex[:12]
    doc, ids = logs_body(tag, n_valid, junk, junk_res, rnd)
    if signal != "logs":  # the same junk where spans or data points are expected
        key = {"traces": ("resourceSpans", "scopeSpans", "spans"), "metrics": ("resourceMetrics", "scopeMetrics", "metrics")}
        k = key[signal]
        doc = {k[0]: [{k[1]: [{k[2]: rl["scopeLogs"][0]["logRecords"]}]} if isinstance(rl, dict) and "scopeLogs" in rl
                      else rl for rl in doc["resourceLogs"]]}
    if kind == "json":
        body = json.dumps(doc).encode()  # NaN, 1e400 and integers past 64 bits included
    else:
        body = _pb_request(doc).SerializeToString() if signal == "logs" else noise
    r = api.post(f"{fuzz_daemon}/v1/{signal}", content=body, timeout=60,
                   headers={"content-type": "application/json" if kind == "json" else "application/x-protobuf"})
    assert r.status_code in (200, 400), (r.status_code, r.text[:500])
    if signal == "logs" and ids:
        assert r.status_code == 200, r.text[:500]
