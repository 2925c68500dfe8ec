-- golem-mcp schema, version 1. Facts are stored as the sources emitted them; context (workflow,
-- stage, task, experiment) is joined in views (views.sql), so late context applies retroactively.
-- source_mask bits: 1 transcript, 2 OTel log event, 4 OTel span, 8 hook, 16 MCP/agent record.

CREATE TABLE IF NOT EXISTS settings (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);

CREATE TABLE IF NOT EXISTS sessions (
    session_id      VARCHAR PRIMARY KEY,
    project         VARCHAR,      -- the project folder name under ~/.claude/projects, or cwd's basename
    cwd             VARCHAR,
    git_branch      VARCHAR,
    version         VARCHAR,      -- Claude Code version
    entrypoint      VARCHAR,      -- cli, sdk-cli, ...
    transcript_path VARCHAR,
    first_seen      TIMESTAMP,
    last_seen       TIMESTAMP,
    end_reason      VARCHAR
);

CREATE TABLE IF NOT EXISTS agents (
    agent_id          VARCHAR PRIMARY KEY,
    session_id        VARCHAR,
    agent_type        VARCHAR,    -- analyst, planner, ... ('custom' from OTel is never preferred)
    description       VARCHAR,
    parent_agent_id   VARCHAR,    -- set when known directly; else derived from spawn_tool_use_id
    spawn_tool_use_id VARCHAR,    -- the Agent tool call that started it
    spawn_depth       INTEGER,
    model             VARCHAR,
    started_at        TIMESTAMP,
    ended_at          TIMESTAMP
);

CREATE TABLE IF NOT EXISTS api_requests (
    request_id               VARCHAR PRIMARY KEY,  -- = transcript requestId = OTel request_id
    message_id               VARCHAR,
    session_id               VARCHAR,
    agent_id                 VARCHAR,              -- NULL: the session's main thread
    prompt_id                VARCHAR,
    model                    VARCHAR,
    "timestamp"              TIMESTAMP,
    input_tokens             BIGINT,
    output_tokens            BIGINT,
    cache_read_tokens        BIGINT,
    cache_creation_tokens    BIGINT,
    cache_creation_5m_tokens BIGINT,
    cache_creation_1h_tokens BIGINT,
    recorded_cost_usd        DOUBLE,               -- Claude Code's own figure (OTel cost_usd)
    duration_ms              DOUBLE,
    ttft_ms                  DOUBLE,
    query_source             VARCHAR,
    attempt                  INTEGER,              -- > 1: retried after failed attempts
    success                  BOOLEAN,
    stop_reason              VARCHAR,
    workflow_id              VARCHAR,              -- context as emitted on this record (OTel resource)
    stage                    VARCHAR,
    task_id                  VARCHAR,
    experiment_id            VARCHAR,
    source_mask              UTINYINT
);

CREATE TABLE IF NOT EXISTS tool_calls (
    tool_use_id       VARCHAR PRIMARY KEY,
    session_id        VARCHAR,
    agent_id          VARCHAR,
    request_id        VARCHAR,    -- the API response that asked for the call
    prompt_id         VARCHAR,
    tool_name         VARCHAR,
    "timestamp"       TIMESTAMP,
    success           BOOLEAN,
    duration_ms       DOUBLE,
    error_type        VARCHAR,
    error             VARCHAR,    -- first 500 characters of the failure text, secrets redacted
    input_size_bytes  BIGINT,
    result_size_bytes BIGINT,
    tool_parameters   JSON,       -- selected, redacted parameters (bash_command, file_path, pattern, ...)
    decision          VARCHAR,
    workflow_id       VARCHAR,
    stage             VARCHAR,
    task_id           VARCHAR,
    experiment_id     VARCHAR,
    source_mask       UTINYINT
);

CREATE TABLE IF NOT EXISTS api_errors (
    error_key     VARCHAR PRIMARY KEY,
    session_id    VARCHAR,
    agent_id      VARCHAR,
    request_id    VARCHAR,
    prompt_id     VARCHAR,
    model         VARCHAR,
    "timestamp"   TIMESTAMP,
    status_code   INTEGER,
    error         VARCHAR,
    attempt       INTEGER,
    duration_ms   DOUBLE,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    source        VARCHAR
);

CREATE TABLE IF NOT EXISTS spans (
    span_id        VARCHAR PRIMARY KEY,
    trace_id       VARCHAR,
    parent_span_id VARCHAR,
    name           VARCHAR,
    span_type      VARCHAR,   -- interaction, llm_request, tool, tool.execution, ... (or phase, gate, handoff)
    start_time     TIMESTAMP,
    end_time       TIMESTAMP,
    duration_ms    DOUBLE,
    status_code    INTEGER,
    status_message VARCHAR,
    session_id     VARCHAR,
    agent_id       VARCHAR,
    request_id     VARCHAR,
    tool_use_id    VARCHAR,
    tool_name      VARCHAR,
    attempt        INTEGER,
    queue_wait_ms  DOUBLE,
    workflow_id    VARCHAR,
    stage          VARCHAR,
    task_id        VARCHAR,
    experiment_id  VARCHAR,
    attributes     JSON,
    resource       JSON
);

