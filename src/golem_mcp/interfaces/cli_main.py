"""Argument parsing and the subcommands that are not on the hook's hot path."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import GolemError, InvalidInput
from ..home import DEFAULT_PORT
from . import cli_args as A
from .cli_output import Column, Section, emit

# `golem-mcp report` with a daemon running is this module, argparse and one socket: what else a
# command needs (pathlib, config, subprocess, the store, the analyses) is imported where it is used
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path
    from typing import Any

EPILOG = f"""\
examples:
  golem-mcp import                       # read ~/.claude/projects (incremental)
  golem-mcp report --by workflow,stage   # cost and tokens per workflow and stage
  golem-mcp serve                        # the daemon: OTLP, hooks, MCP on 127.0.0.1:{DEFAULT_PORT}
  golem-mcp report --format csv > cost.csv

Commands that print data take --format table|csv|json (--json is --format json). Exit status: 0 done,
1 failed (the message says why), 2 a bad argument (the message says what to type instead).
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, when ``command`` is one of this module's own commands, just that
    command's parser under the top level (``golem-mcp report`` need not build thirty others)."""
    p = A.Parser(prog="golem-mcp", description="Telemetry that coding agents can read: what "
                 "every Claude Code workflow cost and did, per workflow, stage, task, agent and model.",
                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"golem-mcp {__version__}")
    p.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    if command == "--version":
        return p  # answered by the top level alone
    if command in COMMANDS:
        COMMANDS[command](sub)
    else:
        from . import cli_analysis, cli_install, cli_shards

        for add in COMMANDS.values():
            add(sub)
        cli_analysis.register(sub, HANDLERS)
        cli_install.register(sub, HANDLERS)
        cli_shards.register(sub, HANDLERS)
    for name, parser in sub.choices.items():
        # every command that reads a store can read the team's instead
        reads = any("--db" in a.option_strings for a in parser._actions)
        if reads and name not in ("import", "export", "push", "serve") and not any(
                "--team" in a.option_strings for a in parser._actions):
            A.add_team(parser)
        # `golem-mcp report --debug` as well as `golem-mcp --debug report`
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _add_import(sub: Any) -> None:
    sp = sub.add_parser("import", help="import transcripts, captured OTLP bodies, hook payload files and shards",
                        description="Import Claude Code transcripts (default ~/.claude/projects), files of captured "
                        "OTLP request bodies (*_logs.json, *_metrics.pb, ...) and hook payload files (JSON lines). "
                        "Incremental: files already read are skipped or resumed where they ended. A .parquet file "
                        "or a folder of them (e.g. .golem/telemetry) is read as shards from `golem-mcp export`: "
                        "merged once, whatever machine or shard a fact came in.")
    sp.add_argument("paths", nargs="*", metavar="PATH", type=A.existing_path,
                    help="files or folders (default: ~/.claude/projects)")
    A.add_format(sp)
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    A.add_db(sp)


def _add_report(sub: Any) -> None:
    sp = sub.add_parser("report", help="cost and tokens by workflow, stage, model, day, ...",
                        description="Cost, tokens by type, cache hit rate, requests and time, grouped as asked. "
                        "The table fits the terminal (compact numbers such as 392k, then fewer columns, "
                        "never a cut number); --format csv or json gives every value unformatted.")
    sp.add_argument("--by", default=["workflow", "stage"], type=A.groupings,
                    help="comma-separated: workflow, stage, top_stage, agent, model, task, experiment, session, "
                    "machine, project, branch, path, day, week (default: workflow,stage)")
    sp.add_argument("--workflow", help="only this workflow_id")
    sp.add_argument("--stage", help="only this stage")
    sp.add_argument("--task", help="only this task_id")
    sp.add_argument("--experiment", help="only this experiment_id")
    sp.add_argument("--machine", help="only requests seen on this machine (its id, as `--by machine` shows it)")
    sp.add_argument("--since", type=A.iso_datetime,
                    help="only requests from this date/time on (ISO, e.g. 2026-11-01 or 2026-11-01T14:30)")
    sp.add_argument("--limit", "--top", type=A.positive_int, help="at most this many rows (the costliest)")
    A.add_format(sp)
    sp.add_argument("--no-sync", action="store_true", help="do not import new transcript lines first")
    A.add_db(sp)


