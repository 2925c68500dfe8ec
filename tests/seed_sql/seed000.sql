-- The maintainer's queries from seed 000 (sections 1-5 and the appendix), as they run on golem-mcp's
-- views. Changes from the seed's text are marked "DIALECT:"; everything else is verbatim.

-- name: total_cost_per_workflow
SELECT workflow_id, SUM(cost_usd) as total_cost
FROM otel_api_request_events
GROUP BY workflow_id
ORDER BY total_cost DESC;

-- name: cost_by_stage
SELECT stage, AVG(cost_usd) as avg_cost, COUNT(*) as workflows
FROM otel_api_request_events
GROUP BY stage;

-- name: model_cost_efficiency
SELECT model, stage, SUM(cost_usd) as total_cost, SUM(input_tokens + output_tokens) as total_tokens
FROM otel_api_request_events
GROUP BY model, stage;

-- name: cache_effectiveness
SELECT
  workflow_id,
  SUM(cache_read_tokens) / NULLIF(SUM(input_tokens), 0) * 100 as cache_hit_rate_pct
FROM otel_api_request_events
GROUP BY workflow_id
HAVING SUM(input_tokens) > 10000
ORDER BY cache_hit_rate_pct ASC;

-- name: most_common_errors
SELECT error, COUNT(*) as occurrences
FROM otel_api_error_events
GROUP BY error
ORDER BY occurrences DESC
LIMIT 10;

-- name: failed_tools_by_type
SELECT tool_name, COUNT(*) as failures
FROM otel_tool_result_events
WHERE success = 'false'
GROUP BY tool_name
ORDER BY failures DESC;

-- name: failed_bash_commands
SELECT
  tool_parameters->>'bash_command' as command,
  error,
  COUNT(*) as occurrences
FROM otel_tool_result_events
WHERE tool_name = 'Bash' AND success = 'false'
GROUP BY command, error
HAVING COUNT(*) >= 3
ORDER BY occurrences DESC;

-- name: error_rate_by_stage
SELECT
  stage,
  COUNT(*) FILTER (WHERE success = 'false') * 100.0 / COUNT(*) as error_rate_pct
FROM otel_tool_result_events
WHERE stage IS NOT NULL
GROUP BY stage;

-- name: tool_calls_per_workflow
SELECT
  workflow_id,
  COUNT(*) as tool_calls,
  COUNT(DISTINCT tool_name) as unique_tools,
  AVG(duration_ms) as avg_tool_duration_ms
FROM otel_tool_result_events
GROUP BY workflow_id
ORDER BY tool_calls DESC;

-- name: high_api_request_count
SELECT
  workflow_id,
  stage,
  COUNT(*) as api_requests,
  SUM(cost_usd) as total_cost
FROM otel_api_request_events
GROUP BY workflow_id, stage
HAVING COUNT(*) > 10
ORDER BY api_requests DESC;

-- name: quality_trend
SELECT
  DATE(ts) as date,
  SUM(severity.critical) as critical_issues,
  SUM(severity.major) as major_issues,
  SUM(severity.minor) as minor_issues
FROM claude_metrics
GROUP BY DATE(ts)
ORDER BY date;

-- name: common_issue_categories
-- DIALECT: DuckDB's UNNEST of a list of structs yields one struct column, so unnest it recursively
-- in a subquery (or use the review_issue_rows view) so `category` and `severity` are plain columns.
SELECT
  category,
  COUNT(*) as occurrences,
  AVG(CASE severity WHEN 'critical' THEN 3 WHEN 'major' THEN 2 WHEN 'minor' THEN 1 ELSE 0 END) as avg_severity
FROM (SELECT UNNEST(issues, recursive := true) FROM claude_metrics)
GROUP BY category
ORDER BY occurrences DESC;

-- name: cleanest_reviews
SELECT
  parent as workflow_id,
  SUM(severity.critical + severity.major + severity.minor) as total_issues
FROM claude_metrics
GROUP BY parent
ORDER BY total_issues ASC
LIMIT 10;

-- name: repeat_offender_files
-- DIALECT: DuckDB 1.5 names an UNNEST's column `unnest` whatever the table alias, so the alias names
-- the column too: `UNNEST(issues) AS t(issue)` instead of `UNNEST(issues) as issue`.
SELECT
  issue.file,
  COUNT(*) as issue_count,
  ARRAY_AGG(DISTINCT issue.category) as categories
FROM claude_metrics, UNNEST(issues) AS t(issue)
GROUP BY issue.file
ORDER BY issue_count DESC;

-- name: cost_by_workflow_path
SELECT
  workflow_path,
  COUNT(*) as workflow_count,
  AVG(total_cost) as avg_cost,
  AVG(duration_seconds) as avg_duration_sec
FROM workflow_summary
GROUP BY workflow_path;

