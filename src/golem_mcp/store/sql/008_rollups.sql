-- Rollups (issue 10): the resolved facts summed per day and per everything the tools, the dashboard
-- and /metrics group by, so their answers read small tables instead of every fact. Kept current by
-- store/rollups.py in the transaction of every write that changes a fact or its resolved context
-- (the old contribution of exactly the changed facts subtracted, the new one added, empty groups
-- dropped); built once from the resolved facts (Store.migrate, after every migration) when this
-- one is applied to an existing store. Dimensions are the facts' resolved (r_) columns.
--
-- gkey: the group's identity, a 128-bit hash of its dimension values (NULLs included, which a
-- primary key over the nullable dimensions could not hold). first_at / last_at are the group's
-- earliest and latest fact; *_n count the facts whose value was not NULL, so a sum over only
-- NULLs stays NULL as SQL's sum() does. lat_le_N: timed requests at most N ms long (cumulative,
-- the /metrics latency histogram's buckets: store/rollups.py LATENCY_BUCKETS_MS).

CREATE TABLE IF NOT EXISTS rollup_requests (
    gkey                  UHUGEINT PRIMARY KEY,
    day                   DATE,
    workflow_id           VARCHAR,
    stage                 VARCHAR,
    top_stage             VARCHAR,
    agent                 VARCHAR,
    model                 VARCHAR,
    task_id               VARCHAR,
    experiment_id         VARCHAR,
    workflow_path         VARCHAR,
    complexity            VARCHAR,
    project               VARCHAR,
    git_branch            VARCHAR,
    cost_source           VARCHAR,
    machine_id            VARCHAR,
    requests              BIGINT,
    input_tokens          HUGEINT,
    output_tokens         HUGEINT,
    cache_read_tokens     HUGEINT,
    cache_creation_tokens HUGEINT,
    cost_usd              DOUBLE,
    cost_n                BIGINT,
    recorded_cost_usd     DOUBLE,
    recorded_n            BIGINT,
    calculated_cost_usd   DOUBLE,
    calculated_n          BIGINT,
    retries               HUGEINT,
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

CREATE TABLE IF NOT EXISTS rollup_tools (
    gkey          UHUGEINT PRIMARY KEY,
    day           DATE,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    agent         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    tool_name     VARCHAR,
    category      VARCHAR,   -- the failure's category (golem_error_category); NULL for calls that worked
    machine_id    VARCHAR,
    calls         BIGINT,
    failures      BIGINT,
    timed_calls   BIGINT,
    duration_ms   DOUBLE,
    first_at      TIMESTAMP,
    last_at       TIMESTAMP
);

CREATE TABLE IF NOT EXISTS rollup_errors (
    gkey          UHUGEINT PRIMARY KEY,
    day           DATE,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    agent         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    model         VARCHAR,
    status_code   INTEGER,
    category      VARCHAR,
    machine_id    VARCHAR,
    errors        BIGINT,
    first_at      TIMESTAMP,
    last_at       TIMESTAMP
);