CREATE TABLE IF NOT EXISTS otel_events (
    event_key     VARCHAR PRIMARY KEY,
    event_name    VARCHAR,    -- api_request, tool_result, user_prompt, ... and ones not seen yet
    "timestamp"   TIMESTAMP,
    session_id    VARCHAR,
    prompt_id     VARCHAR,
    agent_id      VARCHAR,
    request_id    VARCHAR,
    tool_use_id   VARCHAR,
    sequence      BIGINT,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    attributes    JSON,
    resource      JSON
);

CREATE TABLE IF NOT EXISTS metric_points (
    point_key     VARCHAR PRIMARY KEY,
    name          VARCHAR,    -- claude_code.token.usage, claude_code.cost.usage, ...
    unit          VARCHAR,
    kind          VARCHAR,    -- sum, gauge, histogram
    temporality   INTEGER,    -- 1 delta, 2 cumulative
    session_id    VARCHAR,
    model         VARCHAR,
    type          VARCHAR,
    start_time    TIMESTAMP,
    "time"        TIMESTAMP,
    value         DOUBLE,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    attributes    JSON,
    resource      JSON
);

CREATE TABLE IF NOT EXISTS hook_events (
    event_key   VARCHAR PRIMARY KEY,
    received_at TIMESTAMP,
    session_id  VARCHAR,
    event_name  VARCHAR,
    agent_id    VARCHAR,
    agent_type  VARCHAR,
    tool_use_id VARCHAR,
    tool_name   VARCHAR,
    payload     JSON        -- NULL unless keep_hook_payloads: then redacted, no prompt text unless store_prompts
);

CREATE TABLE IF NOT EXISTS workflows (
    workflow_id       VARCHAR PRIMARY KEY,
    path              VARCHAR,   -- fast-track | full
    complexity        VARCHAR,   -- simple | complex (the master's estimate)
    spec_completeness VARCHAR,   -- complete | incomplete
    experiment_id     VARCHAR,
    task_id           VARCHAR,
    status            VARCHAR,
    started_at        TIMESTAMP,
    ended_at          TIMESTAMP,
    updated_at        TIMESTAMP,
    attributes        JSON
);

-- Which workflow a session works for, from a moment on (ASOF-joined by the views).
CREATE TABLE IF NOT EXISTS workflow_links (
    session_id    VARCHAR,
    valid_from    TIMESTAMP,
    workflow_id   VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    source        VARCHAR,
    PRIMARY KEY (session_id, valid_from)
);

-- Context an agent declared for itself (record_stage_usage) or resource attributes gave it.
CREATE TABLE IF NOT EXISTS agent_context (
    agent_id      VARCHAR PRIMARY KEY,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR,
    source        VARCHAR,
    updated_at    TIMESTAMP
);

CREATE SEQUENCE IF NOT EXISTS stage_record_seq;
CREATE TABLE IF NOT EXISTS stage_records (
    id                    BIGINT PRIMARY KEY DEFAULT nextval('stage_record_seq'),
    workflow_id           VARCHAR,
    stage                 VARCHAR,
    task_id               VARCHAR,
    agent                 VARCHAR,
    model                 VARCHAR,
    status                VARCHAR,
    started_at            TIMESTAMP,
    ended_at              TIMESTAMP,
    session_id            VARCHAR,
    agent_id              VARCHAR,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    cache_read_tokens     BIGINT,
    cache_creation_tokens BIGINT,
    cost_usd              DOUBLE,
    recorded_at           TIMESTAMP
);

CREATE TABLE IF NOT EXISTS review_reports (
    report_id   VARCHAR PRIMARY KEY,
    v           INTEGER,
    ts          TIMESTAMP,
    task        VARCHAR,
    parent      VARCHAR,
    workflow_id VARCHAR,
    session_id  VARCHAR,
    agent_id    VARCHAR,
    critical    INTEGER,
    major       INTEGER,
    minor       INTEGER,
    categories  MAP(VARCHAR, INTEGER),
    rework      BOOLEAN,
    raw         JSON,
    recorded_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS review_issues (
    report_id VARCHAR,
    idx       INTEGER,
    severity  VARCHAR,
    category  VARCHAR,
    file      VARCHAR,
    line      INTEGER,
    summary   VARCHAR,
    PRIMARY KEY (report_id, idx)
);

CREATE TABLE IF NOT EXISTS prices (
    model               VARCHAR PRIMARY KEY,
    input_per_mtok      DOUBLE,
    output_per_mtok     DOUBLE,
    cache_read_per_mtok DOUBLE,
    cache_write_5m_per_mtok DOUBLE,
    cache_write_1h_per_mtok DOUBLE,
    as_of               VARCHAR,
    source              VARCHAR
);

CREATE TABLE IF NOT EXISTS ingest_files (
    path     VARCHAR PRIMARY KEY,
    kind     VARCHAR,
    size     BIGINT,
    mtime_ns BIGINT,
    "offset" BIGINT,
    lines    BIGINT,
    skipped  BIGINT,
    updated_at TIMESTAMP
);