-- name: success_rate_by_path
SELECT
  workflow_path,
  COUNT(*) FILTER (WHERE error_count = 0) * 100.0 / COUNT(*) as success_rate_pct
FROM workflow_summary
GROUP BY workflow_path;

-- name: complexity_accuracy
SELECT
  complexity_assessment,
  AVG(total_cost) as avg_cost,
  AVG(duration_seconds) as avg_duration_sec,
  AVG(error_count) as avg_errors
FROM workflow_summary
GROUP BY complexity_assessment;

-- name: hypothesis_compare
-- DIALECT: per-stage rows live in workflow_stage_summary (workflow_summary has one row per
-- workflow), and our stage names are the agents' names ('analyst', not 'analyze').
SELECT
  experiment_id,
  AVG(input_tokens) as avg_input_tokens,
  AVG(output_tokens) as avg_output_tokens,
  COUNT(*) FILTER (WHERE error_count > 0) * 100.0 / COUNT(*) as error_rate_pct
FROM workflow_stage_summary
WHERE stage = 'analyst' AND experiment_id IN ('baseline', 'analyst-file-limit-v2')
GROUP BY experiment_id;

-- name: top10_expensive_workflows
SELECT
  workflow_id,
  SUM(cost_usd) as total_cost,
  SUM(input_tokens + output_tokens) as total_tokens,
  COUNT(*) as api_requests
FROM otel_api_request_events
GROUP BY workflow_id
ORDER BY total_cost DESC
LIMIT 10;

-- name: cost_per_stage_avg
SELECT
  stage,
  COUNT(DISTINCT workflow_id) as workflow_count,
  AVG(cost_usd) as avg_cost_per_request,
  SUM(cost_usd) as total_cost
FROM otel_api_request_events
WHERE stage IS NOT NULL
GROUP BY stage
ORDER BY total_cost DESC;

-- name: daily_cost_trend
SELECT
  DATE(timestamp) as date,
  SUM(cost_usd) as daily_cost,
  COUNT(DISTINCT workflow_id) as workflows_run
FROM otel_api_request_events
GROUP BY DATE(timestamp)
ORDER BY date;

-- name: error_hotspots
SELECT
  stage,
  tool_name,
  COUNT(*) as failure_count,
  ARRAY_AGG(DISTINCT error ORDER BY error) as error_types
FROM otel_tool_result_events
WHERE success = 'false' AND stage IS NOT NULL
GROUP BY stage, tool_name
ORDER BY failure_count DESC;

-- name: workflows_with_most_errors
SELECT
  workflow_id,
  COUNT(*) FILTER (WHERE success = 'false') as error_count,
  COUNT(*) as total_tool_calls,
  COUNT(*) FILTER (WHERE success = 'false') * 100.0 / COUNT(*) as error_rate_pct
FROM otel_tool_result_events
GROUP BY workflow_id
HAVING COUNT(*) FILTER (WHERE success = 'false') > 0
ORDER BY error_count DESC;

-- name: weekly_quality_trend
-- DIALECT: ClickHouse's toStartOfWeek(ts) is date_trunc('week', ts) in DuckDB.
SELECT
  date_trunc('week', ts) as week,
  SUM(severity.critical) as critical,
  SUM(severity.major) as major,
  SUM(severity.minor) as minor,
  COUNT(DISTINCT parent) as workflows_reviewed
FROM claude_metrics
GROUP BY week
ORDER BY week;

-- name: problem_categories_over_time
-- DIALECT: ClickHouse's arrayJoin(issues) is UNNEST(issues) in DuckDB, and issue.severity is qualified.
SELECT
  issue.category,
  COUNT(*) as total_issues,
  COUNT(*) FILTER (WHERE issue.severity = 'critical') as critical_count
FROM (
  SELECT parent, ts, UNNEST(issues) as issue
  FROM claude_metrics
)
GROUP BY issue.category
ORDER BY total_issues DESC;

-- name: compare_experiment_groups
SELECT
  experiment_id,
  COUNT(DISTINCT workflow_id) as workflows,
  AVG(total_cost) as avg_cost,
  AVG(total_tokens) as avg_tokens,
  AVG(duration_seconds) as avg_duration_sec,
  AVG(error_count) as avg_errors
FROM (
  SELECT
    experiment_id,
    workflow_id,
    SUM(cost_usd) as total_cost,
    SUM(input_tokens + output_tokens) as total_tokens,
    MAX(timestamp) - MIN(timestamp) as duration_seconds,
    COUNT(*) FILTER (WHERE success = 'false') as error_count
  FROM otel_api_request_events
  WHERE experiment_id IN ('baseline', 'analyst-file-limit-v2')
  GROUP BY experiment_id, workflow_id
)
GROUP BY experiment_id;
