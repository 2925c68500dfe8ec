-- The resolver's rules (store/resolve.py runs them; every reader reads the r_ columns they fill).
-- This is the one place the attribution rules are written. Sections are split on "-- name:" lines.

-- name: macros
-- The main thread's stage (settings.main_stage, written by the store at open).
CREATE OR REPLACE MACRO golem_main_stage() AS
    COALESCE((SELECT value FROM settings WHERE key = 'main_stage'), 'main');

-- A fact's agent as a stage: the main thread's stage without an agent, else the agent's type
-- ('subagent' while its type is unknown). Also the stage of a fact no context names.
CREATE OR REPLACE MACRO golem_agent_label(agent_id, agent_type) AS
    CASE WHEN agent_id IS NULL THEN golem_main_stage() ELSE COALESCE(agent_type, 'subagent') END;

-- A review report's workflow: the one it names, else its parent (the workflow it reviewed).
CREATE OR REPLACE MACRO golem_report_workflow(workflow_id, parent) AS COALESCE(workflow_id, parent);

-- A root session that no launcher, hook or agent tagged is a workflow of its own (its subagents
-- share its session id, so their requests are in it too). A tag that arrives later wins: emitted
-- context and agent context come first, and a session's first workflow link holds from its start.
CREATE OR REPLACE MACRO golem_session_workflow(session_id) AS 'session-' || left(session_id, 13);

-- The one rule for a fact's workflow: what the fact carried, its agent's context, its session's
-- link at that moment, else the session's own workflow.
CREATE OR REPLACE MACRO golem_workflow(emitted, agent_ctx, link, session_id) AS
    COALESCE(emitted, agent_ctx, link, golem_session_workflow(session_id));

