"""CLI subcommands of the analysis engine: analyze, findings, budget, weekly. Each opens the store and
calls one analysis function; no SQL or statistics here."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import io
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import formatting
from ..errors import GolemError, InvalidInput, StoreBusy
from . import cli_args as A
from .cli_output import Column, Section, columns_for, emit, label

WHAT = ("all", "bottlenecks", "anomalies", "loops", "errors", "sequences", "trends", "quality", "predict",
        "patterns", "timeouts")
KINDS = ("bottleneck", "token_leak", "loop", "error_pattern", "retry", "model_advice")


def register(subparsers: Any, handlers: dict[str, Any]) -> None:
    def common(sp: argparse.ArgumentParser) -> None:
        A.add_db(sp)
        A.add_format(sp)

    sp = subparsers.add_parser("analyze", help="find bottlenecks, token leaks, loops, error patterns (and store findings)",
                               description="Run the analysis engine. 'all' runs every analysis, stores improvement "
                               "items and alerts, and records the run; the others print one analysis as tables "
                               "(--format json for machines).")
    sp.add_argument("what", nargs="?", default="all", choices=WHAT)
    sp.add_argument("--days", type=A.positive_days, default=7, help="window in days, more than 0 (default 7)")
    sp.add_argument("--now", type=A.iso_datetime, help="analyse as of this ISO date/time (default: one analysis: the newest request "
                    "stored, as the MCP tools; the full run: now)")
    sp.add_argument("--workflow", help="bottlenecks: each workflow's bottleneck stage and idle time for this "
                    "workflow only; anomalies: this workflow's stage runs only")
    sp.add_argument("--min-support", type=A.positive_int, metavar="K", help="sequences: reusable ones recur in at "
                    "least K successful workflows (default 3, or 5%% of them when more)")
    sp.add_argument("--max-length", type=A.positive_int, default=4, metavar="L", help="sequences: up to L steps "
                    "(2-8, default 4)")
    sp.add_argument("--pending", action="store_true", help="run the queued runs (what the daemon does in the background)")
    sp.add_argument("--runs", action="store_true", help="list the latest analysis runs: status, trigger, times, "
                    "what each produced (the daemon queues one at a session start when the last is a week old)")
    common(sp)
    handlers["analyze"] = cmd_analyze

    sp = subparsers.add_parser("findings", help="improvement items the analysis stored, worst first")
    sp.add_argument("--status", default="open", choices=("open", "done", "dismissed", "all"))
    sp.add_argument("--kind", choices=KINDS, help=", ".join(KINDS))
    sp.add_argument("--limit", "--top", type=A.positive_int, default=20, help="at most this many (default 20)")
    sp.add_argument("--close", type=A.item_id, metavar="ID", help="mark item ID done")
    sp.add_argument("--dismiss", type=A.item_id, metavar="ID", help="mark item ID dismissed")
    common(sp)
    handlers["findings"] = cmd_findings

    sp = subparsers.add_parser("budget", help="budget status, burn rate and projection; set budgets and the alert webhook")
    sp.add_argument("--workflow", help="also this workflow's spend")
    sp.add_argument("--stage", help="also this stage's spend (with --workflow)")
    sp.add_argument("--set", nargs=2, metavar=("SCOPE", "USD"), action=A.BudgetSet,
                    help="set a budget: workflow|stage|day|session and dollars")
    sp.add_argument("--key", default="*", help="with --set: one workflow/stage/day id (default: every one)")
    sp.add_argument("--levels", type=A.percent_levels, help="with --set: alert levels in percent (default 50,80,95,100)")
    sp.add_argument("--webhook", help="POST alerts to this URL in Alertmanager's webhook format ('' to remove)")
    sp.add_argument("--check", action="store_true", help="evaluate alerts now (log, webhook)")
    common(sp)
    handlers["budget"] = cmd_budget

    sp = subparsers.add_parser(
        "thresholds", help="bottleneck baselines per dimension: list, set or change, switch off (seed 003's "
        "telemetry_thresholds)",
        description="The configured p50 baselines the bottleneck analysis flags against: a key is a bottleneck "
        "when its p50 over the window exceeds baseline x multiplier. Keys without an active baseline are "
        "judged against their own history. Works while the daemon runs.",
        epilog="examples:\n  golem-mcp thresholds set phase PLAN 60s --multiplier 1.8\n"
               "  golem-mcp thresholds set stage implementer 2min\n  golem-mcp thresholds off subagent DESIGN",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = sp.add_subparsers(dest="action", metavar="ACTION")
    tl = tsub.add_parser("list", help="the configured baselines (default)")
    tl.add_argument("--active", action="store_true", help="only those switched on")
    common(tl)
    ts = tsub.add_parser("set", help="add or change one; switches it on")
    ts.add_argument("dimension", help="phase, gate, subagent, handoff, stage, agent, tool, model, workflow_path, "
                    "stage_experiment or span")
    ts.add_argument("key", help="the dimension's value, e.g. PLAN, implementer, Bash")
    ts.add_argument("baseline", nargs="?", type=A.duration_ms,
                    help="expected p50: milliseconds, or with s / min (required for a new one)")
    ts.add_argument("--multiplier", type=A.positive_number, help="flag when p50 > baseline x this (default 2.0)")
    common(ts)
    to = tsub.add_parser("off", help="switch one off (kept; set switches it on again)")
    to.add_argument("dimension")
    to.add_argument("key")
    common(to)
    common(sp)
    handlers["thresholds"] = cmd_thresholds

    sp = subparsers.add_parser("weekly", help="write the weekly Markdown report with SVG charts")
    sp.add_argument("--out", default=".", type=A.output_folder,
                    help="folder for the report, made when missing (default: current folder)")
    sp.add_argument("--now", type=A.iso_datetime, help="week ending at this ISO date (default: now)")
    common(sp)
    handlers["weekly"] = cmd_weekly


# When the daemon owns the database, these commands run inside it (``POST /api/cli``) against its
# open store, and what they print travels back: the same code and output as when run locally.
REMOTE_COMMANDS = frozenset({"analyze", "findings", "budget", "weekly", "thresholds"})
_SERVED: contextvars.ContextVar[tuple[Any, io.StringIO] | None] = contextvars.ContextVar("golem_cli_served",
                                                                                        default=None)


def _out() -> Any:
    served = _SERVED.get()
    return served[1] if served else sys.stdout


def _echo(text: str = "") -> None:
    _out().write(text + "\n")


def run_served(store: Any, argv: list[str]) -> dict[str, Any]:
    """Run one of ``REMOTE_COMMANDS`` against ``store`` (the daemon's); returns exit code and output."""
    from .cli_main import build_parser

    if not argv or argv[0] not in REMOTE_COMMANDS:
        raise InvalidInput(f"only {', '.join(sorted(REMOTE_COMMANDS))} run through the daemon")
    buf = io.StringIO()
    token = _SERVED.set((store, buf))
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:
            raise InvalidInput(f"bad arguments for {argv[0]}: {' '.join(argv[1:])}") from e
        try:
            code = COMMANDS[argv[0]](args) or 0
            err = ""
        except InvalidInput as e:  # a value the analysis refused: a bad argument, as in cli_main.run
            code, err = A.USAGE_ERROR, f"golem-mcp {argv[0]}: {e}\n"
        except GolemError as e:
            code, err = 1, f"golem-mcp: {e}\n"
    finally:
        _SERVED.reset(token)
    return {"exit": code, "stdout": buf.getvalue(), "stderr": err}


def _remote(args: argparse.Namespace) -> int | None:
    """Send this command to the daemon when it owns the database; None when it runs here."""
    from .cli_main import _daemon_for
    from .client import call

    argv = getattr(args, "argv", None)
    if _SERVED.get() is not None or argv is None:
        return None
    url = _daemon_for(args)
    if url is None:
        return None
    argv = list(argv)
    if argv and argv[0] == "weekly":
        # the daemon writes the report: give it this shell's folder, not its own
        out = getattr(args, "out", None)
        kept: list[str] = []
        skip = False
        for a in argv:
            if skip:
                skip = False
            elif a == "--out":
                skip = True
            elif not a.startswith("--out="):
                kept.append(a)
        argv = [*kept, "--out", str(Path(out or ".").expanduser().resolve())]
    if not any(a == "--width" or a.startswith("--width=") for a in argv):
        argv += ["--width", str(A.table_width(args))]  # tables made there fit this terminal
    res = call(url, "/api/cli", {"argv": argv}, timeout=600)
    sys.stdout.write(res.get("stdout") or "")
    sys.stderr.write(res.get("stderr") or "")
    return int(res.get("exit") or 0)


def _open(args: argparse.Namespace, read_only: bool = False) -> Any:
    from ..config import default_db_path
    from ..store.db import Store

    served = _SERVED.get()
    if served is not None:
        return contextlib.nullcontext(served[0])
    if getattr(args, "team", False):
        from ..store.team import open_team_store

        return open_team_store()

    db = Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()
    if read_only and not db.exists():
        raise GolemError(f"no database at {db} yet; run `golem-mcp import` first")
    try:
        return Store(db)
    except StoreBusy as e:
        raise GolemError(f"{e}. The daemon's MCP tools (find_bottlenecks, list_findings, budget_status, ...) answer "
                         "while it runs; or stop it with `golem-mcp stop` and retry.") from e


def _emit(args: argparse.Namespace, data: Any, sections: list[Section], lead: list[str] | None = None,
          tail: list[str] | None = None, csv_rows: list[dict[str, Any]] | None = None) -> None:
    emit(args.format, data, sections, _out(), A.table_width(args), lead=lead or [], tail=tail or [],
         csv_rows=csv_rows)


# how a single analysis reads as tables: the title of each list, the columns to drop first when the
# width is short (first named, first gone), lists only counted in the table (JSON has them)
TITLES = {"bottlenecks": "Bottlenecks (p50 duration over baseline x multiplier, worst first)",
          "workflows": "Workflows: bottleneck stage (queue wait apart), idle time between stages",
          "anomalies": "Anomalies (far from their peers' normal)", "loops": "Repeated identical calls",
          "retries": "API retries", "edit_fail_cycles": "Edit then failing Bash", "rework": "Rework",
          "thrashing": "Thrashing (many tool calls per API request)", "categories": "Errors by category",
          "repeated_failures": "Repeated failures", "by_stage": "Errors by stage", "daily": "Errors per day",
          "bursts": "Error bursts", "top": "Most frequent tool sequences",
          "reusable": "Reusable sequences: recur in successful workflows and go with success",
          "typical_of_bad": "Typical of bad runs", "points": "Per day", "top_files": "Files with most findings",
          "cleanest_workflows": "Cleanest workflows", "model_advice": "Model advice",
          "prediction.by_stage": "Expected cost by stage (median of past runs)",
          "hours": "By hour of day (UTC)", "weekdays": "By day of week (UTC)",
          "spikes": "Hours and weekdays that stand out",
          "rows": "Time used of the limit (tools by name, requests by model and input size)"}
DROP = {"bottlenecks": ["multiplier", "baseline_source", "p95_ms", "samples"],
        "workflows": ["largest_gap_before", "stages", "longest_wait_stage", "started_at", "queue_wait_ms",
                      "largest_gap_ms", "bottleneck_queue_wait_ms", "idle_gaps"],
        "points": ["findings_minor", "findings_major", "findings_critical", "cost_change", "cost_ma7",
                   "avg_workflow_seconds", "workflows"],
        "categories": ["tools", "stages"], "repeated_failures": ["example", "workflows"],
        "top": ["good_share", "workflows"], "typical_of_bad": ["good_share"],
        "reusable": ["p_value", "median_duration_without_seconds", "median_duration_with_seconds", "median_cost_without_usd",
                     "successful_total", "failed_total", "kind", "length", "examples", "median_cost_with_usd",
                     "without_success_rate"],
        "anomalies": ["robust_z", "peers"], "by_stage": ["recovered"],
        "retries": ["request_id", "model", "reason_status_code", "session_id", "agent_id", "reason_category"]}
COUNT_ONLY = {"no_baseline", "insufficient_history"}


def analysis_sections(data: dict[str, Any], prefix: str = "") -> tuple[list[str], list[Section]]:
    """Summary lines (the scalars) and one table per list of records of an analysis result."""
    lines: list[str] = []
    sections: list[Section] = []
    for key, value in data.items():
        name = prefix + key
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            cols = columns_for(value, drop=DROP.get(key, []))
            for c in cols:
                if key == "anomalies" and c.key in ("value", "normal"):
                    c.unit_key = "metric"  # tokens, dollars or calls, as the row's metric says
            sections.append(Section(TITLES.get(name, key.replace("_", " ").capitalize()), cols, value))
        elif isinstance(value, list) and not value:
            sections.append(Section(TITLES.get(name, key.replace("_", " ").capitalize()), [], [], empty="none"))
        elif isinstance(value, dict) and any(isinstance(v, list | dict) for v in value.values()):
            sub_lines, sub_sections = analysis_sections(value, prefix=f"{name}.")
            lines += sub_lines
            sections += sub_sections
        elif key in COUNT_ONLY and isinstance(value, list):
            lines.append(f"{label(key)}: {len(value)} (--format json lists them)")
        elif isinstance(value, list):
            lines.append(f"{label(key)}: {', '.join(map(str, value))}")
        elif isinstance(value, dict):
            lines.append(f"{label(key)}: "
                         + (", ".join(f"{k} {formatting.show(v, formatting.unit_of(k, v))}" for k, v in value.items())
                            or "-"))
        elif value is not None:
            shown = formatting.show(value, formatting.unit_of(key, value))
            if isinstance(value, datetime):
                shown = f"{value:%Y-%m-%d %H:%M}"
            lines.append(f"{label(key)}: {shown}")
    return lines, sections


def _primary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``--format csv`` of an analysis holds: its first list of records."""
    for v in data.values():
        if isinstance(v, list) and (not v or isinstance(v[0], dict)):
            return v
        if isinstance(v, dict):
            rows = _primary_rows(v)
            if rows:
                return rows
    return []


def _produced(produced: dict[str, Any] | None) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {formatting.count(v) if isinstance(v, int | float) else v}"
                     for k, v in (produced or {}).items()) or "-"


RUN_COLUMNS = [Column("run_id", "run", "count"), Column("status"), Column("trigger"), Column("when"),
               Column("produced", drop=1)]


def _runs_section(listed: list[Any]) -> Section:
    rows = [{"run_id": r.run_id, "status": r.status, "trigger": r.trigger or "-",
             "when": r.finished_at or r.started_at or r.queued_at,
             "produced": r.error_detail or _produced(r.produced)} for r in listed]
    return Section(None, RUN_COLUMNS, rows,
                   empty="no analysis runs yet: `golem-mcp analyze` runs one (the daemon runs one at a session start)")


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis import (
        anomalies,
        bottlenecks,
        error_patterns,
        loops,
        predict,
        runs,
        sequences,
        time_patterns,
        timeout_risk,
        trends,
    )

    if args.workflow and (args.pending or args.runs or args.what not in ("bottlenecks", "anomalies")):
        what = "--pending" if args.pending else "--runs" if args.runs else args.what
        raise InvalidInput(f"--workflow narrows bottlenecks and anomalies only, not {what}; the MCP tools "
                           "(query_errors_and_loops, predict_cost, ...) answer about one workflow")
    if (code := _remote(args)) is not None:
        return code

    now: datetime | None = args.now
    with _open(args) as store:
        if args.pending or args.runs:
            listed = runs.run_pending(store, now=now) if args.pending else runs.list_runs(store, limit=20)
            _emit(args, listed, [_runs_section(listed)], csv_rows=[r.model_dump(mode="json") for r in listed])
            return 0
        if args.what == "all":
            run = runs.run_analysis(store, now=now, days=args.days, trigger="cli")
            lead = (runs.session_start_display(store) or "").splitlines()
            lead.append(f"  run {run.run_id} {run.status}: {run.error_detail or _produced(run.produced)}")
            _emit(args, run, [], lead=lead, csv_rows=[run.model_dump(mode="json")])
            return 0 if run.status == "succeeded" else 1
        days = args.days if args.what == "bottlenecks" else max(args.days, 7)  # the others read a week at least
        anchored = ""
        if now is None:
            # no --now: the window ends at the newest request stored, as the tools' does (analysis/known.py),
            # so a history last used two weeks ago still has its last week analysed
            from ..analysis import known

            now = known.data_now(store)
            anchored = f"window: the {days:g} days up to the newest request, {now:%Y-%m-%d %H:%M} UTC (--now to choose)"
        fn = {"bottlenecks": lambda: bottlenecks.find_bottlenecks(store, days=days, now=now, per_workflow=True,
                                                                  workflow_id=args.workflow),
              "anomalies": lambda: anomalies.detect_anomalies(store, days=days, now=now, workflow_id=args.workflow),
              "loops": lambda: loops.find_loops(store, days=days, now=now),
              "errors": lambda: error_patterns.query_error_patterns(store, days=days, now=now),
              "sequences": lambda: sequences.tool_sequences(store, days=days, now=now, min_support=args.min_support,
                                                            max_length=args.max_length),
              "trends": lambda: trends.query_trends(store, days=days, now=now),
              "quality": lambda: trends.query_quality(store, days=days, now=now),
              "patterns": lambda: time_patterns.time_patterns(store, days=days, now=now),
              "timeouts": lambda: timeout_risk.timeout_risk(store, days=days, now=now),
              "predict": lambda: {"prediction": predict.predict_cost(store, now=now),
                                  "model_advice": predict.model_advice(store, now=now)},
              }[args.what]
        result = fn()
    data = _plain(result)
    lines, sections = analysis_sections(data)
    _emit(args, result, sections, lead=([anchored] if anchored else []) + lines, csv_rows=_primary_rows(data))
    return 0


def _plain(obj: Any) -> Any:
    """Models as dicts keeping Python values (datetimes stay datetimes for the table)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def cmd_findings(args: argparse.Namespace) -> int:
    from ..analysis import findings_store

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        if args.close or args.dismiss:
            findings_store.set_status(store, args.close or args.dismiss, "done" if args.close else "dismissed")
        items = findings_store.list_findings(store, status=None if args.status == "all" else args.status,
                                             kind=args.kind, limit=args.limit, with_evidence=args.format != "table")
    if args.format != "table":
        _emit(args, items, [], csv_rows=[i.model_dump(mode="json") for i in items])
    elif not items:
        _echo("no improvement items; run `golem-mcp analyze` to look for some")
    else:
        for i in items:
            _echo(f"#{i.item_id} [{i.kind}] {i.title} (seen {formatting.count(i.times_seen)}x)\n"
                  f"    -> {i.recommendation}")
    return 0


SPEND_COLUMNS = [Column("scope"), Column("key"), Column("spent_usd", "spent", "usd"),
                 Column("limit_usd", "budget", "usd"), Column("percent", "used", "percent")]


def cmd_budget(args: argparse.Namespace) -> int:
    from ..analysis import budgets

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        if args.set:
            scope, usd = args.set
            budgets.set_budget(store, scope, usd, key=args.key, levels=args.levels)
        if args.webhook is not None:
            budgets.set_webhook(store, args.webhook or None)
        new = budgets.evaluate_alerts(store) if args.check else []
        status = budgets.budget_status(store, workflow_id=args.workflow, stage=args.stage)
        listed = budgets.list_budgets(store)
    spend = [line.model_dump() for line in (status.today, status.workflow, status.stage) if line]
    data = {"status": status.model_dump(mode="json"), "budgets": [b.model_dump() for b in listed],
            "new_alerts": [a.model_dump(mode="json") for a in new]}
    tail = [f"burn rate {formatting.usd(status.burn_rate_usd_per_hour)}/h, projected today "
            f"{formatting.usd(status.projected_today_usd)}", status.advice, *(f"alert: {a.message}" for a in new)]
    _emit(args, data, [Section(None, SPEND_COLUMNS, spend)], tail=tail, csv_rows=spend)
    return 0


def cmd_thresholds(args: argparse.Namespace) -> int:
    from ..analysis import bottlenecks

    if (code := _remote(args)) is not None:
        return code

    action = args.action or "list"
    with _open(args) as store:
        if action == "set":
            changed = [bottlenecks.set_threshold(store, args.dimension, args.key,
                                                 args.baseline,
                                                 multiplier=args.multiplier)]
        elif action == "off":
            changed = [bottlenecks.switch_off_threshold(store, args.dimension, args.key)]
        else:
            changed = bottlenecks.list_thresholds(store, include_inactive=not getattr(args, "active", False))
    if args.format != "table":
        _emit(args, changed, [], csv_rows=[t.model_dump(mode="json") for t in changed])
        return 0
    if not changed:
        _echo("no thresholds configured: every key is judged against its own history. "
              "`golem-mcp thresholds set phase PLAN 60s` sets one")
    for t in changed:
        state = "on " if t.is_active else "off"
        _echo(f"{state} {t.dimension_type}:{t.dimension_key}  baseline p50 {formatting.duration_ms(t.baseline_p50_ms)} "
              f"x {formatting.number(t.multiplier)} (flags above {formatting.duration_ms(t.baseline_p50_ms * t.multiplier)})"
              + (f"  [{t.note}]" if t.note else ""))
    return 0


def cmd_weekly(args: argparse.Namespace) -> int:
    from ..analysis.weekly import weekly_report

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        path = weekly_report(store, args.out, now=args.now)
    _emit(args, {"report": str(path)}, [], lead=[f"wrote {path}"], csv_rows=[{"report": str(path)}])
    return 0


COMMANDS = {"analyze": cmd_analyze, "findings": cmd_findings, "budget": cmd_budget, "weekly": cmd_weekly,
            "thresholds": cmd_thresholds}
