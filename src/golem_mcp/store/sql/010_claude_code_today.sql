-- What Claude Code 2.1.328 emits beyond the first schema, typed instead of kept only as raw JSON
-- (issue 13). Names and places were read off the CLI's own bundle and its OTLP captures.

-- api_request: who the request was made for (Claude Code's attribution: a skill, a plugin, an MCP
-- server and tool; "third-party" / "custom" when it redacts a name), how hard the model was asked to
-- think, and Claude Code's own cost in integer micro-dollars (cost_usd rounded per request, so
-- recorded_cost_usd stays cost_usd and takes the micros only when cost_usd is missing: ingestion/otlp.py).
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS skill_name VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS plugin_name VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS marketplace_name VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS mcp_server_name VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS mcp_tool_name VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS effort VARCHAR;          -- low, medium, high, xhigh, max
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS speed VARCHAR;           -- normal, fast
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS cost_usd_micros BIGINT;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS client_request_id VARCHAR;

-- tool calls of MCP tools: the server and tool (from the mcp__server__tool name, the tool_result
-- event's tool_parameters, or the hooks' mcp_server); batch_size: how many calls ran in the same
-- batch (PostToolBatch), 1 = alone.
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS mcp_server_name VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS mcp_tool_name VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS batch_size INTEGER;

-- api_errors holds three kinds of failed turns: 'api_error' (the OTel event), 'refusal' (the model
-- declined: api_refusal) and 'stop_failure' (the StopFailure hook: the turn ended on an API error;
-- a view leaves it out when OTel reported the same prompt's error). retries_exhausted: Claude Code
-- gave up after total attempts (api_retries_exhausted, merged into its api_error row).
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS error_type VARCHAR;   -- rate_limit, overloaded, refusal, ...
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS retries_exhausted BOOLEAN;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS total_retry_duration_ms DOUBLE;

-- subagent_completed: the subagent's own totals as Claude Code counted them.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS total_tokens BIGINT;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS total_tool_uses INTEGER;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS duration_ms DOUBLE;

-- every hook payload carries the prompt it belongs to (= OTel prompt.id)
ALTER TABLE hook_events ADD COLUMN IF NOT EXISTS prompt_id VARCHAR;

-- Context compactions: the OTel event (tokens before and after) and the Pre/PostCompact hooks
-- (no token counts). The compactions view counts each once.
CREATE TABLE IF NOT EXISTS compaction_events (
    event_key     VARCHAR PRIMARY KEY,
    source        VARCHAR,    -- otel, hook
    phase         VARCHAR,    -- hooks: pre, post; NULL for the OTel event
    session_id    VARCHAR,
    agent_id      VARCHAR,
    prompt_id     VARCHAR,
    "timestamp"   TIMESTAMP,
    "trigger"     VARCHAR,    -- auto, manual
    success       BOOLEAN,
    duration_ms   DOUBLE,
    pre_tokens    BIGINT,
    post_tokens   BIGINT,
    error         VARCHAR,
    workflow_id   VARCHAR,
    stage         VARCHAR,
    task_id       VARCHAR,
    experiment_id VARCHAR
);

-- Claude Code's own task list (TaskCreated / TaskCompleted hooks): cc_task_id is Claude Code's id,
-- unrelated to the workflow context's task_id.
CREATE TABLE IF NOT EXISTS agent_tasks (
    task_key      VARCHAR PRIMARY KEY,   -- session_id|cc_task_id
    session_id    VARCHAR,
    cc_task_id    VARCHAR,
    agent_id      VARCHAR,
    prompt_id     VARCHAR,
    subject       VARCHAR,
    teammate_name VARCHAR,
    created_at    TIMESTAMP,
    completed_at  TIMESTAMP
);
