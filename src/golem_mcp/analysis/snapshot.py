"""The analysis run's snapshot: what every analysis reads, computed once per run in temporary tables.

Facts carry their resolved context (``store/resolve.py``), so a run resolves nothing; it saves
re-aggregating all history. The analyses need rows only for the last ``max(days, 7)`` days; for
the rest of history they need aggregates (the workflow and stage summaries, each agent's first and
last request per stage, the usual model per stage). So a run:

1. takes the facts aggregated per day by their resolved workflow, stage, agent, model, task and
   experiment from a cache kept in the database (``analysis_request_days``/``analysis_tool_days``),
   refreshed first for the days a write stamped since (``fact_changes``: new and merged rows, and
   rows whose resolved context changed);
   The cache has a second level (``_GROUPS``): the day groups summed per workflow stage, per agent
   in a stage and per agent, summed again only for the keys the refreshed days held or hold;
2. puts temporary tables and views named like the views in front of them on the run's own
   connection (DuckDB resolves unqualified names in the temporary catalog first, view bodies
   included): ``request_stage_groups``, ``tool_stage_groups``, ``error_stage_groups``,
   ``agent_request_spans`` and ``stage_agent_spans`` from the groups, then ``workflow_stage_summary``
   / ``workflow_summary`` from the views' own bodies over those, and ``requests`` / ``tools`` /
   ``errors`` as views of the window's rows only.
   ``stage_models`` (the usual model per workflow stage over the model-advice window) has no view:
   ``model_advice`` uses it when the reader says it covers the same window, through
   ``stage_model_runs`` (each workflow stage's summary with that model: one read of the cache's
   stage summaries, which keep what the usual model is read from).

Every analysis the run calls reads ``requests``/``tools``/``errors`` only inside its window, so
the answers equal those of the views (``tests/test_analysis_snapshot.py`` checks it). Temporary
tables live in memory and go with the connection; nothing but the cache is written to the
database file, and the whole run reads in one transaction, so writers are not held up and every
read sees the same store.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from ..store import rollups
from ..store.db import FACT_DAY_SQL as _DAY
from ..store.db import NO_DAY as _NO_DAY
from ..store.db import Store, column_arrays, dict_rows, ident, literal
from .common import as_naive

MODEL_ADVICE_DAYS = 90  # predict.model_advice's default window, the one the run uses

# Step 1: requests grouped by their resolved context, per group what the summaries read.
# (r_agent: the resolver's label of the agent, one per agent_id, so it adds no groups)
_REQ_AGG = """r_workflow_id AS workflow_id, r_stage AS stage, agent_id, r_agent AS agent_label, model,
       r_experiment_id AS experiment_id,
       r_task_id AS task_id, count(*) AS n, sum(r_cost_usd) AS cost,
       count(*) FILTER (WHERE r_cost_source = 'unpriced') AS unpriced,
       CAST(sum(COALESCE(input_tokens, 0)) AS BIGINT) AS input_tokens, CAST(sum(COALESCE(output_tokens, 0)) AS BIGINT) AS output_tokens,
       CAST(sum(COALESCE(cache_read_tokens, 0)) AS BIGINT) AS cache_read_tokens,
       CAST(sum(COALESCE(cache_creation_tokens, 0)) AS BIGINT) AS cache_creation_tokens,
       CAST(sum(COALESCE(attempt, 1) - 1) AS BIGINT) AS retries, min("timestamp") AS first_at, max("timestamp") AS last_at,
       sum(duration_ms) AS duration_ms,
       -- the agent's last timed request (arg_max skips NULL durations and times)
       arg_max(duration_ms, "timestamp") AS last_dur,
       max("timestamp") FILTER (WHERE duration_ms IS NOT NULL) AS last_dur_at"""
_REQ_WINDOW = 'count(*) FILTER (WHERE "timestamp" >= $m_start AND "timestamp" < $end) AS n_window'
_REQ_PRE = ("CREATE OR REPLACE TEMP TABLE _snap_req_pre AS SELECT " + _REQ_AGG + ", " + _REQ_WINDOW
            + " FROM {db}.main.api_requests WHERE {where} GROUP BY ALL")

_TOOL_AGG = """r_workflow_id AS workflow_id, r_stage AS stage, count(*) AS n,
       count(*) FILTER (WHERE success = false) AS fails, min("timestamp") AS first_at, max("timestamp") AS last_at"""
_TOOL_PRE = "CREATE OR REPLACE TEMP TABLE _snap_tool_pre AS SELECT " + _TOOL_AGG + " FROM {db}.main.tool_calls GROUP BY ALL"

# The aggregate cache: step 1's groups per day, kept in the database between runs. A write stamps
# the days of the rows it inserted, merged or re-resolved (Store.write), so a day's groups are
# re-aggregated whenever a row of it changed. fact -> (cache table, what a day's group holds)
CACHE_VERSION = "resolved-days-6"  # change with _REQ_AGG / _TOOL_AGG / _GROUPS / _STAGE_DAYS: the cache is rebuilt
_ERR_AGG = "r_workflow_id AS workflow_id, r_stage AS stage, count(*) AS n"
_CACHE = {"api_requests": ("analysis_request_days", _REQ_AGG), "tool_calls": ("analysis_tool_days", _TOOL_AGG),
          "api_errors": ("analysis_error_days", _ERR_AGG)}
_CACHE_TABLES = tuple(table for table, _ in _CACHE.values())
# The cache's second level: the day groups summed over all days per workflow stage, per agent in a
# stage and per agent, so a run reads one row per stage (agent) instead of grouping every cached day
# again. After the days are refreshed, the keys those days held before and hold now are summed again
# from the day groups (a few days' keys: a run's cost no longer grows with the history).
# Sums are stored as BIGINT: DuckDB 1.5 reads a stored HUGEINT (what sum() of a BIGINT gives) some
# fifty times slower than a BIGINT, 0.1 CPU-s per column per 200k rows.
# table -> (fact whose day groups it sums, key columns, what a key's row holds)
_GROUPS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "analysis_stage_groups": ("api_requests", ("workflow_id", "stage"), f"""
        min(experiment_id) AS experiment_id, min(task_id) AS task_id, CAST(sum(n) AS BIGINT) AS api_requests,
        sum(cost) AS total_cost, CAST(sum(unpriced) AS BIGINT) AS unpriced_requests,
        CAST(sum(input_tokens) AS BIGINT) AS input_tokens, CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
        CAST(sum(cache_read_tokens) AS BIGINT) AS cache_read_tokens,
        CAST(sum(cache_creation_tokens) AS BIGINT) AS cache_creation_tokens,
        CAST(sum(retries) AS BIGINT) AS retries, min(first_at) AS started_at, max(last_at) AS ended_at,
        sum(duration_ms) AS api_duration_ms, min(model) AS model_lo, max(model) AS model_hi,
        CAST(COALESCE(sum(n) FILTER (WHERE day = DATE '{_NO_DAY}'), 0) AS BIGINT) AS untimed"""),
    "analysis_tool_stage_groups": ("tool_calls", ("workflow_id", "stage"), """
        CAST(sum(n) AS BIGINT) AS tool_calls, CAST(sum(fails) AS BIGINT) AS tool_failures,
        min(first_at) AS started_at, max(last_at) AS ended_at"""),
    "analysis_error_stage_groups": ("api_errors", ("workflow_id", "stage"), "CAST(sum(n) AS BIGINT) AS api_errors"),
    "analysis_stage_agents": ("api_requests", ("workflow_id", "stage", "agent_id"),
                              "min(first_at) AS first_at, max(last_at) AS last_at"),
    "analysis_agent_spans": ("api_requests", ("agent_id",), """
        min(first_at) AS first_at, max(last_at) AS last_at, arg_max(last_dur, last_dur_at) AS last_duration_ms,
        min(agent_label) AS agent_label"""),
}
# The tool day groups summed per day and stage alone (no workflow): the calls and failures per stage of a
# window are a few rows a day (query_errors' by-stage counts read the window's every call before).
# Summed again for the days refreshed. table -> (fact whose day groups it sums, what a day's stage holds)
_STAGE_DAYS: dict[str, tuple[str, str]] = {
    "analysis_tool_stage_days": ("tool_calls", "CAST(sum(n) AS BIGINT) AS n, CAST(sum(fails) AS BIGINT) AS fails")}
# The failed tool calls (tool_failure_events) grouped per day by what error_categories groups them by:
# a window's categories read its whole days from here (a few rows a day where the failure texts repeat),
# the rows of the days its ends cut through, and the API errors' rows (whose view counts a StopFailure
# hook's error once by looking at other days' errors: not a per-day rule). Re-read for the days refreshed.
# (Read from the view before the snapshot's window views shadow ``tools``: the refresh comes first.)
# analysis_agent_failure_days: the same per session, agent and tool: loops' edit -> failing Bash cycles
# order the calls of the agents with enough failing Bash calls, found there (the window's edge days
# whole: a superset of the window's agents, whose cycles are then counted from their rows).
_FAILURE_DAYS = "analysis_failure_days"
_FAILURES = {_FAILURE_DAYS: "stage, tool_name, msg, etype, count(*) AS n",
             "analysis_agent_failure_days": "session_id, agent_id, tool_name, count(*) AS n"}
_KEYS = {"api_requests": ("workflow_id", "stage", "agent_id"), "tool_calls": ("workflow_id", "stage"),
         "api_errors": ("workflow_id", "stage")}
# The cache's third level: the summary views' rows themselves (their bodies evaluated over the second
# level), per workflow, summed again for the workflows whose stage keys were refreshed and those whose
# context rows changed since (``_change_seq``: the workflow's row, its review reports, its session).
# table -> the view it holds
_SUMMARIES = {"analysis_stage_summary": "workflow_stage_summary", "analysis_workflow_summary": "workflow_summary"}
# analysis_stage_summary also keeps, per workflow stage, what its usual model over a window is read
# from (analysis_stage_groups' columns): model advice then reads one table, not a join of two with a
# row per workflow stage each (2M x 2M at 10M requests). The view in front of it leaves them out.
_STAGE_MODEL_COLS = {"req_model_lo": "model_lo", "req_model_hi": "model_hi", "req_untimed": "untimed",
                     "req_started_at": "started_at", "req_ended_at": "ended_at"}
# It also keeps, per workflow stage, its workflow's recorded path and complexity and start (the least
# start of its stages, as workflow_summary has it): predict_cost then picks the stage runs of the
# workflows it matches by filtering them, not by joining them with the workflows (2M x 500k at 10M
# requests, most of the prediction). A workflow's stages are summed again together whenever the workflow
# is (its facts or its ``workflows`` row changed), so they stay its workflow's. The view leaves them out.
_STAGE_WORKFLOW_COLS = {"wf_path": "w.path", "wf_complexity": "w.complexity",
                        "wf_started_at": "min(v.started_at) OVER (PARTITION BY v.workflow_id)"}
# The cache's duration counts (find_slow_stages' percentiles of stages, workflow paths and agents,
# bottlenecks.CACHED): the durations of the summary rows and agent spans counted per day of their start,
# key and bucket (bottlenecks.bucket_rows: the duration rollups' buckets), so a window's percentiles read
# its days' counts, not every row. Kept with the rows they count: the counts of the rows a refresh takes
# out are subtracted, those of the rows it puts back added (``_snap_dur_delta``), the net folded in once
# the summaries are refreshed; built whole with them. cache table -> (dimension counted, the filter of
# the view in front of the table)
DURATIONS = "analysis_duration_days"
_DURATION_SOURCES = {"analysis_stage_summary": ("stage_experiment", "true"),
                     "analysis_workflow_summary": ("workflow_path", "true"),
                     "analysis_agent_spans": ("agent", "agent_id IS NOT NULL")}
# analysis_workflow_summary also keeps each workflow's span as find_slow_stages ranks the longest
# workflows by it (bottlenecks.LONGEST_SQL over stage_phases, for a workflow without phase spans: its
# stage rows with a start and an end not before it): the least start, the greatest end, how many such
# stages. Ranking 250k workflows then reads one row each, not 2M stage rows grouped. The view leaves
# them out.
_WORKFLOW_SPAN_COLS = ("span_first_start", "span_last_end", "span_stages")
# analysis_workflow_summary also keeps, per workflow, the latest start of its implementer agents and the
# earliest finish of its reviewer agents (analysis_stage_agents' greatest first_at and least last_at of
# those stages, REWORK_STAGES: loops.find_loops' own): whether an implementer pass started after a
# reviewer finished (the rework) is then one comparison in one row per workflow, not a join of every
# agent of both stages (250k x 500k at 10M requests). Summed again with the workflow; the view leaves
# them out.
REWORK_STAGES = ("implementer", "reviewer")
_WORKFLOW_REWORK_COLS = {"rw_implementer_last_start": "a.last_start", "rw_reviewer_first_end": "a.first_end"}
SUMMARIES_VERSION = CACHE_VERSION + "/stage-models-1/stage-workflows-1/slow-stages-1/rework-1/ngrams-1/peers-1"  # change
# with _SUMMARIES' shape or the n-grams' tables (NGRAM_DAYS) or the peers' counts (PEER_DAYS)
_CONTEXT_CHANGES = {"workflows": "workflow_id", "review_reports": "golem_report_workflow(workflow_id, parent)",
                    "sessions": "golem_session_workflow(session_id)"}
# The tool-call n-grams (sequences.gram_rows) of the lengths sequences.CACHED_LENGTHS, per day of their last
# call: the tool_sequences answer of a window sums its whole days' rows (a few per day and stage) instead
# of ordering the window's calls by agent and time (1.7 CPU-s of the dashboard's 30 days at 10M requests).
# A day's row sums the grams of that day whose calls all fall on it and whose workflow's calls all do,
# with the workflow's outcome and its stage's cost (from the summaries): a workflow is then in one day's
# rows, so its count adds up over days. The other grams (of a workflow with calls on several days, and
# those reaching back over midnight: a few per cent) are kept one row each (NGRAM_ROWS) with their
# times. A day's grams are read again when a tool call of it or of an earlier day changed (a run of
# calls reaches forward into later days: the later days of the agents of a changed day are read again
# (NGRAM_AGENTS), as are the days of a workflow whose summary was summed again: its cost, outcome or
# days changed). Refreshed after the summaries.
NGRAM_DAYS = "analysis_ngram_days"
NGRAM_ROWS = "analysis_ngram_rows"
NGRAM_AGENTS = "analysis_agent_tool_days"  # tool calls per day and agent: which days a refresh reads again
# The summary rows counted per level, stage, day of their start, metric and value bucket
# with the values themselves (anomalies.peer_day_rows): find_token_leaks' medians and MADs over a
# history of days find the buckets holding the middle values from the counts and read those buckets'
# values only. Kept with the rows they count (_count_peer_days beside _count_durations notes the days of
# the rows a refresh takes out and puts back; those days are read again; built whole with them).
# summary table -> (level, the peer group's stage)
PEER_DAYS = "analysis_peer_days"
_PEER_SOURCES = {"analysis_stage_summary": ("stage", "stage"), "analysis_workflow_summary": ("workflow", "NULL::VARCHAR")}
# the days whose groups are re-aggregated: stamped by a write since the cache's last refresh, or
# holding another number of facts than the cache counts (a fact that moved to another day when a
# merge brought it an earlier time: Store.write stamps the day it lands on; facts written around
# Store.write). The facts per day are counted from their day rollups (a few thousand rows, kept by
# every Store.write, a merge's move included: rollups.on_fact_changes) while those hold as many facts
# as the table (count(*): the table's row count, no column read) and the cache do; otherwise (facts
# inserted or deleted around Store.write, a rollup build unfinished) from every fact's time, which
# read ~65 MB of DuckDB blocks and ~0.2 CPU-s at 10M requests on every idle refresh of the daemon.
# Still not seen, as no change of another column around Store.write is: a time changed in place, as
# many facts deleted as inserted around it.
# fact -> (its day rollup, the cache table counting its facts per day in column n)
_DAY_COUNTS = {"api_requests": (rollups.SPECS["request_durations"], "analysis_request_days"),
               "tool_calls": (rollups.SPECS["tool_durations"], "analysis_tool_stage_days"),
               "api_errors": (rollups.SPECS["api_errors"], "analysis_error_days")}
_DIRTY = "SELECT fact, day FROM {db}.main.fact_changes WHERE seq > $seen AND fact IN ({facts})"
_DIRTY_DAYS = """SELECT '{fact}', day FROM ({counted}) f
FULL JOIN (SELECT day, sum(n) AS n FROM {db}.main.{cache} GROUP BY 1) c USING (day)
WHERE f.n IS DISTINCT FROM c.n"""


def _dirty_sql(cur: Any, db: str) -> str:
    """The statement filling ``_snap_dirty`` (fact, day) for ``_refresh_cache`` (``_DIRTY``'s comment)."""
    parts = [_DIRTY.format(db=db, facts=", ".join(literal(f) for f in _DAY_COUNTS))]
    for fact, (spec, cache) in _DAY_COUNTS.items():
        n = cur.execute(f"SELECT (SELECT count(*) FROM {db}.main.{fact}), "
                        f"(SELECT COALESCE(sum({spec.count}), 0) FROM {db}.main.{spec.table}), "
                        f"(SELECT COALESCE(sum(n), 0) FROM {db}.main.{cache})").fetchone()
        if n[0] == n[1] == n[2]:
            counted = (f"SELECT COALESCE(day, DATE {literal(_NO_DAY.isoformat())}) AS day, sum({spec.count}) AS n "
                       f"FROM {db}.main.{spec.table} GROUP BY 1")
        else:
            counted = f"SELECT {_DAY} AS day, count(*) AS n FROM {db}.main.{fact} GROUP BY 1"
        parts.append(_DIRTY_DAYS.format(fact=fact, counted=counted, db=db, cache=cache))
    return "CREATE OR REPLACE TEMP TABLE _snap_dirty AS\n" + "\nUNION\n".join(parts)

# Step 2: the views' parts from the groups (same columns and types as views.sql's)
_STAGE_GROUPS = [
    """CREATE OR REPLACE TEMP TABLE request_stage_groups AS
       SELECT workflow_id, stage, min(experiment_id) AS experiment_id, min(task_id) AS task_id,
              CAST(sum(n) AS BIGINT) AS api_requests, sum(cost) AS total_cost,
              CAST(sum(unpriced) AS BIGINT) AS unpriced_requests,
              sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
              sum(cache_read_tokens) AS cache_read_tokens, sum(cache_creation_tokens) AS cache_creation_tokens,
              sum(retries) AS retries, min(first_at) AS started_at, max(last_at) AS ended_at,
              sum(duration_ms) AS api_duration_ms,
              -- for stage_models below (the summary view reads the columns above by name)
              min(model) FILTER (WHERE n_window > 0) AS _model_lo, max(model) FILTER (WHERE n_window > 0) AS _model_hi
       FROM _snap_req_pre WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage""",
    """CREATE OR REPLACE TEMP TABLE tool_stage_groups AS
       SELECT workflow_id, stage, CAST(sum(n) AS BIGINT) AS tool_calls, CAST(sum(fails) AS BIGINT) AS tool_failures,
              min(first_at) AS started_at, max(last_at) AS ended_at
       FROM _snap_tool_pre WHERE workflow_id IS NOT NULL GROUP BY workflow_id, stage""",
    """CREATE OR REPLACE TEMP TABLE agent_request_spans AS
       SELECT agent_id, min(first_at) AS first_at, max(last_at) AS last_at,
              arg_max(last_dur, last_dur_at) AS last_duration_ms, min(agent_label) AS agent_label
       FROM _snap_req_pre WHERE agent_id IS NOT NULL GROUP BY agent_id""",
    """CREATE OR REPLACE TEMP TABLE stage_agent_spans AS
       SELECT workflow_id, stage, agent_id, min(first_at) AS first_at, max(last_at) AS last_at
       FROM _snap_req_pre WHERE workflow_id IS NOT NULL GROUP BY ALL""",
    # the model with most of the window's requests per workflow stage (ties: the first name), as
    # predict.model_advice computes it from the requests view; counted out only where a stage ran
    # on more than one model
    """CREATE OR REPLACE TEMP TABLE stage_models AS
       SELECT workflow_id, stage, _model_lo AS model FROM request_stage_groups WHERE _model_lo = _model_hi
       UNION ALL
       SELECT workflow_id, stage, first(model ORDER BY n DESC, model) AS model
       FROM (SELECT workflow_id, stage, model, sum(n_window) AS n FROM _snap_req_pre
             SEMI JOIN (SELECT workflow_id, stage FROM request_stage_groups WHERE _model_lo <> _model_hi)
                  USING (workflow_id, stage)
             WHERE model IS NOT NULL AND n_window > 0 GROUP BY ALL)
       GROUP BY workflow_id, stage""",
]

_CACHE_LOCK = threading.Lock()


def _refresh_cache(cur: Any, db: str, run: Any) -> int:
    """Bring the per-day aggregate cache up to the transaction's view of the facts; returns how many
    (fact, day) pairs were re-aggregated (-1: built whole)."""
    state = cur.execute(f"SELECT version, seen_seq FROM {db}.main.analysis_cache_state WHERE name = 'facts'").fetchall()
    hi = cur.execute(f"SELECT COALESCE(max(seq), 0) FROM {db}.main.fact_changes").fetchone()[0]
    # the workflows whose stage keys are refreshed: their summary rows are summed again (_refresh_summaries)
    cur.execute("CREATE OR REPLACE TEMP TABLE _snap_workflows (workflow_id VARCHAR)")
    # the duration counts of the rows refreshed below and in _refresh_summaries (see DURATIONS)
    cur.execute("CREATE OR REPLACE TEMP TABLE _snap_dur_delta (dim VARCHAR, key VARCHAR, key2 VARCHAR, day DATE, "
                "bucket INTEGER, n BIGINT)")
    # the tool calls' refreshed days: the n-grams' days from the first on are read again (_refresh_ngrams)
    cur.execute("CREATE OR REPLACE TEMP TABLE _snap_tool_dirty (day DATE)")
    if not state or state[0][0] != CACHE_VERSION:
        _build_cache(cur, db, run)
        refreshed = -1
    else:
        run("cache_check", _dirty_sql(cur, db), {"seen": state[0][1] or 0})
        refreshed = int(cur.execute("SELECT count(*) FROM _snap_dirty").fetchone()[0])
        if refreshed:
            dirty = cur.execute("SELECT fact, day FROM _snap_dirty ORDER BY ALL").fetchall()
            cur.execute("INSERT INTO _snap_tool_dirty SELECT day FROM _snap_dirty WHERE fact = 'tool_calls'")
            for fact, (table, agg) in _CACHE.items():
                days = sorted(d for f, d in dirty if f == fact)
                if not days:
                    continue
                _refresh_days(cur, db, run, fact, table, agg, days)
                if fact == "tool_calls":
                    _refresh_failure_days(cur, db, run, days)
                for st_table, (st_fact, st_agg) in _STAGE_DAYS.items():
                    if st_fact == fact:
                        run("cache_refresh", f"DELETE FROM {db}.main.{st_table} WHERE list_contains($days, day)",
                            {"days": days})
                        run("cache_refresh", f"INSERT INTO {db}.main.{st_table} SELECT day, stage, {st_agg} "
                                             f"FROM {db}.main.{table} WHERE list_contains($days, day) GROUP BY day, stage",
                            {"days": days})
            for fact, (src, _) in _CACHE.items():
                if any(f == fact for f, _ in dirty):
                    _refresh_groups(cur, db, run, fact, src)
            tables = [table for f, (table, _) in _CACHE.items() if any(f == g for g, _ in dirty)]
            cur.execute("INSERT INTO _snap_workflows " + " UNION ".join(
                f"SELECT DISTINCT workflow_id FROM _snap_keys_{t} WHERE workflow_id IS NOT NULL" for t in tables))
            for table, _ in _CACHE.values():
                cur.execute(f"DROP TABLE IF EXISTS temp.main._snap_keys_{table}")
        cur.execute("DROP TABLE temp.main._snap_dirty")
    # the state's time changes only with the cache (what is computed from it is kept by it: PeerMemo)
    if refreshed or not state or tuple(state[0]) != (CACHE_VERSION, hi):
        cur.execute(f"INSERT OR REPLACE INTO {db}.main.analysis_cache_state VALUES ('facts', ?, ?, now())",
                    [CACHE_VERSION, hi])
    return refreshed


# The cache is built in parts of at most this many facts (day groups): one GROUP BY over all of them
# held every group at once, and at 10M requests it spilled to disk for minutes under the memory limit.
BUILD_CHUNK_ROWS = 2_000_000


def _build_cache(cur: Any, db: str, run: Any) -> None:
    """The cache's first two levels from every fact, in parts: the day groups by ranges of whole days
    (a group is one day's, so parts never share one), the second level by a hash of its first key
    column (a key's groups all fall in one part)."""
    for fact, (table, agg) in _CACHE.items():
        days = cur.execute(f"SELECT {_DAY} AS day, count(*) FROM {db}.main.{fact} GROUP BY 1 ORDER BY 1").fetchall()
        cur.execute(f"CREATE OR REPLACE TABLE {db}.main.{table} AS SELECT {_DAY} AS day, {agg} "
                    f"FROM {db}.main.{fact} WHERE false GROUP BY ALL")
        ranges: list[list[Any]] = []  # [first day, last day, facts]
        for day, n in days:
            if ranges and ranges[-1][2] + n <= BUILD_CHUNK_ROWS:
                ranges[-1][1:] = [day, ranges[-1][2] + n]
            else:
                ranges.append([day, day, n])
        for lo, hi, _ in ranges:
            # on the time column, so row groups of other days are skipped unread (facts without a
            # time count on NO_DAY)
            untimed = ' OR "timestamp" IS NULL' if lo <= _NO_DAY <= hi else ""
            run("cache_build", f"INSERT INTO {db}.main.{table} BY NAME SELECT {_DAY} AS day, {agg} FROM {db}.main.{fact} "
                               f'WHERE ("timestamp" >= $lo AND "timestamp" < $hi){untimed} GROUP BY ALL',
                {"lo": lo, "hi": hi + timedelta(days=1)})
    for table, agg in _FAILURES.items():
        run("cache_build", f"CREATE OR REPLACE TABLE {db}.main.{table} AS SELECT {_DAY} AS day, {agg} "
                           f"FROM {db}.main.tool_failure_events GROUP BY ALL")
    for table, (fact, agg) in _STAGE_DAYS.items():
        run("cache_build", f"CREATE OR REPLACE TABLE {db}.main.{table} AS SELECT day, stage, {agg} "
                           f"FROM {db}.main.{_CACHE[fact][0]} GROUP BY day, stage")
    for table, (fact, keys, agg) in _GROUPS.items():
        src = _CACHE[fact][0]
        k = ", ".join(keys)
        cur.execute(f"CREATE OR REPLACE TABLE {db}.main.{table} AS SELECT {k}, {agg} "
                    f"FROM {db}.main.{src} WHERE false GROUP BY {k}")
        parts = _parts(cur, f"{db}.main.{src}")
        for i in range(parts):
            run("cache_build", f"INSERT INTO {db}.main.{table} BY NAME SELECT {k}, {agg} FROM {db}.main.{src} "
                               f"WHERE hash({keys[0]}) % {parts} = {i} GROUP BY {k}")


def _parts(cur: Any, table: str) -> int:
    """In how many parts to group ``table``'s rows (BUILD_CHUNK_ROWS each at most)."""
    n = int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return max(1, -(-n // BUILD_CHUNK_ROWS))


def _same(cols: list[str], a: str = "x", b: str = "k") -> str:
    return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in cols)


def _keyed(cur: Any, keys: list[str], source: str, a: str = "x", b: str = "k") -> list[str]:
    """Join conditions that match a cache table's rows (``x``) with the keys (``k``) of ``source`` as
    ``_same(keys)`` does, split in two: the first key column equal, the others not distinct (an equality
    lets DuckDB filter the table's scan by the keys' range of values, so row groups outside it are
    skipped unread; ``IS NOT DISTINCT FROM`` alone read every row: ~60 CPU-ms per 2M rows), and, only
    when a key of ``source`` has none, the rows without a first column. The two match other rows."""
    rest = f" AND {_same(keys[1:], a, b)}" if len(keys) > 1 else ""
    conds = [f"{a}.{keys[0]} = {b}.{keys[0]}{rest}"]
    if cur.execute(f"SELECT count(*) FROM {source} WHERE {keys[0]} IS NULL").fetchone()[0]:
        conds.append(f"{a}.{keys[0]} IS NULL AND {b}.{keys[0]} IS NULL{rest}")
    return conds


def _day_range(days: list[Any], col: str = "day") -> str:
    """A filter of ``col`` to the range of ``days`` (dates), put before a ``list_contains`` of them:
    the cache's day tables grow in time order, so row groups outside it are skipped unread."""
    return f"{col} >= DATE '{min(days).isoformat()}' AND {col} <= DATE '{max(days).isoformat()}'"


def _refresh_days(cur: Any, db: str, run: Any, fact: str, table: str, agg: str, days: list[Any]) -> None:
    """Re-aggregate ``fact``'s dirty ``days`` and write only the day groups that differ from the
    stored ones (a day written to holds mostly groups no write touched: rewriting them all, and
    summing every one of their keys again at the levels above, cost a run seconds at 10M requests).
    Leaves ``_snap_keys_<table>``: the keys of the groups that went or came."""
    timed = [d for d in days if d != _NO_DAY]
    # the dirty days' time range first: row groups outside it are skipped unread
    where = [f'"timestamp" >= $lo AND "timestamp" < $hi AND list_contains($days, {_DAY})'] if timed else []
    where += [f"{_DAY} = $no_day"] if _NO_DAY in days else []
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _snap_new AS SELECT * FROM {db}.main.{table} WHERE false")
    for w in where:
        run("cache_refresh", f"INSERT INTO _snap_new BY NAME SELECT {_DAY} AS day, {agg} "
                             f"FROM {db}.main.{fact} WHERE {w} GROUP BY ALL",
            {"days": timed, "lo": min(timed), "hi": max(timed) + timedelta(days=1)} if "$lo" in w
            else {"no_day": _NO_DAY})
    run("cache_refresh", f"CREATE OR REPLACE TEMP TABLE _snap_old AS SELECT rowid AS _rid, * FROM {db}.main.{table} "
                         f"WHERE {_day_range(days)} AND list_contains($days, day)", {"days": days})
    cols = [c[0] for c in cur.execute(f"DESCRIBE {db}.main.{table}").fetchall()]
    # a group is kept when every column is the same (sums of doubles summed in another order may
    # differ in their last bits: such a group is rewritten, which costs a little and changes nothing)
    run("cache_refresh", f"CREATE OR REPLACE TEMP TABLE _snap_gone AS SELECT x.* FROM _snap_old x "
                         f"ANTI JOIN _snap_new k ON {_same(cols)}")
    run("cache_refresh", f"CREATE OR REPLACE TEMP TABLE _snap_came AS SELECT x.* FROM _snap_new x "
                         f"ANTI JOIN _snap_old k ON {_same(cols)}")
    run("cache_refresh", f"DELETE FROM {db}.main.{table} WHERE rowid IN (SELECT _rid FROM _snap_gone)")
    run("cache_refresh", f"INSERT INTO {db}.main.{table} BY NAME SELECT * FROM _snap_came")
    # the keys whose groups changed, before and after (a key that moves away must be summed again too)
    held = ", ".join(_KEYS[fact])
    run("cache_refresh", f"CREATE OR REPLACE TEMP TABLE _snap_keys_{table} AS SELECT DISTINCT {held} FROM "
                         f"(SELECT {held} FROM _snap_gone UNION ALL SELECT {held} FROM _snap_came)")
    for t in ("_snap_new", "_snap_old", "_snap_gone", "_snap_came"):
        cur.execute(f"DROP TABLE temp.main.{t}")


def _refresh_failure_days(cur: Any, db: str, run: Any, days: list[Any]) -> None:
    """``_FAILURES``' groups of ``days`` (the tool calls' dirty days) read again from the facts."""
    timed = [d for d in days if d != _NO_DAY]
    for table, agg in _FAILURES.items():
        run("cache_refresh", f"DELETE FROM {db}.main.{table} WHERE list_contains($days, day)", {"days": days})
        if timed:  # the days' time range first: row groups outside it are skipped unread
            run("cache_refresh", f"INSERT INTO {db}.main.{table} SELECT {_DAY} AS day, {agg} "
                                 f'FROM {db}.main.tool_failure_events WHERE "timestamp" >= $lo AND "timestamp" < $hi '
                                 f"AND list_contains($days, {_DAY}) GROUP BY ALL",
                {"days": timed, "lo": min(timed), "hi": max(timed) + timedelta(days=1)})
        if _NO_DAY in days:
            run("cache_refresh", f"INSERT INTO {db}.main.{table} SELECT {_DAY} AS day, {agg} "
                                 f"FROM {db}.main.tool_failure_events WHERE {_DAY} = $no_day GROUP BY ALL",
                {"no_day": _NO_DAY})


def _refresh_groups(cur: Any, db: str, run: Any, fact: str, src: str) -> None:
    """Sum the second level (``_GROUPS``) again for the keys ``_refresh_days`` left in
    ``_snap_keys_<src>``: the day groups of those keys are read from ``src`` once, into a small
    temporary table, and every second-level table of ``fact`` is summed from it."""
    tables = {t: (keys, agg) for t, (f, keys, agg) in _GROUPS.items() if f == fact}
    keysets = sorted({keys for keys, _ in tables.values()}, key=len)
    # one key set contains the others' columns or is disjoint from them: read the day groups of
    # each distinct set once (stage keys cover stage-agent keys; agent keys are their own)
    reads = []
    for keys in keysets:
        if any(set(k) <= set(keys) and k != keys for k in keysets):
            continue
        reads.append(keys)
    parts = []
    for keys in reads:
        k = ", ".join(keys)
        parts += [f"SELECT x.rowid AS _rid, x.* FROM {db}.main.{src} x SEMI JOIN "
                  f"(SELECT DISTINCT {k} FROM _snap_keys_{src}) k ON {on}"
                  for on in _keyed(cur, list(keys), f"_snap_keys_{src}")]
    run("cache_refresh", "CREATE OR REPLACE TEMP TABLE _snap_rows AS SELECT DISTINCT ON (_rid) * FROM ("
                         + " UNION ALL ".join(parts) + ")")
    for table, (keys, agg) in tables.items():
        k = ", ".join(keys)
        affected = f"(SELECT DISTINCT {k} FROM _snap_keys_{src})"
        keyed = _keyed(cur, list(keys), f"_snap_keys_{src}")
        rows = "(" + " UNION ALL ".join(f"SELECT x.* FROM {db}.main.{table} x SEMI JOIN {affected} k ON {on}"
                                        for on in keyed) + ")"
        _count_durations(run, db, table, rows, -1)
        for on in keyed:
            run("cache_refresh", f"DELETE FROM {db}.main.{table} x USING {affected} k WHERE {on}")
        run("cache_refresh", f"INSERT INTO {db}.main.{table} BY NAME SELECT {', '.join('x.' + c for c in keys)}, "
                             f"{agg} FROM _snap_rows x SEMI JOIN {affected} k ON {_same(list(keys))} "
                             f"GROUP BY {', '.join('x.' + c for c in keys)}")
        _count_durations(run, db, table, rows, 1)
    cur.execute("DROP TABLE temp.main._snap_rows")


def _bigint(cur: Any, source: str) -> str:
    """``source``'s columns, HUGEINT ones (sums of BIGINTs) cast to BIGINT for storing (see _GROUPS)."""
    cols = cur.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return ", ".join(f'CAST("{c[0]}" AS BIGINT) AS "{c[0]}"' if c[1] == "HUGEINT" else f'"{c[0]}"' for c in cols)


def _summary_rows(cur: Any, db: str, table: str, view: str, where: str, src: dict[str, str] | None = None) -> str:
    """A SELECT of the rows of summary ``table`` (its ``view``'s, sums as BIGINT) for the workflows
    ``where`` holds (``{wf}`` stands for the workflow column). ``src``: the tables to read the extra
    columns from instead of the store's (``_only_workflows``' parts: the same rows of those workflows)."""
    src = src or {}
    stage_groups = src.get("analysis_stage_groups", f"{db}.main.analysis_stage_groups")
    stage_agents = src.get("analysis_stage_agents", f"{db}.main.analysis_stage_agents")
    workflows = src.get("workflows", f"{db}.main.workflows")
    rows = f"SELECT {_bigint(cur, f'{db}.main.{view}')} FROM {db}.main.{view} WHERE {where.format(wf='workflow_id')}"
    if table == "analysis_workflow_summary":  # (the stage rows are refreshed first)
        spans = (f"SELECT workflow_id, min(started_at) AS span_first_start, max(ended_at) AS span_last_end, "
                 f"count(*) AS span_stages FROM {db}.main.analysis_stage_summary "
                 f"WHERE started_at IS NOT NULL AND ended_at >= started_at AND {where.format(wf='workflow_id')} "
                 f"GROUP BY workflow_id")
        implementer, reviewer = (literal(x) for x in REWORK_STAGES)
        rework = (f"SELECT workflow_id, max(first_at) FILTER (WHERE stage = {implementer}) AS last_start, "
                  f"min(last_at) FILTER (WHERE stage = {reviewer}) AS first_end "
                  f"FROM {stage_agents} WHERE {where.format(wf='workflow_id')} GROUP BY workflow_id")
        extra = ", ".join(f"{e} AS {name}" for name, e in _WORKFLOW_REWORK_COLS.items())
        return (f"SELECT v.*, p.span_first_start, p.span_last_end, CAST(COALESCE(p.span_stages, 0) AS BIGINT) "
                f"AS span_stages, {extra} FROM ({rows}) v LEFT JOIN ({spans}) p ON p.workflow_id = v.workflow_id "
                f"LEFT JOIN ({rework}) a ON a.workflow_id = v.workflow_id")
    if table != "analysis_stage_summary":
        return rows
    extra = ", ".join([*(f"g.{c} AS {name}" for name, c in _STAGE_MODEL_COLS.items()),
                       *(f"{e} AS {name}" for name, e in _STAGE_WORKFLOW_COLS.items())])
    # (``where`` holds whole workflows: the least start over ``v``'s rows of a workflow is over all its stages)
    return (f"SELECT v.*, {extra} FROM ({rows}) v LEFT JOIN {stage_groups} g "
            f"ON g.workflow_id = v.workflow_id AND g.stage IS NOT DISTINCT FROM v.stage "
            f"AND {where.format(wf='g.workflow_id')} "
            f"LEFT JOIN {workflows} w ON w.workflow_id = v.workflow_id AND {where.format(wf='w.workflow_id')}")


def _summary_view(cur: Any, db: str, table: str, view: str, where: str = "true") -> None:
    """The temporary view named like summary ``view`` in front of the cache's ``table`` (its rows
    ``where`` holds)."""
    hidden = {"analysis_stage_summary": [*_STAGE_MODEL_COLS, *_STAGE_WORKFLOW_COLS],
              "analysis_workflow_summary": [*_WORKFLOW_SPAN_COLS, *_WORKFLOW_REWORK_COLS]}.get(table)
    extra = f" EXCLUDE ({', '.join(hidden)})" if hidden else ""
    cur.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT *{extra} FROM {db}.main.{table} WHERE {where}")


# the workflows whose summary rows are summed again (``_snap_wf``), as a filter on a workflow column
_IN_WFS = "{wf} IN (SELECT workflow_id FROM _snap_wf)"


def _only_workflows(cur: Any, db: str) -> dict[str, str]:
    """Put temporary views in front of what the summary views read (their parts, ``workflows``,
    ``sessions``, ``review_reports``) holding the rows of the workflows in ``_snap_wf`` only: the
    views' bodies, bound on this connection, then sum those workflows from a few rows. A filter on
    the summary view's workflow reaches only its first part's scan (the joined parts, the workflow
    labels and review reports were read whole: ~1.5 CPU-s per refresh at 10M requests). Exact: every
    join and grouping in the views is by workflow, so a workflow's rows come from its own rows only.
    Returns the tables ``_summary_rows`` reads instead of the store's; undone by :func:`_all_workflows`."""
    only = _IN_WFS.format(wf="workflow_id")
    for table in ("analysis_stage_groups", "analysis_stage_agents"):
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _snap_wf_{table} AS SELECT * FROM {db}.main.{table} WHERE {only}")
    _parts_from_cache(cur, db, only, {t: f"temp.main._snap_wf_{t}" for t in ("analysis_stage_groups",
                                                                           "analysis_stage_agents")})
    for table, key in {"workflows": "workflow_id", **_CONTEXT_CHANGES}.items():
        cur.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {db}.main.{table} "
                    f"WHERE {_IN_WFS.format(wf=key)}")
    return {"analysis_stage_groups": "temp.main._snap_wf_analysis_stage_groups",
            "analysis_stage_agents": "temp.main._snap_wf_analysis_stage_agents", "workflows": "temp.main.workflows"}


def _all_workflows(cur: Any, db: str) -> None:
    """Undo :func:`_only_workflows`: the parts and summary views over the whole cache again."""
    for table in ("workflows", *_CONTEXT_CHANGES):
        cur.execute(f"DROP VIEW IF EXISTS temp.main.{table}")
    _parts_from_cache(cur, db)
    for table in ("analysis_stage_groups", "analysis_stage_agents"):
        cur.execute(f"DROP TABLE IF EXISTS temp.main._snap_wf_{table}")
    for table, view in _SUMMARIES.items():
        _summary_view(cur, db, table, view)


def _refresh_summaries(cur: Any, db: str, run: Any, rebuilt: bool) -> None:
    """The cache's third level (``_SUMMARIES``) up to date, and temporary views named like the summary
    views in front of it. Reads the temporary parts ``_parts_from_cache`` put up."""
    state = cur.execute(f"SELECT version, seen_seq FROM {db}.main.analysis_cache_state WHERE name = 'summaries'").fetchall()
    hi = cur.execute("SELECT COALESCE(max(s), 0) FROM (" + " UNION ALL ".join(
        f"SELECT max(_change_seq) AS s FROM {db}.main.{t}" for t in _CONTEXT_CHANGES) + ")").fetchone()[0]
    build = rebuilt or not state or state[0][0] != SUMMARIES_VERSION
    changed = build
    only: dict[str, str] | None = None  # the parts of the workflows summed again (_only_workflows)
    if not build:
        seen = state[0][1] or 0
        run("summaries", "INSERT INTO _snap_workflows " + " UNION ".join(
            f"SELECT {key} FROM {db}.main.{t} WHERE _change_seq > {int(seen)}" for t, key in _CONTEXT_CHANGES.items()))
        cur.execute("CREATE OR REPLACE TEMP TABLE _snap_wf AS SELECT DISTINCT workflow_id FROM _snap_workflows "
                    "WHERE workflow_id IS NOT NULL")
        changed = bool(cur.execute("SELECT count(*) FROM _snap_wf").fetchone()[0])
        if changed:
            only = _only_workflows(cur, db)
    try:
        _refresh_summary_rows(cur, db, run, build, only)
    finally:
        if only is not None:
            _all_workflows(cur, db)
        cur.execute("DROP TABLE IF EXISTS temp.main._snap_wf")
    _fold_durations(cur, db, run, build)
    _refresh_ngrams(cur, db, run, build)
    # a new time whenever the summary rows may have changed, and only then: what is computed from them
    # is kept under the state's row (anomalies.PeerMemo)
    if changed or tuple(state[0]) != (SUMMARIES_VERSION, hi):
        cur.execute(f"INSERT OR REPLACE INTO {db}.main.analysis_cache_state VALUES ('summaries', ?, ?, now())",
                    [SUMMARIES_VERSION, hi])
    cur.execute("DROP TABLE IF EXISTS temp.main._snap_workflows")
    cur.execute("DROP TABLE IF EXISTS temp.main._snap_tool_dirty")


def _refresh_summary_rows(cur: Any, db: str, run: Any, build: bool, only: dict[str, str] | None) -> None:
    """The summary tables (``_SUMMARIES``) built whole, or summed again for the workflows in ``_snap_wf``
    (``only``: the parts of those workflows, :func:`_only_workflows`; None: no workflow to sum again);
    temporary views named like the summary views in front of them."""
    for table, view in _SUMMARIES.items():
        if build:
            # in parts by workflow (the views group by it): all at once held every workflow's groups
            run("summaries", f"CREATE OR REPLACE TABLE {db}.main.{table} AS "
                             + _summary_rows(cur, db, table, view, "false"))
            parts = _parts(cur, f"{db}.main.analysis_stage_groups")
            for i in range(parts):
                run("summaries", f"INSERT INTO {db}.main.{table} "
                                 + _summary_rows(cur, db, table, view, f"hash({{wf}}) % {parts} = {i}"))
            if table == "analysis_stage_summary":
                # a few workflows' stages (find_slow_stages takes the longest apart) by index, not a
                # scan of every stage row (~6 CPU-ms per 1M requests)
                run("summaries", f"CREATE INDEX IF NOT EXISTS analysis_stage_summary_workflow "
                                 f"ON {db}.main.{table} (workflow_id)")
        elif only is not None:
            # nothing to sum again when no workflow is (``only`` None): summing the views over no
            # workflow still scanned every summary row and the rollups (~0.7 CPU-s and ~300 MB of the
            # daemon's memory at 10M requests, every few minutes)
            # (a join: list_contains over every row costs as many comparisons as the list is long)
            rows = f"(SELECT x.* FROM {db}.main.{table} x SEMI JOIN _snap_wf k ON x.workflow_id = k.workflow_id)"
            _count_durations(run, db, table, rows, -1)
            run("summaries", f"DELETE FROM {db}.main.{table} WHERE {_IN_WFS.format(wf='workflow_id')}")
            run("summaries", f"INSERT INTO {db}.main.{table} " + _summary_rows(cur, db, table, view, _IN_WFS, only))
            _count_durations(run, db, table, rows, 1)
            # the next summary (workflow_summary) reads this one's rows of the same workflows
            _summary_view(cur, db, table, view, _IN_WFS.format(wf="workflow_id"))
            continue
        _summary_view(cur, db, table, view)


def _refresh_ngrams(cur: Any, db: str, run: Any, build: bool) -> None:
    """The n-grams' tables (NGRAM_DAYS) up to date: built whole, in parts of whole days, when the
    summaries were; else read again for the refreshed tool-call days, the later days of the agents
    with a call on one of them (before or after the refresh: a run reaches forward) and the days of the
    workflows summed again (``_snap_workflows``). Reads the summaries' views in front of the cache (the
    grams' outcome and cost)."""
    from .sequences import CACHED_LENGTHS, gram_rows, weighed

    timed = f"day <> DATE '{_NO_DAY}'"
    calls = f"SELECT {_DAY} AS day, session_id, agent_id, count(*) AS n FROM {db}.main.tool_calls"
    if build:
        cur.execute(f"CREATE OR REPLACE TABLE {db}.main.{NGRAM_DAYS} (length INTEGER, day DATE, stage VARCHAR, "
                    "sequence VARCHAR, n BIGINT, ok_true BIGINT, ok_known BIGINT, workflows BIGINT, cost_sum DOUBLE, "
                    "cost_n BIGINT, good_sum BIGINT, good_n BIGINT)")
        cur.execute(f"CREATE OR REPLACE TABLE {db}.main.{NGRAM_ROWS} (length INTEGER, day DATE, first_at TIMESTAMP, "
                    "last_at TIMESTAMP, stage VARCHAR, sequence VARCHAR, workflow_id VARCHAR, ok BOOLEAN)")
        run("ngrams", f"CREATE OR REPLACE TABLE {db}.main.{NGRAM_AGENTS} AS {calls} "
                      'WHERE "timestamp" IS NOT NULL GROUP BY ALL')
        days = cur.execute(f"SELECT day, CAST(sum(n) AS BIGINT) FROM {db}.main.{NGRAM_AGENTS} "
                           "GROUP BY day ORDER BY day").fetchall()
        parts: list[list[Any]] = []
        for day, n in days:  # (as _build_cache: parts of at most BUILD_CHUNK_ROWS calls)
            if parts and parts[-1][1] + n <= BUILD_CHUNK_ROWS:
                parts[-1][0].append(day)
                parts[-1][1] += n
            else:
                parts.append([[day], n])
        for part, _ in parts:
            _ngram_days(cur, db, run, part, CACHED_LENGTHS, gram_rows, weighed)
        return
    dirty = [r[0] for r in cur.execute(f"SELECT DISTINCT day FROM _snap_tool_dirty WHERE {timed}").fetchall()]
    if not dirty and not cur.execute("SELECT count(*) FROM _snap_workflows").fetchone()[0]:
        return  # an idle refresh: nothing to read again (the queries below would scan the agents' days)
    cur.execute("CREATE OR REPLACE TEMP TABLE _snap_gram_agents (session_id VARCHAR, agent_id VARCHAR)")
    if dirty:
        # the agents of the dirty days as the cache had them, and as they are now
        agents = (f"INSERT INTO _snap_gram_agents SELECT DISTINCT session_id, agent_id FROM {db}.main.{NGRAM_AGENTS} "
                  f"WHERE {_day_range(dirty)} AND list_contains($days, day)")
        run("ngrams", agents, {"days": dirty})
        run("ngrams", f"DELETE FROM {db}.main.{NGRAM_AGENTS} WHERE {_day_range(dirty)} AND list_contains($days, day)",
            {"days": dirty})
        run("ngrams", f"INSERT INTO {db}.main.{NGRAM_AGENTS} {calls} WHERE \"timestamp\" >= $lo AND \"timestamp\" < $hi "
                      f"AND list_contains($days, {_DAY}) GROUP BY ALL",
            {"days": dirty, "lo": min(dirty), "hi": max(dirty) + timedelta(days=1)})
        run("ngrams", agents, {"days": dirty})
    agent_days = "".join(f"""
        UNION SELECT a.day FROM {db}.main.{NGRAM_AGENTS} a SEMI JOIN _snap_gram_agents k ON {on}
              WHERE a.day >= $first""" for on in _keyed(cur, ["session_id", "agent_id"], "_snap_gram_agents", "a"))
    days = [r[0] for r in cur.execute(f"""
        SELECT unnest($dirty::DATE[]){agent_days}
        UNION SELECT unnest(range(CAST(min(started_at) AS DATE), CAST(max(ended_at) AS DATE) + 1, INTERVAL 1 DAY))::DATE
              FROM {db}.main.analysis_tool_stage_groups
              WHERE workflow_id IN (SELECT workflow_id FROM _snap_workflows) AND started_at IS NOT NULL
              GROUP BY workflow_id
        ORDER BY 1""", {"dirty": dirty, "first": min(dirty) if dirty else None}).fetchall()]
    cur.execute("DROP TABLE temp.main._snap_gram_agents")
    if days:
        _ngram_days(cur, db, run, days, CACHED_LENGTHS, gram_rows, weighed)


def _ngram_days(cur: Any, db: str, run: Any, days: list[Any], lengths: tuple[int, ...], gram_rows: Any,
                weighed: Any) -> None:
    """The n-grams (``gram_rows``) whose last call falls on one of ``days``, read again into NGRAM_DAYS
    and NGRAM_ROWS: from the calls of the agents with a call on those days, from the day of each one's
    last calls before them (NGRAM_AGENTS: a run reaching back into earlier days has its first calls there)."""
    back = max(lengths) - 1
    p = {"days": days, "lo": min(days), "hi": max(days) + timedelta(days=1)}
    in_days = f"{_day_range(days)} AND list_contains($days, day)"
    for table in (NGRAM_DAYS, NGRAM_ROWS):
        run("ngrams", f"DELETE FROM {db}.main.{table} WHERE {in_days}", {"days": days})
    run("ngrams", f"""CREATE OR REPLACE TEMP TABLE _snap_gram_agents AS
        SELECT DISTINCT session_id, agent_id FROM {db}.main.{NGRAM_AGENTS} WHERE {in_days}""",
        {"days": days})
    keyed = _keyed(cur, ["session_id", "agent_id"], "_snap_gram_agents", "a")
    # the earliest day the calls are read from: per agent, the day before the first of the days by which
    # it has made {back} calls (or its first day)
    since = cur.execute(f"""
        SELECT min(day) FROM (
            SELECT a.day, sum(a.n) OVER (PARTITION BY a.session_id, a.agent_id ORDER BY a.day DESC
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS later
            FROM ({" UNION ALL ".join(f"SELECT a.* FROM {db}.main.{NGRAM_AGENTS} a SEMI JOIN _snap_gram_agents k "
                                      f"ON {on} WHERE a.day < $lo" for on in keyed)}) a)
        WHERE later IS NULL OR later < {back}""", {"lo": p["lo"]}).fetchone()[0]
    run("ngrams", "CREATE OR REPLACE TEMP TABLE _snap_gram_calls AS " + " UNION ALL ".join(f"""
        SELECT t.session_id, t.agent_id, t.tool_use_id, t.tool_name, t."timestamp", t.success, t.workflow_id, t.stage
        FROM {db}.main.tools t SEMI JOIN _snap_gram_agents k ON {on}
        WHERE t."timestamp" >= $since AND t."timestamp" < $hi""" for on in _keyed(
        cur, ["session_id", "agent_id"], "_snap_gram_agents", "t")), {"hi": p["hi"], "since": since or p["lo"]})
    for n in lengths:
        run("ngrams", f"""CREATE OR REPLACE TEMP TABLE _snap_grams AS
            SELECT *, CAST(last_at AS DATE) AS day, CAST(first_at AS DATE) AS first_day
            FROM ({gram_rows(n, 'SELECT * FROM _snap_gram_calls')}) WHERE list_contains($days, CAST(last_at AS DATE))""",
            {"days": days})
        # kept apart: the grams reaching over midnight and every gram of their workflows and of the
        # workflows with calls on more than one day
        run("ngrams", f"""CREATE OR REPLACE TEMP TABLE _snap_grams_apart AS
            SELECT workflow_id FROM {db}.main.analysis_tool_stage_groups
            WHERE workflow_id IN (SELECT workflow_id FROM _snap_grams)
            GROUP BY workflow_id HAVING CAST(min(started_at) AS DATE) <> CAST(max(ended_at) AS DATE)
            UNION SELECT workflow_id FROM _snap_grams WHERE first_day <> day AND workflow_id IS NOT NULL""")
        # (a gram without a workflow: NULL IN (...) is NULL)
        apart = "(first_day <> day OR COALESCE(workflow_id IN (SELECT workflow_id FROM _snap_grams_apart), false))"
        run("ngrams", f"INSERT INTO {db}.main.{NGRAM_ROWS} SELECT {int(n)}, day, first_at, last_at, stage, sequence, "
                      f"workflow_id, ok FROM _snap_grams WHERE {apart}")
        run("ngrams", f"""INSERT INTO {db}.main.{NGRAM_DAYS}
            SELECT {int(n)}, day, stage, sequence, CAST(sum(n) AS BIGINT), CAST(sum(ok_true) AS BIGINT),
                   CAST(sum(ok_known) AS BIGINT), CAST(sum(workflows) AS BIGINT), sum(cost_sum),
                   CAST(sum(cost_n) AS BIGINT), CAST(sum(good_sum) AS BIGINT), CAST(sum(good_n) AS BIGINT)
            FROM ({weighed(f"SELECT * FROM _snap_grams WHERE NOT {apart}", "day, ")})
            GROUP BY day, stage, sequence""")
    for t in ("_snap_gram_agents", "_snap_gram_calls", "_snap_grams", "_snap_grams_apart"):
        cur.execute(f"DROP TABLE IF EXISTS temp.main.{t}")


def _count_durations(run: Any, db: str, table: str, rows: str, sign: int, params: dict[str, Any] | None = None) -> None:
    """Add the duration counts (DURATIONS) of cache ``table``'s ``rows`` (a subquery of its rows), times
    ``sign``, to ``_snap_dur_delta``: before a refresh takes them out (-1), after it puts them back (+1)."""
    _count_peer_days(run, table, rows, sign, params)
    if table not in _DURATION_SOURCES:
        return
    from .bottlenecks import bucket_rows

    dim, where = _DURATION_SOURCES[table]
    run("durations", f"INSERT INTO _snap_dur_delta SELECT '{dim}', key, key2, day, bucket, {sign} * count(*) "
                     f"FROM ({bucket_rows(dim, f'(SELECT * FROM {rows} WHERE {where})')}) GROUP BY ALL", params)


def _fold_durations(cur: Any, db: str, run: Any, build: bool) -> None:
    """The duration counts (DURATIONS) up to date with the summaries: counted whole when they were
    built whole, else the refreshes' net counts (``_snap_dur_delta``) folded in."""
    from .bottlenecks import bucket_rows

    table = f"{db}.main.{DURATIONS}"
    if build:
        run("durations", f"CREATE OR REPLACE TABLE {table} AS " + " UNION ALL ".join(
            f"SELECT '{dim}' AS dim, key, key2, day, bucket, count(*) AS n "
            f"FROM ({bucket_rows(dim, f'(SELECT * FROM {db}.main.{src} WHERE {where})')}) GROUP BY ALL"
            for src, (dim, where) in _DURATION_SOURCES.items()))
    else:
        cols = ["dim", "key", "key2", "day", "bucket"]
        run("durations", "CREATE OR REPLACE TEMP TABLE _snap_dur_net AS SELECT dim, key, key2, day, bucket, "
                         "CAST(sum(n) AS BIGINT) AS n FROM _snap_dur_delta GROUP BY ALL HAVING sum(n) <> 0")
        if cur.execute("SELECT count(*) FROM _snap_dur_net").fetchone()[0]:
            run("durations", "CREATE OR REPLACE TEMP TABLE _snap_dur_sum AS SELECT dim, key, key2, day, bucket, "
                             "CAST(sum(n) AS BIGINT) AS n FROM (SELECT x.* FROM "
                             f"{table} x SEMI JOIN _snap_dur_net k ON {_same(cols)} "
                             "UNION ALL SELECT * FROM _snap_dur_net) GROUP BY ALL")
            run("durations", f"DELETE FROM {table} x USING _snap_dur_net k WHERE {_same(cols)}")
            run("durations", f"INSERT INTO {table} SELECT * FROM _snap_dur_sum WHERE n <> 0")
            cur.execute("DROP TABLE temp.main._snap_dur_sum")
        cur.execute("DROP TABLE temp.main._snap_dur_net")
    cur.execute("DROP TABLE IF EXISTS temp.main._snap_dur_delta")
    _fold_peer_days(cur, db, run, build)


def _count_peer_days(run: Any, table: str, rows: str, sign: int, params: dict[str, Any] | None = None) -> None:
    """Note the days of summary ``table``'s ``rows`` (before a refresh takes them out, after it puts them
    back) in ``_snap_peer_dirty``: their peers' values (PEER_DAYS) are read again (_fold_peer_days)."""
    if table not in _PEER_SOURCES:
        return
    level = _PEER_SOURCES[table][0]
    run("peers", "CREATE TEMP TABLE IF NOT EXISTS _snap_peer_dirty (level VARCHAR, day DATE)")
    run("peers", f"INSERT INTO _snap_peer_dirty SELECT DISTINCT '{level}', CAST(started_at AS DATE) FROM {rows} x "
                 "WHERE started_at IS NOT NULL", params)


def _fold_peer_days(cur: Any, db: str, run: Any, build: bool) -> None:
    """The peers' values (PEER_DAYS) up to date with the summaries: built whole (in bucket order, so a
    bucket's rows lie together) when they were, else the days noted in ``_snap_peer_dirty`` read again
    from the summary rows (a day of the last one's rows at 10M requests: ~33k stage rows)."""
    from .anomalies import peer_day_rows

    table = f"{db}.main.{PEER_DAYS}"
    if build:
        run("peers", f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM (" + " UNION ALL ".join(
            peer_day_rows(f"{db}.main.{src}", level, stage) for src, (level, stage) in _PEER_SOURCES.items())
            + ") ORDER BY level, stage, metric, bucket, day")
    else:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _snap_peer_dirty (level VARCHAR, day DATE)")
        for src, (level, stage) in _PEER_SOURCES.items():
            days = [r[0] for r in cur.execute("SELECT DISTINCT day FROM _snap_peer_dirty WHERE level = ? ORDER BY day",
                                              [level]).fetchall()]
            if not days:
                continue
            run("peers", f"DELETE FROM {table} WHERE level = $level AND list_contains($days, day)",
                {"level": level, "days": days})
            # the days' time range first: row groups outside it are skipped unread
            rows = (f"(SELECT * FROM {db}.main.{src} WHERE started_at >= $lo AND started_at < $hi "
                    "AND list_contains($days, CAST(started_at AS DATE)))")
            run("peers", f"INSERT INTO {table} {peer_day_rows(rows, level, stage)}",
                {"days": days, "lo": min(days), "hi": max(days) + timedelta(days=1)})
    cur.execute("DROP TABLE IF EXISTS temp.main._snap_peer_dirty")


def warm_cache(store: Store) -> int:
    """Bring the per-day aggregate cache up to the store's facts now, outside any run; returns how
    many (fact, day) pairs were re-aggregated (-1: built whole; 0 on a read-only store).

    The daemon calls it when it starts and every few minutes, so the run a session start or a user
    asks for finds the cache warm (building it for 10M requests costs ~4 s of the first run)."""
    if store.read_only:
        return 0
    with store.reader() as cur:

        def run(name: str, sql: str, params: dict[str, Any] | None = None) -> None:
            cur.execute(sql, params) if params else cur.execute(sql)

        db = ident(str(cur.execute("SELECT current_database()").fetchone()[0]))  # type: ignore[index]
        # built whole (none yet, or of another version): a read of every fact, with DuckDB's whole
        # budget (store/memory.py); a refresh after writes reads a few days and keeps the low limit
        built = cur.execute("SELECT count(*) FROM analysis_cache_state WHERE (name = 'facts' AND version = $v) "
                            "OR (name = 'summaries' AND version = $sv)",
                            {"v": CACHE_VERSION, "sv": SUMMARIES_VERSION}).fetchone()[0] == 2  # type: ignore[index]
        with _CACHE_LOCK, contextlib.nullcontext() if built else store.memory.heavy():
            cur.execute("BEGIN TRANSACTION")
            try:
                n = _refresh_cache(cur, db, run)
                # the summaries too: the workflows of the days refreshed here are known only now
                _parts_from_cache(cur, db)
                _refresh_summaries(cur, db, run, rebuilt=n == -1)
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise
    return n


def _pre_from_cache(cur: Any, db: str, run: Any, m_start: datetime, end: datetime, win: dict[str, Any]) -> None:
    """Step 1's groups from the cache. A day wholly inside the model-advice window counts all its
    requests in it, a day wholly outside none; the (at most two) days the window's ends cut through
    are aggregated from the facts instead."""
    midnight = datetime.min.time()
    cut = sorted({d.date() for d in (m_start, end) if d.time() != midnight})
    inside = {"lo": m_start.date() + timedelta(days=1) if m_start.time() != midnight else m_start.date(),
              "hi": end.date(), "cut": cut}
    cur.execute("CREATE OR REPLACE TEMP TABLE _snap_win AS SELECT $lo::DATE AS lo, $hi::DATE AS hi, $cut::DATE[] AS cut",
                {**inside, "cut": cut})
    # views, not copies: the steps after read a few columns each, and 2M cached groups cost more
    # to copy than to read again
    if cut:
        run("group_requests", "CREATE OR REPLACE TEMP TABLE _snap_req_cut AS SELECT " + _REQ_AGG + ", " + _REQ_WINDOW
            + f" FROM {db}.main.api_requests WHERE \"timestamp\" >= $lo AND \"timestamp\" < $hi "
            + "AND list_contains($cut, CAST(\"timestamp\" AS DATE)) GROUP BY ALL",
            {**win, "cut": cut, "lo": cut[0], "hi": cut[-1] + timedelta(days=1)})
    else:
        cur.execute("CREATE OR REPLACE TEMP TABLE _snap_req_cut AS SELECT " + _REQ_AGG + ", " + _REQ_WINDOW
                    + f" FROM {db}.main.api_requests WHERE false GROUP BY ALL", win)
    table, _ = _CACHE["api_requests"]
    cur.execute(f"""CREATE OR REPLACE TEMP VIEW _snap_req_pre AS
        SELECT c.* EXCLUDE (day), CASE WHEN c.day >= w.lo AND c.day < w.hi THEN c.n ELSE 0 END AS n_window
        FROM {db}.main.{table} c, _snap_win w WHERE NOT list_contains(w.cut, c.day)
        UNION ALL BY NAME SELECT * FROM _snap_req_cut""")
    table, _ = _CACHE["tool_calls"]
    cur.execute(f"CREATE OR REPLACE TEMP VIEW _snap_tool_pre AS SELECT * EXCLUDE (day) FROM {db}.main.{table}")


def _ts(t: datetime) -> str:
    """A timestamp literal (a view's body takes no parameters)."""
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"


def _groups_from_cache(cur: Any, db: str, run: Any, win: dict[str, Any]) -> None:
    """The run's per-stage and per-agent parts from the cache's second level: views over one row per
    key, no grouping of every cached day. Only ``stage_models`` depends on the model-advice window:
    a stage that ran on one model, wholly inside the window, has that model; the others (several
    models, or requests outside the window or without a time) are counted from the day groups."""
    _parts_from_cache(cur, db)


def _advised_stages(cur: Any, db: str, win: dict[str, Any]) -> list[str]:
    """The stages whose workflow stages in the model-advice window ``win`` may have different usual
    models: a workflow stage's usual model lies between the least and the greatest model of its
    requests (``req_model_lo``/``_hi``, over all its days), and every one in ``stage_model_runs`` has a
    request at or after the window's start (or one without a time). A stage whose least and greatest
    model over those agree ran on one model in the window (or none)."""
    return [r[0] for r in cur.execute(f"""
        SELECT stage FROM {db}.main.analysis_stage_summary
        WHERE stage IS NOT NULL AND (req_untimed > 0 OR req_ended_at >= $m_start)
        GROUP BY stage HAVING min(req_model_lo) <> max(req_model_hi) ORDER BY stage""",
        {"m_start": win["m_start"]}).fetchall()]


def _stage_models(cur: Any, db: str, run: Any, win: dict[str, Any], stages: list[str] | None = None) -> None:
    """``stage_models`` of the model-advice window ``win`` (see :func:`_groups_from_cache`), and
    ``stage_model_runs`` (each workflow stage with its usual model and what model advice sums: one
    read of the summary rows instead of joining them with ``stage_models``); reads the cache's stage
    summaries, up to date, and, when some stage needs its models counted, ``_snap_req_pre``
    (:func:`_pre_from_cache`, put up here). ``stages``: of these stages only (None: all)."""
    one = (f"COALESCE(req_untimed = 0 AND req_model_lo = req_model_hi AND req_started_at >= {_ts(win['m_start'])} "
           f"AND req_ended_at < {_ts(win['end'])}, false)")
    summary = f"{db}.main.analysis_stage_summary"
    if stages is not None:  # (stage names are the store's own strings: quoted as literals)
        summary = (f"(SELECT * FROM {summary} WHERE "
                   + (f"stage IN ({', '.join(literal(s) for s in stages)}))" if stages else "false)"))
    # the stages to count first: when there are none (every stage ran on one model inside the
    # window), the day groups are not read at all (scanning them to join with nothing cost ~20
    # CPU-ms at 1M requests)
    run("summaries", f"""CREATE OR REPLACE TEMP TABLE _snap_stage_models_keys AS
        SELECT workflow_id, stage FROM {summary} WHERE NOT {one} AND (req_untimed > 0 OR req_ended_at >= $m_start)""",
        {"m_start": win["m_start"]})
    none = not cur.execute("SELECT count(*) FROM _snap_stage_models_keys").fetchone()[0]
    if none:
        cur.execute("CREATE OR REPLACE TEMP TABLE _snap_stage_models_counted "
                    "(workflow_id VARCHAR, stage VARCHAR, model VARCHAR)")
    else:  # the day groups, and the requests of the days the window cuts through, only when read
        _pre_from_cache(cur, db, run, win["m_start"], win["end"], win)
        run("summaries", """CREATE OR REPLACE TEMP TABLE _snap_stage_models_counted AS
            SELECT workflow_id, stage, first(model ORDER BY n DESC, model) AS model
            FROM (SELECT p.workflow_id, p.stage, p.model, sum(p.n_window) AS n FROM _snap_req_pre p
                  SEMI JOIN _snap_stage_models_keys k
                         ON p.workflow_id = k.workflow_id AND p.stage IS NOT DISTINCT FROM k.stage
                  WHERE p.model IS NOT NULL AND p.n_window > 0 GROUP BY ALL)
            GROUP BY workflow_id, stage""")
    cur.execute("DROP TABLE temp.main._snap_stage_models_keys")
    cur.execute(f"""CREATE OR REPLACE TEMP VIEW stage_models AS
        SELECT workflow_id, stage, req_model_lo AS model FROM {summary} WHERE {one}
        UNION ALL SELECT workflow_id, stage, model FROM _snap_stage_models_counted""")
    # (rows with no stage left out, as the join of the two on workflow and stage leaves them)
    runs = "total_cost, error_count, tool_calls, api_requests"
    cur.execute(f"""CREATE OR REPLACE TEMP VIEW stage_model_runs AS
        SELECT workflow_id, stage, req_model_lo AS model, {runs} FROM {summary} WHERE stage IS NOT NULL AND {one}
        UNION ALL
        SELECT s.workflow_id, s.stage, c.model, {', '.join('s.' + x for x in runs.split(', '))}
        FROM _snap_stage_models_counted c JOIN {summary} s ON s.workflow_id = c.workflow_id AND s.stage = c.stage""")


def _parts_from_cache(cur: Any, db: str, only: str = "true", src: dict[str, str] | None = None) -> None:
    """Temporary views named like the summary views' parts, over the cache's second level (their rows
    of the workflows ``only`` holds; ``src``: tables to read instead of the cache's, see _only_workflows)."""
    src = src or {}

    def cache(table: str) -> str:
        return src.get(table, f"{db}.main.{table}")

    cols = ("experiment_id, task_id, api_requests, total_cost, unpriced_requests, input_tokens, output_tokens, "
            "cache_read_tokens, cache_creation_tokens, retries, started_at, ended_at, api_duration_ms")
    wf = f"workflow_id IS NOT NULL AND {only}"
    cur.execute(f"CREATE OR REPLACE TEMP VIEW request_stage_groups AS SELECT workflow_id, stage, {cols} "
                f"FROM {cache('analysis_stage_groups')} WHERE {wf}")
    cur.execute("CREATE OR REPLACE TEMP VIEW tool_stage_groups AS SELECT workflow_id, stage, tool_calls, tool_failures, "
                f"started_at, ended_at FROM {cache('analysis_tool_stage_groups')} WHERE {wf}")
    cur.execute("CREATE OR REPLACE TEMP VIEW error_stage_groups AS SELECT workflow_id, stage, api_errors "
                f"FROM {cache('analysis_error_stage_groups')} WHERE {wf}")
    cur.execute("CREATE OR REPLACE TEMP VIEW agent_request_spans AS SELECT agent_id, first_at, last_at, last_duration_ms, "
                "agent_label "
                f"FROM {cache('analysis_agent_spans')} WHERE agent_id IS NOT NULL")
    cur.execute("CREATE OR REPLACE TEMP VIEW stage_agent_spans AS SELECT workflow_id, stage, agent_id, first_at, last_at "
                f"FROM {cache('analysis_stage_agents')} WHERE {wf}")


class _CursorReader:
    """The store, but its reads (``query``, ``scalar``) go through ``cur``, whose temporary tables or
    views shadow the store's views; everything else is the store's."""

    # when the reader reads the cache: its duration counts (DURATIONS) and its workflow summary rows,
    # which keep each workflow's span (_WORKFLOW_SPAN_COLS)
    durations: str | None = None
    workflow_spans: str | None = None
    peer_days: str | None = None  # and its peers' counts (PEER_DAYS)

    def __init__(self, store: Store, cur: Any) -> None:
        self._store = store
        self._cur = cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return dict_rows(self._cur, sql, params)

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params or [])
        return next(iter(rows[0].values())) if rows else None

    def arrays(self, sql: str, params: Any = None) -> dict[str, Any]:
        return column_arrays(self._cur, sql, params)

    @contextmanager
    def reader(self) -> Iterator[Any]:
        """This reader's own cursor, as ``Store.reader`` gives one (left open: the reader's)."""
        yield self._cur


