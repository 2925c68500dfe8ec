-- Context compactions are resolved facts like requests and tool calls (store/resolve.py): the
-- compactions view read workflow, stage, task and experiment through its own copy of the rules, so
-- a compaction whose session's context arrived later could end under another workflow than the
-- requests around it. Store.migrate resolves the rows of an existing store in the same transaction.
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_workflow_id VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_stage VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_top_stage VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_agent VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_task_id VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_experiment_id VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_workflow_path VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_complexity VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_project VARCHAR;
ALTER TABLE compaction_events ADD COLUMN IF NOT EXISTS r_git_branch VARCHAR;
