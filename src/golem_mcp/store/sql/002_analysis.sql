-- Analysis engine state (issue 5): configured baselines, improvement items, analysis runs, budgets
-- and the alerts they raised. Facts stay in 001's tables; these hold what the analyses concluded.

-- Configured p50 baselines per dimension (seed 003's telemetry_thresholds). When no active row
-- exists for a key, the bottleneck analysis learns the baseline from the key's own history.
CREATE TABLE IF NOT EXISTS thresholds (
    dimension       VARCHAR,      -- stage, agent, tool, model, workflow_path, span, stage_experiment
    key             VARCHAR,
    baseline_p50_ms DOUBLE,
    multiplier      DOUBLE DEFAULT 2.0,
    active          BOOLEAN DEFAULT true,
    updated_at      TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (dimension, key)
);

CREATE SEQUENCE IF NOT EXISTS analysis_run_seq;
CREATE TABLE IF NOT EXISTS analysis_runs (
    run_id       BIGINT PRIMARY KEY DEFAULT nextval('analysis_run_seq'),
    status       VARCHAR,         -- queued, running, succeeded, failed, timed_out
    trigger      VARCHAR,         -- session_start, cli, mcp, schedule, ingest
    queued_at    TIMESTAMP,
    started_at   TIMESTAMP,
    finished_at  TIMESTAMP,
    window_days  INTEGER,
    scanned      JSON,            -- what was read: requests, tool calls, workflows, dimensions
    produced     JSON,            -- what came out: findings per kind, items created/skipped, alerts
    summary      JSON,            -- the compact findings the session-start display prints
    error_detail VARCHAR
);

-- Improvement items (seed 003's continuous_improvements): one per open problem, deduplicated by
-- (kind, dimension, key) while open; at most 3 new per dimension per run.
CREATE SEQUENCE IF NOT EXISTS improvement_item_seq;
CREATE TABLE IF NOT EXISTS improvement_items (
    item_id        BIGINT PRIMARY KEY DEFAULT nextval('improvement_item_seq'),
    kind           VARCHAR,       -- bottleneck, token_leak, loop, error_pattern, budget, model_advice
    dimension      VARCHAR,
    key            VARCHAR,
    title          VARCHAR,
    severity       DOUBLE,        -- observed / baseline (or ratio to normal)
    recommendation VARCHAR,
    evidence       JSON,
    status         VARCHAR DEFAULT 'open',   -- open, done, dismissed
    first_run_id   BIGINT,
    last_run_id    BIGINT,
    times_seen     INTEGER DEFAULT 1,
    created_at     TIMESTAMP,
    updated_at     TIMESTAMP
);

-- Budgets (seed 000's defaults apply when this table holds none for a scope; seed 002's levels).
CREATE TABLE IF NOT EXISTS budgets (
    scope      VARCHAR,           -- workflow, stage, day, session
    key        VARCHAR DEFAULT '*',   -- '*' = every workflow/stage/day; or one id
    limit_usd  DOUBLE,
    levels     VARCHAR DEFAULT '50,80,95,100',   -- percentages that raise an alert
    active     BOOLEAN DEFAULT true,
    updated_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (scope, key)
);

CREATE SEQUENCE IF NOT EXISTS alert_seq;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id     BIGINT PRIMARY KEY DEFAULT nextval('alert_seq'),
    alert_key    VARCHAR UNIQUE,  -- kind|scope|key|level: one alert per crossing, ever
    kind         VARCHAR,         -- budget, error_spike, quality_regression
    scope        VARCHAR,
    key          VARCHAR,
    level        INTEGER,         -- percent of the budget crossed (budget alerts)
    value        DOUBLE,
    limit_value  DOUBLE,
    message      VARCHAR,
    created_at   TIMESTAMP,
    delivered    JSON             -- {"log": true, "webhook": "ok"|"error: ..."}
);
