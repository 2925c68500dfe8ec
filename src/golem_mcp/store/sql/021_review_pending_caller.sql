-- A review report whose caller was not known when it was written (the reviewer's PreToolUse hook still
-- on its way on a loaded machine) keeps the id of the MCP tool call that reported it, until the write
-- that brings that call's row fills in its agent, session and workflow and clears it
-- (store/resolve.py, WriteResolution.link_reports). NULL for every other report.
ALTER TABLE review_reports ADD COLUMN IF NOT EXISTS pending_tool_use_id VARCHAR;
