"""The resolver: gives every fact its context once, when it is written.

Facts (``api_requests``, ``tool_calls``, ``api_errors``, ``spans``, ``compaction_events``) are stored with ``r_``
columns: workflow, stage, top stage, agent label, task, experiment, workflow path, complexity,
project, branch and, for requests, cost and cost source. The rules are in ``sql/resolve.sql`` and
nowhere else; every reader (views, analyses, tools, dashboard) reads the ``r_`` columns.

Inside :meth:`Store.write <golem_mcp.store.db.Store.write>`'s transaction:

1. :meth:`WriteResolution.begin` notes the context rows the batch is about to change (sessions,
   agents, workflows, workflow links, agent context), as they are stored;
2. once the batch's context is written, :meth:`WriteResolution.context_written` compares, and turns
   what changed into a *scope*: the stored facts the change concerns (by session, agent, declared
   context key or workflow), kept only for keys that have facts at all (``resolve_owners``), so
   new sessions and agents cost no scan;
3. new fact rows are resolved as they are inserted (:meth:`WriteResolution.insert`), by joining
   only the batch's own keys with the context tables;
4. :meth:`WriteResolution.finish` re-resolves the merged rows (a fact seen again by another source)
   and the scope's rows, updates those whose resolved values changed, and leaves the change set.

The change set (the hook point for rollups): for each fact table ``T`` the write changed, two
temporary tables on the store's connection, valid until the write commits:

- ``golem_delta_old_T``: the rows as they were stored before this write, for keys that existed and
  whose stored values (resolved or measured) changed;
- ``golem_delta_new_T``: the rows as they are now, for every key inserted or changed.

Both have exactly ``T``'s columns. Subtracting each ``golem_delta_old_T`` row's contribution and
adding each ``golem_delta_new_T`` row's keeps an aggregate over ``T`` equal to the same
``GROUP BY`` over ``T``. Code that maintains such aggregates registers a callable with
:meth:`Store.on_fact_changes <golem_mcp.store.db.Store.on_fact_changes>`; it is called with the
connection and ``{table: rows in golem_delta_new_T}`` (a :class:`Changes`) after resolution, before
the commit, in the write's transaction (an exception rolls the whole write back). ``Changes.resolved_only``
names the tables the write changed only by re-resolving them (context arrived; none of their rows was
written): between ``old`` and ``new`` only the ``r_`` columns (and ``_change_seq``) differ, so an
aggregate that reads no ``r_`` column is unchanged by them.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any, NamedTuple

COMMON = ("r_workflow_id", "r_stage", "r_top_stage", "r_agent", "r_task_id", "r_experiment_id",
          "r_workflow_path", "r_complexity", "r_project", "r_git_branch")
# (a fact's machine is its own column, migration 009's machine_id, carried as written: not resolved)
REQUEST = (*COMMON, "r_cwd", "r_claude_code_version", "r_calculated_cost_usd", "r_cost_usd", "r_cost_source")

_DEFAULT_STAGE = "golem_agent_label(f.agent_id, t.agent_type)"  # resolve.sql's macro, as r_agent


class Changes(dict):
    """The change set's counts: fact table -> rows in ``golem_delta_new_T``; and ``resolved_only``,
    the tables whose rows only their resolved (``r_``) columns changed (module docstring)."""

    def __init__(self, counts: dict[str, int], resolved_only: Iterable[str] = ()) -> None:
        super().__init__(counts)
        self.resolved_only = frozenset(t for t in resolved_only if t in counts)


class Fact(NamedTuple):
    key: str
    ts: str            # the time column the session's workflow link is looked up at
    stage_default: str  # a fact's stage when no context names one
    resolved: tuple[str, ...]


FACTS: dict[str, Fact] = {
    "api_requests": Fact("request_id", '"timestamp"', _DEFAULT_STAGE, REQUEST),
    "tool_calls": Fact("tool_use_id", '"timestamp"', _DEFAULT_STAGE, COMMON),
    "api_errors": Fact("error_key", '"timestamp"', _DEFAULT_STAGE, COMMON),
    # a span names a stage only when it or its agent declares one (phase spans are named otherwise)
    "spans": Fact("span_id", "start_time", "NULL", COMMON),
    # context compactions (migration 012), the OTel event and the Pre/PostCompact hooks alike
    "compaction_events": Fact("event_key", '"timestamp"', _DEFAULT_STAGE, COMMON),
}

# Context tables: what a fact's resolution reads of each, looked up by which column.
# table -> (lookup column, the columns whose change concerns facts)
CONTEXT: dict[str, tuple[str, tuple[str, ...]]] = {
    "sessions": ("session_id", ("project", "cwd", "git_branch", "version")),
    "agents": ("agent_id", ("session_id", "agent_type", "parent_agent_id", "spawn_tool_use_id")),
    "workflows": ("workflow_id", ("path", "complexity", "experiment_id")),
    "workflow_links": ("session_id", ("valid_from", "workflow_id", "task_id", "experiment_id", "stage")),
    "agent_context": ("agent_id", ("workflow_id", "stage", "task_id", "experiment_id")),
}

_CHUNK = 2000  # DuckDB answers an IN list from the primary-key index for up to 2048 keys
# a write's new facts name their sessions as a bound list up to this many (a list parameter costs
# DuckDB's Python layer ~25 us a value); more (a large import) are listed from the facts by DuckDB
_BOUND_SESSIONS = 256


def _sections() -> dict[str, str]:
    text = resources.files("golem_mcp.store").joinpath("sql", "resolve.sql").read_text()
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True):
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line
    return out


SQL = _sections()


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def marks(n: int) -> str:
    return ", ".join("?" * n)


def chunks(values: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def keyed(con: Any, sql: str, keys: list[Any], params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` for ``keys``: ``{keys}`` in it stands for the set of keys (``col IN ({keys})``),
    ``params`` are bound before them.

    Up to ``_CHUNK`` keys go as an IN list of bound values, answered from the primary-key index
    (what a write of a few OTLP records asks). More (a large import's sessions, agents and tool
    calls) go as one semi-join against the keys as an Arrow table: binding a value costs DuckDB's
    Python layer ~25 us (2,000 agent ids: ~50 CPU-ms a query), a semi-join ~40 ns a stored row."""
    if not keys:
        return []
    if len(keys) <= _CHUNK or not all(isinstance(k, str) for k in keys):
        rows: list[tuple[Any, ...]] = []
        for part in chunks(keys):
            rows += con.execute(sql.replace("{keys}", marks(len(part))), [*params, *part]).fetchall()
        return rows
    import pyarrow as pa

    con.register("_golem_keys", pa.table({"k": pa.array(keys, pa.string())}))
    try:
        return con.execute(sql.replace("{keys}", "SELECT k FROM _golem_keys"), list(params)).fetchall()
    finally:
        con.unregister("_golem_keys")


