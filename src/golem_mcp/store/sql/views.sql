-- Views over the resolved facts and their context. Recreated on every open (CREATE OR REPLACE), so they can change
-- without a migration. The seed documents' table names are views here.

-- Agents with their parent (direct, or the agent that issued the spawning Agent tool call) and
-- the outermost ancestor below the main thread, so nested costs can roll up to the outer stage
-- (resolve.sql's agent_parents and golem_agent_tree: the rule the resolver uses).
CREATE OR REPLACE VIEW agent_tree AS
SELECT a.agent_id, a.session_id, t.agent_type, a.agent_type AS raw_agent_type,
       a.description, a.model, a.started_at, a.ended_at, p.parent_agent_id,
       COALESCE(t.root_agent_id, a.agent_id) AS root_agent_id, t.depth, t.root_agent_type
FROM agents a
JOIN agent_parents p USING (agent_id)
JOIN golem_agent_tree('agent_parents') t USING (agent_id);

-- Session -> workflow links as [valid_from, valid_to) ranges (resolve.sql's golem_link_ranges).
CREATE OR REPLACE VIEW workflow_link_ranges AS SELECT * FROM golem_link_ranges(workflow_links);

-- Prices per model as recorded (dated suffixes such as -20250929 map to the base name), computed
-- over the few distinct models rather than per request.
CREATE OR REPLACE VIEW model_prices AS
SELECT m.model AS request_model, p.*
FROM (SELECT DISTINCT model FROM api_requests WHERE model IS NOT NULL) m
JOIN prices p ON p.model = golem_price_model(m.model);

-- The cache hit rate: of the input tokens a request sent, the share read from the prompt cache.
-- The one SQL definition: every view with a cache rate uses it.
CREATE OR REPLACE MACRO golem_cache_hit_rate(cache_read, uncached_input, cache_creation) AS
    cache_read / NULLIF(uncached_input + cache_read + cache_creation, 0);

-- The facts with their resolved context (store/resolve.py fills the r_ columns when a fact is
-- written, and again when context it depends on arrives): no attribution rule is restated here.
CREATE OR REPLACE VIEW requests AS
SELECT request_id, message_id, session_id, agent_id, prompt_id, model, "timestamp",
       COALESCE(input_tokens, 0) AS input_tokens, COALESCE(output_tokens, 0) AS output_tokens,
       COALESCE(cache_read_tokens, 0) AS cache_read_tokens,
       COALESCE(cache_creation_tokens, 0) AS cache_creation_tokens,
       cache_creation_5m_tokens, cache_creation_1h_tokens,
       duration_ms, ttft_ms, query_source, COALESCE(attempt, 1) AS attempt,
       COALESCE(success, true) AS success, stop_reason, source_mask, machine_id,
       r_workflow_id AS workflow_id, r_stage AS stage, r_task_id AS task_id, r_experiment_id AS experiment_id,
       r_agent AS agent, r_top_stage AS top_stage, r_workflow_path AS workflow_path, r_complexity AS complexity,
       r_project AS project, r_git_branch AS git_branch, r_cwd AS cwd, r_claude_code_version AS claude_code_version,
       skill_name, plugin_name, mcp_server_name, mcp_tool_name, effort, client_request_id,
       cost_usd_micros, recorded_cost_usd, r_calculated_cost_usd AS calculated_cost_usd, r_cost_usd AS cost_usd,
       r_cost_source AS cost_source
FROM api_requests;

CREATE OR REPLACE VIEW tools AS
SELECT tool_use_id, session_id, agent_id, request_id, prompt_id, tool_name, "timestamp",
       success, duration_ms, error_type, error, input_size_bytes, result_size_bytes,
       tool_parameters, decision, source_mask, machine_id, mcp_server_name, mcp_tool_name, batch_size,
       r_workflow_id AS workflow_id, r_stage AS stage, r_task_id AS task_id, r_experiment_id AS experiment_id,
       r_agent AS agent, r_top_stage AS top_stage, r_workflow_path AS workflow_path, r_complexity AS complexity,
       r_project AS project, r_git_branch AS git_branch
FROM tool_calls;

CREATE OR REPLACE VIEW errors AS
SELECT r.error_key, r.session_id, r.agent_id, r.request_id, r.prompt_id, r.model, r."timestamp",
       r.status_code, r.error, r.attempt, r.duration_ms, r.source, r.machine_id,
       COALESCE(r.kind, 'api_error') AS kind, r.error_type, COALESCE(r.retries_exhausted, false) AS retries_exhausted,
       r.total_retry_duration_ms,
       r.r_workflow_id AS workflow_id, r.r_stage AS stage, r.r_task_id AS task_id, r.r_experiment_id AS experiment_id,
       r.r_agent AS agent, r.r_top_stage AS top_stage, r.r_workflow_path AS workflow_path, r.r_complexity AS complexity,
       r.r_project AS project, r.r_git_branch AS git_branch
FROM api_errors r
-- a StopFailure hook repeats the API error or refusal OTel already reported for its prompt: counted once
WHERE r.kind IS DISTINCT FROM 'stop_failure' OR NOT EXISTS (
    SELECT 1 FROM api_errors o WHERE o.session_id = r.session_id AND o.prompt_id = r.prompt_id
                                 AND o.kind IS DISTINCT FROM 'stop_failure');

-- The category of a failure (tool call or API error); ``msg`` is the error text in lower case, ``etype``
-- Claude Code's error type. Order matters: the first match wins (seed 004's categories: import,
-- connection, timeout, syntax, type, file, permission, rate limit, and more). The one definition of error
-- categories: failure_events, task_logs, workflow_history and analysis/error_patterns.py use it.
CREATE OR REPLACE MACRO golem_error_category(status_code, msg, etype) AS
CASE
  WHEN status_code = 429 OR regexp_matches(msg, 'rate.?limit|too many requests') THEN 'rate_limit'
  WHEN status_code = 529 OR regexp_matches(msg, 'overload') THEN 'overload'
  WHEN regexp_matches(msg, 'timed? ?out|timeout|deadline') THEN 'timeout'
  WHEN status_code IN (401, 403) OR regexp_matches(msg, 'permission|denied|not allowed|unauthori') THEN 'permission'
  WHEN regexp_matches(msg, 'modulenotfounderror|importerror|no module named|cannot find module|cannot import name|module not found|unresolved import')
       THEN 'import'
  WHEN regexp_matches(msg, 'connection ?(refused|reset|aborted|error)|econnrefused|econnreset|could not resolve host|name or service not known|network is unreachable|broken pipe')
       THEN 'connection'
  -- before file_not_found: Edit's "String to replace not found in file" is a stale read, not a missing file
  WHEN regexp_matches(msg, 'old_string|string to replace|not unique|file has been modified|read it first') THEN 'edit_conflict'
  WHEN etype = 'file_not_found' OR regexp_matches(msg, 'no such file|does not exist|not found|enoent') THEN 'file_not_found'
  WHEN regexp_matches(msg, 'syntax ?error|parse error|unexpected token|indentation') THEN 'syntax'
  WHEN regexp_matches(msg, 'typeerror|type ?error|attributeerror|is not assignable to type|incompatible types?|has no attribute')
       THEN 'type'
  WHEN regexp_matches(msg, 'memoryerror|out of memory|cannot allocate memory|heap out of memory|oom-?kill') THEN 'memory'
  WHEN regexp_matches(msg, 'assertionerror|assertion failed|tests? failed|[0-9]+ failed') THEN 'test_failure'
  WHEN etype = 'shell_exit' OR regexp_matches(msg, 'exit code|exited with') THEN 'shell_exit'
  WHEN status_code >= 500 THEN 'server_error'
  WHEN status_code >= 400 THEN 'bad_request'
  -- Claude Code's own classes (StopFailure's error, api_refusal): refusal, server_error, ... as they are
  WHEN etype = 'overloaded' THEN 'overload'
  WHEN etype = 'invalid_request' THEN 'bad_request'
  WHEN etype IN ('authentication_failed', 'oauth_org_not_allowed') THEN 'permission'
  ELSE COALESCE(NULLIF(etype, ''), 'other')
