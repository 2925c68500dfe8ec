"""The write inbox: batches accepted, durable, and not yet resolved into facts.

A write resolves its facts and keeps the rollups current in ~30 statements whatever its size, so the
cost of a record falls with the records a write holds (in process: ~2,300 records per CPU-second one
500-record OTLP body a write, ~24,000 forty). An exporter waits for its 200, so while the 200 waited
for the resolving write, four exporters could never give a write more than four bodies, and the one
writer thread bounded the rate. Now the daemon checks and redacts an OTLP body's rows as the write
would (:meth:`Store.land`; the reply counts what the checks refused), commits them here in a
transaction of their own, answers, and hands the batch to the writer, which merges whatever has
arrived meanwhile into one write and deletes the batches' inbox rows in that write's transaction.

So a 200 still means stored: a process that ends between the two leaves the rows here, and the
next store opened on the file writes them before anything else (:meth:`Store._write_inbox`). Reads
wait for batches landed before them (:meth:`Store.reader`), so what a 200 acknowledged is in every
answer asked after it. The rows are those the write would store, checked and redacted: the inbox
holds no text a fact table would not.

One row per batch and table: the table's staged rows as an Arrow IPC stream (LZ4), as typed as the
table's columns, so they come back as the values the checks passed.
"""

from __future__ import annotations

from typing import Any


def encode(table: Any) -> bytes:
    """An Arrow table as IPC stream bytes."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(blob: bytes) -> Any:
    """The Arrow table :func:`encode` stored."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()


def add_to(batch: Any, table: str, blob: bytes) -> None:
    """Add the rows of an inbox blob of ``table`` to ``batch``, staged as they are and as row dicts
    (what the writer's resolver reads)."""
    stg = decode(blob)
    batch.staged[table].append(stg)
    batch.rows[table].extend(stg.to_pylist())
