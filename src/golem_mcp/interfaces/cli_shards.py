"""``golem-mcp export DIR`` and the shard half of ``golem-mcp import``: thin wrappers over
``golem_mcp.store.shards`` (through the daemon when it owns the store)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import formatting
from . import cli_args as A
from .cli_output import emit


def register(sub: argparse._SubParsersAction, handlers: dict) -> None:
    sp = sub.add_parser(
        "export", help="write what is new since the last export to a folder, as Parquet shards (for git)",
        description="Write the telemetry this machine saw since the last export to DIR (made when missing) as "
        "Parquet shard files named <machine>-<change>-<nonce>-<table>.parquet: resolved facts and the "
        "context rows they need, secrets redacted, no prompt or response text. File names never collide "
        "between machines, so many machines can commit into one folder; `golem-mcp import DIR` merges them.")
    sp.add_argument("folder", metavar="DIR", help="the folder to write shards into, e.g. .golem/telemetry")
    sp.add_argument("--project", metavar="PATH", help="only sessions run in this folder (or below it)")
    A.add_format(sp)
    A.add_db(sp)
    handlers["export"] = cmd_export


def cmd_export(args: argparse.Namespace) -> int:
    from .cli_main import _daemon_for, _db

    folder = str(Path(args.folder).expanduser().resolve())
    project = str(Path(args.project).expanduser().resolve()) if args.project else None
    url = _daemon_for(args)
    if url:
        from .client import call

        result = call(url, "/api/export", {"folder": folder, "project": project})
    else:
        from ..store.db import Store
        from ..store.shards import export

        with Store(_db(args)) as store:
            result = export(store, folder, project)
    if args.format != "table":
        emit(args.format, result, [], sys.stdout, 0, csv_rows=[{"table": t, "rows": n} for t, n in result["rows"].items()])
        return 0
    if not result["files"]:
        print(f"nothing new since the last export to {result['folder']}")
        return 0
    total = sum(result["rows"].values())
    print(f"wrote {len(result['files'])} shard files ({formatting.count(total)} rows) to {result['folder']}")
    for t, n in result["rows"].items():
        print(f"  {t}: {formatting.count(n)}")
    return 0


def import_shards(args: argparse.Namespace, paths: list[str]) -> dict[str, Any]:
    """Merge the shard files or folders ``paths`` (``golem-mcp import``)."""
    from .cli_main import _daemon_for, _db

    url = _daemon_for(args)
    if url:
        from .client import call

        result: dict[str, Any] = call(url, "/api/shards", {"paths": [str(Path(p).expanduser().resolve()) for p in paths]})
        return result
    from ..store.db import Store
    from ..store.shards import import_shards as merge

    with Store(_db(args)) as store:
        return merge(store, paths)


def print_shards(result: dict[str, Any]) -> None:
    rows = sum(result["rows"].values())
    line = f"merged {formatting.count(result['shards'])} shard files ({formatting.count(rows)} rows)"
    if result["already"]:
        line += f", {formatting.count(result['already'])} merged before"
    print(line)
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])}:", file=sys.stderr)
        for s in result["skipped"][:50]:
            print(f"  {s}", file=sys.stderr)
