"""Argument parsing and the subcommands that are not on the hook's hot path."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import DEFAULT_PORT, Settings, claude_projects_dir, default_db_path
from ..errors import GolemError

EPILOG = f"""\
examples:
  golem-mcp import                       # read ~/.claude/projects (incremental)
  golem-mcp report --by workflow,stage   # cost and tokens per workflow and stage
  golem-mcp serve                        # the daemon: OTLP, hooks, MCP on 127.0.0.1:{DEFAULT_PORT}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="golem-mcp", description="Telemetry that coding agents can read: what "
                                "every Claude Code workflow cost and did, per workflow, stage, task, agent and model.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"golem-mcp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", metavar="FILE", help="DuckDB file (default: $GOLEM_DB or the per-user data dir)")

    sp = sub.add_parser("import", help="import transcripts, captured OTLP bodies and hook payload files",
                        description="Import Claude Code transcripts (default ~/.claude/projects), files of captured "
                        "OTLP request bodies (*_logs.json, *_metrics.pb, ...) and hook payload files (JSON lines). "
                        "Incremental: files already read are skipped or resumed where they ended.")
    sp.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: ~/.claude/projects)")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    db_arg(sp)

    sp = sub.add_parser("report", help="cost and tokens by workflow, stage, model, day, ...",
                        description="Cost, tokens by type, cache hit rate and requests, grouped as asked.")
    sp.add_argument("--by", default="workflow,stage",
                    help="comma-separated: workflow, stage, top_stage, agent, model, task, experiment, session, "
                    "project, branch, path, day, week (default: workflow,stage)")
    sp.add_argument("--workflow", help="only this workflow_id")
    sp.add_argument("--stage", help="only this stage")
    sp.add_argument("--task", help="only this task_id")
    sp.add_argument("--experiment", help="only this experiment_id")
    sp.add_argument("--since", help="only requests from this date/time on (ISO, e.g. 2026-11-01)")
    sp.add_argument("--limit", type=int, help="at most this many rows")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.add_argument("--no-sync", action="store_true", help="do not import new transcript lines first")
    db_arg(sp)

    sp = sub.add_parser("serve", help="run the daemon (owns the database; OTLP, hooks, MCP on loopback)")
    sp.add_argument("--port", type=int, default=int(os.environ.get("GOLEM_PORT", DEFAULT_PORT)))
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; anything else needs --token)")
    sp.add_argument("--token", default=os.environ.get("GOLEM_TOKEN"), help="bearer token required on every request")
    sp.add_argument("--watch", action="append", metavar="DIR",
                    help="transcript folder to watch (default ~/.claude/projects); repeatable")
    sp.add_argument("--no-watch", action="store_true", help="do not watch transcript folders")
    sp.add_argument("--detach", action="store_true", help="start in the background and return")
    db_arg(sp)

    sp = sub.add_parser("stop", help="stop the daemon")
    sp = sub.add_parser("status", help="is the daemon running, and what does the store hold")
    sp.add_argument("--json", action="store_true")
    db_arg(sp)
    sp = sub.add_parser("dashboard", help="open the local dashboard (starts the daemon when it is not running)",
                        description="Print the dashboard's URL and open it in a browser. When no daemon runs, "
                        "one is started in the background first (as `golem-mcp serve --detach`).")
    sp.add_argument("--days", type=int, default=30, help="the window in days (default 30)")
    sp.add_argument("--no-open", action="store_true", help="only print the URL")
    db_arg(sp)
    sub.add_parser("hook", help="read one hook payload on stdin and pass it on (always exits 0)")
    sp = sub.add_parser("stdio", help="MCP over stdio, bridged to the daemon (what Claude Code launches)")
    # other interface modules add their own subcommands (analysis, install/doctor, ...)
    import importlib

    for mod in PLUGINS:
        try:
            m = importlib.import_module(f"golem_mcp.interfaces.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"golem_mcp.interfaces.{mod}":
                raise
            continue
        m.register(sub, HANDLERS)
    return p


# Modules with ``register(subparsers, handlers)`` that add subcommands; absent ones are skipped.
PLUGINS = ("cli_analysis", "cli_install", "cli_mcp")


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv)  # a command the daemon must run is sent to it as typed
    if not args.command:
        parser.print_help()
        return 2
    try:
        handler = HANDLERS[args.command]
        return handler(args) or 0
    except GolemError as e:
        print(f"golem-mcp: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- helpers -------------------------------------------------------------------------------------

def _db(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()


def _daemon_for(args: argparse.Namespace) -> str | None:
    """The running daemon, when it owns the database this command wants."""
    from .client import find_daemon, read_state

    url = find_daemon()
    if not url:
        return None
    st = read_state() or {}
    if getattr(args, "db", None) and st.get("db") and Path(st["db"]).resolve() != _db(args).resolve():
        return None
    return url


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime | date):
        return o.isoformat()
    return str(o)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=_json_default, indent=1) + "\n")


