"""OTLP bodies decoded in the daemon's worker processes give exactly the batches an in-process decode
gives, refuse bad bodies with the same problems, and survive a worker that dies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conftest import FIXTURES
from golem_mcp.errors import InvalidInput
from golem_mcp.ingestion.otlp import body_to_batch
from golem_mcp.interfaces.daemon.decoding import CTYPE, Decoder

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
