-- Seed 004's SQL (ADW tracking), as it runs on golem-mcp's workflow_history and task_logs views.
-- The seed shows one query in full (mv_workflow_summary); the others are its analytics routes
-- ("breakdown-by-phase", "latency-analytics/summary", ...) written as the SQL the seed's services
-- describe, in the PostgreSQL the seed used. Changes are marked "DIALECT:".

-- name: mv_workflow_summary
-- DIALECT: DuckDB has no materialized views (and query_sql runs no CREATE): the view's SELECT.
SELECT
  workflow_template,
  model_used,
  COUNT(*) as total_workflows,
  AVG(duration_seconds) as avg_duration,
  AVG(actual_cost_total) as avg_cost,
  SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END)::REAL / COUNT(*) as success_rate
FROM workflow_history
GROUP BY workflow_template, model_used;

-- name: cost_breakdown_by_phase
SELECT phase_name, SUM(cost_usd) AS total, AVG(cost_usd) AS avg, COUNT(*) AS count
FROM task_logs
GROUP BY phase_name
ORDER BY total DESC;

-- name: cost_breakdown_by_workflow_type
SELECT workflow_template, COUNT(*) AS workflows, SUM(actual_cost_total) AS total, AVG(actual_cost_total) AS avg
FROM workflow_history
GROUP BY workflow_template;

-- name: cost_trend_7d_moving_average
SELECT day, daily_cost,
       AVG(daily_cost) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS moving_average_7d
FROM (SELECT date_trunc('day', start_time) AS day, SUM(actual_cost_total) AS daily_cost
      FROM workflow_history GROUP BY 1) d
ORDER BY day;

-- name: latency_summary
SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50,
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95,
       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY duration_seconds) AS p99,
       AVG(duration_seconds) AS avg
FROM workflow_history
WHERE status = 'completed';

-- name: latency_by_phase
SELECT phase_name,
       PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS p50,
       PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95,
       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY duration_seconds) AS p99,
       COUNT(*) AS count
FROM task_logs
GROUP BY phase_name
ORDER BY p95 DESC;

-- name: latency_bottlenecks
-- phases whose runs exceed the p95 over all phases, most often first
WITH t AS (SELECT PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95 FROM task_logs)
SELECT phase_name, COUNT(*) AS count, MAX(duration_seconds) AS worst_seconds
FROM task_logs, t
WHERE duration_seconds > t.p95
GROUP BY phase_name
ORDER BY count DESC;

-- name: bottleneck_phase_per_workflow
SELECT bottleneck_phase, COUNT(*) AS workflows
FROM workflow_history
GROUP BY bottleneck_phase
ORDER BY workflows DESC;

-- name: error_patterns
SELECT error_category, COUNT(*) AS count, array_agg(DISTINCT phase_name) AS phases
FROM task_logs
WHERE error_category IS NOT NULL
GROUP BY error_category
ORDER BY count DESC;

-- name: failure_rate_by_phase
SELECT phase_name,
       SUM(CASE WHEN phase_status = 'failed' THEN 1 ELSE 0 END)::REAL / COUNT(*) AS failure_rate,
       SUM(retry_count) AS retries
FROM task_logs
GROUP BY phase_name;

-- name: workflow_trends_30d
SELECT date_trunc('day', start_time) AS day, COUNT(*) AS workflows, AVG(actual_cost_total) AS avg_cost,
       AVG(duration_seconds) AS avg_duration,
       SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END)::REAL / COUNT(*) AS success_rate,
       AVG(cache_efficiency_percent) AS cache_efficiency
FROM workflow_history
WHERE start_time > (SELECT MAX(start_time) FROM workflow_history) - INTERVAL '30 days'
GROUP BY 1
ORDER BY 1;

-- name: predict_cost
SELECT workflow_template, model_used, complexity_estimated, AVG(actual_cost_total) AS predicted_cost,
       COUNT(*) AS sample_size
FROM workflow_history
WHERE status = 'completed'
GROUP BY workflow_template, model_used, complexity_estimated;

-- name: time_patterns
SELECT hour_of_day, day_of_week, COUNT(*) AS workflows, AVG(actual_cost_total) AS avg_cost
FROM workflow_history
GROUP BY hour_of_day, day_of_week
ORDER BY hour_of_day, day_of_week;

-- name: history_with_phases
SELECT w.adw_id, w.status, w.actual_cost_total, t.phase_name, t.phase_status, t.duration_seconds, t.cost_usd
FROM workflow_history w
JOIN task_logs t ON t.adw_id = w.adw_id
ORDER BY w.start_time DESC, t.phase_number
LIMIT 50;

-- name: filtered_history
SELECT adw_id, workflow_template, model_used, status, actual_cost_total, duration_seconds
FROM workflow_history
WHERE status IN ('completed', 'failed') AND actual_cost_total BETWEEN 0 AND 100
ORDER BY created_at DESC;