# -- import --------------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    paths = args.paths or [str(claude_projects_dir())]
    url = _daemon_for(args)
    if url:
        from .client import call

        result = call(url, "/api/import", {"paths": [str(Path(p).expanduser().resolve()) for p in paths]})
    else:
        from ..ingestion.importer import Importer
        from ..store.db import Store

        with Store(_db(args)) as store:
            settings = store.settings
            progress = None
            bar = None
            if not args.quiet and not args.json and sys.stderr.isatty():
                from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

                bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                               TransferSpeedColumn(), transient=True)
                task = bar.add_task("importing", total=None)
                bar.start()

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)
            try:
                result = Importer(store, settings.store_prompts).run(paths, progress).as_dict()
            finally:
                if bar:
                    bar.stop()
    if args.json:
        _print_json(result)
    else:
        print(f"read {result['files_read']} files ({result['bytes_read'] / 1e6:.1f} MB), "
              f"{result['files_unchanged']} unchanged, {result['rows']} records")
        if result["skipped"]:
            print(f"skipped {len(result['skipped'])}:", file=sys.stderr)
            for s in result["skipped"][:50]:
                print(f"  {s}", file=sys.stderr)
            if len(result["skipped"]) > 50:
                print(f"  ... and {len(result['skipped']) - 50} more (use --json for all)", file=sys.stderr)
    return 0


# -- report --------------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    filters = {"workflow_id": args.workflow, "stage": args.stage, "task_id": args.task,
               "experiment_id": args.experiment}
    since = args.since
    url = _daemon_for(args)
    if url:
        from .client import call

        rows = call(url, "/api/report", {"by": by, "filters": filters, "since": since, "limit": args.limit})
    else:
        from ..analysis.cost import cost_by
        from ..store.db import Store

        db = _db(args)
        if not args.no_sync and claude_projects_dir().exists():
            from ..ingestion.importer import Importer

            with Store(db) as store:
                Importer(store, store.settings.store_prompts).run([claude_projects_dir()])
        if not db.exists():
            # a fresh machine: an empty store and an empty report, and what to do next
            print(f"golem-mcp: no Claude Code history at {claude_projects_dir()} yet, so nothing to report. Run "
                  "Claude Code (or `golem-mcp import DIR` for transcripts elsewhere), then this command again.",
                  file=sys.stderr)
            with Store(db):
                pass
        with Store(db, read_only=True, settings=Settings.load()) as store:
            rows = cost_by(store, by, filters, since=datetime.fromisoformat(since) if since else None,
                           limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    _print_table(rows, by)
    return 0


def _print_table(rows: list[dict], by: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False, header_style="bold")
    for b in by:
        t.add_column(b)
    for c in ("requests", "input", "output", "cache read", "cache write", "cache hit", "cost $"):
        t.add_column(c, justify="right")
    total_cost = 0.0
    unpriced = 0
    for r in rows:
        cost = r.get("cost_usd")
        total_cost += cost or 0
        unpriced += r.get("unpriced_requests") or 0
        hit = r.get("cache_hit_rate")
        t.add_row(*[str(r.get(b) if r.get(b) is not None else "-") for b in by],
                  f"{r['requests']:,}", f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                  f"{r['cache_read_tokens']:,}", f"{r['cache_creation_tokens']:,}",
                  f"{hit:.0%}" if hit is not None else "-",
                  f"{cost:.4f}" if cost is not None else "unpriced")
    console = Console()
    console.print(t)
    console.print(f"total ${total_cost:.4f}" + (f"  ({unpriced} requests of unpriced models not included)" if unpriced else ""))
    if not rows:
        console.print("no requests recorded yet: run `golem-mcp import` or start `golem-mcp serve`")


# -- daemon --------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from .daemon import serve

    return serve(args)


def cmd_stop(args: argparse.Namespace) -> int:
    from .daemon import stop

    return stop()


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .client import find_daemon
    from .dashboard import parse_days

    try:
        days = parse_days(str(args.days))
    except GolemError as e:  # the dashboard's own bound, said as the option's
        raise GolemError(f"--{e}") from None
    url = find_daemon()
    if url is None:
        cmd = [sys.executable, "-m", "golem_mcp", "serve", "--detach"]
        if getattr(args, "db", None):
            cmd += ["--db", str(Path(args.db).expanduser())]
        started = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            raise GolemError(f"could not start the daemon: {(started.stderr or started.stdout).strip()}")
        url = started.stdout.strip().splitlines()[-1]
    page = f"{url}/?days={days}"
    print(page)
    if not args.no_open:
        import webbrowser

        # no browser here (a server, a container): the printed URL is the answer
        with contextlib.suppress(Exception):
            webbrowser.open(page)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .client import find_daemon, read_state

    url = find_daemon()
    info: dict[str, Any] = {"daemon": url, "state": read_state() if url else None}
    if url:
        from .client import call

        info["store"] = call(url, "/api/status")
    else:
        db = _db(args)
        info["db"] = str(db)
        if db.exists():
            from ..store.db import Store

            with Store(db, read_only=True) as store:
                info["store"] = store.table_counts()
    if args.json:
        _print_json(info)
    else:
        print(f"daemon: {url or 'not running'}")
        if url:
            print(f"dashboard: {url}/")
        for k, v in (info.get("store") or {}).items():
            print(f"  {k}: {v}")
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from .hook import main as hook_main

    return hook_main([])


def cmd_stdio(args: argparse.Namespace) -> int:
    from .mcp_stdio import main as stdio_main

    return stdio_main(args)


HANDLERS = {"import": cmd_import, "report": cmd_report, "serve": cmd_serve, "stop": cmd_stop,
            "status": cmd_status, "hook": cmd_hook, "stdio": cmd_stdio, "dashboard": cmd_dashboard}