def fact_columns(types: dict[str, str]) -> list[str]:
    """A fact table's own columns (what sources write), in table order."""
    return [c for c in types if not c.startswith("r_")]


# The context rows a few facts can join, for resolution_sql's narrow: DuckDB builds a LEFT JOIN's hash
# table on its right side, so joining 20 facts with every session and workflow of a 10M store
# hashed 500,000 rows of each (~60 ms apiece, most of a record_workflow at 10M); the IN makes
# it hash the facts' keys and read only the matching context rows.
_NARROW = {"{agent_context}": "(SELECT * FROM agent_context WHERE agent_id IN (SELECT COALESCE(agent_id, session_id) FROM f))",
           "{workflows}": "(SELECT * FROM workflows WHERE workflow_id IN (SELECT r_workflow_id FROM x))",
           "{sessions}": "(SELECT * FROM sessions WHERE session_id IN (SELECT session_id FROM f))"}


def resolution_sql(table: str, facts: str, every_session: bool = False, bound_sessions: bool = False,
                   narrow: bool = False) -> str:
    """SELECT resolving the rows of ``facts`` (a query over ``table``'s own columns): those columns
    and the resolved ones. Reads ``_rc_tree`` (:func:`build_tree`) for the agents of those rows.

    The workflow links read are those of the facts' sessions, or with ``every_session`` all of them:
    ``facts`` is then read once, so a whole table streams through instead of being held to list
    its sessions first (a table copied whole has most sessions anyway). With ``bound_sessions`` the
    sessions are a parameter (``?::VARCHAR[]``, bound after those of ``facts``) holding at least the
    facts' sessions: a write knows them, and listing them from ``facts`` cost two aggregates over it.
    With ``narrow`` (few facts against a large store: a write, a re-resolution) only the context rows
    the facts can join are read (:data:`_NARROW`)."""
    spec = FACTS[table]
    req = table == "api_requests"
    links = "SELECT * FROM workflow_links" + (
        "" if every_session else " WHERE session_id IN (SELECT unnest(?::VARCHAR[]))" if bound_sessions
        else " WHERE session_id IN (SELECT session_id FROM f)")
    sql = SQL["facts"]
    for name, rows in _NARROW.items():
        sql = sql.replace(name, rows if narrow else name[1:-1])
    return (sql.replace("{facts}", facts).replace("{link_rows}", links).replace("{ts}", spec.ts)
            .replace("{stage_default}", spec.stage_default)
            .replace("{request_columns}", SQL["request_columns"].strip() if req else "")
            .replace("{request_join}", SQL["request_join"].strip() if req else ""))


def resolved_rows(table: str, types: dict[str, str], cols: list[str], src: str, every_session: bool = False,
                  bound_sessions: bool = False, narrow: bool = False) -> str:
    """SELECT of the rows of ``src`` (a query over ``cols``, some of ``table``'s own columns) with
    every column of ``table``, the resolved ones filled: what an INSERT of new facts takes.
    ``every_session``, ``bound_sessions``, ``narrow``: see :func:`resolution_sql`."""
    present = set(cols)
    facts = ("SELECT " + ", ".join(q(c) if c in present else f"NULL::{types[c]} AS {q(c)}" for c in fact_columns(types))
             + f" FROM ({src})")
    return f"SELECT {', '.join(q(c) for c in types)} FROM ({resolution_sql(table, facts, every_session, bound_sessions, narrow)})"


class TreeCache:
    """What the store's connection's ``_rc_tree`` was built from by the last committed write: the
    agents and ancestors (id -> type, parent) it holds. A write whose facts name the same agents, as
    they are stored, finds the tree built (an OTLP exporter's writes name one session's agents again
    and again; building it was a statement of ~11 CPU-ms a write). ``pending`` is the base of the
    tree the write in progress left; :meth:`Store.write <golem_mcp.store.db.Store.write>` keeps it
    once committed and forgets both on a rollback (which rolls ``_rc_tree`` back too), as does
    anything else that builds the tree on that connection."""

    def __init__(self) -> None:
        self.base: dict[str, tuple[Any, Any]] | None = None
        self.pending: dict[str, tuple[Any, Any]] | None = None

    def committed(self) -> None:
        self.base = self.pending

    def forget(self) -> None:
        self.base = self.pending = None


