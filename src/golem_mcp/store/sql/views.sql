-- Views: facts joined with context. Recreated on every open (CREATE OR REPLACE), so they can change
-- without a migration. The seed documents' table names are views here.

-- Agents with their parent (direct, or the agent that issued the spawning Agent tool call) and
-- the outermost ancestor below the main thread, so nested costs can roll up to the outer stage.
CREATE OR REPLACE VIEW agent_tree AS
WITH RECURSIVE base AS (
    SELECT a.agent_id, a.session_id, a.agent_type, a.description, a.model, a.started_at, a.ended_at,
           COALESCE(a.parent_agent_id, tc.agent_id) AS parent_agent_id
    FROM agents a LEFT JOIN tool_calls tc ON tc.tool_use_id = a.spawn_tool_use_id
),
-- walk down from the agents the main thread started (most agents: one step, no recursion)
tree(agent_id, root_agent_id, depth) AS (
    SELECT agent_id, agent_id, 1 FROM base
    WHERE parent_agent_id IS NULL OR parent_agent_id = agent_id
    UNION ALL
    SELECT b.agent_id, t.root_agent_id, t.depth + 1
    FROM base b JOIN tree t ON b.parent_agent_id = t.agent_id
    WHERE b.parent_agent_id <> b.agent_id AND t.depth < 16
)
SELECT b.agent_id, b.session_id, NULLIF(b.agent_type, 'custom') AS agent_type, b.agent_type AS raw_agent_type,
       b.description, b.model, b.started_at, b.ended_at, b.parent_agent_id,
       COALESCE(t.root_agent_id, b.agent_id) AS root_agent_id, COALESCE(t.depth, 1) AS depth,
       NULLIF(COALESCE(r.agent_type, b.agent_type), 'custom') AS root_agent_type
FROM base b
LEFT JOIN tree t USING (agent_id)
LEFT JOIN base r ON r.agent_id = t.root_agent_id;

-- Session -> workflow links as [valid_from, valid_to) ranges: a hash join on session_id with a
-- range filter is ~7x faster than an ASOF join at a million requests.
CREATE OR REPLACE VIEW workflow_link_ranges AS
SELECT session_id, valid_from,
       COALESCE(lead(valid_from) OVER (PARTITION BY session_id ORDER BY valid_from), TIMESTAMP '9999-12-31') AS valid_to,
       workflow_id, task_id, experiment_id, source
FROM workflow_links;

-- Prices per model as recorded (dated suffixes such as -20250929 map to the base name), computed
-- over the few distinct models rather than per request.
CREATE OR REPLACE VIEW model_prices AS
SELECT m.model AS request_model, p.*
FROM (SELECT DISTINCT model FROM api_requests WHERE model IS NOT NULL) m
JOIN prices p ON p.model = regexp_replace(m.model, '-[0-9]{8}$', '');

-- Context of any fact keyed by (session_id, agent_id, timestamp, emitted context).
CREATE OR REPLACE MACRO golem_main_stage() AS
    COALESCE((SELECT value FROM settings WHERE key = 'main_stage'), 'main');