def _add_serve(sub: Any) -> None:
    sp = sub.add_parser("serve", help="run the daemon (owns the database; OTLP, hooks, MCP on loopback)")
    sp.add_argument("--port", type=A.port, default=os.environ.get("GOLEM_PORT") or str(DEFAULT_PORT),
                    help=f"port on 127.0.0.1 (default $GOLEM_PORT or {DEFAULT_PORT}; 0 picks a free one)")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; anything else needs --token)")
    sp.add_argument("--token", default=os.environ.get("GOLEM_TOKEN"), help="bearer token required on every request")
    sp.add_argument("--watch", action="append", metavar="DIR",
                    help="transcript folder to watch (default ~/.claude/projects); repeatable")
    sp.add_argument("--no-watch", action="store_true", help="do not watch transcript folders")
    sp.add_argument("--detach", action="store_true", help="start in the background and return")
    # the daemon creates its store when there is none: it is started by programs (the stdio bridge,
    # `dashboard`) with the path they were given, which the command that started them has checked
    sp.add_argument("--db", metavar="FILE", help="DuckDB file (default: $GOLEM_DB or golem.duckdb in the data folder)")

    A.add_team(sp)


def _add_push(sub: Any) -> None:
    sp = sub.add_parser("push", help="send what is new in this machine's store to the team store",
                        description="Send every fact and context row that is new or changed since the last push "
                        "to the team store (GOLEM_TEAM_URL, GOLEM_TEAM_DATA_PATH). Idempotent: a push that was "
                        "interrupted is simply run again. A daemon with a team store configured pushes by itself.")
    A.add_format(sp)
    A.add_db(sp)


def _add_stop(sub: Any) -> None:
    sub.add_parser("stop", help="stop the daemon")


def _add_status(sub: Any) -> None:
    sp = sub.add_parser("status", help="is the daemon running, and what does the store hold")
    A.add_format(sp)
    A.add_db(sp)


def _add_dashboard(sub: Any) -> None:
    sp = sub.add_parser("dashboard", help="open the local dashboard (starts the daemon when it is not running)",
                        description="Print the dashboard's URL and open it in a browser. When no daemon runs, "
                        "one is started in the background first (as `golem-mcp serve --detach`).")
    sp.add_argument("--days", type=A.dashboard_days, default=30, help="the window in days (default 30)")
    sp.add_argument("--no-open", action="store_true", help="only print the URL")
    A.add_db(sp)


def _add_hook(sub: Any) -> None:
    sub.add_parser("hook", help="read one hook payload on stdin and pass it on (always exits 0)")


def _add_stdio(sub: Any) -> None:
    sp = sub.add_parser("stdio", help="MCP over stdio, bridged to the daemon (what Claude Code launches)")
    sp.add_argument("--toolsets", default=None, help="list only these toolsets' tools, e.g. reader,reviewer "
                    "(reader, workflow, reviewer, maintainer; default all)")


# this module's commands, in the order `--help` lists them (the analyses' and install's follow)
COMMANDS = {"import": _add_import, "report": _add_report, "serve": _add_serve, "push": _add_push, "stop": _add_stop,
            "status": _add_status, "dashboard": _add_dashboard, "hook": _add_hook, "stdio": _add_stdio}