END;

-- Every failure, tool call or API error, with its category (error analyses, task_logs). Its two parts
-- are views of their own: the analysis cache keeps the failed tool calls grouped per day
-- (analysis/snapshot.py), and an answer over a window reads those days and the API errors' rows.
CREATE OR REPLACE VIEW tool_failure_events AS
SELECT "timestamp", workflow_id, stage, tool_name, NULL::INTEGER AS status_code,
       lower(COALESCE(error, '')) AS msg, error AS raw, error_type AS etype, session_id, agent_id,
       CAST(tool_parameters AS VARCHAR) AS params
FROM tools WHERE success = false;

CREATE OR REPLACE VIEW api_failure_events AS
SELECT "timestamp", workflow_id, stage, NULL::VARCHAR AS tool_name, status_code, lower(COALESCE(error, '')) AS msg,
       error AS raw, error_type AS etype, session_id, agent_id, NULL::VARCHAR AS params
FROM errors;

CREATE OR REPLACE VIEW failure_events AS
WITH f AS (SELECT * FROM tool_failure_events UNION ALL SELECT * FROM api_failure_events)
SELECT *, golem_error_category(status_code, msg, etype) AS category FROM f;

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
       attempt, duration_ms, session_id, agent_id, request_id, source, kind, error_type, retries_exhausted
