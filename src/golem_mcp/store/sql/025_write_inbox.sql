-- Batches accepted and not yet written: the daemon commits an OTLP body's checked and redacted rows
-- here before its 200, and the store's writer resolves them into the facts and deletes them in one
-- transaction (store/inbox.py). A store opened with rows left here (the process ended between the
-- two) writes them first. One row per (batch, table): the table's rows as an Arrow IPC stream.
CREATE TABLE IF NOT EXISTS write_inbox (
    seq BIGINT NOT NULL,
    table_name VARCHAR NOT NULL,
    rows BLOB NOT NULL,
    landed_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
