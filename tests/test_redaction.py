"""The one redaction rule (golem_mcp.redaction), kind by kind, and the store applying it to every
text it writes. The end-to-end proof over hooks, OTLP and transcripts is test_redaction_e2e.py."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from golem_mcp.config import Settings
from golem_mcp.ingestion.records import Batch, error_text, tool_parameters
from golem_mcp.redaction import (
    DETECT,
    REDACTED,
    _apply_rules,
    _may_hold_secret,
    is_secret_name,
    redact,
    redact_table,
    redact_value,
)
from golem_mcp.store import Store
from support.secrets import ALL, GENERIC, KEPT, KINDS, PEM, Secret


def test_the_issue_example():
    assert redact("Authorization: Bearer abc") == "Authorization: Bearer [REDACTED]"


@pytest.mark.parametrize("s", KINDS, ids=[s.kind for s in KINDS])
def test_each_kind_is_redacted_and_the_command_stays_readable(s: Secret):
    assert s.secret in s.text
    assert redact(s.text) == s.redacted


@pytest.mark.parametrize("s", GENERIC, ids=[s.kind for s in GENERIC])
def test_generic_assignments_are_redacted(s: Secret):
    assert redact(s.text) == s.redacted


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_text_is_kept(text: str):
    assert redact(text) == text


@pytest.mark.parametrize("s", ALL, ids=[s.kind for s in ALL])
def test_redaction_is_idempotent(s: Secret):
    once = redact(s.text)
    assert redact(once) == once


@pytest.mark.parametrize("text", [s.text for s in ALL] + KEPT + [
    "Authorization: Bearer abc", 'x = {"api_key": "abc"}', "PGPASSWORD=x psql", "redis-cli -a pw ping",
    "curl -b cookies.txt https://x", "Bearer abcdefghijklmnopqrstuvwxyz", "éghp_" + "a" * 36,
    'curl -u "my user:pa ss" https://x', "curl --user='a b:c d' https://x",
    "mysql\u00a0-pX", "\u00a0-u a:b"])
def test_detect_flags_every_text_a_rule_changes_in_python_and_in_arrow(text: str):
    """redact() runs the rules only on texts its quick check passes, and the store only on cells
    DETECT flags in Arrow (RE2): both must pass every text the rules would change, or a secret
    would go through unseen."""
    for t in (text, text.upper(), text.lower(), f"x {text} y", json.dumps(text)):
        if _apply_rules(t) != t:
            assert _may_hold_secret(t), t
            assert pc.match_substring_regex(pa.array([t]), DETECT)[0].as_py(), t


def test_secrets_inside_larger_texts_and_in_json_escaped_text():
    for s in ALL:
        assert s.secret not in redact(f"error: command failed\n$ {s.text}\nexit code 1")
        escaped = json.dumps({"bash_command": s.text})  # a JSON document kept as a string attribute
        assert s.secret not in redact(escaped), s.kind
        assert s.secret not in redact(json.dumps(escaped)), s.kind  # and encoded once more


def test_long_texts_are_checked_line_by_line_with_the_same_result():
    """A long text (a file read, a log) goes through the rules line by line; the PEM rule, whose
    secret spans lines, runs on the whole."""
    filler = [f"line {i}: nothing to see, input_tokens={i}" for i in range(200)]
    lines = filler[:100] + [s.text for s in ALL] + KEPT + filler[100:]
    text = "\n".join(lines)
    assert len(text) > 5000
    out = redact(text)
    assert not [s.kind for s in ALL if s.secret in out]
    assert out == "\n".join(filler[:100] + [s.redacted for s in ALL] + KEPT + filler[100:])


def test_cut_pem_blocks_and_other_private_keys():
    cut = PEM[:60]
    assert redact(cut) == "-----BEGIN RSA PRIVATE KEY-----[REDACTED]"
    openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----"
    assert "b3Blbn" not in redact(openssh)
    pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----"
    assert "lQOYBF" not in redact(pgp)
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert redact(cert) == cert  # public


@pytest.mark.parametrize(("name", "secret"), [
    ("API_KEY", True), ("api-key", True), ("x-api-key", True), ("apiKey", True), ("GITHUB_TOKEN", True),
    ("accessToken", True), ("_authToken", True), ("DB_PASSWORD", True), ("passwd", True), ("client_secret", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("SSH_KEY", True), ("KEY", True), ("DB_PASS", True), ("MYSQL_PWD", True),
    ("Cookie", True), ("Set-Cookie", True), ("Authorization", True), ("credentials", True), ("AUTH", True),
    ("input_tokens", False), ("max_tokens", False), ("tokenizer", False), ("tokenCount", False), ("PWD", False),
    ("monkey", False), ("keyboard", False), ("session_id", False), ("auth.py", False), ("token_store.py", False),
    ("author", False), ("passage", False), ("bypass", False),
])
def test_which_names_name_a_secret(name: str, secret: bool):
    assert is_secret_name(name) is secret


def test_redact_value_walks_json():
    doc = {
        "api_key": "abc", "headers": {"Authorization": "Bearer xyz", "Accept": "text/html"},
        "steps": ["curl -u a:b https://x", {"password": "p", "retries": 3}],
        "token_count": 5, "input_tokens": "100", "token": None, "secret": True,
        "ghp_" + "k" * 36: "a key that is a token",
        "deep": [[[["DB_PASSWORD=x"]]]],
    }
    assert redact_value(doc) == {
        "api_key": REDACTED, "headers": {"Authorization": "Bearer [REDACTED]", "Accept": "text/html"},
        "steps": ["curl -u [REDACTED] https://x", {"password": REDACTED, "retries": 3}],
        "token_count": 5, "input_tokens": "100", "token": None, "secret": True,
        REDACTED: "a key that is a token",
        "deep": [[[["DB_PASSWORD=[REDACTED]"]]]],
    }
    nested: object = "x"
    for _ in range(100):
        nested = [nested]
    assert json.dumps(redact_value(nested)).count("[") < 70  # past 64 levels: replaced, not walked


def test_redact_table_changes_only_flagged_cells_and_keeps_json_valid():
    attrs = [json.dumps({"event.name": "api_request", "input_tokens": "10"}),
             json.dumps({"tool_parameters": json.dumps({"bash_command": KINDS[13].text}), "cookie": "sid=1"}),
             None]
    t = pa.table({"id": ["a", "b", "c"], "attributes": attrs, "error": ["ok", None, "mysql -pX db"],
                  "n": [1, 2, 3]})
    out, changed = redact_table(t, {"attributes"})
    assert changed == {"attributes", "error"}
    rows = out.to_pylist()
    assert rows[0]["attributes"] == attrs[0]  # untouched, byte for byte
    second = json.loads(rows[1]["attributes"])
    assert second["cookie"] == REDACTED and "s3cr3t14" not in second["tool_parameters"]
    assert rows[2] == {"id": "c", "attributes": None, "error": "mysql -p[REDACTED] db", "n": 3}


def test_redact_table_flags_the_same_cells_in_a_few_rows_as_in_many():
    """A table of a few texts is checked in Python, a larger one in Arrow (RE2): the same cells change."""
    texts = [s.text for s in KINDS] + ["ok", "Authorization: Bearer abc", None, "x" * 100]
    few = pa.table({"t": texts})
    many = pa.table({"t": texts + [f"plain text {i}" for i in range(200)]})
    out_few, changed_few = redact_table(few)
    out_many, changed_many = redact_table(many)
    assert changed_few == changed_many == {"t"}
    assert out_few.column("t").to_pylist() == out_many.column("t").to_pylist()[:len(texts)]
    assert out_few.column("t").to_pylist() == [None if t is None else redact(t) for t in texts]


def test_ingestion_helpers_redact_before_they_cut():
    token = "ghp_" + "z" * 36
    cmd = "x" * 1990 + " " + token
    assert tool_parameters("Bash", {"command": cmd})["bash_command"] == ("x" * 1990 + " [REDACTED]")[:2000]
    assert "zzz" not in error_text("e" * 495 + " " + token)


def _store(tmp_path, **settings) -> Store:
    return Store(tmp_path / "s.duckdb", settings=Settings(**settings))


def test_the_store_redacts_every_text_column_whatever_the_path(tmp_path):
    """A row that reaches Store.write unredacted (a path that forgot) is redacted at the wall,
    keys included, and rows that share a redacted key still merge."""
    secret = KINDS[0].text
    with _store(tmp_path) as store:
        b = Batch()
        b.add("sessions", {"session_id": "s1", "cwd": f"/work/{secret}", "git_branch": "API_KEY=abc"})
        b.add("api_errors", {"error_key": "e1", "session_id": "s1", "error": secret, "status_code": 401})
        b.add("workflows", {"workflow_id": "token:abc", "attributes": json.dumps({"password": "pw"})})
        b.add("workflows", {"workflow_id": "token:abc", "status": "done"})
        b.add("spans", {"span_id": "sp", "status_message": KINDS[11].text,
                        "attributes": json.dumps({"http.request.header.cookie": ["sid=abc"]})})
        store.write(b)
        store.write(b)  # again: the redacted keys are found and merged, not inserted twice
        store.insert_rows("stage_records", [{"id": 1, "workflow_id": "w", "agent": "export TOKEN=abc"}])
        assert store.query("SELECT cwd, git_branch FROM sessions")[0] == {
            "cwd": "/work/echo [REDACTED] | claude setup-token", "git_branch": "API_KEY=[REDACTED]"}
        assert store.scalar("SELECT error FROM api_errors") == "echo [REDACTED] | claude setup-token"
        assert store.query("SELECT workflow_id, status, CAST(attributes AS VARCHAR) AS a FROM workflows") == [
            {"workflow_id": "token:[REDACTED]", "status": "done", "a": '{"password":"[REDACTED]"}'}]
        span = store.query("SELECT status_message, CAST(attributes AS VARCHAR) AS a FROM spans")[0]
        assert span == {"status_message": KINDS[11].redacted, "a": '{"http.request.header.cookie":["[REDACTED]"]}'}
        assert store.scalar("SELECT agent FROM stage_records") == "export TOKEN=[REDACTED]"


@pytest.mark.parametrize("keep", [False, True])
def test_raw_hook_payloads_are_kept_only_when_asked(tmp_path, keep: bool):
    from golem_mcp.ingestion.hooks import hook_to_batch

    payload = {"hook_event_name": "PreToolUse", "session_id": "s", "tool_use_id": "t", "tool_name": "Bash",
               "cwd": "/w", "tool_input": {"command": KINDS[13].text}, "permission_mode": "default"}
    with _store(tmp_path, keep_hook_payloads=keep) as store:
        b = Batch()
        assert hook_to_batch(payload, b)
        store.write(b)
        row = store.query("SELECT tool_name, tool_use_id, CAST(payload AS VARCHAR) AS payload FROM hook_events")[0]
        assert row["tool_name"] == "Bash" and row["tool_use_id"] == "t"
        params = json.loads(store.scalar("SELECT tool_parameters FROM tool_calls"))
        assert params["bash_command"] == KINDS[13].redacted
        if keep:
            kept = json.loads(row["payload"])
            assert kept["permission_mode"] == "default" and "s3cr3t14" not in row["payload"]
        else:
            assert row["payload"] is None


def test_what_claude_code_really_writes_is_left_alone():
    """No false alarms on the fixtures: every hook payload, OTel record and transcript line that
    Claude Code 2.1.328 wrote comes out of redact_value unchanged (none of them holds a secret)."""
    from conftest import FIXTURES

    hooks = [json.loads(x) for x in (FIXTURES / "hooks.jsonl").read_text().splitlines() if x.strip()]
    otlp = [json.loads(f.read_text()) for f in sorted((FIXTURES / "otlp").glob("*.json"))]
    lines = [json.loads(x) for f in sorted((FIXTURES / "home").rglob("*.jsonl"))
             for x in f.read_text().splitlines() if x.strip()]
    for doc in hooks + otlp + lines:
        assert redact_value(doc) == doc


def test_improvement_items_written_beside_the_store_are_redacted_too(tmp_path):
    from golem_mcp.analysis.findings_store import Candidate, list_findings, save_items

    with _store(tmp_path) as store:
        c = Candidate(kind="error_pattern", dimension="tool", key="Bash", title=f"fails: {KINDS[13].text}",
                      severity=2.0, recommendation="rotate it: export API_KEY=abc", evidence={"example": KINDS[0].text})
        assert save_items(store, None, [c, c]).created == 1
        [item] = list_findings(store, with_evidence=True)
        assert (item.title, item.recommendation) == (f"fails: {KINDS[13].redacted}", "rotate it: export API_KEY=[REDACTED]")
        assert item.evidence == {"example": KINDS[0].redacted}