FROM errors;

CREATE OR REPLACE VIEW claude_metrics AS
SELECT r.v, r.ts, r.task, r.parent, golem_report_workflow(r.workflow_id, r.parent) AS workflow_id,
       {'critical': r.critical, 'major': r.major, 'minor': r.minor} AS severity,
       r.categories, r.rework, r.report_id, r.session_id, r.agent_id,
       COALESCE((SELECT list({'severity': i.severity, 'category': i.category, 'file': i.file,
                              'line': i.line, 'summary': i.summary} ORDER BY i.idx)
                 FROM review_issues i WHERE i.report_id = r.report_id), []) AS issues
FROM review_reports r;

-- One row per review issue, for the seed's UNNEST queries without struct syntax.
CREATE OR REPLACE VIEW review_issue_rows AS
SELECT r.ts, r.task, r.parent, golem_report_workflow(r.workflow_id, r.parent) AS workflow_id, i.severity, i.category,
       i.file, i.line, i.summary, r.report_id
FROM review_issues i JOIN review_reports r USING (report_id);

-- The summaries' parts per (workflow, stage), as views of their own, summed from the rollups
-- (store/rollups.py: the resolved facts per day and dimension, kept current by every write) rather
-- than from every fact. An analysis run puts temporary tables of these names in front of them
-- (analysis/snapshot.py), and the summary views then read those.
CREATE OR REPLACE VIEW request_stage_groups AS
SELECT workflow_id, stage, min(experiment_id) AS experiment_id, min(task_id) AS task_id,
       CAST(sum(requests) AS BIGINT) AS api_requests,
       CASE WHEN sum(cost_n) > 0 THEN sum(cost_usd) END AS total_cost,
       CAST(COALESCE(sum(requests) FILTER (WHERE cost_source = 'unpriced'), 0) AS BIGINT) AS unpriced_requests,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
       sum(retries) AS retries, min(first_at) AS started_at, max(last_at) AS ended_at,
       CASE WHEN sum(timed_requests) > 0 THEN sum(duration_ms) END AS api_duration_ms
FROM rollup_requests WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage;

CREATE OR REPLACE VIEW tool_stage_groups AS
SELECT workflow_id, stage, CAST(sum(calls) AS BIGINT) AS tool_calls, CAST(sum(failures) AS BIGINT) AS tool_failures,
       min(first_at) AS started_at, max(last_at) AS ended_at
FROM rollup_tools WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage;

CREATE OR REPLACE VIEW error_stage_groups AS
SELECT workflow_id, stage, CAST(sum(errors) AS BIGINT) AS api_errors FROM rollup_errors
WHERE workflow_id IS NOT NULL GROUP BY ALL;

-- Each subagent's first and last request and the duration of its last timed one (bottlenecks'
-- agent dimension); from the fact table alone, no context needed.
CREATE OR REPLACE VIEW agent_request_spans AS
SELECT agent_id, min("timestamp") AS first_at, max("timestamp") AS last_at,
       arg_max(duration_ms, "timestamp") AS last_duration_ms,
       min(r_agent) AS agent_label  -- the resolver's label of the agent (its type), one per agent
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
       req.cache_creation_tokens, req.input_tokens + req.output_tokens AS io_tokens,
       -- one meaning per name everywhere (tools, views, CLI): total_tokens = all four kinds
       req.input_tokens + req.output_tokens + req.cache_read_tokens + req.cache_creation_tokens AS total_tokens,
       golem_cache_hit_rate(req.cache_read_tokens, req.input_tokens, req.cache_creation_tokens) AS cache_hit_rate,
       req.api_requests, COALESCE(tl.tool_calls, 0) AS tool_calls, COALESCE(tl.tool_failures, 0) AS tool_failures,
       COALESCE(er.api_errors, 0) + req.retries AS api_errors, req.retries,
       COALESCE(er.api_errors, 0) + req.retries + COALESCE(tl.tool_failures, 0) AS error_count,
       least(req.started_at, tl.started_at) AS started_at, greatest(req.ended_at, tl.ended_at) AS ended_at,
       epoch(greatest(req.ended_at, tl.ended_at) - least(req.started_at, tl.started_at)) AS duration_seconds