class SnapshotReader(_CursorReader):
    """The store, but reads go through the run's connection, whose temporary tables shadow the views."""

    def __init__(self, store: Store, cur: Any, rows_from: datetime, end: datetime,
                 stage_models_window: tuple[datetime, datetime]) -> None:
        super().__init__(store, cur)
        self.rows_from = rows_from  # requests/tools/errors hold rows of [rows_from, end) only
        self.rows_until = end
        self.stage_models_window = stage_models_window


@contextmanager
def snapshot(store: Store, now: datetime | None = None, days: float = 7,
             timings: dict[str, float] | None = None, use_cache: bool = True) -> Iterator[Any]:
    """Build the run's snapshot (see the module docstring); yields a reader over it.

    ``days`` is the run's window: ``requests``/``tools``/``errors`` keep rows of the last
    ``max(days, 7)`` days (the longest window the run's row-level queries use). ``use_cache``:
    step 1 from the per-day aggregates kept in the database (built by the first run, refreshed for
    the days written since); without it (or on a read-only store), from the fact tables.
    """
    import time

    end = as_naive(now)
    rows_from = end - timedelta(days=max(days, 7))
    m_start = end - timedelta(days=MODEL_ADVICE_DAYS)
    t: dict[str, float] = {}

    def run(name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        s = time.monotonic()
        cur.execute(sql, params) if params else cur.execute(sql)
        t[name] = t.get(name, 0.0) + time.monotonic() - s

    # a cursor of its own, closed at the end (temporary tables go with it); closing the store interrupts it
    with store.reader() as cur:
        db = ident(str(cur.execute("SELECT current_database()").fetchone()[0]))  # type: ignore[index]
        win = {"m_start": m_start, "end": end}
        # one transaction for the whole run: every read sees the same store, the cache is refreshed to
        # exactly what the reads see, and writers go on meanwhile (they write other tables than the cache's)
        cached = use_cache and not store.read_only
        # The cache's rows are written in this transaction: a second writer of them (another
        # snapshot, warm_cache) meanwhile would conflict, so the lock is held until COMMIT.
        with _CACHE_LOCK if cached else contextlib.nullcontext():
            cur.execute("BEGIN TRANSACTION")
            done = False
            try:
                if cached:
                    t["cache_days"] = _refresh_cache(cur, db, run)
                    _groups_from_cache(cur, db, run, win)
                    _refresh_summaries(cur, db, run, rebuilt=t["cache_days"] == -1)
                    _stage_models(cur, db, run, win)  # reads the summaries
                else:
                    run("group_requests", _REQ_PRE.format(db=db, where="true"), win)
                    run("group_tools", _TOOL_PRE.format(db=db))
                    for sql in _STAGE_GROUPS:
                        run("summaries", sql)
                    # API errors are few: the view, row by row (before `errors` below shadows what it reads)
                    run("summaries", f"CREATE OR REPLACE TEMP TABLE error_stage_groups AS "
                                     f"SELECT * FROM {db}.main.error_stage_groups")
                    # the summary views' bodies, bound on this connection, read the temporary parts above
                    for v in ("workflow_stage_summary", "workflow_summary"):
                        run("summaries", f"CREATE OR REPLACE TEMP TABLE {v} AS SELECT * FROM {db}.main.{v}")
                    cur.execute("""CREATE OR REPLACE TEMP VIEW stage_model_runs AS
                        SELECT workflow_id, stage, sm.model, ss.total_cost, ss.error_count, ss.tool_calls,
                               ss.api_requests
                        FROM workflow_stage_summary ss JOIN stage_models sm USING (workflow_id, stage)""")
                for name in ("_snap_req_pre", "_snap_tool_pre", "request_stage_groups", "tool_stage_groups",
                             "_snap_req_cut", "_snap_win"):
                    # done with: their memory goes to what follows (the cached step 1 is views)
                    kind = cur.execute("SELECT CASE WHEN EXISTS (SELECT 1 FROM duckdb_views() WHERE temporary AND view_name = ?) "
                                       "THEN 'VIEW' ELSE 'TABLE' END", [name]).fetchone()[0]  # type: ignore[index]
                    cur.execute(f"DROP {kind} IF EXISTS temp.main.{name}")
                # the window's rows: views over the facts, not copies (a copy of a week at 10M requests
                # took most of a run's memory); the transaction keeps what they read fixed
                window = f"\"timestamp\" >= {_ts(rows_from)} AND \"timestamp\" < {_ts(end)}"
                for view in ("requests", "tools", "errors"):
                    cur.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {db}.main.{view} WHERE {window}")
                if timings is not None:
                    timings.update({f"snapshot.{k}": round(v, 3) for k, v in t.items()})
                reader = SnapshotReader(store, cur, rows_from, end, (m_start, end))
                if cached:
                    reader.durations = f"{db}.main.{DURATIONS}"
                    reader.workflow_spans = f"{db}.main.analysis_workflow_summary"
                    reader.peer_days = f"{db}.main.{PEER_DAYS}"
                yield reader
                done = True
            finally:
                with contextlib.suppress(Exception):  # closing the cursor would roll back too, after the lock
                    cur.execute("COMMIT" if done else "ROLLBACK")


def cache_current(store: Store) -> bool:
    """Whether the cache's summaries hold every write so far: no fact day stamped and no context row
    (workflow, review report, session) changed since they were refreshed. Four small reads (the
    stamps are one row per fact and day); facts written around ``Store.write`` count once
    ``resolve_all``/``load_resolved`` dropped the cache's state, as they do."""
    with store.reader() as cur:
        return cache_current_in(cur)


def cache_current_in(cur: Any) -> bool:
    """:func:`cache_current` as ``cur``'s transaction sees the store."""
    row = cur.execute(f"""
        SELECT (SELECT seen_seq FROM analysis_cache_state WHERE name = 'facts' AND version = $v)
                   = (SELECT COALESCE(max(seq), 0) FROM fact_changes),
               (SELECT seen_seq FROM analysis_cache_state WHERE name = 'summaries' AND version = $sv)
                   = (SELECT COALESCE(max(s), 0) FROM ({" UNION ALL ".join(
                         f"SELECT max(_change_seq) AS s FROM {t}" for t in _CONTEXT_CHANGES)}))""",
                      {"v": CACHE_VERSION, "sv": SUMMARIES_VERSION}).fetchone()
    return bool(row and row[0] and row[1])


@contextmanager
def current_cache(store: Any, wanted: bool = True) -> Iterator[tuple[Any, bool]]:
    """A reader cursor inside one transaction, and whether the analysis cache it sees holds every write
    (checked inside the transaction, so what is read from the cache and from the facts is of one moment).
    When ``wanted``, on a writable store, a cache found behind is brought up to date first (as
    :func:`summaries` does). A :class:`CacheReader` is such a transaction already: its cursor. Another
    reader (an analysis run's) or a read-only store gets False: its answers read rows."""
    if isinstance(store, CacheReader):
        yield store._cur, wanted and store.cache_current()
        return
    usable = wanted and isinstance(store, Store) and not store.read_only
    warmed = False
    while True:
        with store.reader() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                current = usable and cache_current_in(cur)
                if current or not usable or warmed:
                    yield cur, current
                    return
            finally:
                with contextlib.suppress(Exception):  # a closed store's cursor has rolled back already
                    cur.execute("COMMIT")
        warm_cache(store)
        warmed = True


def failure_groups_sql(start: datetime, end: datetime) -> tuple[str, list[Any]] | None:
    """The failures of [start, end) counted per status, text, type, stage and tool (``failure_events``'
    columns; stage '-' and tool 'api' for none) from the cache's failure days, for a cursor of
    :func:`current_cache` that found it current; None when the window holds no whole day."""
    lo = start.date() + timedelta(days=0 if start.time() == datetime.min.time() else 1)
    hi = min(end.date(), _NO_DAY)
    if lo >= hi:
        return None
    lo_at, hi_at = datetime.combine(lo, datetime.min.time()), datetime.combine(hi, datetime.min.time())
    rows = ("SELECT status_code, msg, etype, COALESCE(stage, '-') AS stage, COALESCE(tool_name, 'api') AS tool, "
            "1 AS n FROM {view} WHERE \"timestamp\" >= ? AND \"timestamp\" < ?")
    sql = f"""SELECT status_code, msg, etype, stage, tool, CAST(sum(n) AS BIGINT) AS n FROM (
        SELECT NULL::INTEGER AS status_code, msg, etype, COALESCE(stage, '-') AS stage,
               COALESCE(tool_name, 'api') AS tool, n FROM {_FAILURE_DAYS} WHERE day >= ? AND day < ?
        UNION ALL {rows.format(view="tool_failure_events")}
        UNION ALL {rows.format(view="tool_failure_events")}
        UNION ALL {rows.format(view="api_failure_events")}) GROUP BY ALL"""
    return sql, [lo, hi, start, lo_at, hi_at, end, start, end]


@contextmanager
def summaries(store: Any, now: datetime | None = None) -> Iterator[Any]:
    """A reader for analyses that read the summary views over all history (``workflow_summary``,
    ``workflow_stage_summary``, their parts, ``agent_request_spans``, ``stage_agent_spans``) and the
    fact tables.

    On a writable store: the cache's summary rows (one per workflow, one per workflow stage), brought
    up to date first when a write came since (:func:`warm_cache`: only the days and workflows written
    since are summed again; the daemon also does it in idle time, so a tool call rarely waits for it).
    The views sum the rollups at every read instead: 7.75M groups at 10M requests, seconds per
    question. A snapshot (an analysis run) already is such a reader; a read-only store reads the views.
    With ``now``, the reader also has ``stage_models`` (the usual model per workflow stage) for the
    model-advice window ending then, from the cache as an analysis run has it, of the stages that ran on
    more than one model in it only: a stage of one model has no cheaper one to compare (model advice
    leaves it out), and every stage's runs were most of the advice's cost at 10M requests."""
    if isinstance(store, SnapshotReader | CacheReader) or store.read_only:
        yield store
        return
    if not cache_current(store):
        warm_cache(store)
    with store.reader() as cur:
        db = ident(str(cur.execute("SELECT current_database()").fetchone()[0]))  # type: ignore[index]
        # one transaction: every read of the answer sees the same cache (a refresh may commit meanwhile)
        cur.execute("BEGIN TRANSACTION")
        try:
            _parts_from_cache(cur, db)
            for table, view in _SUMMARIES.items():
                _summary_view(cur, db, table, view)
            reader = CacheReader(store, cur)
            reader.durations = f"{db}.main.{DURATIONS}"
            reader.workflow_spans = f"{db}.main.analysis_workflow_summary"
            reader.peer_days = f"{db}.main.{PEER_DAYS}"
            if now is not None:
                end = as_naive(now)
                m_start = end - timedelta(days=MODEL_ADVICE_DAYS)
                win = {"m_start": m_start, "end": end}

                def run(name: str, sql: str, params: dict[str, Any] | None = None) -> None:
                    cur.execute(sql, params) if params else cur.execute(sql)

                _stage_models(cur, db, run, win, _advised_stages(cur, db, win))
                reader.stage_models_window = (m_start, end)
            yield reader
        finally:
            with contextlib.suppress(Exception):  # a closed store's cursor has rolled back already
                cur.execute("COMMIT")


class CacheReader(_CursorReader):
    """The store, but reads go through a cursor whose temporary views put the cache's summary rows in
    front of the summary views (view bodies such as ``workflow_outcomes`` read them too)."""

    def __init__(self, store: Store, cur: Any) -> None:
        super().__init__(store, cur)
        self.stage_models_window: tuple[datetime, datetime] | None = None
        self._current: bool | None = None

    def cache_current(self) -> bool:
        """Whether the cache this reader sees holds every write it sees (a write may land between the
        refresh before the reader and its transaction); the transaction's view does not change."""
        if self._current is None:
            self._current = cache_current_in(self._cur)
        return self._current
