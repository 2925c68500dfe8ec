-- The requests rolled up without the workflow, agent and task (store/rollups.py SPECS
-- "rollup_requests_coarse"): one row per day and stage, model, experiment, machine, project... The
-- questions over a whole window of the store (the 30-day cost, by stage or model) read it instead of
-- rollup_requests, whose groups grow with the workflows (7.75 M groups for 10 M requests; this table
-- has 10 thousand). Kept current on every write as the other rollups are; built once from the
-- resolved facts (Store.migrate) when this migration is applied to an existing store. The same
-- columns as rollup_requests (008, sums BIGINT as 013 made them) less workflow_id, agent, task_id.
CREATE TABLE IF NOT EXISTS rollup_requests_coarse (
    gkey                  UHUGEINT PRIMARY KEY,
    day                   DATE,
    stage                 VARCHAR,
    top_stage             VARCHAR,
    model                 VARCHAR,
    experiment_id         VARCHAR,
    workflow_path         VARCHAR,
    complexity            VARCHAR,
    project               VARCHAR,
    git_branch            VARCHAR,
    cost_source           VARCHAR,
    machine_id            VARCHAR,
    requests              BIGINT,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    cache_read_tokens     BIGINT,
    cache_creation_tokens BIGINT,
    cost_usd              DOUBLE,
    cost_n                BIGINT,
    recorded_cost_usd     DOUBLE,
    recorded_n            BIGINT,
    calculated_cost_usd   DOUBLE,
    calculated_n          BIGINT,
    retries               BIGINT,
    retried_requests      BIGINT,
    failed_requests       BIGINT,
    timed_requests        BIGINT,
    duration_ms           DOUBLE,
    lat_le_500            BIGINT,
    lat_le_1000           BIGINT,
    lat_le_2500           BIGINT,
    lat_le_5000           BIGINT,
    lat_le_10000          BIGINT,
    lat_le_20000          BIGINT,
    lat_le_30000          BIGINT,
    lat_le_60000          BIGINT,
    lat_le_120000         BIGINT,
    lat_le_300000         BIGINT,
    first_at              TIMESTAMP,
    last_at               TIMESTAMP
);