FROM req
LEFT JOIN tl USING (workflow_id, stage)
LEFT JOIN er USING (workflow_id, stage)
LEFT JOIN workflows w ON w.workflow_id = req.workflow_id;

-- The workflows that are root sessions of their own, with a label a person recognises: the project's
-- path, the day and a short session id (never prompt text).
CREATE OR REPLACE VIEW session_workflows AS
SELECT golem_session_workflow(session_id) AS workflow_id, session_id,
       concat_ws(' · ', COALESCE(golem_home_path(cwd), project), strftime(first_seen, '%Y-%m-%d'),
                 left(session_id, 8)) AS label
FROM sessions;

-- A workflow's recorded status (record_workflow, OTel) in seed 004's words: completed, failed, running,
-- pending, or as recorded; NULL when none was recorded.
CREATE OR REPLACE MACRO golem_workflow_status(status) AS
    CASE WHEN lower(status) IN ('done', 'complete', 'completed', 'succeeded', 'success', 'ok') THEN 'completed'
         WHEN lower(status) IN ('failed', 'failure', 'error', 'aborted') THEN 'failed'
         WHEN lower(status) IN ('started', 'running', 'in_progress', 'active') THEN 'running'
         WHEN lower(status) IN ('pending', 'queued') THEN 'pending'
         ELSE status END;

-- What a person calls a workflow, where it has a name: a root session's label, else the name of a
-- Claude Code Workflow run's script (ingestion/workflow_runs.py). ``label`` adds the id to a script's
-- name (a script runs many times). The one definition: workflow_summary and the reports read it.
CREATE OR REPLACE VIEW workflow_labels AS
SELECT COALESCE(sw.workflow_id, w.workflow_id) AS workflow_id,
       COALESCE(sw.label, (w.attributes->>'name')) AS name,
       COALESCE(sw.label, (w.attributes->>'name') || ' · ' || w.workflow_id) AS label
FROM session_workflows sw
FULL JOIN workflows w ON w.workflow_id = sw.workflow_id
WHERE sw.label IS NOT NULL OR (w.attributes->>'name') IS NOT NULL;

CREATE OR REPLACE VIEW workflow_summary AS
WITH s AS (
    SELECT workflow_id, min(experiment_id) AS experiment_id, min(task_id) AS task_id,
           sum(total_cost) AS total_cost, sum(unpriced_requests) AS unpriced_requests,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
           sum(api_requests) AS api_requests, sum(tool_calls) AS tool_calls, sum(tool_failures) AS tool_failures,
           sum(api_errors) AS api_errors, sum(error_count) AS error_count, count(*) AS stages,
           min(started_at) AS started_at, max(ended_at) AS ended_at
    FROM workflow_stage_summary GROUP BY workflow_id
), q AS (
    SELECT golem_report_workflow(workflow_id, parent) AS workflow_id, sum(critical) AS critical_issues,
           sum(major) AS major_issues, sum(minor) AS minor_issues, bool_or(rework) AS rework
    FROM review_reports GROUP BY 1
)
SELECT s.workflow_id, COALESCE(s.experiment_id, w.experiment_id) AS experiment_id,
       COALESCE(s.task_id, w.task_id) AS task_id, w.path AS workflow_path, w.complexity AS complexity_assessment,
       w.spec_completeness, w.status, s.total_cost, s.unpriced_requests, s.input_tokens, s.output_tokens,
       s.cache_read_tokens, s.cache_creation_tokens, s.input_tokens + s.output_tokens AS io_tokens,
       s.input_tokens + s.output_tokens + s.cache_read_tokens + s.cache_creation_tokens AS total_tokens,
       golem_cache_hit_rate(s.cache_read_tokens, s.input_tokens, s.cache_creation_tokens) AS cache_hit_rate,
       s.api_requests, s.tool_calls, s.tool_failures, s.api_errors, s.error_count, s.stages,
       s.started_at, s.ended_at, epoch(s.ended_at - s.started_at) AS duration_seconds,
       COALESCE(q.critical_issues, 0) AS critical_issues, COALESCE(q.major_issues, 0) AS major_issues,
       COALESCE(q.minor_issues, 0) AS minor_issues, q.rework,
       COALESCE(l.label, s.workflow_id) AS label
