"""Parquet shards: telemetry that travels with the work (issue 11, seed 001's remote runs).

``export(store, folder)`` writes what changed since the last export to that folder as one Parquet
file per table, ``<machine>-<change number>-<nonce>-<table>.parquet``: unique per machine and
export, so two machines committing into one folder never touch the same file. Each file is written
to a hidden temporary name and renamed, so a reader (or ``git add``) never sees half a file. What a
shard holds: the facts observed on this machine (requests, tool calls, errors, spans, OTel events,
metric points, hook events, review findings) changed since the last export to that folder, and the
context rows they need (their sessions, agents, workflow links, agent context, workflows and
machines), as the store holds them: secrets redacted (the redaction pass runs again on the way
out), no prompt or response text (dropped even when ``store_prompts`` kept it: OTel attributes lose
their text keys, hook events their payload). Rows that arrived by importing shards are not sent out
again. ``project=PATH`` limits it to the sessions run in that folder (SessionEnd's export).

``import_shards(store, paths)`` merges shard files through ``Store.write``: the same fact from two
shards, a shard imported twice, a fact this store also saw directly all count once (the tables'
keys), and context arriving in a later shard re-resolves what it concerns (the store's write path).
Files already merged are listed in ``imported_shards`` and skipped.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import GolemError
from ..redaction import HOOK_TEXT_KEYS, OTEL_TEXT_KEYS, redact_table
from .batch import Batch, Skipped
from .db import CHANGE_COLUMN, SCHEMA_VERSION, WRITE_ORDER, Store, ident

META_KEY = b"golem.shard"
SUFFIX = ".parquet"
# facts: rows scoped by their session (a project's export sends only its sessions' facts)
FACTS = ("api_requests", "tool_calls", "api_errors", "spans", "otel_events", "metric_points", "hook_events",
         "review_reports", "compaction_events", "agent_tasks")
# what never leaves the machine in a shard: prompt and response text (kept only when store_prompts)
# and hook payloads (kept only when keep_hook_payloads)
# and the subjects of Claude Code's task list (written by the model)
DROPPED_COLUMNS = {"hook_events": ("payload",), "agent_tasks": ("subject",)}
RESOLVED_PREFIX = "r_"
ATTRIBUTE_COLUMNS = {"otel_events": ("attributes",), "spans": ("attributes",)}


def destination(folder: Path) -> str:
    """The watermark name of an export folder."""
    return f"export:{folder.resolve()}"


# -- export ----------------------------------------------------------------------------------------

def export(store: Store, folder: str | os.PathLike[str], project: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write what changed since the last export to ``folder`` (made when missing) as shard files.

    Returns {folder, files, rows (per table), seq}. ``project``: only sessions run in that folder.
    """
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GolemError(f"cannot make the export folder {out}: {e}; give a folder you can write") from e
    if not os.access(out, os.W_OK):
        raise GolemError(f"the export folder {out} cannot be written; give a folder you can write")
    dest = destination(out)
    high = store.change_high()
    proj = str(Path(project).expanduser().resolve()) if project else None
    tables = _collect(store, dest, high, proj)
    nonce = secrets.token_hex(3)
    files, rows = [], {}
    for table in _ORDER:
        tbl = tables.get(table)
        if tbl is not None and tbl.num_rows:
            name = f"{store.machine_id}-{high:012d}-{nonce}-{table}{SUFFIX}"
            _write_file(out / name, _clean(table, tbl), {"machine_id": store.machine_id, "label": store.machine_label,
                                                          "table": table, "seq": high, "schema": SCHEMA_VERSION,
                                                          "created_at": datetime.now(UTC).isoformat()})
            files.append(name)
            rows[table] = tbl.num_rows
    # every table is at the destination up to `high` now (a crash before this line sends it all again,
    # in files of another name: merging them twice changes nothing)
    store.set_watermarks(dest, _ORDER, high)
    return {"folder": str(out), "files": files, "rows": rows, "seq": high}


_ORDER = tuple(t for t in WRITE_ORDER if t in ("machines", "sessions", "agents", "workflows", "workflow_links",
                                               "agent_context", *FACTS)) + ("review_issues",)


