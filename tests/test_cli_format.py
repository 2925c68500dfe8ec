"""The CLI reads well anywhere: at 80 columns in a pipe no number is cut and every value of the report
is there; --format csv|json for scripts; each bad argument is one line, exit 2, no traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from golem_mcp import formatting

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
EXPONENT = re.compile(r"\d(\.\d+)?e[+-]\d")


def golem(*args: str, home: Path, columns: int | None = 80, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real CLI with stdout a pipe (no terminal), at ``columns`` wide."""
    env = {**os.environ, "GOLEM_HOME": str(home), "HOME": str(home), "GOLEM_URL": ""}
    env.pop("GOLEM_DB", None)
    env.pop("COLUMNS", None)
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                          timeout=180, cwd=cwd)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("fmt")
    out = golem("import", "-q", str(FIX), home=home)
    assert out.returncode == 0, out.stderr
    return home


# -- the one definition of how numbers look ---------------------------------------------------------

def test_numbers_full_and_compact_never_in_exponent_notation():
    assert formatting.tokens(392_000) == "392,000" and formatting.tokens(392_000, compact=True) == "392k"
    assert formatting.tokens(1_404_000, compact=True) == "1.4M" and formatting.tokens(999_600, compact=True) == "1M"
    assert formatting.usd(3.4512) == "$3.45" and formatting.usd(0.0068375) == "$0.0068"
    assert formatting.usd(0.481, compact=True) == "$0.48" and formatting.usd(1234.5, compact=True) == "$1.2k"
    assert formatting.rate(0.7666) == "76.7%" and formatting.rate(0.7666, compact=True) == "77%"
    assert formatting.duration_ms(350) == "350ms" and formatting.duration_ms(95_000) == "1.6min"
    assert formatting.duration_s(2.5 * 3600) == "2.5h"
    assert formatting.change(0.72) == "+72%" and formatting.change(-0.031) == "-3%" and formatting.change(None) == "-"
    assert formatting.p_value(3.1e-12) == "p<0.001" and formatting.p_value(0.0321) == "p=0.032"
    assert formatting.metric("total_tokens", 1.787e5) == "178,700"
    assert formatting.metric("total_cost", 0.185) == "$0.1850"
    for x in (1.787e5, 1e-7, 3.3e-5, 2.5e12, 123456.789, 0.000123):
        for compact in (False, True):
            for unit in formatting.UNITS:
                shown = formatting.show(x, unit, compact)
                assert not EXPONENT.search(shown), (x, unit, compact, shown)


# -- tables at 80 columns in a pipe -------------------------------------------------------------------

# the report's number columns in table order, the header each has and the unit it is shown in
REPORT = [("requests", "requests", "count"), ("input_tokens", "input", "tokens"), ("output_tokens", "output", "tokens"),
          ("cache_read_tokens", "cache read", "tokens"), ("cache_creation_tokens", "cache write", "tokens"),
          ("cache_hit_rate", "cache hit", "rate"), ("cost_usd", "cost", "usd"), ("duration_seconds", "time", "seconds")]
SCALE = {"k": 1e3, "M": 1e6, "B": 1e9}