FROM s
LEFT JOIN workflows w USING (workflow_id)
LEFT JOIN q USING (workflow_id)
LEFT JOIN workflow_labels l USING (workflow_id);

-- Whether a workflow went well: the one definition the analyses use (sequences learned from successful
-- workflows, typical of good or bad runs). Successful: not recorded as failed, no critical or major review
-- finding, no rework asked, fewer than 3 failed tool calls. Still running or pending: NULL (not judged yet).
CREATE OR REPLACE VIEW workflow_outcomes AS
SELECT workflow_id, label, started_at, total_cost, duration_seconds,
       CASE WHEN golem_workflow_status(status) IN ('running', 'pending') THEN NULL
            ELSE golem_workflow_status(status) IS DISTINCT FROM 'failed' AND critical_issues + major_issues = 0
                 AND NOT COALESCE(rework, false) AND COALESCE(tool_failures, 0) < 3 END AS successful
FROM workflow_summary;

-- Parent/child workflows (a workflow started by another: record_workflow's parent_workflow_id or the
-- OTel attribute parent_workflow_id). Each workflow with its root, depth and ancestors (cycles cut),
-- and its cost and tokens with those of every descendant rolled up.
CREATE OR REPLACE VIEW workflow_tree AS
WITH RECURSIVE t(workflow_id, root_workflow_id, depth, ancestors) AS (
    SELECT workflow_id, workflow_id, 0, []::VARCHAR[] FROM workflows
    WHERE parent_workflow_id IS NULL OR parent_workflow_id NOT IN (SELECT workflow_id FROM workflows)
    UNION ALL
    SELECT w.workflow_id, t.root_workflow_id, t.depth + 1, list_append(t.ancestors, t.workflow_id)
    FROM workflows w JOIN t ON w.parent_workflow_id = t.workflow_id
    WHERE t.depth < 32 AND NOT list_contains(t.ancestors, w.workflow_id)
)
SELECT t.workflow_id, w.parent_workflow_id, t.root_workflow_id, t.depth, t.ancestors
FROM t JOIN workflows w USING (workflow_id);

CREATE OR REPLACE VIEW workflow_rollup AS
WITH own AS (SELECT workflow_id, total_cost, input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens
                    AS total_tokens FROM workflow_summary),
     pairs AS (SELECT unnest(list_append(ancestors, workflow_id)) AS ancestor, workflow_id FROM workflow_tree)
SELECT p.ancestor AS workflow_id, count(*) - 1 AS descendants,
       sum(own.total_cost) FILTER (WHERE p.workflow_id = p.ancestor) AS own_cost,
       sum(own.total_cost) AS total_cost_with_children,
       sum(own.total_tokens) AS total_tokens_with_children
FROM pairs p LEFT JOIN own ON own.workflow_id = p.workflow_id
GROUP BY p.ancestor;

-- ---- seeds 003 (LEO workflow telemetry) and 004 (ADW tracking) ---------------------------------
-- Their table and column names over golem-mcp's facts, so their runbook queries run (README: "The
-- seeds' SQL"). telemetry_thresholds is a real table (migration 005): the seed writes to it.

-- Seed 003's trace spans: Claude Code's own spans and those of the tracing API / any OTel SDK that
-- follows the span convention (golem.kind = handoff | phase | gate | subagent). Times in epoch ms;
-- duration_ms is execution only, queue_wait_ms the wait before it started (NULL: not measured).
CREATE OR REPLACE VIEW workflow_trace_log AS
SELECT span_id AS id, trace_id, span_id, parent_span_id, span_type, name AS span_name,
       epoch_ms(start_time) AS start_time_ms, epoch_ms(end_time) AS end_time_ms, duration_ms, queue_wait_ms,
       COALESCE(attempt, 1) AS attempt, COALESCE(attempt, 1) - 1 AS retry_count,
       CASE WHEN status_code = 2 THEN 'error' ELSE 'ok' END AS status, status_message,
       r_workflow_id AS workflow_id, r_stage AS stage, r_task_id AS task_id, r_experiment_id AS experiment_id,
       session_id, agent_id, request_id, tool_use_id, tool_name, attributes, resource,
       start_time, end_time, COALESCE(end_time, start_time) AS created_at