CREATE OR REPLACE VIEW requests AS
WITH r AS (
    SELECT r.*, COALESCE(r."timestamp", TIMESTAMP '2262-01-01') AS _ts FROM api_requests r
), joined AS (
    SELECT r.*,
           t.agent_type, t.root_agent_type, t.depth AS agent_depth,
           ac.workflow_id AS ac_workflow_id, ac.stage AS ac_stage, ac.task_id AS ac_task_id,
           ac.experiment_id AS ac_experiment_id,
           wl.workflow_id AS wl_workflow_id, wl.task_id AS wl_task_id, wl.experiment_id AS wl_experiment_id
    FROM r
    LEFT JOIN agent_tree t ON t.agent_id = r.agent_id
    LEFT JOIN agent_context ac ON ac.agent_id = COALESCE(r.agent_id, r.session_id)
    LEFT JOIN workflow_link_ranges wl ON wl.session_id = r.session_id AND r._ts >= wl.valid_from AND r._ts < wl.valid_to
), resolved AS (
    SELECT j.*,
           COALESCE(j.workflow_id, j.ac_workflow_id, j.wl_workflow_id) AS r_workflow_id,
           COALESCE(j.ac_stage, j.stage,
                    CASE WHEN j.agent_id IS NULL THEN golem_main_stage()
                         ELSE COALESCE(j.agent_type, 'subagent') END) AS r_stage,
           COALESCE(j.task_id, j.ac_task_id, j.wl_task_id) AS r_task_id,
           COALESCE(j.experiment_id, j.ac_experiment_id, j.wl_experiment_id) AS r_experiment_id
    FROM joined j
)
SELECT x.request_id, x.message_id, x.session_id, x.agent_id, x.prompt_id, x.model, x."timestamp",
       COALESCE(x.input_tokens, 0) AS input_tokens, COALESCE(x.output_tokens, 0) AS output_tokens,
       COALESCE(x.cache_read_tokens, 0) AS cache_read_tokens,
       COALESCE(x.cache_creation_tokens, 0) AS cache_creation_tokens,
       x.cache_creation_5m_tokens, x.cache_creation_1h_tokens,
       x.duration_ms, x.ttft_ms, x.query_source, COALESCE(x.attempt, 1) AS attempt,
       COALESCE(x.success, true) AS success, x.stop_reason, x.source_mask,
       x.r_workflow_id AS workflow_id, x.r_stage AS stage, x.r_task_id AS task_id,
       COALESCE(x.r_experiment_id, w.experiment_id) AS experiment_id,
       CASE WHEN x.agent_id IS NULL THEN golem_main_stage() ELSE COALESCE(x.agent_type, 'subagent') END AS agent,
       -- the stage of the outermost subagent, for rolling nested subagents up
       CASE WHEN x.agent_id IS NULL OR x.agent_depth IS NULL OR x.agent_depth <= 1 THEN x.r_stage
            ELSE COALESCE(x.root_agent_type, x.r_stage) END AS top_stage,
       w.path AS workflow_path, w.complexity, s.project, s.git_branch, s.cwd, s.version AS claude_code_version,
       x.recorded_cost_usd,
       (COALESCE(x.input_tokens, 0) * p.input_per_mtok
        + COALESCE(x.output_tokens, 0) * p.output_per_mtok
        + COALESCE(x.cache_read_tokens, 0) * p.cache_read_per_mtok
        + CASE WHEN x.cache_creation_5m_tokens IS NULL AND x.cache_creation_1h_tokens IS NULL
               THEN COALESCE(x.cache_creation_tokens, 0) * p.cache_write_5m_per_mtok
               ELSE COALESCE(x.cache_creation_5m_tokens, 0) * p.cache_write_5m_per_mtok
                    + COALESCE(x.cache_creation_1h_tokens, 0) * p.cache_write_1h_per_mtok END
       ) / 1e6 AS calculated_cost_usd,
       COALESCE(x.recorded_cost_usd, calculated_cost_usd) AS cost_usd,
       CASE WHEN x.recorded_cost_usd IS NOT NULL THEN 'claude_code'
            WHEN p.model IS NOT NULL THEN 'price_table' ELSE 'unpriced' END AS cost_source
FROM resolved x
LEFT JOIN workflows w ON w.workflow_id = x.r_workflow_id
LEFT JOIN sessions s ON s.session_id = x.session_id
LEFT JOIN model_prices p ON p.request_model = x.model;

