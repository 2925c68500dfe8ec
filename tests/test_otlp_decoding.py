"""OTLP bodies decoded in the daemon's worker processes give exactly the batches an in-process decode
gives, refuse bad bodies with the same problems, and survive a worker that dies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FIXTURES
from golem_mcp.errors import InvalidInput
from golem_mcp.ingestion.otlp import body_to_batch
from golem_mcp.interfaces.daemon.decoding import CTYPE, Decoder
from golem_mcp.redaction import REDACTED
from golem_mcp.store import Store, inbox

KIND = {".json": "json", ".pb": "protobuf"}


@pytest.fixture
def decoder() -> Iterator[Decoder]:
    d = Decoder(2, False)
    d.warm()
    yield d
    d.close()


def bodies() -> list[tuple[str, str, bytes]]:
    return [(f.stem.split("_", 1)[1], KIND[f.suffix], f.read_bytes()) for f in sorted((FIXTURES / "otlp").iterdir())]


def test_workers_give_the_batches_an_in_process_decode_gives(decoder: Decoder) -> None:
    async def all_of_them() -> list:
        return await asyncio.gather(*(decoder.batch(s, b, k) for s, k, b in bodies()))

    got = asyncio.run(all_of_them())
    for (signal, kind, body), (batch, n) in zip(bodies(), got, strict=True):
        want, want_n = body_to_batch(signal, body, CTYPE[kind])
        assert n == want_n and dict(batch.rows) == dict(want.rows) and batch.skipped == want.skipped


def test_a_bad_body_is_refused_with_its_problems(decoder: Decoder) -> None:
    with pytest.raises(InvalidInput) as e:
        asyncio.run(decoder.batch("logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [7, 8]}]}]}', "json"))
    assert "none of the 2 OTLP log records" in e.value.message
    assert len(e.value.problems) == 2 and "not an object" in e.value.problems[0]


def test_a_worker_that_dies_is_replaced_and_the_body_still_decoded(decoder: Decoder) -> None:
    signal, kind, body = bodies()[0]
    want = body_to_batch(signal, body, CTYPE[kind])[1]
    first = list(decoder._all)
    for p in first:
        p.kill()
        p.wait()
    for _ in range(4):  # each dead worker fails once, is replaced, and the body is decoded here instead
        assert asyncio.run(decoder.batch(signal, body, kind))[1] == want
    alive = [p for p in decoder._all if p.poll() is None]
    assert len(alive) == 2 and not set(alive) & set(first)


def _inbox_rows(store: Store) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t, blob in store.con.execute("SELECT table_name, rows FROM write_inbox ORDER BY seq, table_name").fetchall():
        out.setdefault(t, []).extend(inbox.decode(blob).to_pylist())
    return out


def _facts(store: Store) -> list[tuple]:
    return store.con.execute("SELECT request_id, r_workflow_id, r_stage, r_cost_usd, input_tokens FROM api_requests "
                             "UNION ALL SELECT tool_use_id, r_workflow_id, r_stage, NULL, NULL FROM tool_calls "
                             "ORDER BY 1").fetchall()


def test_workers_check_and_redact_for_the_inbox_as_the_store_does(tmp_path: Path) -> None:
    """With the store's table specs, a worker decodes, checks, redacts and encodes a body for the write
    inbox: the daemon commits the bytes. The inbox, the problems reported and the facts written
    after are those of the store's own Store.land, also for a secret and for a refused value."""
    secret = "Authorization: Bearer sk-live-0123456789abcdef"
    doc = json.loads(next(f for f in sorted((FIXTURES / "otlp").glob("*_logs.json"))).read_bytes())
    recs = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    recs[0]["attributes"].append({"key": "note", "value": {"stringValue": secret}})
    req = next(r for r in recs if any(a["value"].get("stringValue") == "api_request" for a in r["attributes"]))
    bad = json.loads(json.dumps(req))
    for a in bad["attributes"]:
        if a["key"] == "request_id":
            a["value"] = {"stringValue": "req_refused"}
        if a["key"] == "input_tokens":
            a["value"] = {"intValue": "-5"}
    recs.append(bad)
    tricky = json.dumps(doc).encode()
    cases = [(s, k, b) for s, k, b in bodies() if s == "logs"] + [("logs", "json", tricky)]

    with Store(tmp_path / "worker.duckdb") as ws, Store(tmp_path / "here.duckdb") as hs:
        d = Decoder(2, False, ws.check_specs)
        landed = []
        try:
            for signal, kind, body in cases:
                got, n = asyncio.run(d.landed(ws, signal, body, kind))
                want, want_n = body_to_batch(signal, body, CTYPE[kind])
                hs.land(want)
                assert n == want_n and got.skipped == want.skipped and got.rejected() == want.rejected()
                assert len(got.landed) == 1 and {t: len(r) for t, r in got.rows.items() if r} == \
                    {t: len(r) for t, r in want.rows.items() if r}
                landed.append((got, want))
            assert all(p.poll() is None for p in d._all) and len(d._all) == 2  # the workers did it
        finally:
            d.close()
        inbox_w = _inbox_rows(ws)
        assert inbox_w == _inbox_rows(hs)
        assert "sk-live-0123456789abcdef" not in str(inbox_w) and REDACTED in str(inbox_w)
        assert "req_refused" not in {r["request_id"] for r in inbox_w["api_requests"]}
        assert any("input_tokens" in str(sk) for got, _ in landed for sk in got.skipped)
        for got, want in landed:
            ws.submit(got)
            hs.submit(want)
        ws.scalar("SELECT 1")  # a read waits for the landed batches
        hs.scalar("SELECT 1")
        assert _facts(ws) == _facts(hs) and len(_facts(ws)) > 0
        assert ws.scalar("SELECT count(*) FROM write_inbox") == 0


def test_a_dead_worker_leaves_the_body_checked_and_landed_here(tmp_path: Path) -> None:
    signal, kind, body = next((s, k, b) for s, k, b in bodies() if s == "logs")
    with Store(tmp_path / "s.duckdb") as store:
        d = Decoder(1, False, store.check_specs)
        try:
            d.warm()
            for p in d._all:
                p.kill()
                p.wait()
            batch, n = asyncio.run(d.landed(store, signal, body, kind))
            assert n == body_to_batch(signal, body, CTYPE[kind])[1] and batch.landed
            store.submit(batch).result(60)
            assert store.scalar("SELECT count(*) FROM api_requests") > 0
        finally:
            d.close()
