"""Experiment definitions and decisions (``schemas/experiment.v1.json``), stored so that
``compare_experiments`` can be asked by experiment id and the decision is kept with the plan.

Example::

    record_experiment(store, {"experiment_id": "analyst-file-limit-v2", "hypothesis": "...",
                              "arms": ["baseline", "analyst-file-limit-v2"], "metric": "input_tokens",
                              "stage": "analyst"})
    get_experiment(store, "analyst-file-limit-v2")["arms"]
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from pydantic import BaseModel, Field

from ..errors import InvalidInput, NotFound
from ..redaction import redact_value
from ..store.db import Store
from .common import execute
from .known import closest

SCHEMA_NAME = "experiment.v1.json"


def schema_path() -> Path:
    """``schemas/SCHEMA_NAME`` of the kit (a checkout or an installation), found as every kit file is."""
    from ..kit.bundle import schema_path as kit_schema

    return kit_schema(SCHEMA_NAME)


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_path().read_text()), format_checker=FormatChecker())


def parse_definition(definition: dict[str, Any] | str) -> dict[str, Any]:
    """The definition as a dict; raises InvalidInput listing every problem the schema finds."""
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"the definition is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    if not isinstance(definition, dict):
        raise InvalidInput("the definition must be a JSON object (schemas/experiment.v1.json)")
    problems = [f"at /{'/'.join(str(p) for p in err.absolute_path)}: {err.message}"
                for err in sorted(validator().iter_errors(definition), key=lambda e: list(e.absolute_path))]
    if problems:
        raise InvalidInput(f"the definition does not match schemas/{SCHEMA_NAME} ({len(problems)} problem(s)); "
                           "fix each and send again:", problems[:30])
    return definition


def record_experiment(store: Store, definition: dict[str, Any] | str) -> ExperimentRecord:
    """Store (or update) one definition; a ``decision`` with a verdict marks it decided. Returns what
    is stored, with warnings about arms no workflow has been tagged with yet."""
    # kept with execute(), beside the store's write path: redacted here like everything it writes
    d = redact_value(parse_definition(definition))
    now = datetime.now(UTC).replace(tzinfo=None)
    decision = d.get("decision") or None
    status = "decided" if decision else d.get("status", "defined")
    prev = store.query("SELECT created_at, decided_at FROM experiments WHERE experiment_id = ?", [d["experiment_id"]])
    created = prev[0]["created_at"] if prev else now
    decided = (prev[0]["decided_at"] if prev and prev[0]["decided_at"] else now) if decision else None
    execute(store, "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [d["experiment_id"], d["hypothesis"], d["arms"], d["metric"], d.get("stage"), status,
             decision["verdict"] if decision else None, json.dumps({**d, "status": status}), created, now, decided])
    from .snapshot import summaries

    with summaries(store) as reader:  # the workflows' arms: the cache's rows, not the views' sums (seconds at 10M)
        seen = {r["experiment_id"] for r in reader.query(
            "SELECT DISTINCT experiment_id FROM workflow_summary WHERE experiment_id IN (SELECT unnest(?::VARCHAR[]))",
            [d["arms"]])}
    missing = [a for a in d["arms"] if a not in seen]
    out = get_experiment(store, d["experiment_id"])
    warnings = [f"no workflow is tagged with arm {a!r} yet: start runs with OTEL_RESOURCE_ATTRIBUTES="
                f"\"experiment_id={a}\" or pass it to record_workflow" for a in missing] or None
    return ExperimentRecord(summary=f"experiment {d['experiment_id']} {out['status']}", warnings=warnings,
                            **{k: v for k, v in out.items() if k != "warnings"})


class ExperimentRecord(BaseModel):
    summary: str
    experiment_id: str
    hypothesis: str
    arms: list[str]
    metric: str
    stage: str | None = None
    expected_change_pct: float | None = None
    expected: str | None = None
    alpha: float | None = None
    guardrails: list[str] | None = None
    min_runs_per_arm: int | None = None
    status: str = Field(description="defined, running or decided")
    verdict: str | None = None
    decision: dict[str, Any] | None = None
    created_at: Any = None
    updated_at: Any = None
    decided_at: Any = None
    warnings: list[str] | None = None



def get_experiment(store: Store, experiment_id: str) -> dict[str, Any]:
    rows = store.query("SELECT experiment_id, status, verdict, CAST(definition AS VARCHAR) AS definition, "
                       "created_at, updated_at, decided_at FROM experiments WHERE experiment_id = ?", [experiment_id])
    if not rows:
        defined = [r["experiment_id"] for r in store.query("SELECT experiment_id FROM experiments ORDER BY 1")]
        raise NotFound(f"no experiment {experiment_id!r} is defined"
                       + (f"; closest: {', '.join(closest(experiment_id, defined))}" if defined
                          else "; record one with record_experiment"))
    r = rows[0]
    return {**json.loads(r["definition"]), "status": r["status"], "verdict": r["verdict"],
            "created_at": r["created_at"], "updated_at": r["updated_at"], "decided_at": r["decided_at"]}
