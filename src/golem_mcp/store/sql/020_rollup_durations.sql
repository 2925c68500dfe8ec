-- Durations rolled up into buckets (store/rollups.py SPECS "request_durations", "tool_durations"): per
-- day and model (tool), how many requests (calls) took a duration of each bucket, the buckets about 2 %
-- wide (rollups.DURATION_BUCKET: a log scale). The percentiles of a window of the store (find_slow_stages:
-- p50/p95/p99 per model and tool over 30 days and their earlier history) are read from a few thousand
-- of these rows instead of sorting every request of the window; a bucket's value is known to within
-- 1 %. Kept current on every write as the other rollups are; built once from the resolved facts
-- (Store.migrate) when this migration is applied to an existing store.
CREATE TABLE IF NOT EXISTS rollup_request_durations (
    gkey      UHUGEINT PRIMARY KEY,
    day       DATE,
    model     VARCHAR,
    bucket    INTEGER,
    requests  BIGINT,
    first_at  TIMESTAMP,
    last_at   TIMESTAMP
);
CREATE TABLE IF NOT EXISTS rollup_tool_durations (
    gkey      UHUGEINT PRIMARY KEY,
    day       DATE,
    tool_name VARCHAR,
    bucket    INTEGER,
    calls     BIGINT,
    first_at  TIMESTAMP,
    last_at   TIMESTAMP
);
