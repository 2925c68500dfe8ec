-- Identical tool calls counted (store/rollups.py SPECS "rollup_calls"): one row per session and hash of
-- the call's identity (workflow, stage, session, agent, tool, parameters), with no day, so a call repeated
-- across midnight is one group. The loops of a whole window (analysis/loops.py) are the groups made at
-- least three times in it: this table names the few candidates and only their calls are read, instead of
-- hashing every call of the window (seconds at 10 M requests). call_hash is NULL for calls without
-- parameters (never a loop). Kept current on every write as the other rollups are; built once from the
-- resolved facts (Store.migrate) when this migration is applied to an existing store.
CREATE TABLE IF NOT EXISTS rollup_calls (
    gkey       UHUGEINT PRIMARY KEY,
    session_id VARCHAR,
    call_hash  UBIGINT,
    calls      BIGINT,
    first_at   TIMESTAMP,
    last_at    TIMESTAMP
);