CREATE OR REPLACE VIEW tools AS
WITH r AS (
    SELECT c.*, COALESCE(c."timestamp", TIMESTAMP '2262-01-01') AS _ts FROM tool_calls c
), j AS (
    SELECT r.*, NULLIF(a.agent_type, 'custom') AS agent_type,
           ac.workflow_id AS ac_workflow_id, ac.stage AS ac_stage, ac.task_id AS ac_task_id,
           ac.experiment_id AS ac_experiment_id,
           wl.workflow_id AS wl_workflow_id, wl.task_id AS wl_task_id, wl.experiment_id AS wl_experiment_id
    FROM r
    -- only the agent's own type is needed (agent_tree's agent_type is the same NULLIF): the recursive
    -- tree over every agent cost 3 s at 2 million agents on every read of this view
    LEFT JOIN agents a ON a.agent_id = r.agent_id
    LEFT JOIN agent_context ac ON ac.agent_id = COALESCE(r.agent_id, r.session_id)
    LEFT JOIN workflow_link_ranges wl ON wl.session_id = r.session_id AND r._ts >= wl.valid_from AND r._ts < wl.valid_to
)
SELECT j.tool_use_id, j.session_id, j.agent_id, j.request_id, j.prompt_id, j.tool_name, j."timestamp",
       j.success, j.duration_ms, j.error_type, j.error, j.input_size_bytes, j.result_size_bytes,
       j.tool_parameters, j.decision, j.source_mask,
       COALESCE(j.workflow_id, j.ac_workflow_id, j.wl_workflow_id) AS workflow_id,
       COALESCE(j.ac_stage, j.stage, CASE WHEN j.agent_id IS NULL THEN golem_main_stage()
                                          ELSE COALESCE(j.agent_type, 'subagent') END) AS stage,
       COALESCE(j.task_id, j.ac_task_id, j.wl_task_id) AS task_id,
       COALESCE(j.experiment_id, j.ac_experiment_id, j.wl_experiment_id) AS experiment_id,
       CASE WHEN j.agent_id IS NULL THEN golem_main_stage() ELSE COALESCE(j.agent_type, 'subagent') END AS agent
FROM j;

CREATE OR REPLACE VIEW errors AS
WITH r AS (
    SELECT e.*, COALESCE(e."timestamp", TIMESTAMP '2262-01-01') AS _ts FROM api_errors e
), j AS (
    SELECT r.*, NULLIF(a.agent_type, 'custom') AS agent_type, ac.workflow_id AS ac_workflow_id, ac.stage AS ac_stage,
           ac.task_id AS ac_task_id, ac.experiment_id AS ac_experiment_id,
           wl.workflow_id AS wl_workflow_id, wl.task_id AS wl_task_id, wl.experiment_id AS wl_experiment_id
    FROM r
    LEFT JOIN agents a ON a.agent_id = r.agent_id  -- as in tools: the agent's own type only
    LEFT JOIN agent_context ac ON ac.agent_id = COALESCE(r.agent_id, r.session_id)
    LEFT JOIN workflow_link_ranges wl ON wl.session_id = r.session_id AND r._ts >= wl.valid_from AND r._ts < wl.valid_to
)
SELECT j.error_key, j.session_id, j.agent_id, j.request_id, j.prompt_id, j.model, j."timestamp",
       j.status_code, j.error, j.attempt, j.duration_ms, j.source,
       COALESCE(j.workflow_id, j.ac_workflow_id, j.wl_workflow_id) AS workflow_id,
       COALESCE(j.ac_stage, j.stage, CASE WHEN j.agent_id IS NULL THEN golem_main_stage()
                                          ELSE COALESCE(j.agent_type, 'subagent') END) AS stage,
       COALESCE(j.task_id, j.ac_task_id, j.wl_task_id) AS task_id,
       COALESCE(j.experiment_id, j.ac_experiment_id, j.wl_experiment_id) AS experiment_id,
       CASE WHEN j.agent_id IS NULL THEN golem_main_stage() ELSE COALESCE(j.agent_type, 'subagent') END AS agent
FROM j;

-- ---- the seed documents' names ---------------------------------------------------------------

