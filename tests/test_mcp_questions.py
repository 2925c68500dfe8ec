"""The questions agents ask, each answered by one call with defaults, checked against truth.json.

Through the real MCP client over the real Claude Code fixtures. Each answer must also stay compact:
under ``ANSWER_TOKENS`` cl100k tokens as the model receives it (the structured content as JSON).
Run with ``-s`` to see each answer's size.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from golem_mcp.interfaces.mcp_server import build_server
from golem_mcp.store import Store
from support.tables import by, rows
from test_mcp_surface import count_tokens
from test_mcp_tools import KEYS, TRUTH, _open, base_dbs  # noqa: F401  (base_dbs: the imported stores)

ANSWER_TOKENS = 700
SIZES: dict[str, int] = {}


@pytest.fixture
def store(base_dbs: dict[str, Path], tmp_path: Path, golem_home: Path) -> Store:  # noqa: F811
    s = _open(base_dbs["all"], tmp_path)
    yield s
    s.close()


async def ask(store: Store, question: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async with Client(build_server(lambda: store, wait_for_caller_s=0.1)) as c:
        r = await c.call_tool(tool, args)
    assert not r.is_error, r.content[0].text
    out = r.structured_content
    size = count_tokens(json.dumps(out, separators=(",", ":")))
    SIZES[question] = size
    print(f"\n{question!r}: {tool}({json.dumps(args)}) -> {size} tokens; {out['summary']}")
    assert size <= ANSWER_TOKENS, (question, size)
    return out


def _tokens(t: dict[str, int]) -> int:
    return sum(t[k] for k in KEYS)


async def test_what_did_workflow_x_cost(store: Store) -> None:
    out = await ask(store, "What did workflow X cost?", "query_workflow_cost", {"workflow_id": "wf-003"})
    assert out["total"]["cost_usd"] == pytest.approx(TRUTH["wf-003"]["total_cost_usd"], abs=1e-4)
    assert out["total"]["total_tokens"] == sum(_tokens(t) for t in TRUTH["wf-003"]["stages"].values())


async def test_which_stage_uses_most_tokens(store: Store) -> None:
    out = await ask(store, "Which stage uses most tokens?", "query_workflow_cost", {})
    per_stage: dict[str, int] = {}
    for wf in TRUTH.values():
        for stage, t in wf["stages"].items():
            per_stage[stage] = per_stage.get(stage, 0) + _tokens(t)
    assert out["top"] == max(per_stage, key=per_stage.__getitem__)
    assert {s: g["total_tokens"] for s, g in by(out["groups"], "stage").items()} == per_stage
    assert "30 days up to the newest request" in out["window"]  # the default window, stated


async def test_what_did_stage_s_of_workflow_x_cost(store: Store) -> None:
    out = await ask(store, "What did stage S of workflow X cost?", "query_workflow_cost",
                    {"workflow_id": "wf-006", "stage": "implementer"})
    t = TRUTH["wf-006"]["stages"]["implementer"]
    assert out["total"]["requests"] == t["requests"] and out["total"]["input_tokens"] == t["input"]
    assert out["total"]["total_tokens"] == _tokens(t)


async def test_is_experiment_b_better_for_the_analysts_tokens(store: Store) -> None:
    out = await ask(store, "Is experiment B better than A for the analyst's tokens?", "compare_experiments",
                    {"stage": "analyst"})
    arms: dict[str, list[int]] = {}
    for wf in TRUTH.values():
        arms.setdefault(wf["experiment_id"], []).append(_tokens(wf["stages"]["analyst"]))
    (c,) = out["comparisons"]
    assert c["vs"] == "baseline" and c["arm"] == "analyst-file-limit-v2"
    assert c["difference"] == pytest.approx(statistics.mean(arms[c["arm"]]) - statistics.mean(arms["baseline"]))
    assert c["verdict"] in ("confirmed", "rejected", "inconclusive") and c["reason"]


async def test_which_workflows_had_loops(store: Store) -> None:
    out = await ask(store, "Which workflows had loops?", "query_errors_and_loops", {"sections": ["loops"]})
    assert out["workflows_with_loops"] == sorted(w for w, t in TRUTH.items() if t["leak"])


async def test_what_failed_in_workflow_x(store: Store) -> None:
    out = await ask(store, "What failed in workflow X?", "query_errors_and_loops", {"workflow_id": "wf-006"})
    failing = [r for r in rows(out["failures"]) if r["tool_name"] == "Bash" and r["stage"] == "implementer"]
    assert failing and failing[0]["failures"] >= 9
    assert out["api_errors"]["rows"] == [] and not TRUTH["wf-006"]["injected_errors"]


async def test_am_i_over_budget_today(store: Store) -> None:
    out = await ask(store, "Am I over budget today?", "budget_status", {"workflow_id": "wf-007"})
    assert out["workflow"]["spent_usd"] == pytest.approx(TRUTH["wf-007"]["total_cost_usd"], abs=1e-4)
    assert out["summary"].startswith("within budget") and out["today"]["limit_usd"] == 150


async def test_which_bash_commands_fail_repeatedly(store: Store) -> None:
    out = await ask(store, "Which bash commands fail repeatedly?", "query_errors_and_loops", {"sections": ["loops"]})
    bash = [r for r in rows(out["loops"]) if r["tool_name"] == "Bash"]
    assert {r["workflow_id"] for r in bash} == {w for w, t in TRUTH.items() if t["leak"]}
    assert all(r["failures"] >= 9 and r["command"] for r in bash)


async def test_what_was_retried_in_workflow_x(store: Store) -> None:
    out = await ask(store, "What was retried in workflow X?", "query_errors_and_loops",
                    {"workflow_id": "wf-008", "sections": ["retries"]})
    assert [r["stage"] for r in rows(out["retries"])] == [s for s, _ in TRUTH["wf-008"]["injected_errors"]]


async def test_cost_per_model(store: Store) -> None:
    out = await ask(store, "Cost per model?", "query_workflow_cost", {"group_by": ["model"]})
    assert sum(r["cost_usd"] for r in rows(out["groups"])) == pytest.approx(
        sum(t["total_cost_usd"] for t in TRUTH.values()), abs=1e-3)
    assert sum(r["requests"] for r in rows(out["groups"])) == sum(
        t["requests"] for wf in TRUTH.values() for t in wf["stages"].values())


async def test_what_will_a_full_path_complex_workflow_cost(store: Store) -> None:
    # the fixtures recorded neither path nor complexity: the path comes from the stages each workflow ran
    out = await ask(store, "What will a full-path complex workflow cost?", "predict_cost",
                    {"path": "full", "complexity": "complex"})
    costs = sorted(t["total_cost_usd"] for t in TRUTH.values())
    assert out["prediction"]["matched_workflows"] == len(costs)
    assert out["prediction"]["expected_usd"] == pytest.approx(statistics.median(costs), abs=1e-3)
    assert "complexity" in out["note"]
    none = await ask(store, "What will a fast-track workflow cost?", "predict_cost", {"path": "fast-track"})
    assert none["prediction"]["matched_workflows"] == 0


async def test_one_meaning_per_token_field_name(store: Store) -> None:
    """total_tokens = all four kinds, io_tokens = input + output: in the tools, the views and the schema doc."""
    async with Client(build_server(lambda: store, wait_for_caller_s=0.1)) as c:
        cost = (await c.call_tool("query_workflow_cost", {"workflow_id": "wf-003", "group_by": []})).structured_content
        view = (await c.call_tool("query_sql", {"sql": "SELECT total_tokens, io_tokens FROM workflow_summary "
                                                       "WHERE workflow_id = 'wf-003'"})).structured_content
        doc = (await c.call_tool("describe_schema", {"view": "workflow_summary"})).structured_content
    t = TRUTH["wf-003"]["stages"].values()
    assert view["rows"] == [[cost["total"]["total_tokens"], sum(s["input"] + s["output"] for s in t)]]
    assert cost["total"]["total_tokens"] == sum(_tokens(s) for s in t)
    described = {col["name"]: col.get("description", "") for col in doc["columns"]}
    assert "all four" in described["total_tokens"] and "input + output" in described["io_tokens"]
