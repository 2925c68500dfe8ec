-- The stage a session's OTel resource attributes name (OTEL_RESOURCE_ATTRIBUTES=...,stage=analyst: a
-- launcher's process per stage), kept with the session's workflow link as its workflow, task and
-- experiment are: the resource is the whole process's, so a fact no OTel record brought (a request in
-- the transcript alone, its record lost with Claude Code's last export at exit) takes it too
-- (resolve.sql, the stage rule). NULL for links recorded through MCP and for stores before this.
ALTER TABLE workflow_links ADD COLUMN IF NOT EXISTS stage VARCHAR;