CREATE OR REPLACE VIEW otel_api_request_events AS
SELECT "timestamp", workflow_id, stage, task_id, agent, model, experiment_id, cost_usd,
       input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, duration_ms, ttft_ms,
       session_id, request_id, agent_id, prompt_id, success, attempt, attempt - 1 AS retries,
       query_source, top_stage, workflow_path, complexity, project, git_branch,
       recorded_cost_usd, calculated_cost_usd, cost_source
FROM requests;

CREATE OR REPLACE VIEW otel_tool_result_events AS
SELECT "timestamp", workflow_id, stage, task_id, agent, experiment_id, tool_name, success,
       error, error_type, duration_ms, tool_parameters, tool_use_id, session_id, agent_id, request_id,
       input_size_bytes, result_size_bytes, decision
FROM tools;

CREATE OR REPLACE VIEW otel_api_error_events AS
SELECT "timestamp", workflow_id, stage, task_id, agent, experiment_id, model, status_code, error,
       attempt, duration_ms, session_id, agent_id, request_id, source
FROM errors;

CREATE OR REPLACE VIEW claude_metrics AS
SELECT r.v, r.ts, r.task, r.parent, COALESCE(r.workflow_id, r.parent) AS workflow_id,
       {'critical': r.critical, 'major': r.major, 'minor': r.minor} AS severity,
       r.categories, r.rework, r.report_id, r.session_id, r.agent_id,
       COALESCE((SELECT list({'severity': i.severity, 'category': i.category, 'file': i.file,
                              'line': i.line, 'summary': i.summary} ORDER BY i.idx)
                 FROM review_issues i WHERE i.report_id = r.report_id), []) AS issues
FROM review_reports r;

-- One row per review issue, for the seed's UNNEST queries without struct syntax.
CREATE OR REPLACE VIEW review_issue_rows AS
SELECT r.ts, r.task, r.parent, COALESCE(r.workflow_id, r.parent) AS workflow_id, i.severity, i.category,
       i.file, i.line, i.summary, r.report_id
FROM review_issues i JOIN review_reports r USING (report_id);

-- The summaries' parts per (workflow, stage), as views of their own: an analysis run puts
-- temporary tables of these names in front of them (analysis/snapshot.py), computed from facts
-- aggregated before their context is resolved, and the summary views then read those.
CREATE OR REPLACE VIEW request_stage_groups AS
SELECT workflow_id, stage, any_value(experiment_id) AS experiment_id, any_value(task_id) AS task_id,
       count(*) AS api_requests, sum(cost_usd) AS total_cost,
       count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_requests,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
       sum(attempt - 1) AS retries, min("timestamp") AS started_at, max("timestamp") AS ended_at,
       sum(duration_ms) AS api_duration_ms
FROM requests WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage;

CREATE OR REPLACE VIEW tool_stage_groups AS
SELECT workflow_id, stage, count(*) AS tool_calls, count(*) FILTER (WHERE success = false) AS tool_failures,
       min("timestamp") AS started_at, max("timestamp") AS ended_at
FROM tools WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage;

CREATE OR REPLACE VIEW error_stage_groups AS
SELECT workflow_id, stage, count(*) AS api_errors FROM errors WHERE workflow_id IS NOT NULL GROUP BY ALL;

-- Each subagent's first and last request and the duration of its last timed one (bottlenecks'
-- agent dimension); from the fact table alone, no context needed.
CREATE OR REPLACE VIEW agent_request_spans AS
SELECT agent_id, min("timestamp") AS first_at, max("timestamp") AS last_at,
       arg_max(duration_ms, "timestamp") AS last_duration_ms
FROM api_requests WHERE agent_id IS NOT NULL GROUP BY agent_id;

-- First and last request of each agent in each workflow stage (rework detection).
CREATE OR REPLACE VIEW stage_agent_spans AS
SELECT workflow_id, stage, agent_id, min("timestamp") AS first_at, max("timestamp") AS last_at
FROM requests WHERE workflow_id IS NOT NULL GROUP BY ALL;

