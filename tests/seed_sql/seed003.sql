-- Seed 003's SQL (LEO workflow telemetry: "Operational Runbook" and "Configuration"), as it runs on
-- golem-mcp. Changes from the seed's text are marked "DIALECT:"; everything else is verbatim.
-- "read" queries run through query_sql; "write" statements change telemetry_thresholds and run on
-- a store no daemon holds (the daemon's own way is `golem-mcp thresholds`).

-- name: view_recent_traces (read)
SELECT span_type, span_name, AVG(duration_ms) as avg_duration_ms, COUNT(*) as count
FROM workflow_trace_log
WHERE created_at > NOW() - INTERVAL '7 days'
GROUP BY span_type, span_name
ORDER BY avg_duration_ms DESC
LIMIT 20;

-- name: check_last_analysis_run (read)
-- DIALECT: the seed runs this through supabase-js (.from('telemetry_analysis_runs').select('*')
-- .order('finished_at', {ascending: false}).limit(1)); PostgreSQL sorts NULLs first on DESC, DuckDB
-- last, so a run still queued (no finished_at) needs NULLS FIRST to come out on top as it did there.
SELECT * FROM telemetry_analysis_runs ORDER BY finished_at DESC NULLS FIRST LIMIT 1;

-- name: last_analysis_runs (read)
SELECT status, triggered_at, finished_at, reason_code
FROM telemetry_analysis_runs
ORDER BY triggered_at DESC LIMIT 5;

-- name: active_thresholds (read)
SELECT * FROM telemetry_thresholds WHERE is_active = true;

-- name: insert_example_thresholds (write)
INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier)
VALUES
  ('phase', 'LEAD', 30000, 2.0),        -- Alert if LEAD takes >60s (2x baseline)
  ('gate', 'GATE_PRD_REQUIRED', 5000, 3.0), -- Alert if gate takes >15s (3x baseline)
  ('subagent', 'DESIGN', 120000, 1.5);  -- Alert if DESIGN takes >180s (1.5x baseline)

-- name: lower_multiplier (write)
UPDATE telemetry_thresholds
SET multiplier = 1.5
WHERE dimension_type = 'phase' AND dimension_key = 'EXEC';

-- name: add_missing_dimension (write)
INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier)
VALUES ('gate', 'GATE_NEW_GATE_NAME', 10000, 2.0);

-- name: raise_subagent_multiplier (write)
UPDATE telemetry_thresholds
SET multiplier = 3.0
WHERE dimension_type = 'subagent';

-- name: disable_noisy_dimension (write)
UPDATE telemetry_thresholds
SET is_active = false
WHERE dimension_key = 'NOISY_DIMENSION';

-- name: add_new_dimension (write)
INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier, is_active)
VALUES ('gate', 'GATE_NEW_GATE', 5000, 2.5, true);

-- name: adjust_threshold (write)
UPDATE telemetry_thresholds
SET baseline_p50_ms = 60000,  -- New baseline (60s)
    multiplier = 1.8           -- New threshold (60s * 1.8 = 108s)
WHERE dimension_type = 'phase' AND dimension_key = 'PLAN';

-- name: disable_dimension (write)
UPDATE telemetry_thresholds
SET is_active = false
WHERE dimension_type = 'subagent' AND dimension_key = 'DEPRECATED_SUBAGENT';