def build_tree(con: Any, agent_ids: Iterable[str] | None, cache: TreeCache | None = None) -> None:  # noqa: C901
    """``_rc_tree`` for ``agent_ids`` (None: every agent). Fetches the agents and their ancestors by
    their keys (an IN list is answered from the primary-key index: no scan of agents or tool calls),
    level by level, then runs the tree rule (resolve.sql's ``tree``) over them. ``cache``: the
    connection's :class:`TreeCache`, which saves building the same tree again."""
    if cache is not None:
        built, cache.pending = cache.pending, None  # (a tree built otherwise below is not cached)
    if agent_ids is None:
        con.execute("CREATE OR REPLACE TEMP TABLE _rc_agent_base AS SELECT * FROM agent_parents")
    else:
        base: dict[str, tuple[Any, Any]] = {}
        todo = sorted({a for a in agent_ids if a is not None})
        seen: set[str] = set(todo)
        for _ in range(17):
            if not todo:
                break
            rows = keyed(con, "SELECT agent_id, agent_type, parent_agent_id, spawn_tool_use_id FROM agents "
                              "WHERE agent_id IN ({keys})", todo)
            spawns = sorted({r[3] for r in rows if r[2] is None and r[3] is not None})
            spawner: dict[str, Any] = dict(keyed(con, "SELECT tool_use_id, agent_id FROM tool_calls WHERE tool_use_id IN ({keys})",
                                                 spawns))
            nxt = set()
            for aid, atype, parent, spawn in rows:
                parent = parent if parent is not None else spawner.get(spawn)
                base[aid] = (atype, parent)
                if parent is not None and parent not in seen:
                    seen.add(parent)
                    nxt.add(parent)
            todo = sorted(nxt)
        if cache is not None:
            if built is not None and base == built:  # the tree rule is a function of its base
                cache.pending = built
                return
            cache.pending = base
        ids = list(base)
        if not ids:  # (the store's open builds the empty tree: no pyarrow for that)
            con.execute("CREATE OR REPLACE TEMP TABLE _rc_agent_base AS SELECT NULL::VARCHAR AS agent_id, "
                        "NULL::VARCHAR AS agent_type, NULL::VARCHAR AS parent_agent_id LIMIT 0")
        else:
            import pyarrow as pa

            # as an Arrow table: three list parameters cost DuckDB's Python layer ~25 us a value; the
            # tree rule reads it as registered (copying it into _rc_agent_base first cost a statement)
            con.register("_golem_tree_base", pa.table({
                "agent_id": pa.array(ids, pa.string()), "agent_type": pa.array([base[a][0] for a in ids], pa.string()),
                "parent_agent_id": pa.array([base[a][1] for a in ids], pa.string())}))
            try:
                con.execute(SQL["tree"].replace("{tree_base}", "_golem_tree_base"))
            finally:
                con.unregister("_golem_tree_base")
            return
    con.execute(SQL["tree"].replace("{tree_base}", "_rc_agent_base"))


def _earliest(links: set[tuple[Any, ...]]) -> datetime | None:
    """The earliest ``valid_from`` of workflow links as :meth:`WriteResolution._context_rows` gives them
    (their values as text), or None when one cannot be read back."""
    try:
        return min(datetime.fromisoformat(v[0]) for v in links)
    except (TypeError, ValueError):
        return None


@dataclass
class Scope:
    """Stored facts a change of context concerns."""
    sessions: set[str] = field(default_factory=set)
    # sessions whose workflow links changed from a time on: only their facts of that time or later
    # (or of no time) can take another link. A link from now (a session's next workflow) concerns
    # none of the facts stored, where the whole session's were read and resolved again
    since: dict[str, datetime] = field(default_factory=dict)
    agents: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)   # agent_context keys: an agent id, or a session id (main thread)
    workflows: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)      # price changed for these (priced) model names
    main_thread: bool = False                          # the main stage setting changed
    everything: bool = False

    def __bool__(self) -> bool:
        return bool(self.sessions or self.since or self.agents or self.declared or self.workflows or self.models
                    or self.main_thread or self.everything)

    def parts(self, table: str) -> list[tuple[str, list[Any]]]:
        """WHERE clauses over ``table`` that together select the facts in scope, each one DuckDB
        pushes into the table's scan: a column compared with a list, reading the other columns only
        for the rows that match. ORed into one clause, or as ``COALESCE(agent_id, session_id) IN``,
        the scan read every column of every row: an agent's record_stage_usage at 10M requests
        spent ~1 s on it (api_requests and tool_calls), ~2-10 ms each way split."""
        if self.everything:
            return [("true", [])]
        out: list[tuple[str, list[Any]]] = []
        for where, values in (("session_id IN ({m})", self.sessions), ("agent_id IN ({m})", self.agents),
                              # an agent_context key: the agent's id, or the session's for its main thread
                              ("agent_id IN ({m})", self.declared),
                              ("agent_id IS NULL AND session_id IN ({m})", self.declared),
                              ("r_workflow_id IN ({m})", self.workflows)):
            if values:
                out.append((where.format(m=marks(len(values))), sorted(values)))
        if bounded := {v: t for v, t in self.since.items() if v not in self.sessions}:
            ts = FACTS[table].ts  # (a fact without a time takes the latest link: it is in scope)
            out.append((f"session_id IN ({marks(len(bounded))}) AND ({ts} >= ? OR {ts} IS NULL)",
                        [*sorted(bounded), min(bounded.values())]))
        if self.models and table == "api_requests":
            out.append((f"golem_price_model(model) IN ({marks(len(self.models))})", sorted(self.models)))
        if self.main_thread:
            out.append(("agent_id IS NULL", []))
        return out