FROM spans;

-- Seed 003's analysis runs: status in the seed's capitals, output_ref as the seed's JSON.
CREATE OR REPLACE VIEW telemetry_analysis_runs AS
SELECT run_id AS id, upper(status) AS status, "trigger" AS reason_code, queued_at AS triggered_at,
       started_at, finished_at, window_days, error_detail,
       json_object('traces_scanned', scanned->'duration_samples', 'requests_scanned', scanned->'requests',
                   'dimensions_evaluated', scanned->'dimensions_evaluated', 'bottlenecks', summary->'bottlenecks',
                   'items_created', produced->'items_created',
                   'items_skipped_rate_limit', produced->'items_skipped_rate_limit',
                   'items_skipped_dedupe', produced->'items_skipped_dedupe',
                   'errors', CASE WHEN error_detail IS NULL THEN json('[]') ELSE to_json([error_detail]) END)
           AS output_ref,
       scanned, produced, summary, epoch_ms(finished_at - started_at) AS duration_ms,
       COALESCE(finished_at, started_at, queued_at) AS created_at
FROM analysis_runs;

-- Seed 003's improvement items.
CREATE OR REPLACE VIEW continuous_improvements AS
SELECT item_id AS id, kind AS item_type, dimension AS dimension_type, "key" AS dimension_key, title,
       recommendation AS description, severity AS severity_ratio, status, evidence,
       first_run_id AS analysis_run_id, last_run_id, times_seen, 'telemetry_auto' AS source, created_at, updated_at
FROM improvement_items;

-- A workflow's stages as seed 004's phases, one row per workflow stage, from Claude Code's facts
-- and from phase spans of the tracing convention (golem.kind = phase; the phase name is golem.stage,
-- else the span name); a phase seen both ways is one row, timed by its span. task_logs adds the
-- failures and the numbering; analyses that need a stage's interval read this (no window functions
-- over all of history in the way of their filters).
CREATE OR REPLACE VIEW stage_phases AS
WITH ph AS (
    SELECT workflow_id, COALESCE(stage, span_name) AS stage, min(start_time) AS started_at,
           max(end_time) AS ended_at, arg_max(status, start_time) AS last_status,
           arg_max(status_message, start_time) FILTER (WHERE status = 'error') AS error_message,
           max(attempt) - 1 AS retries, count(*) FILTER (WHERE status = 'error') AS failed_attempts,
           arg_max(experiment_id, start_time) AS experiment_id, arg_max(task_id, start_time) AS task_id
    FROM workflow_trace_log WHERE span_type = 'phase' AND workflow_id IS NOT NULL GROUP BY ALL
)
SELECT COALESCE(st.workflow_id, ph.workflow_id) AS workflow_id, COALESCE(st.stage, ph.stage) AS stage,
       COALESCE(st.experiment_id, ph.experiment_id) AS experiment_id, COALESCE(st.task_id, ph.task_id) AS task_id,
       st.workflow_path, COALESCE(ph.started_at, st.started_at) AS started_at,
       COALESCE(ph.ended_at, st.ended_at) AS completed_at,
       ph.last_status, ph.error_message AS phase_error_message,
       CASE WHEN ph.last_status = 'error' OR ph.failed_attempts > 0 THEN 'span' END AS span_error,
       st.total_tokens, st.io_tokens, st.total_cost, st.input_tokens, st.output_tokens,
       st.cache_read_tokens, st.cache_creation_tokens, st.cache_hit_rate, st.api_requests, st.tool_calls,
       COALESCE(st.error_count, 0) + COALESCE(ph.failed_attempts, 0) AS error_count,
       COALESCE(st.retries, 0) + COALESCE(ph.retries, 0) AS retry_count
FROM workflow_stage_summary st
FULL OUTER JOIN ph ON ph.workflow_id = st.workflow_id AND ph.stage = st.stage;

