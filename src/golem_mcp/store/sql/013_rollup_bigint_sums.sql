-- The rollups' token and retry sums as BIGINT. 008 stored them as HUGEINT (what sum() of a BIGINT
-- gives), and DuckDB 1.5 reads a stored HUGEINT column slowly: on a store of 10 M requests (7.75 M
-- rollup groups) summing the four token columns of every group took 12 CPU-s, the same as BIGINT
-- 0.05. A BIGINT holds 9.2e18 tokens per group. The workflow index (made at open) is dropped first:
-- DuckDB alters no table an index depends on; the store makes it again after the migrations.
DROP INDEX IF EXISTS rollup_requests_workflow;
ALTER TABLE rollup_requests ALTER COLUMN input_tokens TYPE BIGINT;
ALTER TABLE rollup_requests ALTER COLUMN output_tokens TYPE BIGINT;
ALTER TABLE rollup_requests ALTER COLUMN cache_read_tokens TYPE BIGINT;
ALTER TABLE rollup_requests ALTER COLUMN cache_creation_tokens TYPE BIGINT;
ALTER TABLE rollup_requests ALTER COLUMN retries TYPE BIGINT;
