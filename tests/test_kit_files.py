"""The kit's agents, commands and schemas: well-formed for Claude Code, naming only tools the golem
MCP server has, and the schema files agreeing with the tools' own (pydantic-generated) input schemas."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from golem_mcp.kit.bundle import kit_dir, kit_files, schema_path

STAGES = ("analyst", "planner", "implementer", "reviewer")


def frontmatter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text()
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, f"{path.name}: no frontmatter"
    # Claude Code's frontmatter is YAML; ours uses only one-line `key: value` pairs (quoted or not)
    meta: dict[str, Any] = {}
    for line in m.group(1).splitlines():
        key, sep, value = line.partition(": ")
        assert sep and re.fullmatch(r"[a-z-]+", key), f"{path.name}: unexpected frontmatter line {line!r}"
        value = value.strip()
        meta[key] = json.loads(value) if value.startswith('"') else value
    return meta, m.group(2)


@pytest.fixture(scope="module")
def tools() -> dict[str, Any]:
    """name -> Tool, straight from the MCP server (its inputSchema comes from the pydantic signatures)."""
    from golem_mcp.interfaces.mcp_server import build_server

    # the full contract (with length limits), as the published schemas write it; agents see a leaner one
    server = build_server(lambda: None, lean=False)  # type: ignore[arg-type,return-value]  # needs no store
    return {t.name: t for t in asyncio.run(server.list_tools())}


def input_schema(tool: Any) -> dict[str, Any]:
    return tool.input_schema if hasattr(tool, "input_schema") else tool.inputSchema


def test_kit_is_complete() -> None:
    assert [p.stem for p in kit_files("agents")] == sorted(["master", *STAGES])
    assert [p.stem for p in kit_files("commands")] == ["analyze", "cost", "experiment"]
    names = {p.name for p in kit_files("schemas")}
    assert {"stage-usage.v1.json", "workflow.v1.json", "experiment.v1.json"} <= names
    assert kit_dir("agents").name == "agents"


@pytest.mark.parametrize("path", kit_files("agents"), ids=lambda p: p.stem)
def test_agent_definitions(path: Path, tools: dict[str, Any]) -> None:
    meta, body = frontmatter(path)
    assert meta["name"] == path.stem
    assert len(meta["description"]) > 40
    assert meta["model"] in ("haiku", "sonnet", "opus", "inherit")
    listed = [t.strip() for t in meta["tools"].split(",")]
    # the role marker lets telemetry (and the tests' scripted model) tell the stages apart
    assert f"ROLE:{path.stem}" in body
    for t in listed:
        if t.startswith("mcp__"):
            assert t.startswith("mcp__golem__") and t.removeprefix("mcp__golem__") in tools, t
    for ref in re.findall(r"mcp__golem__(\w+)", body):
        assert ref in tools, f"{path.name} names unknown tool {ref}"
        assert f"mcp__golem__{ref}" in listed, f"{path.name} uses {ref} without listing it in tools"


def test_instrumentation_stays_small() -> None:
    """Only the master records the workflow and stages; only the reviewer posts findings."""
    uses = {p.stem: set(re.findall(r"mcp__golem__(\w+)", frontmatter(p)[0]["tools"])) for p in kit_files("agents")}
    assert uses["master"] == {"record_workflow", "record_stage_usage", "budget_status"}
    assert "Agent" in frontmatter(kit_dir("agents") / "master.md")[0]["tools"]
    assert uses["reviewer"] == {"report_review_findings"}
    assert uses["analyst"] == uses["planner"] == set()
    assert uses["implementer"] == {"budget_status"}


@pytest.mark.parametrize("path", kit_files("commands"), ids=lambda p: p.stem)
def test_command_definitions(path: Path, tools: dict[str, Any]) -> None:
    meta, body = frontmatter(path)
    assert set(meta) >= {"description", "argument-hint", "allowed-tools"}
    assert "$ARGUMENTS" in body
    allowed = [t.strip() for t in str(meta["allowed-tools"]).split(",")]
    # answers come from golem's tools, never from reading files
    assert all(t == "mcp__golem" or t.removeprefix("mcp__golem__") in tools for t in allowed), allowed
    for ref in re.findall(r"mcp__golem__(\w+)", body):
        assert ref in tools, f"{path.name} names unknown tool {ref}"


def test_reviewer_example_is_a_valid_findings_report() -> None:
    body = (kit_dir("agents") / "reviewer.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", body, re.S).group(1))  # type: ignore[union-attr]
    schema = json.loads(schema_path("review-findings.v1.json").read_text())
    jsonschema.validate(example, schema)
    assert sum(example["severity"].values()) == len(example["issues"]) == sum(example["categories"].values())


@pytest.mark.parametrize("path", kit_files("schemas"), ids=lambda p: p.name)
def test_schema_files_are_valid_json_schemas(path: Path) -> None:
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(path.name)


def _shape(prop: dict[str, Any]) -> dict[str, Any]:
    """A property's constraints, whether written as anyOf [T, null] (pydantic) or type [T, "null"] (ours)."""
    out: dict[str, Any] = {"types": set(), "enum": None}
    branches = prop.get("anyOf") or [prop]
    for b in branches:
        t = b.get("type")
        out["types"] |= set(t) if isinstance(t, list) else ({t} if t else set())
        if "enum" in b:
            out["enum"] = (out["enum"] or set()) | {e for e in b["enum"] if e is not None}
        if "const" in b:
            out["enum"] = {b["const"]}
        for k in ("maxLength", "minLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if k in b:
                out[k] = b[k]
    if "enum" in prop and out["enum"] is None:
        out["enum"] = {e for e in prop["enum"] if e is not None}
    return out


@pytest.mark.parametrize(("schema_file", "tool_name"), [("stage-usage.v1.json", "record_stage_usage"),
                                                        ("workflow.v1.json", "record_workflow")])
def test_schema_files_agree_with_the_tools(schema_file: str, tool_name: str, tools: dict[str, Any]) -> None:
    ours = json.loads(schema_path(schema_file).read_text())
    theirs = input_schema(tools[tool_name])
    assert set(ours["properties"]) == set(theirs["properties"])
    assert set(ours["required"]) == set(theirs.get("required", []))
    for name, prop in ours["properties"].items():
        assert _shape(prop) == _shape(theirs["properties"][name]), name
    # and they judge the same inputs alike
    req = {k: "x" for k in ours["required"]}
    samples = [req, {**req, "status": None}, {**req, "task_id": "t" * 201}, {k: "" for k in ours["required"]},
               {**req, "path": "sideways"}, {**req, "input_tokens": -1}, {**req, "cost_usd": 0.5},
               {**req, "input_tokens": 1.5}, {}]
    for s in samples:
        s = {k: v for k, v in s.items() if k in ours["properties"] or not s}
        assert jsonschema.Draft202012Validator(ours).is_valid(s) == jsonschema.Draft202012Validator(theirs).is_valid(s), s


def test_experiment_schema_speaks_compare_experiments_terms(tools: dict[str, Any]) -> None:
    ours = _shape(json.loads(schema_path("experiment.v1.json").read_text())["properties"]["metric"])
    cmp = input_schema(tools["compare_experiments"])["properties"]
    assert ours["enum"] == _shape(cmp["metric"])["enum"]
    exp = json.loads(schema_path("experiment.v1.json").read_text())
    assert _shape(exp["properties"]["expected"])["enum"] == _shape(cmp["expected"])["enum"]
    definition = {"v": 1, "experiment_id": "analyst-file-limit-v2", "arms": ["baseline", "analyst-file-limit-v2"],
                  "hypothesis": "Limiting the analyst to 20 files cuts its input tokens by 30% without more errors",
                  "metric": "input_tokens", "stage": "analyst", "expected": "decrease", "expected_change_pct": -30,
                  "guardrails": ["errors", "review_findings"], "min_runs_per_arm": 10,
                  "decision": {"verdict": "confirmed", "action": "kept as the new baseline"}}
    jsonschema.validate(definition, exp)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**definition, "arms": ["baseline"]}, exp)


def test_experiment_schema_and_the_stored_record_agree() -> None:
    # record_experiment takes the schema's object and answers with a pydantic model of it
    from golem_mcp.analysis.experiment_defs import ExperimentRecord

    props = json.loads(schema_path("experiment.v1.json").read_text())["properties"]
    assert set(props) - {"v"} <= set(ExperimentRecord.model_fields), set(props) - set(ExperimentRecord.model_fields)
    assert set(json.loads(schema_path("experiment.v1.json").read_text())["required"]) <= {
        n for n, f in ExperimentRecord.model_fields.items() if f.is_required()}


def test_the_analyses_validate_against_the_kit_schemas():
    """Review findings and experiment definitions are checked against the schema files the kit ships
    (found as every kit file is, not by a search of their own)."""
    from golem_mcp.analysis import experiment_defs, findings

    assert findings.schema_path() == schema_path("review-findings.v1.json")
    assert experiment_defs.schema_path() == schema_path("experiment.v1.json")
    assert findings.validator().schema == json.loads(schema_path("review-findings.v1.json").read_text())
