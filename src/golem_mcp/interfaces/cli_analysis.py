"""CLI subcommands of the analysis engine: analyze, findings, budget, weekly. Each opens the store and
calls one analysis function; no SQL or statistics here."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import GolemError, InvalidInput, StoreBusy

WHAT = ("all", "bottlenecks", "anomalies", "loops", "errors", "sequences", "trends", "quality", "predict")


def register(subparsers: Any, handlers: dict[str, Any]) -> None:
    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", metavar="FILE", help="DuckDB file (default: $GOLEM_DB or the per-user data dir)")
        sp.add_argument("--json", action="store_true", help="print JSON")

    sp = subparsers.add_parser("analyze", help="find bottlenecks, token leaks, loops, error patterns (and store findings)",
                               description="Run the analysis engine. 'all' runs every analysis, stores improvement "
                               "items and alerts, and records the run; the others print one analysis.")
    sp.add_argument("what", nargs="?", default="all", choices=WHAT)
    sp.add_argument("--days", type=float, default=7, help="window in days (default 7)")
    sp.add_argument("--now", help="analyse as of this ISO date/time (default: now)")
    sp.add_argument("--pending", action="store_true", help="run the queued runs (what the daemon does in the background)")
    sp.add_argument("--runs", action="store_true", help="list the latest analysis runs: status, trigger, times, "
                    "what each produced (the daemon queues one at a session start when the last is a week old)")
    common(sp)
    handlers["analyze"] = cmd_analyze

    sp = subparsers.add_parser("findings", help="improvement items the analysis stored, worst first")
    sp.add_argument("--status", default="open", choices=("open", "done", "dismissed", "all"))
    sp.add_argument("--kind", help="bottleneck, token_leak, loop, error_pattern, model_advice")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--close", type=int, metavar="ID", help="mark item ID done")
    sp.add_argument("--dismiss", type=int, metavar="ID", help="mark item ID dismissed")
    common(sp)
    handlers["findings"] = cmd_findings

    sp = subparsers.add_parser("budget", help="budget status, burn rate and projection; set budgets and the alert webhook")
    sp.add_argument("--workflow", help="also this workflow's spend")
    sp.add_argument("--stage", help="also this stage's spend (with --workflow)")
    sp.add_argument("--set", nargs=2, metavar=("SCOPE", "USD"), help="set a budget: workflow|stage|day|session and dollars")
    sp.add_argument("--key", default="*", help="with --set: one workflow/stage/day id (default: every one)")
    sp.add_argument("--levels", help="with --set: alert levels in percent (default 50,80,95,100)")
    sp.add_argument("--webhook", help="POST alerts as JSON to this URL ('' to remove)")
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
    ts.add_argument("baseline", nargs="?", help="expected p50: milliseconds, or with s / min (required for a new one)")
    ts.add_argument("--multiplier", type=float, help="flag when p50 > baseline x this (default 2.0)")
    common(ts)
    to = tsub.add_parser("off", help="switch one off (kept; set switches it on again)")
    to.add_argument("dimension")
    to.add_argument("key")
    common(to)
    common(sp)
    handlers["thresholds"] = cmd_thresholds

    sp = subparsers.add_parser("weekly", help="write the weekly Markdown report with SVG charts")
    sp.add_argument("--out", default=".", help="folder for the report (default: current folder)")
    sp.add_argument("--now", help="week ending at this ISO date (default: now)")
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

    db = Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()
    if read_only and not db.exists():
        raise GolemError(f"no database at {db} yet; run `golem-mcp import` first")
    try:
        return Store(db)
    except StoreBusy as e:
        raise GolemError(f"{e}. The daemon's MCP tools (find_bottlenecks, list_findings, budget_status, ...) answer "
                         "while it runs; or stop it with `golem-mcp stop` and retry.") from e


def _now(args: argparse.Namespace) -> datetime | None:
    if not getattr(args, "now", None):
        return None
    try:
        return datetime.fromisoformat(args.now)
    except ValueError as e:
        raise GolemError(f"--now {args.now!r} is not an ISO date/time (e.g. 2026-11-25)") from e


def _print(obj: Any, as_json: bool) -> None:
    data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    if isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    _out().write(json.dumps(data, indent=None if as_json else 1, default=str) + "\n")


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis import anomalies, bottlenecks, error_patterns, loops, predict, runs, sequences, trends

    if (code := _remote(args)) is not None:
        return code

    now = _now(args)
    with _open(args) as store:
        if args.pending:
            _print(runs.run_pending(store, now=now), args.json)
            return 0
        if args.runs:
            listed = runs.list_runs(store, limit=20)
            if args.json:
                _print(listed, True)
            elif not listed:
                _echo("no analysis runs yet: `golem-mcp analyze` runs one (the daemon runs one at a session start)")
            for r in listed if not args.json else []:
                when = r.finished_at or r.started_at or r.queued_at
                stamp = when.strftime("%Y-%m-%d %H:%M") if when else "-"
                _echo(f"run {r.run_id:>4}  {r.status:<9}  {r.trigger or '-':<13}  {stamp}  "
                      f"{r.error_detail or (json.dumps(r.produced) if r.produced else '')}")
            return 0
        if args.what == "all":
            run = runs.run_analysis(store, now=now, days=args.days, trigger="cli")
            if args.json:
                _print(run, True)
            else:
                _echo(runs.session_start_display(store) or f"run {run.run_id}: {run.status} {run.error_detail or ''}")
                _echo(f"  run {run.run_id} {run.status}: {json.dumps(run.produced)}")
            return 0 if run.status == "succeeded" else 1
        fn = {"bottlenecks": lambda: bottlenecks.find_bottlenecks(store, days=args.days, now=now),
              "anomalies": lambda: anomalies.detect_anomalies(store, days=max(args.days, 7), now=now),
              "loops": lambda: loops.find_loops(store, days=max(args.days, 7), now=now),
              "errors": lambda: error_patterns.query_error_patterns(store, days=max(args.days, 7), now=now),
              "sequences": lambda: sequences.tool_sequences(store, days=max(args.days, 7), now=now),
              "trends": lambda: trends.query_trends(store, days=max(args.days, 7), now=now),
              "quality": lambda: trends.query_quality(store, days=max(args.days, 7), now=now),
              "predict": lambda: {"prediction": predict.predict_cost(store, now=now).model_dump(mode="json"),
                                  "model_advice": [a.model_dump(mode="json") for a in predict.model_advice(store, now=now)]},
              }[args.what]
        _print(fn(), args.json)
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from ..analysis import findings_store

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        if args.close or args.dismiss:
            findings_store.set_status(store, args.close or args.dismiss, "done" if args.close else "dismissed")
        items = findings_store.list_findings(store, status=None if args.status == "all" else args.status,
                                             kind=args.kind, limit=args.limit, with_evidence=args.json)
    if args.json:
        _print(items, True)
    elif not items:
        _echo("no improvement items; run `golem-mcp analyze` to look for some")
    else:
        for i in items:
            _echo(f"#{i.item_id} [{i.kind}] {i.title} (seen {i.times_seen}x)\n    -> {i.recommendation}")
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    from ..analysis import budgets

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        if args.set:
            try:
                usd = float(args.set[1])
            except ValueError as e:
                raise GolemError(f"budget {args.set[1]!r} is not a number of dollars") from e
            levels = [int(x) for x in args.levels.split(",")] if args.levels else None
            budgets.set_budget(store, args.set[0], usd, key=args.key, levels=levels)
        if args.webhook is not None:
            budgets.set_webhook(store, args.webhook or None)
        new = budgets.evaluate_alerts(store) if args.check else []
        status = budgets.budget_status(store, workflow_id=args.workflow, stage=args.stage)
        if args.json:
            _print({"status": status.model_dump(mode="json"), "budgets": [b.model_dump() for b in budgets.list_budgets(store)],
                    "new_alerts": [a.model_dump(mode="json") for a in new]}, True)
            return 0
        for line in [status.today, status.workflow, status.stage]:
            if line:
                _echo(f"{line.scope} {line.key}: ${line.spent_usd:.2f} of ${line.limit_usd:g} ({line.percent:.0f}%)")
        _echo(f"burn rate ${status.burn_rate_usd_per_hour:.2f}/h, projected today ${status.projected_today_usd:.2f}")
        _echo(status.advice)
        for a in new:
            _echo(f"alert: {a.message}")
    return 0


def _duration_ms(text: str) -> float:
    """'60000', '60000ms', '60s', '1.5min' -> milliseconds."""
    t = text.strip().lower()
    for suffix, factor in (("ms", 1.0), ("min", 60_000.0), ("m", 60_000.0), ("s", 1000.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    else:
        scale = 1.0
    try:
        return float(t) * scale
    except ValueError:
        raise GolemError(f"baseline {text!r} is not a duration; give milliseconds (60000) or 60s / 1.5min") from None


def cmd_thresholds(args: argparse.Namespace) -> int:
    from ..analysis import bottlenecks
    from ..analysis.common import fmt_ms

    if (code := _remote(args)) is not None:
        return code

    action = args.action or "list"
    with _open(args) as store:
        if action == "set":
            changed = [bottlenecks.set_threshold(store, args.dimension, args.key,
                                                 _duration_ms(args.baseline) if args.baseline else None,
                                                 multiplier=args.multiplier)]
        elif action == "off":
            changed = [bottlenecks.switch_off_threshold(store, args.dimension, args.key)]
        else:
            changed = bottlenecks.list_thresholds(store, include_inactive=not getattr(args, "active", False))
    if args.json:
        _print(changed, True)
        return 0
    if not changed:
        _echo("no thresholds configured: every key is judged against its own history. "
              "`golem-mcp thresholds set phase PLAN 60s` sets one")
    for t in changed:
        state = "on " if t.is_active else "off"
        _echo(f"{state} {t.dimension_type}:{t.dimension_key}  baseline p50 {fmt_ms(t.baseline_p50_ms)} x {t.multiplier:g}"
              f" (flags above {fmt_ms(t.baseline_p50_ms * t.multiplier)})" + (f"  [{t.note}]" if t.note else ""))
    return 0


def cmd_weekly(args: argparse.Namespace) -> int:
    from ..analysis.weekly import weekly_report

    if (code := _remote(args)) is not None:
        return code

    with _open(args) as store:
        path = weekly_report(store, args.out, now=_now(args))
    _echo(json.dumps({"report": str(path)}) if args.json else f"wrote {path}")
    return 0


COMMANDS = {"analyze": cmd_analyze, "findings": cmd_findings, "budget": cmd_budget, "weekly": cmd_weekly,
            "thresholds": cmd_thresholds}
