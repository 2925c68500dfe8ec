-- Parent/child workflows (seed 004's gap): a workflow started by another one names it, from
-- record_workflow(parent_workflow_id=...) or the OTel resource attribute parent_workflow_id; the
-- workflow_tree view rolls the children's costs up.
ALTER TABLE workflows ADD COLUMN IF NOT EXISTS parent_workflow_id VARCHAR;
