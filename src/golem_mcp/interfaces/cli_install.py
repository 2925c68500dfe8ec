"""``golem-mcp install``, ``uninstall`` and ``doctor``: thin wrappers over ``golem_mcp.kit``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..config import DEFAULT_PORT
from . import cli_args as A
from .cli_output import emit


def register(sub: argparse._SubParsersAction, handlers: dict) -> None:
    def scope_args(sp: argparse.ArgumentParser) -> None:
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--project", metavar="DIR", help="the project folder (default: the current folder)")
        g.add_argument("--user", action="store_true", help="user scope: ~/.claude.json and ~/.claude/settings.json")
        sp.add_argument("--dry-run", action="store_true", help="show the diff of what would change; write nothing")

    sp = sub.add_parser(
        "install", help="wire Claude Code to golem-mcp: MCP server, hooks, OTel env, agents, commands",
        description="Add the golem MCP server (.mcp.json, or ~/.claude.json with --user), a `golem-mcp hook` "
        "command on every hook event and the OTEL_* variables in .claude/settings.json, and copy the Golem "
        "agents and slash commands into .claude/. Merges with what is there and never replaces your own "
        "settings; running it again changes nothing. `golem-mcp uninstall` removes exactly what it added.")
    scope_args(sp)
    sp.add_argument("--port", type=A.port, help=f"the daemon's port for the OTLP endpoint (default $GOLEM_PORT or {DEFAULT_PORT})")
    sp.add_argument("--no-traces", action="store_true", help="do not export trace spans (retries, queue waits)")
    sp.add_argument("--no-agents", action="store_true", help="do not copy the agents and commands")
    sp.add_argument("--force", action="store_true",
                    help="replace env values, a 'golem' server entry or agent files that differ (yours are kept "
                    "in the manifest and put back by uninstall)")
    sp.add_argument("--command", dest="golem_command", metavar="CMD",
                    help="how Claude Code should run golem-mcp (default: 'golem-mcp' when on PATH, else this "
                    "installation's absolute path)")
    handlers["install"] = cmd_install

    sp = sub.add_parser("uninstall", help="remove exactly what `golem-mcp install` added",
                        description="Remove what `golem-mcp install` added, using its manifest "
                        "(.claude/golem-install.json). Settings files untouched since install come back byte for "
                        "byte; edited ones lose only golem's entries.")
    scope_args(sp)
    handlers["uninstall"] = cmd_uninstall

    sp = sub.add_parser("doctor", help="check every piece: daemon, hooks, OTLP, MCP entry, transcripts, versions",
                        description="Check that Claude Code's telemetry reaches golem-mcp and say how to fix "
                        "what does not. Exit status 1 when a check fails.")
    sp.add_argument("--project", metavar="DIR", help="the project folder (default: the current folder)")
    sp.add_argument("--claude", metavar="PATH", help="the Claude Code executable (default: `claude` on PATH)")
    sp.add_argument("--verify", action="store_true",
                    help="check that every stored fact's resolved context equals a from-scratch resolution "
                         "(by default only the most recent facts are checked)")
    A.add_format(sp)
    handlers["doctor"] = cmd_doctor


def _target(args: argparse.Namespace):  # -> kit.install.Target
    from ..kit.install import Target

    return Target.user() if args.user else Target.project(Path(args.project or ".").expanduser())


def _print_result(result, verb: str) -> None:
    if result.dry_run:
        for c in result.changed:
            if c.path.suffix == ".json":
                sys.stdout.write(c.diff())
            else:
                lines = len((c.after or c.before or b"").splitlines())
                sys.stdout.write(f"{c.action} {c.path} ({lines} lines)\n")
        print(f"dry run: {len(result.changed)} files would change in {result.target.root}")
        print(result.summary())
        return
    print(f"golem-mcp {verb} ({result.target.scope} scope, {result.target.root}):")
    print(result.summary())


def cmd_install(args: argparse.Namespace) -> int:
    from ..kit.install import Options, install

    opts = Options(traces=not args.no_traces, copy_kit=not args.no_agents, force=args.force,
                   command=shlex.split(args.golem_command) if args.golem_command else None)
    if args.port:
        opts.port = args.port
    result = install(_target(args), opts, dry_run=args.dry_run)
    _print_result(result, "installed")
    if not args.dry_run:
        print("next: start the daemon (`golem-mcp serve --detach`; Claude Code also starts it through the MCP "
              "server), then `golem-mcp doctor`. Run a workflow with `claude --agent master \"<task>\"`.")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from ..kit.install import uninstall

    result = uninstall(_target(args), dry_run=args.dry_run)
    _print_result(result, "uninstalled")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..kit.doctor import FAIL, run_checks

    project = Path(args.project or ".").expanduser().resolve()
    checks = run_checks(project, claude=args.claude, verify=args.verify)
    if args.format != "table":
        rows = [c.as_dict() for c in checks]
        emit(args.format, rows, [], sys.stdout, A.table_width(args), csv_rows=rows)
    else:
        print(f"golem-mcp doctor — project {project}")
        for c in checks:
            print(c.line())
        failed = [c.name for c in checks if c.status == FAIL]
        print("all checks passed" if not failed else f"{len(failed)} failing: {', '.join(failed)}")
    return 1 if any(c.status == FAIL for c in checks) else 0
