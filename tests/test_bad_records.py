"""A bad record costs only itself, on the real daemon over loopback: a transcript line, a spooled hook
payload or an OTLP record that is wrongly typed, non-finite, absurd or hostile is reported with its
file and line (or index in the batch) and left out or stored without the bad field; every good
record beside it is stored, and no total becomes NaN."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import ParseDict

from conftest import FIXTURES, api
from golem_mcp.ingestion.importer import Importer
from golem_mcp.store import Store

PROJECTS = FIXTURES / "home" / ".claude" / "projects"
WF1, WF2 = PROJECTS / "-home-dev-work-wf-001", PROJECTS / "-home-dev-work-wf-002"
SID = "e0012828-f4f9-49e1-a3e1-72267cbe7974"


def status(url: str) -> dict[str, int]:
    return api.get(url + "/api/status", timeout=30).json()


def wait_for(url: str, table: str, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = status(url)[table]
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


# --- transcripts ----------------------------------------------------------------------------------

def _assistant_template() -> dict:
    for line in (WF1 / f"{SID}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "assistant" and isinstance(rec["message"].get("usage"), dict):
            return rec
    raise AssertionError("no assistant line in the fixture")


def bad_line(n: int, where: str, value: Any) -> bytes:
    """A fixture response line with fresh ids and one field set to ``value``."""
    rec = json.loads(json.dumps(_assistant_template()))
    rec["requestId"] = f"req_bad_{n}"
    rec["message"]["id"] = f"msg_bad_{n}"
    rec["message"]["content"] = []
    rec["uuid"] = f"bad-{n}"
    obj, key = {"input_tokens": (rec["message"]["usage"], "input_tokens"), "model": (rec["message"], "model"),
                "timestamp": (rec, "timestamp"), "sessionId": (rec, "sessionId")}[where]
    obj[key] = value
    return json.dumps(rec).encode()


# the shapes: each rejects its request (a token count) or is stored as NULL (anything else)
TRANSCRIPT_SHAPES = [("input_tokens", "100", False), ("input_tokens", [], False), ("input_tokens", 1.5e300, False),
                     ("input_tokens", -3, False), ("input_tokens", 10**20, False), ("input_tokens", 1.5, False),
                     ("model", 5, True),
                     ("timestamp", "9999-12-31T23:59:59Z", True), ("sessionId", [1], False)]


def with_bad_lines(projects: Path) -> tuple[Path, dict[int, str]]:
    """wf-001's main transcript with one bad line of each shape between its good ones; returns the
    file and {line number: field}."""
    f = projects / WF1.name / f"{SID}.jsonl"
    lines = f.read_bytes().rstrip(b"\n").split(b"\n")
    where: dict[int, str] = {}
    for n, (field, value, _) in enumerate(TRANSCRIPT_SHAPES):
        at = 3 + 5 * n  # spread over the file, between good lines
        lines.insert(at, bad_line(n, field, value))
        where[at + 1] = field
    f.write_bytes(b"\n".join(lines) + b"\n")
    return f, where


def good_counts(tmp_path: Path, *projects: Path) -> dict[str, int]:
    """What the pristine fixture folders give (a library import into a scratch store)."""
    ref = tmp_path / "ref"
    for p in projects:
        shutil.copytree(p, ref / p.name)
    with Store(tmp_path / "ref.duckdb") as s:
        Importer(s).run([ref])
        return s.table_counts()


def test_import_stores_every_good_line_beside_bad_ones(tmp_path):
    want = good_counts(tmp_path, WF1)
    projects = tmp_path / "projects"
    shutil.copytree(WF1, projects / WF1.name)
    f, where = with_bad_lines(projects)
    db = tmp_path / "g.duckdb"
    out = subprocess.run([sys.executable, "-m", "golem_mcp", "import", str(projects), "--db", str(db), "--create"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GOLEM_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr
    for line, field in where.items():
        assert f"{f}:{line}:" in out.stderr, (field, out.stderr)  # each bad line named with file and line
    stored_null = [n for n, (_, _, kept) in enumerate(TRANSCRIPT_SHAPES) if kept]
    with Store(db) as s:
        assert s.table_counts()["api_requests"] == want["api_requests"] + len(stored_null)
        good = s.scalar("SELECT count(*) FROM api_requests WHERE request_id NOT LIKE 'req_bad_%'")
        assert good == want["api_requests"]
        kept = s.query("SELECT request_id, model, \"timestamp\" FROM api_requests WHERE request_id LIKE 'req_bad_%' "
                       "ORDER BY 1")
    assert kept == [{"request_id": f"req_bad_{n}", "model": None if TRANSCRIPT_SHAPES[n][0] == "model" else "claude-opus-5-5",
                     "timestamp": None if TRANSCRIPT_SHAPES[n][0] == "timestamp" else kept[i]["timestamp"]}
                    for i, n in enumerate(stored_null)]


def test_watcher_reads_past_a_bad_file_and_keeps_watching_other_projects(start_daemon, tmp_path):
    want = good_counts(tmp_path, WF1, WF2)
    projects = tmp_path / "projects"
    shutil.copytree(WF1, projects / WF1.name)
    with_bad_lines(projects)
    d = start_daemon("--watch", str(projects))
    kept = sum(1 for _, _, k in TRANSCRIPT_SHAPES if k)
    first = want["api_requests"] - good_counts(tmp_path / "wf2", WF2)["api_requests"] + kept
    assert wait_for(d.url, "api_requests", first) == first
    # a project that appears afterwards is read too: the bad file stopped nothing
    shutil.copytree(WF2, projects / WF2.name)
    assert wait_for(d.url, "api_requests", want["api_requests"] + kept) == want["api_requests"] + kept
    log = (d.home / "daemon.test.out").read_text() + "".join(p.read_text() for p in d.home.glob("*.log"))
    assert "input_tokens" in log and "not stored" in log


# --- the hook spool -------------------------------------------------------------------------------

HOOKS = [json.loads(x) for x in (FIXTURES / "hooks.jsonl").read_text().splitlines() if x.strip()]


def test_spool_with_a_bad_payload_is_drained_past_it_into_quarantine(start_daemon, golem_home):
    good = [dict(p, tool_use_id=f"toolu_spool_{i}", hook_event_name="PostToolUse", tool_name="Read",
                 session_id="spool-session") for i, p in enumerate(HOOKS[:40])]
    bad = dict(good[0], tool_use_id={"a": 1})
    lines = [json.dumps(p) for p in good[:20]] + [json.dumps(bad)] + [json.dumps(p) for p in good[20:]]
    spool = golem_home / "spool"
    spool.mkdir()
    (spool / "hooks-20261121.jsonl").write_text("\n".join(lines) + "\n")
    d = start_daemon()
    assert wait_for(d.url, "hook_events", 40) == 40
    deadline = time.monotonic() + 60
    while any(spool.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(spool.iterdir())  # the file is drained (not kept, and not retried every second)
    assert status(d.url)["hook_events"] == 40
    q = golem_home / "quarantine.jsonl"
    assert oct(q.stat().st_mode & 0o777) == "0o600"
    [entry] = [json.loads(x) for x in q.read_text().splitlines()]
    assert entry["line"] == 21 and json.loads(entry["payload"]) == bad and "tool_use_id" in entry["reasons"][0]
    doc = subprocess.run([sys.executable, "-m", "golem_mcp", "doctor"], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "GOLEM_HOME": str(golem_home)})
    assert f"1 hook payload(s) could not be stored and are kept in {q}" in doc.stdout, doc.stdout


# --- OTLP -----------------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def attr(k: str, v: Any) -> dict:
    if isinstance(v, dict):
        return {"key": k, "value": v}
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    return {"key": k, "value": {"stringValue": v}}


def request_record(rid: str, seq: int, **over: Any) -> dict:
    a: dict[str, Any] = {"event.name": "api_request", "session.id": "otlp-session", "event.sequence": seq,
                         "event.timestamp": NOW.isoformat().replace("+00:00", "Z"), "request_id": rid,
                         "model": "claude-sonnet-4-5", "input_tokens": "100", "output_tokens": "50",
                         "cache_read_tokens": "0", "cache_creation_tokens": "0", "cost_usd": "0.01",
                         "duration_ms": "900"}
    a.update(over)
    return {"timeUnixNano": str(int(NOW.timestamp()) * 10**9), "body": {"stringValue": "claude_code.api_request"},
            "attributes": [attr(k, v) for k, v in a.items()]}


def nested(depth: int) -> dict:
    v: dict = {"stringValue": "deep"}
    for _ in range(depth):
        v = {"arrayValue": {"values": [v]}}
    return v


# (name, attribute overrides, rejected?): the shapes and their cousins
OTLP_SHAPES = [
    ("int64 overflow", {"input_tokens": "99999999999999999999"}, True),
    ("int64 max as intValue", {"output_tokens": {"intValue": str(2**63 - 1)}}, True),
    ("negative tokens", {"input_tokens": "-5"}, True),
    ("tokens that are no number", {"cache_read_tokens": "12 tokens"}, True),
    ("year 9999", {"event.timestamp": "9999-12-31T23:59:59Z"}, False),
    ("wrong-typed attribute", {"model": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}}}, False),
    ("cost NaN", {"cost_usd": "NaN"}, False),
    ("cost Infinity", {"cost_usd": {"doubleValue": "Infinity"}}, False),
    ("a 1 MB id", {"request_id": "r" * (1 << 20)}, True),
]


def otlp_body(shapes: list[tuple[str, dict, bool]], good: int = 10, json_only: bool = False) -> tuple[dict, list[str]]:
    recs, good_ids = [], []
    for i in range(good):
        good_ids.append(f"req_good_{i}")
        recs.append(request_record(good_ids[-1], i))
    for j, (_, over, _) in enumerate(shapes):
        recs.insert(2 * j + 1, request_record(f"req_shape_{j}", 100 + j, **over))
    if json_only:  # shapes protobuf cannot even carry
        recs.insert(4, request_record("req_deep", 200, deep=nested(300)))
        recs.insert(6, request_record("req_overflow", 201, output_tokens={"intValue": "99999999999999999999"}))
    doc: dict[str, Any] = {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "claude-code")]},
                                             "scopeLogs": [{"logRecords": recs}]}]}
    if json_only:
        doc["resourceLogs"] = [1, *doc["resourceLogs"], {"scopeLogs": "nope"}]
    return doc, good_ids


def post(url: str, doc: dict, kind: str, signal: str = "logs") -> httpx.Response:
    if kind == "json":
        return api.post(f"{url}/v1/{signal}", content=json.dumps(doc), timeout=30,
                          headers={"content-type": "application/json"})
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    body = ParseDict(doc, ExportLogsServiceRequest()).SerializeToString()
    return api.post(f"{url}/v1/{signal}", content=body, timeout=30, headers={"content-type": "application/x-protobuf"})


def partial(resp: httpx.Response, kind: str) -> tuple[int, str]:
    if kind == "json":
        ps = resp.json().get("partialSuccess", {})
        return int(ps.get("rejectedLogRecords", 0)), ps.get("errorMessage", "")
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    ps = ExportLogsServiceResponse.FromString(resp.content).partial_success
    return ps.rejected_log_records, ps.error_message


@pytest.mark.parametrize("kind", ["json", "protobuf"])
def test_otlp_batch_with_bad_records_stores_every_good_one_and_answers_partial_success(daemon, kind):
    doc, good_ids = otlp_body(OTLP_SHAPES, json_only=kind == "json")
    if kind == "json":
        r = post(daemon, doc, kind)
    else:  # and a record nested 300 deep, which protobuf refuses to parse: the body is read part by part
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        body = ParseDict(doc, ExportLogsServiceRequest()).SerializeToString() + ld(1, ld(2, ld(2, deep_record(300))))
        r = api.post(f"{daemon}/v1/logs", content=body, timeout=30, headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    rejected, message = partial(r, kind)
    # rejected: the shapes that reject, plus the 300-deep record; in JSON also the intValue past int64,
    # `1` and the scope list that is a string
    assert rejected == sum(1 for *_, rej in OTLP_SHAPES if rej) + (4 if kind == "json" else 1), message
    assert "not stored" in message and "input_tokens" in message
    with api.client(daemon) as c:
        rows = c.post(daemon + "/api/report", json={"by": ["model"]}, timeout=30).json()
    assert all(math.isfinite(x["cost_usd"]) for x in rows)
    st = status(daemon)
    kept = sum(1 for *_, rej in OTLP_SHAPES if not rej)
    assert st["api_requests"] == len(good_ids) + kept


@pytest.mark.parametrize("kind", ["json", "protobuf"])
def test_otlp_body_of_nothing_decodable_is_400_never_500(daemon, kind):
    if kind == "json":
        for body in ({"resourceLogs": [1, "x", None]}, {"resourceLogs": [{"scopeLogs": [{"logRecords": [5]}]}]}):
            r = api.post(daemon + "/v1/logs", content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code == 400 and "could be read" in r.json()["error"], r.text
        deep = "[" * 100_000 + "]" * 100_000
        r = api.post(daemon + "/v1/logs", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
    else:
        # a body whose only record protobuf refuses (nested past the parser's limit; written on the wire
        # by hand, the library refuses to build it)
        body = ld(1, ld(2, ld(2, deep_record(300))))  # request.resource_logs.scope_logs.log_records
        r = api.post(daemon + "/v1/logs", content=body, headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 400, r.text
    assert status(daemon)["otel_events"] == 0


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def deep_record(depth: int) -> bytes:
    """A LogRecord whose body is an AnyValue array nested ``depth`` deep."""
    v = ld(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        v = ld(5, ld(1, v))  # AnyValue.array_value -> ArrayValue.values
    return ld(5, v)  # LogRecord.body


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def test_nan_cost_leaves_every_total_finite_and_the_budget_exceeded(daemon):
    # a day budget of $1 and $1.20 spent: exceeded (120 %)
    r = api.post(daemon + "/api/cli", json={"argv": ["budget", "--set", "day", "1", "--json"]}, timeout=60)
    assert r.status_code == 200, r.text
    recs = [request_record(f"req_cost_{i}", i, cost_usd="0.4") for i in range(3)]
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": recs}]}]}
    assert post(daemon, doc, "json").status_code == 200

    def budget() -> dict:
        out = api.post(daemon + "/api/cli", json={"argv": ["budget", "--json"]}, timeout=60).json()
        assert out["exit"] == 0, out
        return json.loads(out["stdout"])

    before = budget()
    assert "exceeded" in before["status"]["advice"], before
    for bad in ("NaN", "Infinity", "-1", "1e300"):
        doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [request_record(f"req_nan_{bad}", 50, cost_usd=bad)]}]}]}
        r = post(daemon, doc, "json")
        assert r.status_code == 200 and "recorded_cost_usd" in partial(r, "json")[1]
    after = budget()
    assert "exceeded" in after["status"]["advice"], after
    spent = after["status"]["today"]["spent_usd"]
    assert math.isfinite(spent) and spent >= before["status"]["today"]["spent_usd"]
    rows = api.post(daemon + "/api/report", json={"by": ["day"]}, timeout=30).json()
    assert rows and all(math.isfinite(x["cost_usd"]) for x in rows)
    page = api.get(daemon + "/", timeout=60).text
    assert "$nan" not in page and "NaN" not in page


def test_a_sender_repeating_a_bad_field_is_logged_once_a_minute(caplog):
    from golem_mcp.interfaces.daemon import ThrottledLog

    t = ThrottledLog(every=0.5)
    with caplog.at_level("WARNING"):
        for _ in range(5):
            t.warning("POST /v1/logs", "1 of 3 log records not stored")
        time.sleep(0.6)
        t.warning("POST /v1/logs", "again")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["POST /v1/logs: 1 of 3 log records not stored", "POST /v1/logs: again (4 more like it not logged)"]
