"""`golem-mcp report` while a daemon owns the store: answered through it, and without loading the
heavy libraries (DuckDB, pyarrow, pydantic, ...) in the CLI process, which is what makes it answer in
tens of milliseconds (bench/import_bench.py measures the time; this pins what is imported)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from golem_mcp.interfaces.client import call

TRUTH = json.loads((FIXTURES / "truth.json").read_text())
# the CLI's report through a daemon needs none of these; each costs from ~10 ms to ~300 ms to import
HEAVY = ("duckdb", "pyarrow", "pydantic", "numpy", "rich", "scipy", "mcp", "starlette", "uvicorn", "orjson",
         "golem_mcp.store", "golem_mcp.ingestion", "urllib.request", "http.client")


def run_cli(home: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m golem_mcp ARGS`` in ``home``: the result and every module it imported."""
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home)}
    for k in ("GOLEM_URL", "GOLEM_DB", "GOLEM_TOKEN"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "golem_mcp", *args], capture_output=True,
                         text=True, env=env, timeout=120)
    modules = {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", out.stderr, re.M)}
    assert modules, out.stderr[-2000:]  # -X importtime wrote its lines: an empty set would prove nothing
    return out, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture
def served(start_daemon, golem_home, tmp_path):
    """A daemon that imported the fixture (transcripts, OTLP, hooks) into its own store, not the CLI's default one."""
    d = start_daemon(db=tmp_path / "served.duckdb")
    res = call(d.url, "/api/import", {"paths": [str(FIXTURES)]})
    assert res["skipped"] == [] and res["rows"] > 0
    return d


def test_report_through_the_daemon_imports_no_heavy_library(served, golem_home):
    out, modules = run_cli(golem_home, "report", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    # the answer is the daemon's: the CLI's own default store does not exist (a local answer would be empty)
    assert not (golem_home / "golem.duckdb").exists()
    got = {(r["workflow"], r["stage"]): (r["input_tokens"], r["output_tokens"]) for r in rows}
    assert got == {(wf, st): (s["input"], s["output"]) for wf, t in TRUTH.items() for st, s in t["stages"].items()}
    assert "golem_mcp.interfaces.client" in modules
    assert heavy(modules) == []


@pytest.mark.parametrize("args", [("--by", "day", "--since", "2026-01-01", "--format", "csv"),
                                  ("--by", "model,stage", "--workflow", "wf-006", "--width", "60")])
def test_every_report_option_through_the_daemon_stays_light(served, golem_home, args):
    out, modules = run_cli(golem_home, "report", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "claude-" in out.stdout or "2026-" in out.stdout
    assert heavy(modules) == []


def test_without_a_daemon_the_report_opens_the_store_itself(golem_home):
    # the other side of the same switch: no daemon, so the CLI loads DuckDB and answers from its store
    out, modules = run_cli(golem_home, "report", "--json", "--no-sync")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == []
    assert "duckdb" in modules


def test_a_misspelt_id_through_the_daemon_is_the_same_error(served, golem_home):
    out, modules = run_cli(golem_home, "report", "--workflow", "wf-06")
    assert out.returncode != 0 and out.stdout == ""
    assert "no workflow 'wf-06'" in out.stderr and "wf-006" in out.stderr
    assert heavy(modules) == []


@pytest.mark.parametrize("value", [5, ["wf-006"], {"id": "wf-006"}])
def test_a_report_filter_that_is_no_string_is_a_clear_400(served, value):
    from golem_mcp.errors import GolemError

    with pytest.raises(GolemError, match="filter 'workflow_id' must be a string"):
        call(served.url, "/api/report", {"filters": {"workflow_id": value}})
    rows = call(served.url, "/api/report", {"filters": {"workflow_id": "wf-006"}})  # the daemon answers on
    assert rows and all(r["workflow"] == "wf-006" for r in rows)
