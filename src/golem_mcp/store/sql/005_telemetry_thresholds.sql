-- Seed 003's telemetry_thresholds as a real table with the seed's own columns (issue 14), so the
-- seed's `INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms,
-- multiplier)` and its UPDATEs run unchanged. It replaces 002's `thresholds` (one definition): the
-- bottleneck analysis reads its configured baselines from here, `golem-mcp thresholds` and the
-- set_threshold MCP tool write here.
CREATE TABLE IF NOT EXISTS telemetry_thresholds (
    dimension_type  VARCHAR NOT NULL,  -- phase, gate, subagent, handoff, stage, agent, tool, model, ... (bottlenecks.SAMPLES)
    dimension_key   VARCHAR NOT NULL,  -- e.g. PLAN, GATE_PRD_REQUIRED, implementer
    baseline_p50_ms DOUBLE NOT NULL,   -- expected median duration
    multiplier      DOUBLE DEFAULT 2.0,  -- flag when the observed p50 > baseline x multiplier
    is_active       BOOLEAN DEFAULT true,
    created_at      TIMESTAMP DEFAULT current_timestamp,
    updated_at      TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (dimension_type, dimension_key)
);

INSERT INTO telemetry_thresholds (dimension_type, dimension_key, baseline_p50_ms, multiplier, is_active,
                                  created_at, updated_at)
SELECT dimension, key, baseline_p50_ms, COALESCE(multiplier, 2.0), COALESCE(active, true), updated_at, updated_at
FROM thresholds WHERE dimension IS NOT NULL AND key IS NOT NULL AND baseline_p50_ms IS NOT NULL
ON CONFLICT DO NOTHING;

DROP TABLE IF EXISTS thresholds;