-- Seed 004's task_logs: one row per workflow stage (a stage is a phase: stage_phases), with its last
-- failure's category and message, numbered.
CREATE OR REPLACE VIEW task_logs AS
WITH fe AS (
    SELECT workflow_id, stage, arg_max(category, "timestamp") AS category, arg_max(raw, "timestamp") AS raw
    FROM failure_events WHERE workflow_id IS NOT NULL GROUP BY ALL
), j AS (
    SELECT sp.* EXCLUDE (phase_error_message), COALESCE(sp.phase_error_message, fe.raw) AS error_message,
           fe.category AS error_category
    FROM stage_phases sp
    LEFT JOIN fe ON fe.workflow_id = sp.workflow_id AND fe.stage = sp.stage
), d AS (
    SELECT j.*, epoch(completed_at - started_at) AS duration_seconds FROM j
)
SELECT row_number() OVER (ORDER BY started_at, workflow_id, stage) AS id,
       workflow_id AS adw_id, NULL::INTEGER AS issue_number, workflow_path AS workflow_template,
       stage AS phase_name, row_number() OVER (PARTITION BY workflow_id ORDER BY started_at, stage) AS phase_number,
       CASE WHEN last_status = 'error' THEN 'failed' WHEN completed_at IS NULL THEN 'started' ELSE 'completed' END
           AS phase_status,
       CASE WHEN span_error IS NOT NULL AND last_status <> 'error' THEN 'recovered after a failed attempt' END
           AS log_message,
       error_message, started_at, completed_at, duration_seconds, total_tokens AS tokens_used, io_tokens, total_cost AS cost_usd,
       input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
       cache_hit_rate * 100 AS cache_efficiency_percent, api_requests, tool_calls, error_count,
       CASE WHEN error_count > 0 OR error_message IS NOT NULL THEN COALESCE(error_category, 'other') END AS error_category,
       retry_count,
       duration_seconds = max(duration_seconds) OVER (PARTITION BY workflow_id) AS is_bottleneck,
       hour(started_at) AS hour_of_day, isodow(started_at) - 1 AS day_of_week,
       workflow_id, stage, experiment_id, task_id, completed_at AS captured_at, started_at AS created_at
FROM d;