def _collect(store: Store, dest: str, high: int, project: str | None) -> dict[str, Any]:
    """Per table, the rows of this export: changed (not by an import) since the destination's
    watermark and in scope, plus the context rows the facts among them need."""
    c = ident(CHANGE_COLUMN)
    marks = store.watermarks(dest)

    def changed(table: str) -> str:  # the table's rows in its window (bound by window(table))
        return f"({c} > ? AND {c} <= ? AND {c} NOT IN (SELECT change_seq FROM imported_shards WHERE change_seq > ?))"

    def window(table: str) -> list[Any]:
        low = marks.get(table, 0)
        return [low, high, low]

    out: dict[str, Any] = {}
    with store.reader() as cur:
        scope: list[str] | None = None
        if project is not None:
            scope = [r[0] for r in cur.execute(
                "SELECT session_id FROM sessions WHERE cwd = ? OR starts_with(cwd, ?)",
                [project, project.rstrip("/") + "/"]).fetchall()]
        in_scope = "" if scope is None else " AND session_id IN (SELECT unnest(?::VARCHAR[]))"
        scope_p: list[Any] = [] if scope is None else [scope]
        for t in FACTS:
            out[t] = cur.execute(f"SELECT * FROM {ident(t)} WHERE {changed(t)}{in_scope}",
                                 window(t) + scope_p).to_arrow_table()
        touched = sorted({s for t in FACTS for s in out[t].column("session_id").to_pylist() if s})
        # context: changed rows in scope, and every context row of the sessions whose facts go out
        sess: list[Any] = [touched]
        out["sessions"] = cur.execute(
            f"SELECT * FROM sessions WHERE ({changed('sessions')}{in_scope}) OR session_id IN (SELECT unnest(?::VARCHAR[]))",
            window("sessions") + scope_p + sess).to_arrow_table()
        sessions = sorted(set(touched) | {s for s in out["sessions"].column("session_id").to_pylist() if s})
        for t in ("agents", "workflow_links"):
            out[t] = cur.execute(
                f"SELECT * FROM {ident(t)} WHERE ({changed(t)}{in_scope}) OR session_id IN (SELECT unnest(?::VARCHAR[]))",
                window(t) + scope_p + [sessions]).to_arrow_table()
        agents = sorted({a for a in out["agents"].column("agent_id").to_pylist() if a} | set(sessions))
        # agent_context is keyed by agent (or session) id, with no session of its own
        ac_scope = "" if scope is None else " AND agent_id IN (SELECT unnest(?::VARCHAR[]))"
        out["agent_context"] = cur.execute(
            f"SELECT * FROM agent_context WHERE ({changed('agent_context')}{ac_scope}) "
            "OR agent_id IN (SELECT unnest(?::VARCHAR[]))",
            window("agent_context") + ([agents] if scope is not None else []) + [agents]).to_arrow_table()
        wfs = sorted({w for t in (*FACTS, "workflow_links", "agent_context") if "workflow_id" in out[t].column_names
                      for w in out[t].column("workflow_id").to_pylist() if w})
        wf_scope = "" if scope is None else " AND workflow_id IN (SELECT unnest(?::VARCHAR[]))"
        out["workflows"] = cur.execute(
            f"SELECT * FROM workflows WHERE ({changed('workflows')}{wf_scope}) OR workflow_id IN (SELECT unnest(?::VARCHAR[]))",
            window("workflows") + ([wfs] if scope is not None else []) + [wfs]).to_arrow_table()
        reports = sorted({r for r in out["review_reports"].column("report_id").to_pylist() if r})
        ri_scope = "" if scope is None else " AND report_id IN (SELECT unnest(?::VARCHAR[]))"
        out["review_issues"] = cur.execute(
            f"SELECT * FROM review_issues WHERE ({changed('review_issues')}{ri_scope}) "
            "OR report_id IN (SELECT unnest(?::VARCHAR[]))",
            window("review_issues") + ([reports] if scope is not None else []) + [reports]).to_arrow_table()
        machines = sorted({m for t in (*FACTS, "sessions", "agents") if "machine_id" in out[t].column_names
                           for m in out[t].column("machine_id").to_pylist() if m} | {store.machine_id})
        out["machines"] = cur.execute(
            "SELECT * FROM machines WHERE machine_id IN (SELECT unnest(?::VARCHAR[]))", [machines]).to_arrow_table()
    if not any(out[t].num_rows for t in FACTS) and not any(
            out[t].num_rows for t in ("sessions", "agents", "workflows", "workflow_links", "agent_context",
                                      "review_issues")):
        out["machines"] = out["machines"].slice(0, 0)  # nothing new: no shard at all, not one of a machine row
    return out


def _clean(table: str, tbl: Any) -> Any:
    """What leaves the machine: no change numbers, no payloads, no prompt text, secrets redacted."""
    drop = [c for c in (CHANGE_COLUMN, *DROPPED_COLUMNS.get(table, ())) if c in tbl.column_names]
    if drop:
        tbl = tbl.drop_columns(drop)
    for col in ATTRIBUTE_COLUMNS.get(table, ()):
        if col in tbl.column_names:
            import pyarrow as pa

            i = tbl.schema.get_field_index(col)
            tbl = tbl.set_column(i, col, pa.array([_without_text(v) for v in tbl.column(i).to_pylist()],
                                                   type=pa.string()))
    json_cols = {f.name for f in tbl.schema if f.name in ("attributes", "resource", "tool_parameters", "raw", "payload")}
    tbl, _ = redact_table(tbl, json_cols)
    return tbl


# the keys that hold prompt or response text: the OTel attributes' and the hook payloads'
PROMPT_KEYS = OTEL_TEXT_KEYS | HOOK_TEXT_KEYS


