"""Thresholds set, changed and switched off while the daemon runs: `golem-mcp thresholds` through the
daemon, and the set_threshold MCP tool, change what the bottleneck analysis flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from mcp import Client

from golem_mcp.analysis.bottlenecks import find_bottlenecks
from golem_mcp.config import Settings
from golem_mcp.interfaces.mcp_server import build_server
from golem_mcp.store import Store
from synthetic import generate

NOW = "2031-03-01"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home)}
    env.pop("GOLEM_DB", None)
    return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _flagged(home: Path) -> set[tuple[str, str, str]]:
    r = _cli(home, "analyze", "bottlenecks", "--now", NOW, "--json")
    assert r.returncode == 0, r.stderr
    return {(b["dimension"], b["key"], b["baseline_source"]) for b in json.loads(r.stdout)["bottlenecks"]}


def test_thresholds_cli_with_a_running_daemon(golem_home, tmp_path, start_daemon):
    db = tmp_path / "golem.duckdb"
    with Store(db) as store:
        generate(store, {"traces"}, now=datetime.fromisoformat(NOW))
    d = start_daemon(db=db)  # holds the file: every command below can only go through it
    assert _flagged(golem_home) == set()
    r = _cli(golem_home, "thresholds")
    assert r.returncode == 0 and "no thresholds configured" in r.stdout

    # the analyst phase takes ~60 s: a 20 s baseline flags it, 3x
    r = _cli(golem_home, "thresholds", "set", "phase", "ANALYST", "20s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "on  phase:ANALYST  baseline p50 20s x 2 (flags above 40s)"
    assert _flagged(golem_home) == {("phase", "ANALYST", "configured")}

    # changed: a larger multiplier lets it pass, a smaller baseline flags it again
    assert _cli(golem_home, "thresholds", "set", "phase", "ANALYST", "--multiplier", "4").returncode == 0
    assert _flagged(golem_home) == set()
    assert _cli(golem_home, "thresholds", "set", "phase", "ANALYST", "10000").returncode == 0
    assert _flagged(golem_home) == {("phase", "ANALYST", "configured")}

    # switched off: back to its own history, which is as slow as now
    r = _cli(golem_home, "thresholds", "off", "phase", "ANALYST")
    assert r.returncode == 0 and r.stdout.startswith("off phase:ANALYST")
    assert _flagged(golem_home) == set()
    listed = json.loads(_cli(golem_home, "thresholds", "list", "--json").stdout)
    assert [(t["dimension_key"], t["baseline_p50_ms"], t["multiplier"], t["is_active"]) for t in listed] == [
        ("ANALYST", 10000.0, 4.0, False)]
    assert json.loads(_cli(golem_home, "thresholds", "list", "--active", "--json").stdout) == []

    # bad input: a clear error, nothing changed
    r = _cli(golem_home, "thresholds", "set", "sd_type", "feature", "5s")
    assert r.returncode == 2 and "unknown dimension 'sd_type'; choose from" in r.stderr
    r = _cli(golem_home, "thresholds", "set", "gate", "GATE_X")
    assert r.returncode == 2 and "give its baseline p50 in milliseconds" in r.stderr
    r = _cli(golem_home, "thresholds", "set", "gate", "GATE_X", "fast")
    assert r.returncode == 2 and "is not a duration" in r.stderr
    r = _cli(golem_home, "thresholds", "off", "gate", "GATE_X")
    assert r.returncode == 1 and "no threshold for gate:GATE_X" in r.stderr
    assert len(json.loads(_cli(golem_home, "thresholds", "list", "--json").stdout)) == 1
    assert d.proc.poll() is None


async def test_set_threshold_tool(golem_home, tmp_path):
    store = Store(tmp_path / "g.duckdb", settings=Settings())
    now = datetime.fromisoformat(NOW)
    generate(store, {"traces"}, now=now)
    try:
        async with Client(build_server(lambda: store)) as c:
            r = await c.call_tool("set_threshold", {"dimension": "gate", "key": "GATE_TESTS", "baseline_ms": 3000})
            assert not r.is_error, r.content[0].text
            assert r.structured_content["multiplier"] == 2.0 and r.structured_content["is_active"] is True
            assert [(b.dimension, b.key) for b in find_bottlenecks(store, now=now).bottlenecks] == [("gate", "GATE_TESTS")]
            r = await c.call_tool("set_threshold", {"dimension": "gate", "key": "GATE_TESTS", "active": False})
            assert r.structured_content["is_active"] is False
            assert find_bottlenecks(store, now=now).bottlenecks == []
            r = await c.call_tool("set_threshold", {"dimension": "gate", "key": "GATE_NEW"})
            assert r.is_error and "give its baseline p50" in r.content[0].text
    finally:
        store.close()
