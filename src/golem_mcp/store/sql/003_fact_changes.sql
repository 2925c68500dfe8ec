-- Which days of facts changed, for the analysis run's cached aggregates (issue 5: a full run over
-- 10M requests re-aggregated every fact each time). Store.write stamps each (fact table, day) a row
-- of its batch landed on (after merging: the day the stored row has) with a new sequence number in
-- the write's own transaction; the analysis keeps aggregates per day and re-aggregates only the
-- days stamped after the highest number it has seen. Rows without a time count as day 2262-01-01.
CREATE SEQUENCE IF NOT EXISTS fact_change_seq;
CREATE TABLE IF NOT EXISTS fact_changes (
    fact VARCHAR,   -- api_requests, tool_calls, api_errors
    day  DATE,
    seq  BIGINT,    -- the last write that touched this day
    PRIMARY KEY (fact, day)
);

-- What the analysis' aggregate cache has seen: its shape's version and the highest seq folded in.
-- Written by the analysis only, so a writer never conflicts with a run refreshing its cache.
CREATE TABLE IF NOT EXISTS analysis_cache_state (
    name     VARCHAR PRIMARY KEY,
    version  VARCHAR,
    seen_seq BIGINT,
    built_at TIMESTAMP
);
