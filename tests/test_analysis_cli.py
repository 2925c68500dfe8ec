"""The analysis subcommands, run as the real CLI on the fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home)}
    env.pop("GOLEM_DB", None)
    return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("home")
    assert _cli(h, "import", "-q", str(FIXTURES)).returncode == 0
    return h


def test_analyze_all_then_findings(home):
    r = _cli(home, "analyze", "--now", "2026-11-25", "--days", "30")
    assert r.returncode == 0, r.stderr
    assert "loop: Bash `exit 1` x9 in wf-00" in r.stdout
    r = _cli(home, "findings", "--json")
    items = json.loads(r.stdout)
    assert {i["key"].split("/")[0] for i in items if i["kind"] == "loop"} == {"wf-006", "wf-007"}
    again = _cli(home, "analyze", "--now", "2026-11-25", "--days", "30", "--json")
    assert json.loads(again.stdout)["produced"]["items_created"] == 0


def test_single_analyses_and_report(home, tmp_path):
    r = _cli(home, "analyze", "loops", "--now", "2026-11-25", "--days", "30", "--json")
    assert json.loads(r.stdout)["workflows_with_loops"] == ["wf-006", "wf-007"]
    r = _cli(home, "weekly", "--out", str(tmp_path), "--now", "2026-11-25")
    assert r.returncode == 0, r.stderr
    md = next(tmp_path.glob("weekly-*.md")).read_text()
    assert "## Bottlenecks" in md and "![cost per day" in md
    svg = next((tmp_path / "charts").glob("cost-*.svg")).read_text()
    assert svg.startswith("<svg") and "<rect" in svg
    from golem_mcp.interfaces.cli_main import build_parser  # the existing report command still parses

    assert build_parser().parse_args(["report", "--by", "workflow"]).by == ["workflow"]


def test_one_analysis_without_now_ends_its_window_at_the_newest_request(home):
    # the fixtures' requests are weeks old: a window ending at the wall clock would find nothing
    r = _cli(home, "analyze", "loops", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workflows_with_loops"] == ["wf-006", "wf-007"]
    table = _cli(home, "analyze", "loops")
    assert table.stdout.startswith("window: the 7 days up to the newest request, 2026-11-")
    assert "(--now to choose)" in table.stdout.splitlines()[0]
    far = _cli(home, "analyze", "loops", "--now", "2030-01-01", "--json")  # --now still chooses
    assert json.loads(far.stdout)["workflows_with_loops"] == []


def test_budget_and_bad_input(home):
    r = _cli(home, "budget", "--set", "workflow", "0.5", "--key", "wf-006", "--json")
    assert r.returncode == 0, r.stderr
    assert any(b["key"] == "wf-006" for b in json.loads(r.stdout)["budgets"])
    r = _cli(home, "budget", "--set", "galaxy", "3")
    assert r.returncode == 2 and "choose from workflow" in r.stderr
    # a misspelt workflow is not "$0.00, within budget" (the tools' rule, analysis/known.py)
    r = _cli(home, "budget", "--workflow", "wf-06")
    assert r.returncode != 0 and "no workflow 'wf-06'" in r.stderr and "wf-006" in r.stderr
    r = _cli(home, "budget", "--workflow", "wf-006", "--stage", "implementer", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"]["workflow"]["spent_usd"] > 0
    # --workflow: a misspelt id names the closest; an analysis that would ignore it refuses it
    r = _cli(home, "analyze", "bottlenecks", "--workflow", "wf-06")
    assert r.returncode != 0 and "no workflow 'wf-06'" in r.stderr and "wf-006" in r.stderr
    r = _cli(home, "analyze", "loops", "--workflow", "wf-006")
    assert r.returncode == 2 and "bottlenecks and anomalies only, not loops" in r.stderr
    r = _cli(home, "analyze", "anomalies", "--workflow", "wf-006", "--days", "3650", "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)["anomalies"]
    assert found and {a["workflow_id"] for a in found} == {"wf-006"}
    r = _cli(home, "analyze", "--now", "yesterday")
    assert r.returncode == 2 and "ISO" in r.stderr


def test_commands_run_inside_the_daemon_while_it_owns_the_file(tmp_path, golem_home, start_daemon):
    """DuckDB lets one process open the file: with the daemon up, `budget`, `findings`, `analyze` and
    `weekly` are sent to it and print the same as when run locally."""
    env = {**os.environ, "GOLEM_HOME": str(golem_home)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    d = start_daemon()
    assert cli("import", "-q", str(FIXTURES)).returncode == 0
    r = cli("budget", "--set", "workflow", "0.5", "--key", "wf-006", "--json")
    assert r.returncode == 0, r.stderr
    assert any(b["key"] == "wf-006" for b in json.loads(r.stdout)["budgets"])
    r = cli("analyze", "loops", "--now", "2026-11-25", "--days", "30", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workflows_with_loops"] == ["wf-006", "wf-007"]
    r = cli("weekly", "--now", "2026-11-25")          # written in this shell's folder, not the daemon's
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.glob("*.md")), r.stdout
    r = cli("budget", "--set", "galaxy", "3")
    assert r.returncode == 2 and "galaxy" in r.stderr
    assert d.proc.poll() is None   # it was the daemon's store all along: still up
