-- A review report keeps the id of the MCP tool call that reported it. The reviewer's agent is known
-- from that call's PreToolUse hook (or its subagent transcript); when neither has reached the store
-- by the time the report is written (a hook still on its way on a loaded machine), the report is
-- stored without its agent, and the write that brings the call's row fills it in
-- (store/resolve.py, WriteResolution.link_reports).
ALTER TABLE review_reports ADD COLUMN IF NOT EXISTS tool_use_id VARCHAR;
