"""Toolsets: which MCP tools a server entry lists, so an agent pays only for the tools it uses.

Every tool name a session sees costs tokens in every turn (the list is part of the prompt), so a
Claude Code server entry may pick toolsets, as the GitHub MCP server does:
``golem-mcp stdio --toolsets reader,reviewer``. Stdlib only: the stdio bridge imports this too.
"""

from __future__ import annotations

TOOLSETS: dict[str, tuple[str, ...]] = {
    # questions: cost, budget, errors and loops, slowness, leaks, review quality, improvements, experiments
    "reader": ("query_workflow_cost", "budget_status", "query_errors_and_loops", "find_slow_stages",
               "find_token_leaks", "query_review_findings", "list_improvements", "predict_cost",
               "compare_experiments", "describe_schema", "query_sql"),
    # what a workflow's master and stages record about themselves
    "workflow": ("record_workflow", "record_stage_usage"),
    # what a reviewer posts
    "reviewer": ("report_review_findings",),
    # the maintainer's changes: experiment definitions and decisions
    "maintainer": ("record_experiment", "set_threshold"),
}
ALL = tuple(TOOLSETS)


def parse(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Toolset names from ``"reader,reviewer"`` (or a list); ``None``, ``""`` or ``"all"`` = every toolset."""
    if spec is None:
        return ALL
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names or names == ["all"]:
        return ALL
    bad = [n for n in names if n not in TOOLSETS]
    if bad:
        raise ValueError(f"unknown toolset {', '.join(bad)}; choose from {', '.join(ALL)} (or all)")
    return tuple(dict.fromkeys(names))


def tools_of(toolsets: tuple[str, ...]) -> set[str]:
    return {t for s in toolsets for t in TOOLSETS[s]}