-- A folder as its user would type it: the home folder as ~ (the project's path, never its
-- transcript folder's mangled name such as -home-dev-work-wf-007).
CREATE OR REPLACE MACRO golem_home_path(path) AS
    regexp_replace(path, '^(/home/[^/]+|/Users/[^/]+|/root|[A-Za-z]:\\Users\\[^\\]+)($|/|\\)', '~\2');

-- A dated model name (claude-sonnet-4-5-20250929) priced as its base name.
CREATE OR REPLACE MACRO golem_price_model(model) AS regexp_replace(model, '-[0-9]{8}$', '');

-- A session's workflow links as [valid_from, valid_to) ranges, of the links in ``links`` (the name of
-- a table or CTE of workflow_links' rows: every link of a session it holds). A fact takes the link
-- its time falls in. (The rows come filtered by session from outside, where DuckDB reads only the
-- sessions' links by their index: a list argument filtered inside read all 500,000 links of a 10M
-- store for each write and took most of its resolution's time.)
CREATE OR REPLACE MACRO golem_link_ranges(links) AS TABLE
SELECT session_id, valid_from,
       COALESCE(lead(valid_from) OVER (PARTITION BY session_id ORDER BY valid_from), TIMESTAMP '9999-12-31') AS valid_to,
       workflow_id, task_id, experiment_id, stage, source
FROM query_table(links);

-- Each agent's parent: as recorded, else the agent that issued the Agent tool call that spawned it.
CREATE OR REPLACE VIEW agent_parents AS
SELECT a.agent_id, a.agent_type, COALESCE(a.parent_agent_id, tc.agent_id) AS parent_agent_id
FROM agents a LEFT JOIN tool_calls tc ON tc.tool_use_id = a.spawn_tool_use_id;

-- The agent tree: each agent's depth below the main thread and the type of its outermost ancestor
-- below the main thread (nested subagents roll up to that stage). ``base`` (a table's name) holds the
-- agents asked about and all their ancestors, shaped as agent_parents. A chain that does
-- not end at a root (an agent whose parent is none or itself) within 16 steps (a cycle, a parent
-- never seen) leaves the agent at depth 1, its own root.
CREATE OR REPLACE MACRO golem_agent_tree(base) AS TABLE
WITH RECURSIVE up(agent_id, cur, depth) AS (
    SELECT agent_id, agent_id, 1 FROM query_table(base)
    UNION ALL
    SELECT up.agent_id, b.parent_agent_id, up.depth + 1
    FROM up JOIN query_table(base) b ON b.agent_id = up.cur
    WHERE b.parent_agent_id IS NOT NULL AND b.parent_agent_id <> b.agent_id AND up.depth < 17
), ends AS (
    SELECT agent_id, arg_max(cur, depth) AS root, max(depth) AS depth FROM up GROUP BY agent_id
), j AS (
    SELECT b.agent_id, b.agent_type, e.depth, e.root, r.agent_type AS root_type,
           r.agent_id IS NOT NULL AND (r.parent_agent_id IS NULL OR r.parent_agent_id = r.agent_id)
           AND e.depth <= 16 AS ok
    FROM query_table(base) b
    JOIN ends e USING (agent_id)
    LEFT JOIN query_table(base) r ON r.agent_id = e.root
)
SELECT agent_id, NULLIF(agent_type, 'custom') AS agent_type, CASE WHEN ok THEN depth ELSE 1 END AS depth,
       CASE WHEN ok THEN root END AS root_agent_id,
       NULLIF(COALESCE(CASE WHEN ok THEN root_type END, agent_type), 'custom') AS root_agent_type
FROM j;

-- name: tree
-- {tree_base}: the table of (agent_id, agent_type, parent_agent_id) the tree is built over
CREATE OR REPLACE TEMP TABLE _rc_tree AS SELECT * FROM golem_agent_tree('{tree_base}');

-- name: facts
-- Context of the facts in {facts} (a fact table's own columns). {ts} is the fact's time column;
-- {link_rows} the workflow links read (of the facts' sessions, or of every session).
-- {stage_default} the stage of a fact no context names. {agent_context}, {workflows}, {sessions}: those
-- tables, or only their rows the facts can join (resolve.py, resolution_sql's narrow). The COALESCE order: what the fact
-- carried (OTel resource attributes), its agent's declared context (agent_context, keyed by agent
-- id, or by session id for the main thread), the session's workflow link at the fact's time, the
-- session's own workflow. Stage: declared, emitted (the fact's own, else the one its session's
-- resource attributes named, kept with the session's link), else the agent's type. The top stage: the
-- stage of the outermost subagent. A request's cost: Claude Code's recorded figure, else its
-- tokens at the price table's rates (cost_source says which; 'unpriced' when neither).
WITH f AS ({facts}),
link_rows AS ({link_rows}),
links AS (
    SELECT * FROM golem_link_ranges(link_rows)
), x AS (
    SELECT f.*, t.depth AS _depth, t.root_agent_type AS _root_type,
           golem_workflow(f.workflow_id, ac.workflow_id, wl.workflow_id, f.session_id) AS r_workflow_id,
           COALESCE(ac.stage, f.stage, wl.stage, {stage_default}) AS r_stage,
           golem_agent_label(f.agent_id, t.agent_type) AS r_agent,
           COALESCE(f.task_id, ac.task_id, wl.task_id) AS r_task_id,
           COALESCE(f.experiment_id, ac.experiment_id, wl.experiment_id) AS _experiment_id
    FROM f
    LEFT JOIN _rc_tree t ON t.agent_id = f.agent_id
    LEFT JOIN {agent_context} ac ON ac.agent_id = COALESCE(f.agent_id, f.session_id)
    LEFT JOIN links wl ON wl.session_id = f.session_id
         AND COALESCE(f.{ts}, TIMESTAMP '2262-01-01') >= wl.valid_from AND COALESCE(f.{ts}, TIMESTAMP '2262-01-01') < wl.valid_to
)
SELECT x.* EXCLUDE (_depth, _root_type, _experiment_id),
       CASE WHEN x.agent_id IS NULL OR x._depth IS NULL OR x._depth <= 1 THEN x.r_stage
            ELSE COALESCE(x._root_type, x.r_stage) END AS r_top_stage,
       COALESCE(x._experiment_id, w.experiment_id) AS r_experiment_id,
       w.path AS r_workflow_path, w.complexity AS r_complexity,
       COALESCE(golem_home_path(s.cwd), s.project) AS r_project, s.git_branch AS r_git_branch
       {request_columns}
FROM x
LEFT JOIN {workflows} w ON w.workflow_id = x.r_workflow_id
LEFT JOIN {sessions} s ON s.session_id = x.session_id
{request_join}

-- name: request_columns
, s.cwd AS r_cwd, s.version AS r_claude_code_version,
(COALESCE(x.input_tokens, 0) * p.input_per_mtok
 + COALESCE(x.output_tokens, 0) * p.output_per_mtok
 + COALESCE(x.cache_read_tokens, 0) * p.cache_read_per_mtok
 + CASE WHEN COALESCE(x.cache_creation_5m_tokens, 0) + COALESCE(x.cache_creation_1h_tokens, 0) = 0
        THEN COALESCE(x.cache_creation_tokens, 0) * p.cache_write_5m_per_mtok
        ELSE COALESCE(x.cache_creation_5m_tokens, 0) * p.cache_write_5m_per_mtok
             + COALESCE(x.cache_creation_1h_tokens, 0) * p.cache_write_1h_per_mtok END
) / 1e6 AS r_calculated_cost_usd,
COALESCE(x.recorded_cost_usd, r_calculated_cost_usd) AS r_cost_usd,
CASE WHEN x.recorded_cost_usd IS NOT NULL THEN 'claude_code'
     WHEN p.model IS NOT NULL THEN 'price_table' ELSE 'unpriced' END AS r_cost_source

-- name: request_join
LEFT JOIN prices p ON p.model = golem_price_model(x.model)