def _command_of(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (the top level's options
    take no values), None when there is none or help is asked before it, ``--version`` when that is."""
    for a in argv:
        if a in ("-h", "--help"):
            return None
        if a == "--version":
            return a
        if not a.startswith("-"):
            return a
    return None


def run(argv: list[str]) -> int:
    parser = build_parser(_command_of(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so the hint names its --help
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        (commands.choices.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(argv)  # a command the daemon must run is sent to it as typed
    if not args.command:
        parser.print_help()
        return A.USAGE_ERROR
    try:
        A.check_db(args)
        handler = HANDLERS[args.command]
        return handler(args) or 0
    except A.UsageError as e:
        return A.refuse_usage(args, str(e))
    except InvalidInput as e:  # the library refused a value the command passed on as typed
        print(f"{A.prog_of(args)}: {e}", file=sys.stderr)
        return A.USAGE_ERROR
    except GolemError as e:
        print(f"golem-mcp: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): not an error of ours; keep Python from complaining at exit
        import contextlib

        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        if args.debug:
            raise
        where = _log_traceback(args)
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"golem-mcp: unexpected error: {type(e).__name__}: {first} (full traceback in {where}; "
              f"`golem-mcp --debug {args.command} ...` prints it)", file=sys.stderr)
        return 1


def _log_traceback(args: argparse.Namespace) -> Path:
    """Append the current exception's traceback to ``cli-errors.log`` in the data folder (or the temp
    folder when that cannot be written); returns where it went."""
    import tempfile
    import traceback
    from datetime import datetime
    from pathlib import Path

    from ..config import data_dir

    text = f"--- {datetime.now().isoformat(timespec='seconds')} golem-mcp {' '.join(args.argv)}\n{traceback.format_exc()}"
    for folder in (data_dir(), Path(tempfile.gettempdir())):
        path = folder / "cli-errors.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > 1_000_000:  # keep the newest errors, not all of them
                path.replace(path.with_suffix(".log.1"))
            with path.open("a") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return Path("(nowhere: neither the data folder nor the temp folder can be written)")


# -- helpers -------------------------------------------------------------------------------------

def _db(args: argparse.Namespace) -> Path:
    from pathlib import Path

    from ..config import default_db_path

    return Path(args.db).expanduser() if getattr(args, "db", None) else default_db_path()


def _daemon_for(args: argparse.Namespace) -> str | None:
    """The running daemon, when it serves the store this command wants: this machine's database, or
    with ``--team`` the configured team store (a ``serve --team`` daemon holds its replica)."""
    from .client import locate_daemon

    found = locate_daemon()
    if not found:
        return None
    st = found.state
    if getattr(args, "team", False) or st.get("team"):
        if not (getattr(args, "team", False) and st.get("team")):
            return None
        from ..store.team import team_config

        cfg = team_config()
        return found.url if cfg is not None and st["team"] == cfg.destination else None
    if getattr(args, "db", None) and st.get("db"):
        from pathlib import Path

        if Path(st["db"]).resolve() != _db(args).resolve():
            return None
    return found.url


# -- import --------------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import formatting
    from ..config import claude_projects_dir

    if args.paths:
        paths = [str(p) for p in args.paths]
    elif claude_projects_dir().exists():
        paths = [str(claude_projects_dir())]
    else:
        raise GolemError(f"no Claude Code transcripts at {claude_projects_dir()}; give the folder or files to "
                         "read: `golem-mcp import DIR`")
    from ..store.shards import is_shard_path

    shard_paths = [p for p in paths if is_shard_path(p)]
    if shard_paths:
        from . import cli_shards

        merged = cli_shards.import_shards(args, shard_paths)
        paths = [p for p in paths if p not in shard_paths]
        if not paths:
            if args.format != "table":
                emit(args.format, merged, [], sys.stdout, 0, csv_rows=[{"table": t, "rows": n}
                                                                       for t, n in merged["rows"].items()])
            else:
                cli_shards.print_shards(merged)
            return 0
        if args.format == "table":
            cli_shards.print_shards(merged)
    url = _daemon_for(args)
    if url:
        from .client import call

        result = call(url, "/api/import", {"paths": [str(Path(p).expanduser().resolve()) for p in paths]})
    else:
        from ..config import Settings
        from ..ingestion.importer import FirstImport, Importer

        settings = Settings.load()
        db = _db(args)
        # a new database has read nothing yet: its parsing starts now, while DuckDB loads and creates it
        started = None if db.exists() else FirstImport.start(paths, settings.store_prompts)
        try:
            from ..store.db import Store

            store = Store(db, settings=settings)
        except BaseException:
            if started is not None:
                started.close(failed=True)
            raise
        with store:
            progress = None
            bar = None
            if not args.quiet and args.format == "table" and sys.stderr.isatty():
                from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

                bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                               TransferSpeedColumn(), transient=True)
                task = bar.add_task("importing", total=None)
                bar.start()

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)
            try:
                result = Importer(store, settings.store_prompts).run(paths, progress, started).as_dict()
            finally:
                if bar:
                    bar.stop()
    if args.format != "table":
        emit(args.format, result, [], sys.stdout, 0, csv_rows=[result])
        return 0
    print(f"read {formatting.count(result['files_read'])} files ({result['bytes_read'] / 1e6:,.1f} MB), "
          f"{formatting.count(result['files_unchanged'])} unchanged, {formatting.count(result['rows'])} records")
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])}:", file=sys.stderr)
        for s in result["skipped"][:50]:
            print(f"  {s}", file=sys.stderr)
        if len(result["skipped"]) > 50:
            print(f"  ... and {len(result['skipped']) - 50} more (use --format json for all)", file=sys.stderr)
    return 0


# -- report --------------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    by = list(args.by)
    filters = {"workflow_id": args.workflow, "stage": args.stage, "task_id": args.task,
               "experiment_id": args.experiment, "machine_id": args.machine}
    since: datetime | None = args.since
    url = _daemon_for(args)
    if url:
        from .client import call

        rows = call(url, "/api/report", {"by": by, "filters": filters, "since": since.isoformat() if since else None,
                                         "limit": args.limit})
    elif args.team:
        from ..analysis.cost import report
        from ..store.team import open_team_store

        with open_team_store() as store:
            rows = report(store, by, filters, since=since, limit=args.limit)
    else:
        from ..analysis.cost import report
        from ..config import Settings, claude_projects_dir
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
            rows = report(store, by, filters, since=since, limit=args.limit)
    filtered = since is not None or any(v is not None for v in filters.values())
    emit(args.format, rows, [report_section(rows, by)], sys.stdout, A.table_width(args),
         tail=_report_tail(rows, filtered, cut=args.limit is not None and len(rows) >= args.limit))
    return 0


# the report's columns; the first to go when the width is short: time, then cache write, then requests
# (then a workflow's name, report_section's drop=1)
REPORT_COLUMNS = [Column("requests", unit="count", drop=2), Column("input_tokens", "input", "tokens"),
                  Column("output_tokens", "output", "tokens"), Column("cache_read_tokens", "cache read", "tokens"),
                  Column("cache_creation_tokens", "cache write", "tokens", drop=3),
                  Column("cache_hit_rate", "cache hit", "rate"), Column("cost_usd", "cost", "usd"),
                  Column("duration_seconds", "time", "seconds", drop=4)]


def report_section(rows: list[dict[str, Any]], by: list[str]) -> Section:
    shown = [{**r, "cost_usd": "unpriced" if r.get("cost_usd") is None else r["cost_usd"]} for r in rows]
    keys: list[Column] = []
    for b in by:
        keys.append(Column(b))
        if b == "workflow" and any(r.get("workflow_name") for r in rows):  # the name a person knows it by
            keys.append(Column("workflow_name", "name", drop=1))
    return Section(None, keys + REPORT_COLUMNS, shown)


def _report_tail(rows: list[dict[str, Any]], filtered: bool = False, cut: bool = False) -> list[str]:
    """The total under the table; ``cut``: --top left groups out, so the total is of the rows shown."""
    from .. import formatting

    total = sum(r.get("cost_usd") or 0 for r in rows)
    unpriced = sum(r.get("unpriced_requests") or 0 for r in rows)
    tail = [f"total {formatting.usd(total)}" + (f" of the {len(rows)} costliest shown (--top)" if cut else "")
            + (f"  ({formatting.count(unpriced)} requests of unpriced models not "
                                                 "included)" if unpriced else "")]
    if not rows and filtered:
        tail.append("no requests match these filters (--since, --workflow, ...): drop one to see more")
    elif not rows:
        tail.append("no requests recorded yet: run `golem-mcp import` or start `golem-mcp serve`")
    return tail


# -- daemon --------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from .daemon import serve

    return serve(args)


def cmd_stop(args: argparse.Namespace) -> int:
    from .daemon import stop

    return stop()


def cmd_dashboard(args: argparse.Namespace) -> int:
    import contextlib
    import subprocess
    from pathlib import Path

    from .client import find_daemon

    days = args.days
    url = find_daemon()
    if url is None:
        cmd = [sys.executable, "-m", "golem_mcp", "serve", "--detach"]
        if getattr(args, "db", None):  # checked by check_db: it exists, or --create asked for it
            cmd += ["--db", str(Path(args.db).expanduser())]
        started = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            raise GolemError(f"could not start the daemon: {(started.stderr or started.stdout).strip()}")
        url = started.stdout.strip().splitlines()[-1]
    page = dashboard_link(url, days=days)
    print(page)
    if not args.no_open:
        import webbrowser

        # no browser here (a server, a container): the printed URL is the answer
        with contextlib.suppress(Exception):
            webbrowser.open(_opener(page))
    return 0


def dashboard_link(url: str, days: int | None = None) -> str:
    """The dashboard's address with the token, which the daemon trades for a page cookie."""
    from urllib.parse import urlencode

    from .client import read_token

    query = {k: v for k, v in (("days", days), ("token", read_token())) if v is not None}
    return f"{url}/?{urlencode(query)}" if query else f"{url}/"