CREATE OR REPLACE VIEW workflow_stage_summary AS
WITH req AS (SELECT * FROM request_stage_groups),
tl AS (SELECT * FROM tool_stage_groups),
er AS (SELECT * FROM error_stage_groups)
SELECT req.workflow_id, req.stage, COALESCE(req.experiment_id, w.experiment_id) AS experiment_id,
       COALESCE(req.task_id, w.task_id) AS task_id, w.path AS workflow_path, w.complexity AS complexity_assessment,
       req.total_cost, req.unpriced_requests, req.input_tokens, req.output_tokens, req.cache_read_tokens,
       req.cache_creation_tokens, req.input_tokens + req.output_tokens AS total_tokens,
       req.cache_read_tokens / NULLIF(req.input_tokens + req.cache_read_tokens + req.cache_creation_tokens, 0)
           AS cache_hit_rate,
       req.api_requests, COALESCE(tl.tool_calls, 0) AS tool_calls, COALESCE(tl.tool_failures, 0) AS tool_failures,
       COALESCE(er.api_errors, 0) + req.retries AS api_errors, req.retries,
       COALESCE(er.api_errors, 0) + req.retries + COALESCE(tl.tool_failures, 0) AS error_count,
       least(req.started_at, tl.started_at) AS started_at, greatest(req.ended_at, tl.ended_at) AS ended_at,
       epoch(greatest(req.ended_at, tl.ended_at) - least(req.started_at, tl.started_at)) AS duration_seconds
FROM req
LEFT JOIN tl USING (workflow_id, stage)
LEFT JOIN er USING (workflow_id, stage)
LEFT JOIN workflows w ON w.workflow_id = req.workflow_id;

CREATE OR REPLACE VIEW workflow_summary AS
WITH s AS (
    SELECT workflow_id, any_value(experiment_id) AS experiment_id, any_value(task_id) AS task_id,
           sum(total_cost) AS total_cost, sum(unpriced_requests) AS unpriced_requests,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
           sum(api_requests) AS api_requests, sum(tool_calls) AS tool_calls, sum(tool_failures) AS tool_failures,
           sum(api_errors) AS api_errors, sum(error_count) AS error_count, count(*) AS stages,
           min(started_at) AS started_at, max(ended_at) AS ended_at
    FROM workflow_stage_summary GROUP BY workflow_id
), q AS (
    SELECT COALESCE(workflow_id, parent) AS workflow_id, sum(critical) AS critical_issues,
           sum(major) AS major_issues, sum(minor) AS minor_issues, bool_or(rework) AS rework
    FROM review_reports GROUP BY 1
)
SELECT s.workflow_id, COALESCE(s.experiment_id, w.experiment_id) AS experiment_id,
       COALESCE(s.task_id, w.task_id) AS task_id, w.path AS workflow_path, w.complexity AS complexity_assessment,
       w.spec_completeness, w.status, s.total_cost, s.unpriced_requests, s.input_tokens, s.output_tokens,
       s.cache_read_tokens, s.cache_creation_tokens, s.input_tokens + s.output_tokens AS total_tokens,
       s.cache_read_tokens / NULLIF(s.input_tokens + s.cache_read_tokens + s.cache_creation_tokens, 0)
           AS cache_hit_rate,
       s.api_requests, s.tool_calls, s.tool_failures, s.api_errors, s.error_count, s.stages,
       s.started_at, s.ended_at, epoch(s.ended_at - s.started_at) AS duration_seconds,
       COALESCE(q.critical_issues, 0) AS critical_issues, COALESCE(q.major_issues, 0) AS major_issues,
       COALESCE(q.minor_issues, 0) AS minor_issues, q.rework
FROM s
LEFT JOIN workflows w USING (workflow_id)
LEFT JOIN q USING (workflow_id);