def _without_text(value: str | None) -> str | None:
    if not value or not any(k in value for k in PROMPT_KEYS):
        return value
    try:
        attrs = json.loads(value)
    except ValueError:
        return None  # not JSON after all: nothing of it is sent rather than text that might be a prompt
    if not isinstance(attrs, dict):
        return value
    return json.dumps({k: v for k, v in attrs.items() if k not in PROMPT_KEYS}, separators=(",", ":"))


def _write_file(path: Path, tbl: Any, meta: dict[str, Any]) -> None:
    import pyarrow.parquet as pq

    tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(tbl, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# -- import ----------------------------------------------------------------------------------------

def is_shard_path(path: str | os.PathLike[str]) -> bool:
    """A ``.parquet`` file, or a folder holding some (directly): what ``import`` reads as shards."""
    p = Path(path)
    if p.is_file():
        return p.suffix == SUFFIX
    if p.is_dir():
        try:
            return any(e.name.endswith(SUFFIX) and not e.name.startswith(".") for e in os.scandir(p))
        except OSError:
            return False
    return False


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in (Path(x).expanduser() for x in paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.name.endswith(SUFFIX) and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
    return out


def import_shards(store: Store, paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Merge the shard files at ``paths`` (files or folders of them) into ``store``.

    Returns {shards (files merged), already (files merged before), rows (per table), skipped}.
    """
    import pyarrow.parquet as pq

    result: dict[str, Any] = {"shards": 0, "already": 0, "rows": {}, "skipped": []}
    files = _files(paths)
    seen = {r["shard"] for r in store.query("SELECT shard FROM imported_shards")}
    groups: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for f in files:
        if f.name in seen:
            result["already"] += 1
            continue
        try:
            meta_raw = (pq.read_schema(f).metadata or {}).get(META_KEY)
        except Exception as e:  # noqa: BLE001 - a broken file costs only itself
            result["skipped"].append(str(Skipped(str(f), None, f"not a readable Parquet file ({e}); "
                                                 "copy it again from where it was exported")))
            continue
        if not meta_raw:
            result["skipped"].append(str(Skipped(str(f), None, "not a golem-mcp shard (no golem.shard metadata)")))
            continue
        meta = json.loads(meta_raw)
        if meta.get("table") not in _ORDER:
            result["skipped"].append(str(Skipped(str(f), None, f"a shard of an unknown table {meta.get('table')!r}; "
                                                 "upgrade golem-mcp to read it")))
            continue
        groups.setdefault(f.name.rsplit("-", 1)[0], []).append((f, meta))
    # one transaction per export (all its tables), oldest change numbers of each machine first
    for _key, members in sorted(groups.items(), key=lambda kv: (kv[1][0][1].get("seq", 0), kv[0])):
        batch = Batch()
        listed: list[tuple[str, str, int]] = []
        for f, meta in members:
            try:
                n = _read_into(store, f, meta["table"], batch, result)
            except Exception as e:  # noqa: BLE001
                result["skipped"].append(str(Skipped(str(f), None, f"not read ({type(e).__name__}: {e})")))
                continue
            listed.append((f.name, str(meta.get("machine_id") or ""), n))
            result["rows"][meta["table"]] = result["rows"].get(meta["table"], 0) + n
        if listed:
            store.write(batch, shards=listed)
            result["shards"] += len(listed)
            result["skipped"].extend(str(s) for s in batch.skipped)
    return result


def _read_into(store: Store, path: Path, table: str, batch: Batch, result: dict[str, Any]) -> int:
    import pyarrow.parquet as pq

    tbl = pq.read_table(path)
    known = store._types.get(table, {})
    # the resolver's columns (r_..., migration 007) travel for readers of the files; this store's
    # write path resolves each fact again from the context rows that came with it
    extra = [c for c in tbl.column_names if c not in known or c == CHANGE_COLUMN or c.startswith(RESOLVED_PREFIX)]
    if extra:
        tbl = tbl.drop_columns(extra)
        shown = [c for c in extra if c != CHANGE_COLUMN and not c.startswith(RESOLVED_PREFIX)]
        if shown:
            result["skipped"].append(str(Skipped(str(path), None, f"columns this golem-mcp does not know were "
                                                 f"left out: {', '.join(shown)} (upgrade to keep them)", dropped=False)))
    for i, row in enumerate(arrow_rows(tbl)):
        batch.at = (str(path), i + 1)
        batch.add(table, row)
    batch.at = None
    return tbl.num_rows


def arrow_rows(tbl: Any) -> list[dict[str, Any]]:
    """An Arrow table's rows as the dicts Store.write takes (MAP columns as dicts, not pair lists)."""
    import pyarrow as pa

    maps = [f.name for f in tbl.schema if pa.types.is_map(f.type)]
    rows: list[dict[str, Any]] = tbl.to_pylist()
    for row in rows:
        for m in maps:
            if row[m] is not None:
                row[m] = dict(row[m])
    return rows