def _opener(link: str) -> str:
    """A file:// page (mode 0600, in the data folder) that forwards the browser to ``link``: a browser
    is started with its address on the command line, where ``ps`` shows it to every local user, so
    that address must not be the one holding the token."""
    import html

    from ..config import data_dir

    path = data_dir() / "dashboard-open.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(link)}">'
                 f'<a href="{html.escape(link)}">open the golem-mcp dashboard</a>\n')
    return path.as_uri()


def cmd_status(args: argparse.Namespace) -> int:
    from .client import locate_daemon

    found = locate_daemon()
    url = found.url if found else None
    state = {k: v for k, v in found.state.items() if k != "token"} if found else None
    info: dict[str, Any] = {"daemon": url, "state": state}
    if getattr(args, "team", False):
        from ..store.team import open_team_store

        with open_team_store() as team:
            info["team"] = team.team.shown_url
            info["store"] = team.table_counts()
    elif url:
        from .client import call

        info["store"] = call(url, "/api/status")
    else:
        db = _db(args)
        info["db"] = str(db)
        if db.exists():
            from ..store.db import Store

            with Store(db, read_only=True) as store:
                info["store"] = {**store.table_counts(), "write_inbox": store.inbox_state()}
    counts = [{"table": k, "rows": v} for k, v in (info.get("store") or {}).items() if isinstance(v, int)]
    lead = [f"daemon: {url or 'not running'}"] + ([f"dashboard: {dashboard_link(url)}"] if url else
                                                  [f"db: {info['db']}"])
    from ..kit.doctor import inbox_summary

    if line := inbox_summary((info.get("store") or {}).get("write_inbox"), running=bool(url)):
        lead.append(f"write inbox: {line}")
    empty = "no store yet: `golem-mcp import` (or `golem-mcp report`) creates it"
    emit(args.format, info, [Section(None, [Column("table"), Column("rows", unit="count")], counts, empty)], sys.stdout,
         A.table_width(args), lead=lead, csv_rows=counts)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from ..store.team import team_config

    cfg = team_config()  # refused here, before the store opens, when it is not configured
    assert cfg is not None
    url = _daemon_for(args)
    if url:
        from .client import call

        result = call(url, "/api/push", {}, timeout=3600)
    else:
        from ..store.db import Store
        from ..store.team import push

        with Store(_db(args)) as store:
            result = push(store, cfg).as_dict()
    if args.format != "table":
        emit(args.format, result, [], sys.stdout, 0, csv_rows=[{"table": t, "rows": n} for t, n in result["rows"].items()])
        return 0
    from .. import formatting

    sent = sum(result["rows"].values())
    print(f"pushed {formatting.count(sent)} rows to {cfg.shown_url} in {result['transactions']} transaction(s), "
          f"{result['seconds']:.1f} s" if sent else f"nothing new to push; {cfg.shown_url} has everything")
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from .hook import main as hook_main

    return hook_main([])


def cmd_stdio(args: argparse.Namespace) -> int:
    from .mcp_stdio import main as stdio_main

    return stdio_main(args)


HANDLERS = {"import": cmd_import, "push": cmd_push, "report": cmd_report, "serve": cmd_serve, "stop": cmd_stop,
            "status": cmd_status, "hook": cmd_hook, "stdio": cmd_stdio, "dashboard": cmd_dashboard}