def parse_shown(text: str, unit: str) -> float:
    """A number as the table shows it, back to a value, independently of golem_mcp.formatting."""
    t = text.replace(",", "")
    if unit == "usd":
        assert t.startswith("$"), text
        t = t[1:]
    if unit == "rate":
        return float(t.rstrip("%")) / 100
    if unit == "seconds":
        m = re.fullmatch(r"([\d.]+)(ms|s|min|h|d)", t)
        assert m, text
        return float(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    if t[-1] in SCALE:
        return float(t[:-1]) * SCALE[t[-1]]
    return float(t)


def check_report(out: subprocess.CompletedProcess, rows: list[dict], by: list[str], width: int) -> set[str]:
    """Every value of every JSON row is in its table line, whole; returns the columns the footnote dropped."""
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "…" not in out.stdout
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    m = re.search(r"\(not shown at [^)]*\)", out.stdout)
    note = " ".join(m.group(0).split()) if m else ""
    dropped = {h for _, h, _ in REPORT if re.search(rf"[:,] {h}[,;]", note)}
    shown = [(k, u) for k, h, u in REPORT if h not in dropped]
    table = {}
    for line in lines:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(by) + len(shown):
            table[tuple(cells[:len(by)])] = cells[len(by):]
    assert rows
    for r in rows:
        cells = table[tuple("-" if r[b] is None else str(r[b]) for b in by)]
        for (key, unit), text in zip(shown, cells, strict=True):
            want = r[key]
            got = parse_shown(text, unit)
            if unit == "rate":
                assert abs(got - want) <= 0.005 + 1e-9, (key, text, want)
            else:
                assert got == pytest.approx(want, rel=0.05, abs=0.001 if unit == "seconds" else 0.0001), (key, text, want)
    return dropped


@pytest.mark.parametrize("by", [["workflow", "stage"], ["model"], ["model", "stage"], ["day"]])
def test_report_at_80_columns_in_a_pipe_cuts_no_number(home, by):
    rows = json.loads(golem("report", "--by", ",".join(by), "--format", "json", "--no-sync", home=home).stdout)
    out = golem("report", "--by", ",".join(by), "--no-sync", home=home, columns=80)
    check_report(out, rows, by, 80)
    assert f"total {formatting.usd(sum(r['cost_usd'] for r in rows))}" in out.stdout


def test_report_without_columns_set_fits_80_and_wide_terminals_get_full_numbers(home):
    rows = json.loads(golem("report", "--by", "model,stage", "--json", "--no-sync", home=home).stdout)
    check_report(golem("report", "--by", "model,stage", "--no-sync", home=home, columns=None), rows,
                 ["model", "stage"], 80)
    wide = golem("report", "--by", "model,stage", "--no-sync", home=home, columns=200)
    assert check_report(wide, rows, ["model", "stage"], 200) == set()
    for r in rows:  # in full: every digit
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
            assert f"{r[key]:,}" in wide.stdout


def test_narrow_tables_drop_low_value_columns_and_say_which(home):
    rows = json.loads(golem("report", "--by", "workflow,stage", "--json", "--no-sync", home=home).stdout)
    out = golem("report", "--by", "workflow,stage", "--no-sync", home=home, columns=60)
    dropped = check_report(out, rows, ["workflow", "stage"], 60)
    assert {"time", "cache write"} <= dropped and "cost" not in dropped
    assert "--format csv or json has every column" in out.stdout


def column_texts(stdout: str) -> list[list[str]]:
    """Each row's cells, a folded cell's lines joined, read by the columns the rule line marks."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    spans = [m.span() for m in re.finditer(r"─+", lines[rule])]
    rows: list[list[str]] = []
    for line in lines[rule + 1:]:
        if line.startswith(("(not shown", "total ")):
            break
        cells = [line[a:b].strip() for a, b in spans]
        if cells[-1]:  # the cost column: a new row starts
            rows.append(cells)
        else:
            rows[-1] = [old + new for old, new in zip(rows[-1], cells, strict=True)]
    return rows


def test_long_labels_fold_instead_of_being_cut(home):
    out = golem("report", "--by", "session,project", "--no-sync", home=home, columns=80)
    assert out.returncode == 0 and "…" not in out.stdout
    assert all(len(line) <= 80 for line in out.stdout.splitlines())
    want = {(r["session"], r["project"]) for r in json.loads(golem("report", "--by", "session,project", "--json",
                                                                   "--no-sync", home=home).stdout)}
    assert {(r[0], r[1]) for r in column_texts(out.stdout)} == want


def test_csv_and_json_hold_the_same_rows(home):
    rows = json.loads(golem("report", "--by", "workflow,stage", "--format", "json", "--no-sync", home=home).stdout)
    assert rows == json.loads(golem("report", "--by", "workflow,stage", "--json", "--no-sync", home=home).stdout)
    got = list(csv.DictReader(io.StringIO(golem("report", "--by", "workflow,stage", "--format", "csv", "--no-sync",
                                                home=home).stdout)))
    assert len(got) == len(rows)
    for c, j in zip(got, rows, strict=True):
        assert (c["workflow"], c["stage"]) == (j["workflow"], j["stage"])
        assert int(c["cache_read_tokens"]) == j["cache_read_tokens"]
        assert float(c["cost_usd"]) == pytest.approx(j["cost_usd"])


@pytest.mark.parametrize("what", ["bottlenecks", "anomalies", "loops", "errors", "sequences", "trends", "quality",
                                  "predict"])
def test_single_analyses_print_tables_that_fit(home, what):
    args = ("analyze", what, "--now", "2026-11-25", "--days", "30")
    out = golem(*args, home=home, columns=80)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and not out.stdout.lstrip().startswith("{")
    assert not EXPONENT.search(out.stdout)
    assert all(len(line) <= 80 for line in out.stdout.splitlines()), out.stdout
    data = json.loads(golem(*args, "--format", "json", home=home).stdout)
    if what == "loops":
        assert data["workflows_with_loops"] == ["wf-006", "wf-007"]
        for loop in data["loops"]:
            assert re.search(rf"{loop['workflow_id']}\s+{loop['stage']}\s+{loop['tool_name']}\s+"
                             rf"{re.escape(loop['command'])}\s+{loop['count']}\s+{loop['failures']}", out.stdout)
    if what == "anomalies":  # each value in its metric's unit: tokens, dollars, calls
        for a in data["anomalies"]:
            assert formatting.metric(a["metric"], a["value"], compact=True) in out.stdout \
                or formatting.metric(a["metric"], a["value"]) in out.stdout
    assert golem(*args, "--format", "csv", home=home).returncode == 0


def test_weekly_report_shows_numbers_as_people_read_them(home, tmp_path):
    out = golem("weekly", "--out", str(tmp_path / "new" / "folder"), "--now", "2026-11-25", home=home)
    assert out.returncode == 0, out.stderr
    md = next((tmp_path / "new" / "folder").glob("weekly-*.md")).read_text()
    assert not EXPONENT.search(md), md
    assert "total_tokens 526,500 = 2.6x normal (202,500" in md  # all four kinds of tokens
    for svg in (tmp_path / "new" / "folder" / "charts").glob("*.svg"):
        assert not EXPONENT.search(svg.read_text()), svg
    # the panels seed 000's users had, and a time axis where the days without use are empty slots
    assert "## Latency (7 days)" in md and "| model | " in md
    assert "| analyst-file-limit-v2 | 4 |" in md and "| baseline (baseline) | 4 |" in md
    assert "## Fast-track vs full path" in md
    cost = next((tmp_path / "new" / "folder" / "charts").glob("cost-*.svg")).read_text()
    assert cost.count('class="bar"') + cost.count('class="empty"') in (30, 31) and cost.count('class="empty"') >= 20


# -- bad arguments: one line, exit 2, what to type instead --------------------------------------------

BAD = [
    (("report", "--since", "notadate"), "2026-11-01"),
    (("analyze", "--now", "yesterday"), "ISO 8601"),
    (("weekly", "--out", "/proc/nope"), "give a folder you can write"),
    (("analyze", "--days", "-1"), "more than 0"),
    (("analyze", "loops", "--days", "0"), "more than 0"),
    (("report", "--top", "0"), "between 1 and"),
    (("report", "--top", "99999999999999999999"), "between 1 and"),
    (("analyze", "loops", "--days", "1e9"), "at most 36,500"),
    (("analyze", "--now", "0001-01-01"), "between 1970 and 9000"),
    (("findings", "--limit", "ten"), "whole number"),
    (("report", "--by", "workflow,colour"), "choose from workflow, stage"),
    (("report", "--by", "modle"), "did you mean model?"),
    (("report", "--format", "xml"), "table, csv, json"),
    (("analyze", "loops", "--format", "yaml"), "table, csv, json"),
    (("analyze", "loopz"), "did you mean loops?"),
    (("import", "/nonexistent/transcripts"), "no such file or folder"),
    (("budget", "--set", "galaxy", "3"), "choose from workflow"),
    (("budget", "--set", "workflow", "-1"), "above 0"),
    (("budget", "--levels", "50,x"), "50,80,95,100"),
    (("dashboard", "--days", "0"), "between 1 and 365"),
    (("serve", "--port", "99999"), "between 0 and 65535"),
    (("report", "--colour"), "golem-mcp report --help"),
]


@pytest.mark.parametrize(("args", "hint"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_argument_is_one_line_and_exit_2(tmp_path, args, hint):
    out = golem(*args, home=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("golem-mcp"), out.stderr
    assert hint in lines[0]
    assert not (tmp_path / "golem.duckdb").exists()  # refused before anything was opened


def test_a_db_that_is_not_there_is_refused_unless_created(tmp_path, home):
    typo = tmp_path / "golme.duckdb"
    for args in (("report", "--no-sync"), ("import", str(FIX / "truth.json")), ("analyze", "loops"), ("status",)):
        out = golem(*args, "--db", str(typo), home=tmp_path)
        assert out.returncode == 2 and "--create" in out.stderr and len(out.stderr.strip().splitlines()) == 1, args
        assert not typo.exists()
    one = next((FIX / "home" / ".claude" / "projects").iterdir())
    made = golem("import", "-q", str(one), "--db", str(typo), "--create", home=tmp_path)
    assert made.returncode == 0, made.stderr
    assert golem("report", "--no-sync", "--db", str(typo), home=tmp_path).returncode == 0
    # the default store needs no --create, even when named: the README's first command
    default = tmp_path / "default"
    out = golem("report", "--by", "workflow,stage", "--db", str(default / "golem.duckdb"), home=default)
    assert out.returncode == 0 and "no Claude Code history" in out.stderr


def test_analyze_with_a_bad_window_records_no_run(home):
    before = json.loads(golem("analyze", "--runs", "--json", home=home).stdout)
    assert golem("analyze", "--days", "-1", home=home).returncode == 2
    assert json.loads(golem("analyze", "--runs", "--json", home=home).stdout) == before


def test_import_of_a_missing_default_folder_says_where_to_look(tmp_path):
    out = golem("import", home=tmp_path)
    assert out.returncode == 1 and "golem-mcp import DIR" in out.stderr and "Traceback" not in out.stderr


def test_unexpected_error_is_one_line_and_the_traceback_is_logged(tmp_path, monkeypatch, capsys):
    from golem_mcp.interfaces import cli_main

    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli_main.HANDLERS, "status", broken)
    assert cli_main.run(["status"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ZeroDivisionError: a bug" in err[0] and "--debug" in err[0]
    log = (tmp_path / "cli-errors.log").read_text()
    assert "Traceback" in log and "golem-mcp status" in log and "ZeroDivisionError" in log
    with pytest.raises(ZeroDivisionError):
        cli_main.run(["status", "--debug"])


def test_tables_from_the_daemon_fit_the_callers_terminal(tmp_path, golem_home, start_daemon):
    """With the daemon up, `analyze` runs inside it: its tables still fit the width of the caller."""
    start_daemon()
    env = {**os.environ, "GOLEM_HOME": str(golem_home), "COLUMNS": "64"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "golem_mcp", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    assert cli("import", "-q", str(FIX)).returncode == 0
    for args in (("analyze", "loops", "--now", "2026-11-25", "--days", "30"), ("report", "--by", "model,stage")):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert "…" not in out.stdout and all(len(line) <= 64 for line in out.stdout.splitlines()), out.stdout
    bad = cli("analyze", "--days", "-1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_at_every_width_each_number_is_whole_in_full_or_compact_form():
    from golem_mcp.interfaces.cli_output import Column, render_table

    rows = [{"model": "claude-sonnet-5-5", "project": "~/work/a-rather-long-project-folder-name", "requests": 56,
             "input_tokens": 392_000, "cache_read_tokens": 1_680_000 + i, "cost_usd": 2.0695 / (i + 1),
             "cache_hit_rate": 0.7666, "duration_seconds": 15.8 * i} for i in range(4)]
    cols = [Column("model"), Column("project"), Column("requests", unit="count", drop=1),
            Column("input_tokens", "input", "tokens"), Column("cache_read_tokens", "cache read", "tokens", drop=2),
            Column("cost_usd", "cost", "usd"), Column("cache_hit_rate", "cache hit", "rate"),
            Column("duration_seconds", "time", "seconds", drop=3)]
    for width in range(30, 140, 7):
        lines = render_table(cols, rows, width)
        text = "\n".join(lines)
        note = " ".join(text[text.find("(not shown"):].split()) if "(not shown" in text else ""
        for c in cols:
            if c.unit is None or f" {c.title}" in note:
                continue
            for r in rows:
                full, compact = formatting.show(r[c.key], c.unit), formatting.show(r[c.key], c.unit, compact=True)
                assert re.search(rf"(^|\s){re.escape(full)}($|\s)", text, re.M) or \
                    re.search(rf"(^|\s){re.escape(compact)}($|\s)", text, re.M), (width, c.key, full, compact)
        if width >= 60:
            assert all(len(line) <= width for line in lines), (width, text)
