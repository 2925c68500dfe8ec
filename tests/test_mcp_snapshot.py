"""The tool list as agents see it (names, descriptions, input and output schemas, hints), snapshotted.

A change to a tool's contract must be deliberate: regenerate with ``GOLEM_UPDATE_SNAPSHOTS=1 pytest
tests/test_mcp_snapshot.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mcp import Client

from golem_mcp.config import Settings
from golem_mcp.interfaces.mcp_server import build_server
from golem_mcp.store import Store

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def test_tool_list_matches_snapshot(tmp_path: Path, golem_home: Path) -> None:
    store = Store(tmp_path / "g.duckdb", settings=Settings())
    try:
        async with Client(build_server(lambda: store)) as c:
            tools = (await c.list_tools()).tools
            prompts = (await c.list_prompts()).prompts
            resources = (await c.list_resources()).resources
    finally:
        store.close()
    current = {
        "tools": {t.name: {"description": t.description,
                           "annotations": t.annotations.model_dump(mode="json", exclude_none=True) if t.annotations else None,
                           "inputSchema": t.input_schema, "outputSchema": t.output_schema}
                  for t in sorted(tools, key=lambda t: t.name)},
        "prompts": sorted(p.name for p in prompts),
        "resources": sorted(str(r.uri) for r in resources),
    }
    # the README's table names every tool the server lists, and no tool it does not
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")
                  and line.split("`")[1].replace("_", "").isalpha() and "_" in line.split("`")[1]}
    assert documented >= {t.name for t in tools}, {t.name for t in tools} - documented
    text = json.dumps(current, indent=1, sort_keys=True) + "\n"
    if os.environ.get("GOLEM_UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert json.loads(SNAPSHOT.read_text()) == current, (
        "the MCP tool contract changed; if on purpose, rerun with GOLEM_UPDATE_SNAPSHOTS=1 and review the diff")
