"""The command line as a user meets it: import, report in every grouping, helpful errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
TRUTH = json.loads((FIX / "truth.json").read_text())


def golem(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home), "GOLEM_URL": ""}
    env.pop("GOLEM_DB", None)
    return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli")
    out = golem("import", str(FIX), "--json", home=home)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["skipped"] == [] and res["files_read"] == 126
    return home


def test_report_by_workflow_and_stage_matches_truth(home):
    out = golem("report", "--by", "workflow,stage", "--json", "--no-sync", home=home)
    rows = json.loads(out.stdout)
    got = {(r["workflow"], r["stage"]): (r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                                         r["cache_creation_tokens"]) for r in rows}
    want = {(wf, st): (s["input"], s["output"], s["cache_read"], s["cache_write"])
            for wf, t in TRUTH.items() for st, s in t["stages"].items()}
    assert got == want


@pytest.mark.parametrize("by", ["model", "day", "week", "experiment", "session", "project", "branch", "agent",
                                "top_stage", "path", "task", "stage,model"])
def test_every_grouping_runs_and_sums_to_the_total(home, by):
    rows = json.loads(golem("report", "--by", by, "--json", "--no-sync", home=home).stdout)
    assert sum(r["requests"] for r in rows) == sum(s["requests"] for t in TRUTH.values() for s in t["stages"].values())
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(sum(t["total_cost_usd"] for t in TRUTH.values()))


def test_filters_answer_what_did_task_x_cost(home):
    rows = json.loads(golem("report", "--by", "stage", "--workflow", "wf-006", "--json", "--no-sync", home=home).stdout)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(TRUTH["wf-006"]["total_cost_usd"])
    assert rows[0]["stage"] == "implementer"  # most expensive first: the stage that looped


def test_table_output_and_help(home):
    out = golem("report", "--by", "workflow", "--no-sync", home=home)
    assert out.returncode == 0 and "wf-007" in out.stdout and "total $" in out.stdout
    h = golem("report", "--help", home=home)
    assert "--by" in h.stdout and "workflow" in h.stdout
    top = golem("--help", home=home)
    for cmd in ("import", "report", "serve", "hook", "stdio"):
        assert cmd in top.stdout


def test_unknown_grouping_says_what_is_allowed(home):
    out = golem("report", "--by", "workflow,stgae", "--no-sync", home=home)
    assert out.returncode == 2
    assert "unknown grouping 'stgae'" in out.stderr and "workflow" in out.stderr and "did you mean stage?" in out.stderr


def test_fresh_machine_gets_an_empty_report_and_what_to_do(tmp_path):
    # the README's first command on a machine where Claude Code never ran
    out = golem("report", "--by", "workflow,stage", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no Claude Code history" in out.stderr and "golem-mcp import" in out.stderr
    assert (tmp_path / "golem.duckdb").exists()
    again = golem("report", "--by", "workflow,stage", "--json", home=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout) == []


def test_a_misspelt_id_is_an_error_naming_the_closest_not_an_empty_report(home):
    # the tools' rule (analysis/known.py): an id the store never saw is not "nothing was spent"
    out = golem("report", "--workflow", "wf-06", "--no-sync", home=home)
    assert out.returncode != 0 and out.stdout == ""
    assert "no workflow 'wf-06'" in out.stderr and "wf-006" in out.stderr
    stage = golem("report", "--stage", "implementor", "--no-sync", "--json", home=home)
    assert stage.returncode != 0 and "no stage 'implementor'" in stage.stderr and "implementer" in stage.stderr
    # a known id in a window with nothing in it is an empty answer, said as such
    empty = golem("report", "--workflow", "wf-006", "--since", "2099-01-01", "--no-sync", home=home)
    assert empty.returncode == 0, empty.stderr
    assert "no requests match these filters" in empty.stdout and "recorded yet" not in empty.stdout


def test_a_machine_filter_names_the_known_machines_when_it_matches_none(home):
    machines = [r["machine"] for r in json.loads(golem("report", "--by", "machine", "--json", "--no-sync",
                                                       home=home).stdout)]
    assert len(machines) == 1
    out = golem("report", "--machine", "laptop", "--no-sync", home=home)
    assert out.returncode != 0 and "no machine 'laptop'" in out.stderr and machines[0] in out.stderr
    ok = golem("report", "--machine", machines[0], "--json", "--no-sync", home=home)
    assert ok.returncode == 0 and sum(r["requests"] for r in json.loads(ok.stdout)) > 0


def test_the_total_under_a_top_n_report_says_it_is_of_the_rows_shown(home):
    top = golem("report", "--by", "workflow", "--top", "2", "--no-sync", home=home)
    assert top.returncode == 0, top.stderr
    assert "of the 2 costliest shown (--top)" in top.stdout
    whole = golem("report", "--by", "workflow", "--no-sync", home=home)
    assert "total $" in whole.stdout and "costliest shown" not in whole.stdout