class Owners:
    """Which sessions, agents and workflows have facts (table ``resolve_owners``: 's:' || session id,
    'a:' || agent id, 'w:' || workflow id), so context arriving for a key without facts costs no
    scan. Kept as a superset: a write records the sessions and agents of its facts, and every
    workflow a fact could resolve to (the workflow ids its facts carry, the ones its agent context
    and workflow links name, and its sessions' own workflows). A small cache of keys known to be
    stored saves the insert for keys that repeat."""

    def __init__(self, size: int = 50_000) -> None:
        self._known: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def any(self, con: Any) -> bool:
        """Whether any fact is stored (any owner key is)."""
        return bool(self._known) or bool(con.execute("SELECT 1 FROM resolve_owners LIMIT 1").fetchall())

    def present(self, con: Any, owners: Iterable[str]) -> set[str]:
        want = sorted(set(owners))
        found = {o for o in want if o in self._known}
        rest = [o for o in want if o not in found]
        found.update(r[0] for r in keyed(con, "SELECT owner FROM resolve_owners WHERE owner IN ({keys})", rest))
        return found

    def add(self, con: Any, owners: set[str], sessions: set[str]) -> set[str]:
        """Store ``owners`` and the own workflows of ``sessions`` (those not known to be stored);
        returns what to remember once the write commits."""
        owners = {o for o in owners if o not in self._known}
        sessions = {v for v in sessions if "sw:" + v not in self._known}
        if owners or sessions:
            import pyarrow as pa

            # as Arrow tables: a list parameter costs DuckDB's Python layer ~25 us a value
            con.register("_golem_owners", pa.table({"o": pa.array(sorted(owners), pa.string())}))
            con.register("_golem_sessions", pa.table({"s": pa.array(sorted(sessions), pa.string())}))
            try:
                con.execute("INSERT OR IGNORE INTO resolve_owners SELECT DISTINCT o FROM (SELECT o FROM _golem_owners "
                            "UNION ALL SELECT 'w:' || golem_session_workflow(s) FROM _golem_sessions)")
            finally:
                con.unregister("_golem_owners")
                con.unregister("_golem_sessions")
        return owners | {"sw:" + v for v in sessions}

    def remember(self, owners: Iterable[str]) -> None:
        for o in owners:
            self._known[o] = None
            self._known.move_to_end(o)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


def _owner_keys(con: Any, relation: str) -> set[str]:
    rows = con.execute(f"SELECT DISTINCT 's:' || session_id FROM {relation} WHERE session_id IS NOT NULL "
                       f"UNION SELECT DISTINCT 'a:' || agent_id FROM {relation} WHERE agent_id IS NOT NULL "
                       f"UNION SELECT DISTINCT 'w:' || r_workflow_id FROM {relation} WHERE r_workflow_id IS NOT NULL").fetchall()
    return {r[0] for r in rows}


# Claude Code's tools that start a subagent (its Agent tool, called Task before 2.x): a tool call
# of another name is never an agent's spawn_tool_use_id, so only these are looked up among agents.
SPAWN_TOOLS = ("Agent", "Task")
# The workflow a session works for now: its latest workflow link (a review report that names no
# workflow takes its session's; analysis/findings.py and WriteResolution.link_reports).
SESSION_WORKFLOW_SQL = ("(SELECT l.workflow_id FROM workflow_links l WHERE l.session_id = {session} "
                        "ORDER BY l.valid_from DESC LIMIT 1)")


