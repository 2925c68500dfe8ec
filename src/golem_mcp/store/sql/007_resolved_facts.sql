-- Resolved facts (issue 10): each API request, tool call, error and span carries the context the
-- resolver (store/resolve.py, sql/resolve.sql) gave it when it was written, and again whenever
-- context it depends on arrived later. The r_ columns are the resolver's; the columns without the
-- prefix stay what the sources emitted. Store.migrate fills them for an existing store once, after
-- this file (resolve.backfill), in the same transaction.
-- (machine: the machine_id a fact was seen on comes with migration 009; it is a fact's own column,
-- carried as is, not resolved.)
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_workflow_id VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_stage VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_top_stage VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_agent VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_task_id VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_experiment_id VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_workflow_path VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_complexity VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_project VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_git_branch VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_cwd VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_claude_code_version VARCHAR;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_calculated_cost_usd DOUBLE;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_cost_usd DOUBLE;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS r_cost_source VARCHAR;

ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_workflow_id VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_stage VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_top_stage VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_agent VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_task_id VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_experiment_id VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_workflow_path VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_complexity VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_project VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS r_git_branch VARCHAR;

ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_workflow_id VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_stage VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_top_stage VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_agent VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_task_id VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_experiment_id VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_workflow_path VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_complexity VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_project VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS r_git_branch VARCHAR;

ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_workflow_id VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_stage VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_top_stage VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_agent VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_task_id VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_experiment_id VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_workflow_path VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_complexity VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_project VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS r_git_branch VARCHAR;

-- Which sessions ('s:' || session_id), agents ('a:' || agent_id) and resolved workflows
-- ('w:' || workflow_id) have facts: context arriving for a key not in here concerns no stored
-- fact, so the resolver re-resolves nothing (and scans nothing) for it. Only ever grows.
CREATE TABLE IF NOT EXISTS resolve_owners (
    owner VARCHAR PRIMARY KEY
);
