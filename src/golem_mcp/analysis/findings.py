"""Reviewer findings (seed 000's ``.claude-metrics`` v1 JSON): validated, stored, linked to workflow and task."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound
from ..ingestion.records import Batch, iso_to_us, now_us, redact
from ..store.db import Store
from ..store.resolve import SESSION_WORKFLOW_SQL
from . import known
from .workflows import Caller

SCHEMA_NAME = "review-findings.v1.json"


def schema_path() -> Path:
    """``schemas/SCHEMA_NAME`` of the kit (a checkout or an installation), found as every kit file is."""
    from ..kit.bundle import schema_path as kit_schema

    return kit_schema(SCHEMA_NAME)


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_path().read_text()), format_checker=FormatChecker())


def parse_report(report: dict[str, Any] | str) -> dict[str, Any]:
    """The report as a dict; raises InvalidInput listing every problem found by the schema."""
    if isinstance(report, str):
        try:
            report = json.loads(report)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"the findings are not valid JSON: {e.msg} at line {e.lineno} column {e.colno}; "
                               "send the .claude-metrics v1 object") from e
    if not isinstance(report, dict):
        raise InvalidInput("the findings must be a JSON object (the .claude-metrics v1 report)")
    problems = []
    for err in sorted(validator().iter_errors(report), key=lambda e: list(e.absolute_path)):
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        problems.append(f"at {where}: {err.message}")
    if problems:
        raise InvalidInput(f"the findings do not match schemas/{SCHEMA_NAME} ({len(problems)} problem(s)); fix "
                           "each and send again:", problems[:30])
    return report


class FindingsRecorded(BaseModel):
    summary: str
    report_id: str = Field(description="stable id: the same report sent twice is stored once")
    workflow_id: str | None = None
    task_id: str
    severity: dict[str, int]
    issues_stored: int
    categories: dict[str, int] = Field(default_factory=dict)
    duplicate: bool
    session_id: str | None = None
    agent_id: str | None = None
    warnings: list[str] | None = None



def report_from_fields(findings_json: dict[str, Any] | str | None = None, **fields: Any) -> dict[str, Any] | str:
    """The report from the v1 fields given as a tool's arguments, or the older wrapped ``findings_json``."""
    if findings_json is not None:
        given = [n for n in ("task", "severity", "issues", "parent") if fields.get(n) is not None]
        if given:
            raise InvalidInput(f"send either findings_json or the v1 fields, not both (also got {', '.join(given)})")
        return findings_json
    report = {"v": fields.get("v", 1), "categories": fields.get("categories") or {},
              "ts": fields.get("ts") or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
              **{k: fields.get(k) for k in ("task", "parent", "severity", "issues", "rework")}}
    return {k: x for k, x in report.items() if x is not None}


FUTURE_SKEW_US = 5 * 60 * 1_000_000   # clocks of agent and server may differ by this much


def report_findings(store: Store, caller: Caller, report: dict[str, Any] | str, workflow_id: str | None = None,
                    task_id: str | None = None) -> FindingsRecorded:
    """Validate and store one review report with its issues, in one transaction; returns what was stored."""
    rep = parse_report(report)
    task = task_id or rep["task"]
    warnings: list[str] = []
    session_wf = store.scalar("SELECT " + SESSION_WORKFLOW_SQL.format(session="?"),
                              [caller.session_id]) if caller.known else None
    parent = rep.get("parent")
    wf = workflow_id or rep.get("workflow_id")
    if wf is None and parent is not None:
        is_known, near = known.nearest(store, "workflow_id", parent)
        if is_known:
            wf = parent
        elif session_wf:
            # a reviewer's guess at the workflow id must not create a workflow nobody ran
            wf = session_wf
            warnings.append(f"parent {parent!r} is not a known workflow; linked to this session's workflow {wf}")
        else:
            raise NotFound(f"parent {parent!r} is not a known workflow" + (f"; closest: {', '.join(near)}" if near
                                                                            else "") +
                           ". Send the workflow id the master recorded with record_workflow; nothing was stored")
    if wf is None:
        # the session's workflow link, when the reviewer did not name one
        wf = session_wf
    # the call's hook has not come: the report waits for it (store/resolve.py, link_reports)
    pending = caller.tool_use_id if caller.tool_use_id and caller.how != "tool_use_id" else None
    if pending:
        warnings.append("this call's hook has not reached golem yet: the report is linked to its agent"
                        + ("" if caller.known else ", session and workflow") + " when it does")
    issues = rep.get("issues", [])
    counted = {s: sum(1 for i in issues if i.get("severity") == s) for s in ("critical", "major", "minor")}
    sev = rep["severity"]
    warnings += [f"severity.{s} says {sev[s]} but {counted[s]} issue(s) have that severity"
                 for s in counted if sev[s] != counted[s]]
    canonical = json.dumps({"r": rep, "wf": wf, "task": task}, sort_keys=True)
    report_id = "rv-" + hashlib.sha1(canonical.encode()).hexdigest()[:16]
    now = now_us()
    ts = iso_to_us(rep.get("ts")) or now
    if ts > now + FUTURE_SKEW_US:
        # A model writes `ts` from what it believes the time is; a review reported from the future
        # would fall outside every window up to now (trends, quality), so it gets the time received.
        warnings.append(f"ts {rep['ts']} is in the future; stored the time received instead")
        ts = now
    b = Batch()
    b.add("review_reports", {
        "report_id": report_id, "v": 1, "ts": ts, "task": task,
        "parent": rep.get("parent"), "workflow_id": wf, "session_id": caller.session_id,
        "agent_id": caller.agent_id, "pending_tool_use_id": pending, "critical": sev["critical"], "major": sev["major"],
        "minor": sev["minor"],
        "rework": rep.get("rework"), "raw": json.dumps(rep), "recorded_at": now,
        "categories": {str(k): int(v) for k, v in (rep.get("categories") or {}).items()} or None})
    for i, issue in enumerate(issues):
        b.add("review_issues", {"report_id": report_id, "idx": i, "severity": issue["severity"],
                                "category": issue.get("category"), "file": issue.get("file"),
                                "line": issue.get("line"), "summary": redact(issue["summary"])})
    if wf:
        b.add("workflows", {"workflow_id": wf, "task_id": None, "updated_at": now, "started_at": now})
    existed = bool(store.scalar("SELECT count(*) FROM review_reports WHERE report_id = ?", [report_id]))
    store.write(b)
    cats = rep.get("categories") or {}
    return FindingsRecorded(
        summary=(f"{'already stored' if existed else 'stored'}: {len(issues)} issue(s) ({sev['critical']} critical, "
                 f"{sev['major']} major, {sev['minor']} minor) for {wf or 'no workflow'}"),
        report_id=report_id, workflow_id=wf, task_id=task, severity=sev, issues_stored=len(issues), categories=cats,
        duplicate=existed, session_id=caller.session_id, agent_id=caller.agent_id, warnings=warnings or None)