-- Seed 004's workflow_history: one row per workflow with its phases rolled up (costs, tokens, cache
-- efficiency, phase durations, idle time between phases, the slowest phase, the last error, retries).
-- Seed columns golem-mcp has no source for (GitHub issue and PR, estimates, scores) are NULL.
CREATE OR REPLACE VIEW workflow_history AS
WITH t AS (
    SELECT *, max(completed_at) OVER (PARTITION BY adw_id ORDER BY started_at, phase_name
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM task_logs
), p AS (
    -- the workflow's totals from its phases (workflow_summary sums the same stages; read once here)
    SELECT adw_id, count(*) AS phase_count, arg_max(phase_name, started_at) AS current_phase,
           arg_max(phase_name, duration_seconds) AS bottleneck_phase,
           min(started_at) AS start_time, max(completed_at) AS end_time,
           sum(greatest(0, epoch(started_at - prev_end))) AS idle_time_seconds,
           json_group_object(phase_name, round(cost_usd, 6)) AS cost_breakdown,
           json_group_object(phase_name, duration_seconds) AS phase_durations,
           CASE WHEN sum(error_count) > 0 THEN json_group_object(phase_name, error_count) END AS error_phase_distribution,
           arg_max(error_message, completed_at) FILTER (WHERE error_message IS NOT NULL) AS error_message,
           arg_max(error_category, completed_at) FILTER (WHERE error_category IS NOT NULL) AS error_category,
           sum(retry_count) AS retry_count, bool_or(phase_status = 'failed') AS any_failed,
           sum(cost_usd) AS total_cost, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
           sum(api_requests) AS api_requests, sum(tool_calls) AS tool_calls, sum(error_count) AS error_count,
           any_value(experiment_id) AS experiment_id, any_value(task_id) AS task_id,
           any_value(workflow_template) AS workflow_template
    FROM t GROUP BY adw_id
), m AS (
    SELECT workflow_id, arg_max(model, n) AS model_used
    FROM (SELECT workflow_id, model, count(*) AS n FROM requests WHERE workflow_id IS NOT NULL GROUP BY ALL)
    GROUP BY workflow_id
), q AS (
    SELECT golem_report_workflow(workflow_id, parent) AS workflow_id, sum(critical) AS critical_issues, sum(major) AS major_issues,
           sum(minor) AS minor_issues, bool_or(rework) AS rework
    FROM review_reports GROUP BY 1
)
SELECT p.adw_id, p.adw_id AS workflow_id, NULL::INTEGER AS issue_number, NULL::VARCHAR AS github_url,
       COALESCE(p.workflow_template, w.path) AS workflow_template, m.model_used,
       COALESCE(golem_workflow_status(w.status), CASE WHEN p.any_failed THEN 'failed' ELSE 'completed' END) AS status,
       p.start_time, p.end_time, epoch(p.end_time - p.start_time) AS duration_seconds, p.current_phase, p.phase_count,
       NULL::DOUBLE AS estimated_cost_total, p.total_cost AS actual_cost_total,
       p.total_cost / NULLIF(p.input_tokens + p.output_tokens + p.cache_read_tokens + p.cache_creation_tokens, 0)
           AS cost_per_token, p.cost_breakdown,
       NULL::DOUBLE AS estimated_cost_per_step, p.total_cost / NULLIF(p.phase_count, 0) AS actual_cost_per_step,
       p.input_tokens, p.output_tokens, p.cache_read_tokens AS cached_tokens, p.cache_read_tokens AS cache_hit_tokens,
       p.input_tokens + p.cache_creation_tokens AS cache_miss_tokens, p.cache_creation_tokens,
       p.input_tokens + p.output_tokens AS io_tokens,
       p.input_tokens + p.output_tokens + p.cache_read_tokens + p.cache_creation_tokens AS total_tokens,
       golem_cache_hit_rate(p.cache_read_tokens, p.input_tokens, p.cache_creation_tokens) * 100
           AS cache_efficiency_percent,
       json_object('input', p.input_tokens, 'output', p.output_tokens, 'cache_read', p.cache_read_tokens,
                   'cache_creation', p.cache_creation_tokens) AS token_breakdown,
       p.phase_durations, p.idle_time_seconds, p.bottleneck_phase,
       p.error_message, p.error_category, p.retry_count, p.error_phase_distribution,
       w.complexity AS complexity_estimated, p.api_requests, p.tool_calls, p.error_count,
       COALESCE(q.critical_issues, 0) AS critical_issues, COALESCE(q.major_issues, 0) AS major_issues,
       COALESCE(q.minor_issues, 0) AS minor_issues, q.rework,
       hour(p.start_time) AS hour_of_day, isodow(p.start_time) - 1 AS day_of_week,
       COALESCE(p.experiment_id, w.experiment_id) AS experiment_id, COALESCE(p.task_id, w.task_id) AS task_id,
       p.start_time AS created_at, COALESCE(w.updated_at, p.end_time) AS updated_at
FROM p
LEFT JOIN workflows w ON w.workflow_id = p.adw_id
LEFT JOIN m ON m.workflow_id = p.adw_id
LEFT JOIN q ON q.workflow_id = p.adw_id;

-- Context compactions, each once, with the tokens they saved: Claude Code's OTel event (tokens before
-- and after), else its PostCompact hook (or PreCompact when that is all that came), which has no counts.
-- Workflow, stage, task and experiment are the resolver's (migration 012), as for every other fact.
CREATE OR REPLACE VIEW compactions AS
SELECT e."timestamp", e.session_id, e.agent_id, e.prompt_id, e."trigger", e.success, e.duration_ms,
       e.pre_tokens, e.post_tokens, e.pre_tokens - e.post_tokens AS tokens_saved, e.error, e.source,
       e.r_workflow_id AS workflow_id, e.r_stage AS stage, e.r_task_id AS task_id, e.r_experiment_id AS experiment_id
FROM compaction_events e
WHERE e.source = 'otel'
   OR (NOT EXISTS (SELECT 1 FROM compaction_events o WHERE o.source = 'otel' AND o.session_id = e.session_id
                     AND o.prompt_id IS NOT DISTINCT FROM e.prompt_id
                     AND o.agent_id IS NOT DISTINCT FROM e.agent_id)
       AND (e.phase = 'post' OR NOT EXISTS (
             SELECT 1 FROM compaction_events p WHERE p.source = 'hook' AND p.phase = 'post'
               AND p.session_id = e.session_id AND p.prompt_id IS NOT DISTINCT FROM e.prompt_id
               AND p.agent_id IS NOT DISTINCT FROM e.agent_id)));
