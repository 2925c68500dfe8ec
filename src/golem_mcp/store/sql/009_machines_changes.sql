-- Many machines (issue 11): every fact knows the machine it was observed on, and every row of an
-- exported table knows when it last changed, so `export`/`push` send only what is new.
--
-- machine_id: the machine that observed the fact (golem_mcp.home.machine()); Store.write stamps the
-- rows written locally that do not carry one. Facts imported from shards or a team store keep theirs.
-- Rows stored before this migration were observed here: the store claims them right after it runs.
CREATE TABLE IF NOT EXISTS machines (
    machine_id VARCHAR PRIMARY KEY,
    label      VARCHAR,     -- the host name (or GOLEM_MACHINE)
    first_seen TIMESTAMP,
    last_seen  TIMESTAMP
);

ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE otel_events ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE metric_points ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE hook_events ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS machine_id VARCHAR;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS machine_id VARCHAR;

-- _change_seq: the change number of the write that last inserted or changed the row (Store.write
-- takes one number per write from change_seq; see store/db.py, "Change tracking"). Rows stored
-- before this migration get 1; the sequence starts above it; a row inserted by any other statement
-- gets a fresh number by default, so nothing is ever missed by an export.
CREATE SEQUENCE IF NOT EXISTS change_seq START 2;
ALTER TABLE api_requests ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE api_requests ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE tool_calls ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE tool_calls ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE api_errors ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE api_errors ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE spans ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE spans ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE otel_events ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE otel_events ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE metric_points ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE metric_points ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE hook_events ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE hook_events ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE sessions ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE agents ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE agents ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE workflows ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE workflows ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE workflow_links ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE workflow_links ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE agent_context ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE agent_context ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE review_reports ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE review_reports ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE review_issues ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE review_issues ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');
ALTER TABLE machines ADD COLUMN IF NOT EXISTS _change_seq BIGINT DEFAULT 1;
ALTER TABLE machines ALTER COLUMN _change_seq SET DEFAULT nextval('change_seq');

-- How far each destination has been sent: every change up to seq of table is there. A destination
-- is an export folder ('export:' + its absolute path) or a team store ('team:' + its catalog).
CREATE TABLE IF NOT EXISTS change_watermarks (
    destination VARCHAR,
    table_name  VARCHAR,
    seq         BIGINT,
    updated_at  TIMESTAMP,
    PRIMARY KEY (destination, table_name)
);

-- Shard files merged into this store (`golem-mcp import`): a shard file's name is unique per
-- machine and change number, so one listed here is not read again. change_seq is the number of the
-- write that merged it: rows last changed by such a write came from elsewhere, and `export` does not
-- send them back out (a laptop importing a repository's shards would otherwise re-export them).
CREATE TABLE IF NOT EXISTS imported_shards (
    shard       VARCHAR PRIMARY KEY,
    machine_id  VARCHAR,
    rows        BIGINT,
    change_seq  BIGINT,
    imported_at TIMESTAMP
);