class WriteResolution:
    """The resolver's state during one :meth:`Store.write`; see the module docstring. ``track``: keep
    the change set (someone registered for it); without it no delta tables are written."""

    def __init__(self, con: Any, types: dict[str, dict[str, str]], owners: Owners, track: bool = True,
                 change: Callable[[], int] | None = None, tree: TreeCache | None = None) -> None:
        self.con = con
        self.tree = tree  # the connection's agent tree as last built (build_tree)
        self.change = change  # the write's change number (migration 009's _change_seq), for rows it updates
        self.types = types
        self.owners = owners
        self.track = track
        self.old: dict[tuple[str, Any], set[tuple[Any, ...]]] = {}
        self.asked: dict[str, list[Any]] = {}
        self.scope = Scope()
        self.inserted: set[str] = set()   # fact tables with rows inserted (resolved) by this write
        self.new_rows: dict[str, int] = {}  # rows inserted into each golem_delta_new_T (when tracked)
        self.merged: dict[str, list[Any]] = {}  # fact table -> keys merged into stored rows
        self.before: set[str] = set()  # fact tables whose pre-merge images are in _res_before_T
        self.rescoped: set[str] = set()
        self.resolved_only: set[str] = set()  # rescoped tables this write neither inserted into nor merged
        self.new_owners: set[str] = set()  # to remember once committed
        self.batch_owners: set[str] = set()
        self.batch_sessions: set[str] = set()
        self.spawn_ids: list[str] = []
        self.call_ids: list[str] = []  # tool calls written now that name their session (link_reports)

    # -- context -------------------------------------------------------------------------------
    def _context_rows(self, asked: dict[str, list[Any]]) -> dict[tuple[str, Any], set[tuple[Any, ...]]]:
        """(table, key) -> the stored values that concern facts; a row whose values are all NULL
        counts as no row (it resolves nothing), except a workflow link (its time alone counts)."""
        parts, params = [], []
        big: list[tuple[str, str]] = []
        for table, values in asked.items():
            col, cols = CONTEXT[table]
            vals = ", ".join(f"CAST({q(c)} AS VARCHAR)" for c in cols)
            sql = f"SELECT '{table}' AS t, {q(col)} AS k, [{vals}] AS v FROM {q(table)} WHERE {q(col)} IN ({{keys}})"
            if len(values) > _CHUNK:  # one semi-join each (see keyed)
                big.append((table, sql))
                continue
            parts.append(sql.replace("{keys}", marks(len(values))))
            params += values
        rows = self.con.execute(" UNION ALL ".join(parts), params).fetchall() if parts else []
        for table, sql in big:
            rows += keyed(self.con, sql, asked[table])
        out: dict[tuple[str, Any], set[tuple[Any, ...]]] = {}
        for t, k, v in rows:
            if t == "workflow_links" or any(x is not None for x in v):
                out.setdefault((t, k), set()).add(tuple(v))
        return out

    def begin(self, rows: dict[str, list[dict]]) -> None:
        """Note the stored context the batch's rows may change, and what the batch's facts own."""
        # a store without facts (a first import's first write): a change of stored context concerns
        # none (the scope keeps only keys with facts), so it is not looked up
        if self.owners.any(self.con):
            for table, (col, _) in CONTEXT.items():
                values = sorted({v for r in rows.get(table, ()) if isinstance(v := r.get(col), str)})
                if values:
                    self.asked[table] = values
            self.old = self._context_rows(self.asked)
        owners: set[str] = set()
        for t in FACTS:
            for r in rows.get(t, ()):
                sid, aid, wf = r.get("session_id"), r.get("agent_id"), r.get("workflow_id")
                if isinstance(sid, str):
                    owners.add("s:" + sid)
                    self.batch_sessions.add(sid)
                if isinstance(aid, str):
                    owners.add("a:" + aid)
                if isinstance(wf, str):
                    owners.add("w:" + wf)
        for t in ("agent_context", "workflow_links"):
            owners.update("w:" + wf for r in rows.get(t, ()) if isinstance(wf := r.get("workflow_id"), str))
        self.batch_owners = owners

    def context_written(self, rows: dict[str, list[dict]]) -> None:
        """The batch's context is stored: what changed becomes the scope (facts stored before this write
        only), and the tree of the batch's agents is built for the facts about to be inserted."""
        if self.asked:
            after = self._context_rows(self.asked)
            s = Scope()
            moved: dict[str, set[str]] = {}  # agent -> its sessions, before and after
            for key in set(self.old) | set(after):
                before_v, after_v = self.old.get(key, set()), after.get(key, set())
                if before_v == after_v:
                    continue
                table, v = key
                if table == "workflow_links" and (since := _earliest(before_v ^ after_v)) is not None:
                    s.since[v] = min(s.since.get(v, since), since)
                elif table in ("sessions", "workflow_links"):
                    s.sessions.add(v)
                elif table == "agent_context":
                    s.declared.add(v)
                elif table == "workflows":
                    s.workflows.add(v)
                elif table == "agents":
                    s.agents.add(v)
                    moved[v] = {t[0] for t in before_v | after_v if t[0] is not None}
            if moved:
                # the agents below it (its subagents, and theirs) take their top stage from it; no
                # other fact of its session depends on it. (A SubagentStart comes before the agent's
                # first request: re-resolving its whole session each time found nothing to change.)
                # A session without facts has none below it either: its agents are not listed
                have = self.owners.present(self.con, {f"s:{x}" for ss in moved.values() for x in ss})
                s.agents |= self._descendants({a: {x for x in ss if f"s:{x}" in have} for a, ss in moved.items()})
            self._add_scope(s)
        agents = {a for t in FACTS for r in rows.get(t, ()) if isinstance(a := r.get("agent_id"), str)}
        if agents:
            build_tree(self.con, agents, self.tree)

    def _descendants(self, agents: dict[str, set[str]]) -> set[str]:
        """The agents below ``agents`` (agent -> the sessions it runs in), at any depth: their
        sessions' agents, each under its parent as the tree rule finds it (the recorded parent, else
        the agent whose tool call spawned it)."""
        sessions = sorted(set().union(*agents.values()))
        if not sessions:
            return set()
        rows = keyed(self.con, "SELECT agent_id, parent_agent_id, spawn_tool_use_id FROM agents "
                               "WHERE session_id IN ({keys})", sessions)
        spawns = sorted({r[2] for r in rows if r[1] is None and r[2] is not None})
        spawner = dict(keyed(self.con, "SELECT tool_use_id, agent_id FROM tool_calls WHERE tool_use_id IN ({keys})", spawns))
        children: dict[str, set[str]] = {}
        for aid, parent, spawn in rows:
            if (p := parent if parent is not None else spawner.get(spawn)) is not None:
                children.setdefault(p, set()).add(aid)
        out: set[str] = set()
        todo = list(agents)
        while todo:
            for c in children.get(todo.pop(), ()):
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return out

    def _add_scope(self, s: Scope, extra_owners: set[str] | None = None) -> None:
        """Keep the keys of ``s`` that have stored facts, and add them to this write's scope."""
        if not s:
            return
        keys = ({f"s:{v}" for v in s.sessions} | {f"a:{v}" for v in s.agents} | {f"w:{v}" for v in s.workflows}
                | {f"s:{v}" for v in s.declared} | {f"a:{v}" for v in s.declared} | {f"s:{v}" for v in s.since})
        have = self.owners.present(self.con, keys) | ((extra_owners or set()) & keys)
        self.scope.sessions |= {v for v in s.sessions if f"s:{v}" in have}
        for v, since in s.since.items():
            if f"s:{v}" in have:
                self.scope.since[v] = min(self.scope.since.get(v, since), since)
        self.scope.agents |= {v for v in s.agents if f"a:{v}" in have}
        self.scope.workflows |= {v for v in s.workflows if f"w:{v}" in have}
        self.scope.declared |= {v for v in s.declared if f"s:{v}" in have or f"a:{v}" in have}
        self.scope.models |= s.models
        self.scope.main_thread |= s.main_thread
        self.scope.everything |= s.everything

    # -- facts ---------------------------------------------------------------------------------
    def _delta_tables(self, table: str) -> None:
        """The change set's two tables for ``table``, empty (created once per write and table)."""
        t = q(table)
        for which in ("new", "old"):
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {q(f'golem_delta_{which}_{table}')} AS SELECT * FROM {t} LIMIT 0")

    def insert(self, table: str, cols: list[str], src: str, params: list[Any] | None = None,
               sessions: list[str] | None = None) -> None:
        """INSERT the new rows selected by ``src`` (over ``cols``; bound ``params``) into ``table``, resolved.
        ``sessions``: every session id those rows name (more do no harm), when the caller has them."""
        params = params or []
        types = self.types[table]
        bound = sessions is not None and len(sessions) <= _BOUND_SESSIONS
        resolved = resolved_rows(table, types, cols, src, bound_sessions=bound, narrow=True)
        if bound:
            params = [*params, sessions]
        if not self.track:
            self.con.execute(f"INSERT INTO {q(table)} {resolved}", params)
        elif table not in self.inserted:  # the common case: the change set is the staging table
            new = q("golem_delta_new_" + table)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {new} AS {resolved}", params)
            self._count(table, self.con.execute(f"INSERT INTO {q(table)} SELECT * FROM {new}"))
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {q('golem_delta_old_' + table)} AS SELECT * FROM {new} LIMIT 0")
        else:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE _res_ins AS {resolved}", params)
            self.con.execute(f"INSERT INTO {q(table)} SELECT * FROM _res_ins")
            self._count(table, self.con.execute(f"INSERT INTO {q('golem_delta_new_' + table)} SELECT * FROM _res_ins"))
        self.inserted.add(table)

    def _count(self, table: str, inserted: Any) -> None:
        """Rows added to ``golem_delta_new_T`` by an INSERT (its result: the count), so that a table
        only inserted into need not be counted again at the end of the write."""
        row = inserted.fetchone()
        self.new_rows[table] = self.new_rows.get(table, 0) + int(row[0] if row else 0)

    def before_merge(self, table: str, keys: list[Any]) -> None:
        """Keep the stored rows of ``keys`` (keys the table holds) as they are before this write
        merges into them."""
        key = FACTS[table].key
        before = q("_res_before_" + table)
        for part in chunks(sorted(set(keys))):
            rows = f"SELECT * FROM {q(table)} WHERE {q(key)} IN ({marks(len(part))})"
            if table in self.before:
                self.con.execute(f"INSERT INTO {before} {rows}", part)
            else:
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {before} AS {rows}", part)
                self.before.add(table)
        self.merged.setdefault(table, []).extend(keys)

    def note_tool_calls(self, rows: Iterable[dict]) -> None:
        """Tool calls written now that may have spawned a stored agent (see SPAWN_TOOLS), or that a
        review report waits for (link_reports)."""
        for r in rows:
            if isinstance(tid := r.get("tool_use_id"), str) and r.get("session_id") is not None:
                self.call_ids.append(tid)
            if r.get("agent_id") is not None and r.get("tool_name") in SPAWN_TOOLS and isinstance(tid, str):
                self.spawn_ids.append(tid)

    def link_reports(self) -> None:
        """Review reports waiting for their caller (``review_reports.pending_tool_use_id``: the report
        came before its call's PreToolUse hook, and the MCP server waits for it only so long) whose
        call this write brought: they take the call's agent and session (and, naming no workflow, the
        session's) and wait no more, in this write's transaction. The waiting reports are few (usually
        none): they are listed, and matched with this write's calls here."""
        if not self.call_ids:
            return
        waiting = {r[0] for r in self.con.execute(
            "SELECT pending_tool_use_id FROM review_reports WHERE pending_tool_use_id IS NOT NULL").fetchall()}
        ids = sorted(waiting.intersection(self.call_ids))
        if not ids:
            return
        stamp = [self.change()] if self.change is not None else []
        seq = ", _change_seq = ?" if stamp else ""
        wf = SESSION_WORKFLOW_SQL.format(session="COALESCE(r.session_id, c.session_id)")
        self.con.execute(
            f"UPDATE review_reports r SET agent_id = COALESCE(r.agent_id, c.agent_id), "
            f"session_id = COALESCE(r.session_id, c.session_id), workflow_id = COALESCE(r.workflow_id, {wf}), "
            f"pending_tool_use_id = NULL{seq} FROM tool_calls c WHERE c.tool_use_id = r.pending_tool_use_id "
            f"AND c.tool_use_id IN ({marks(len(ids))}) AND c.session_id IS NOT NULL", stamp + ids)

    # -- the end of the write ------------------------------------------------------------------
    def finish(self) -> Changes:
        """Re-resolve merged rows and the scope; leave the change set (when tracked); record owners.
        Returns changed rows per fact table (when tracked; else the tables touched, with 0)."""
        con = self.con
        self._spawned()
        self.link_reports()
        out: dict[str, int] = {}
        for table in FACTS:
            self._rescope(table)
            if table in self.inserted and table not in self.rescoped:
                out[table] = self.new_rows.get(table, 0) if self.track else 0
            elif table in self.rescoped:
                out[table] = (int(con.execute(f"SELECT count(*) FROM {q('golem_delta_new_' + table)}").fetchone()[0])
                              if self.track else 0)
        self.new_owners |= self.owners.add(con, self.batch_owners | self.new_owners, self.batch_sessions)
        return Changes({t: n for t, n in out.items() if n or not self.track}, self.resolved_only)

    def _spawned(self) -> None:
        """A tool call of this write that spawned a stored agent without a recorded parent makes the
        caller its parent: that agent and the agents below it are re-resolved (top stages)."""
        if not self.spawn_ids:
            return
        rows = []
        for part in chunks(sorted(set(self.spawn_ids))):
            rows += self.con.execute("SELECT agent_id, session_id FROM agents WHERE parent_agent_id IS NULL "
                                     f"AND spawn_tool_use_id IN ({marks(len(part))})", part).fetchall()
        if rows:
            moved: dict[str, set[str]] = {}
            for aid, sid in rows:
                moved.setdefault(aid, set()).update([sid] if sid else [])
            self._add_scope(Scope(agents=set(moved) | self._descendants(moved)), self.batch_owners)

    def _rescope(self, table: str) -> None:
        con = self.con
        spec = FACTS[table]
        key = q(spec.key)
        t = q(table)
        merged = sorted(set(self.merged.get(table, ())))
        if not merged and not self.scope:
            return
        cur, out = q("_res_cur_" + table), q("_res_out_" + table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {cur} AS SELECT * FROM {t} LIMIT 0")
        found = 0  # (an INSERT answers with the rows it inserted)
        for part in chunks(merged):
            found += con.execute(f"INSERT INTO {cur} SELECT * FROM {t} WHERE {key} IN ({marks(len(part))})",
                                 part).fetchone()[0]
        for where, params in self.scope.parts(table) if self.scope else ():
            found += con.execute(f"INSERT INTO {cur} SELECT * FROM {t} WHERE {where} AND {key} NOT IN "
                                 f"(SELECT {key} FROM {cur})", params).fetchone()[0]
        if not found:
            return
        self.rescoped.add(table)
        types = self.types[table]
        own = ", ".join(q(c) for c in fact_columns(types))
        all_cols = ", ".join(q(c) for c in types)
        build_tree(con, [r[0] for r in con.execute(f"SELECT DISTINCT agent_id FROM {cur} WHERE agent_id IS NOT NULL").fetchall()],
                   self.tree)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS "
                    f"SELECT {all_cols} FROM ({resolution_sql(table, f'SELECT {own} FROM {cur}', narrow=True)})")
        rcols = ", ".join(q(c) for c in spec.resolved)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _res_changed AS "
                    f"SELECT {key} AS k FROM (SELECT {key}, {rcols} FROM {out} EXCEPT SELECT {key}, {rcols} FROM {cur})")
        changed = [r[0] for r in con.execute("SELECT k FROM _res_changed ORDER BY k").fetchall()]
        if changed:
            sets = ", ".join(f"{q(c)} = o.{q(c)}" for c in spec.resolved)
            stamp: list[Any] = []
            if "_change_seq" in types and self.change is not None:
                # a re-resolved row is a changed row: exported and pushed again (store/db.py, CHANGE_TABLES)
                sets += ", _change_seq = ?"
                stamp = [self.change()]
                con.execute(f"UPDATE {out} SET _change_seq = ? WHERE {key} IN (SELECT k FROM _res_changed)", stamp)
            if len(changed) <= _CHUNK:  # a few rows: found through the primary-key index
                con.execute(f"UPDATE {t} SET {sets} FROM {out} o WHERE {t}.{key} = o.{key} "
                            f"AND {t}.{key} IN ({marks(len(changed))})", stamp + changed)
            else:  # many (a big session's late context): one pass joining the table with them
                con.execute(f"UPDATE {t} SET {sets} FROM (SELECT * FROM {out} WHERE {key} IN (SELECT k FROM _res_changed)) o "
                            f"WHERE {t}.{key} = o.{key}", stamp)
            self.new_owners |= _owner_keys(con, out)
        if not self.track:
            return
        # The change set. Rows this write inserted keep their place in `new` (now re-resolved); rows
        # stored before it are in the set when their stored values changed: merged ones against their
        # image before the merge, the others (context arrived) when their resolved values changed.
        new, old = q("golem_delta_new_" + table), q("golem_delta_old_" + table)
        if table not in self.inserted and table not in self.before:
            # only context arrived for this table (the common late context: record_workflow, a
            # SubagentStart): the change set is the changed rows as they are and as they were
            # (the general case below comes to the same with five statements more)
            self.resolved_only.add(table)
            for delta, rows in ((new, out), (old, cur)):
                con.execute(f"CREATE OR REPLACE TEMP TABLE {delta} AS SELECT * FROM {rows} "
                            f"WHERE {key} IN (SELECT k FROM _res_changed)")
            return
        if table not in self.inserted:
            self._delta_tables(table)
        before = q("_res_before_" + table)
        if table not in self.before:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {before} AS SELECT * FROM {t} LIMIT 0")
            self.before.add(table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _res_ins AS SELECT {key} AS k FROM {new} WHERE {key} IN (SELECT {key} FROM {out})")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _res_diff AS
            SELECT {key} AS k FROM (SELECT * FROM {out} EXCEPT SELECT * FROM {before})
            WHERE {key} IN (SELECT {key} FROM {before})
            UNION
            SELECT k FROM _res_changed WHERE k NOT IN (SELECT {key} FROM {before}) AND k NOT IN (SELECT k FROM _res_ins)""")
        con.execute(f"DELETE FROM {new} WHERE {key} IN (SELECT k FROM _res_ins)")
        con.execute(f"INSERT INTO {new} SELECT * FROM {out} WHERE {key} IN (SELECT k FROM _res_ins UNION SELECT k FROM _res_diff)")
        con.execute(f"INSERT INTO {old} SELECT * FROM {before} WHERE {key} IN (SELECT k FROM _res_diff)")
        con.execute(f"INSERT INTO {old} SELECT * FROM {cur} WHERE {key} IN (SELECT k FROM _res_diff) "
                    f"AND {key} NOT IN (SELECT {key} FROM {before})")


# Rows resolved per UPDATE when resolving a whole table: DuckDB holds the statement's join and the
# rows' old versions in memory, and a million requests at once passed the default 1.5 GB budget
_BACKFILL_ROWS = 200_000


def backfill(con: Any, types: dict[str, dict[str, str]], progress: Callable[[str], None] | None = None,
             commit: Callable[[], None] | None = None, tables: Iterable[str] | None = None) -> None:
    """Resolve every stored fact from scratch (migration 007 on an existing store), with progress.
    ``tables``: only these fact tables (a migration that makes a table a fact); a fact table a later
    migration creates (not in ``types`` yet) is left to that migration.

    ``commit`` (commit the transaction and begin the next) is called after each part: DuckDB keeps a
    transaction's changed rows in memory until it ends, so a store of a million requests resolved in
    one transaction ran out of the default memory budget. A backfill cut short leaves some facts
    resolved and is run again whole (it is idempotent)."""
    say = progress or (lambda m: None)
    build_tree(con, None)
    todo = [t for t in (FACTS if tables is None else tables) if t in types]
    for table in todo:
        n, lo, hi = con.execute(f"SELECT count(*), min(rowid), max(rowid) FROM {q(table)}").fetchone()
        if not n:
            continue
        start = time.monotonic()
        say(f"resolving {n:,} {table} ...")
        # parts by position (rowid ranges): each part's rows sit in a few row groups, so each commit's
        # checkpoint rewrites those only (parts by a hash of the key spread every part over every row
        # group, and each checkpoint rewrote the whole table: 50 times at 10M requests)
        parts = max(1, -(-n // _BACKFILL_ROWS))
        step = -(-(hi - lo + 1) // parts)
        spec = FACTS[table]
        own = ", ".join(q(c) for c in fact_columns(types[table]))
        sets = ", ".join(f"{q(c)} = o.{q(c)}" for c in spec.resolved)
        key = q(spec.key)
        for i in range(parts):
            where = f"rowid >= {lo + i * step} AND rowid < {lo + (i + 1) * step}" if parts > 1 else "true"
            con.execute(f"UPDATE {q(table)} SET {sets} FROM ({resolution_sql(table, f'SELECT {own} FROM {q(table)} WHERE {where}')}) o "
                        f"WHERE {q(table)}.{key} = o.{key}")
            if commit is not None:
                commit()
            if parts > 1:
                say(f"  {table}: {i + 1}/{parts} ({time.monotonic() - start:.0f} s)")
        say(f"  {table}: done in {time.monotonic() - start:.1f} s")
    if todo:
        record_owners(con, todo)


def record_owners(con: Any, tables: Iterable[str] | None = None) -> None:
    """``resolve_owners`` from the stored facts of ``tables`` (default: every fact table), after facts
    were resolved in bulk."""
    con.execute("INSERT INTO resolve_owners " + " UNION ".join(
        f"SELECT owner FROM (SELECT 's:' || session_id AS owner FROM {q(t)} WHERE session_id IS NOT NULL "
        f"UNION SELECT 'a:' || agent_id FROM {q(t)} WHERE agent_id IS NOT NULL "
        f"UNION SELECT 'w:' || r_workflow_id FROM {q(t)} WHERE r_workflow_id IS NOT NULL)" for t in (tables or FACTS))
        + " ON CONFLICT DO NOTHING")


def stderr_progress(message: str) -> None:
    print(f"golem-mcp: {message}", file=sys.stderr, flush=True)


def mismatches(con: Any, types: dict[str, dict[str, str]], limit: int = 5, sample: int | None = None
               ) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    """Stored resolved columns against a from-scratch resolution: per fact table with differences,
    how many rows differ and the first ``limit`` of them (key, first differing column, stored,
    expected). ``sample``: only the ``sample`` most recent rows of each table (a cheap check)."""
    out: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    if sample is None:
        build_tree(con, None)
    for table, spec in FACTS.items():
        key = q(spec.key)
        own = ", ".join(q(c) for c in fact_columns(types[table]))
        rcols = ", ".join(q(c) for c in spec.resolved)
        if sample is not None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _res_sample AS SELECT * FROM {q(table)} "
                        f"ORDER BY {spec.ts} DESC NULLS LAST LIMIT {int(sample)}")
            build_tree(con, [r[0] for r in con.execute("SELECT DISTINCT agent_id FROM _res_sample WHERE agent_id IS NOT NULL").fetchall()])
            stored = "_res_sample"
        else:
            stored = q(table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _res_check AS SELECT {key}, {rcols} FROM "
                    f"({resolution_sql(table, f'SELECT {own} FROM {stored}')})")
        n = int(con.execute(f"SELECT count(*) FROM (SELECT * FROM _res_check EXCEPT SELECT {key}, {rcols} FROM {stored})").fetchone()[0])
        first: list[dict[str, Any]] = []
        if n:
            ecols = ", ".join(f"e.{q(c)}" for c in spec.resolved)
            scols = ", ".join(f"s.{q(c)}" for c in spec.resolved)
            rows = con.execute(f"SELECT e.{key}, {ecols}, {scols} FROM "
                               f"(SELECT * FROM _res_check EXCEPT SELECT {key}, {rcols} FROM {stored}) e "
                               f"JOIN {stored} s ON s.{key} = e.{key} ORDER BY 1 LIMIT {int(limit)}").fetchall()
            k = len(spec.resolved)
            for row in rows:
                expected, got = row[1:1 + k], row[1 + k:]
                for c, e, g in zip(spec.resolved, expected, got, strict=True):
                    if e != g:
                        first.append({"key": row[0], "column": c, "stored": g, "expected": e})
                        break
            out[table] = (n, first)
        con.execute("DROP TABLE IF EXISTS _res_check")
        con.execute("DROP TABLE IF EXISTS _res_sample")
    return out
