"""Every CLI argument is checked here, once, as an argparse ``type=`` (or right after parsing, for
checks that need two options). A bad one is refused with one line that says what to type instead,
and exit status 2, before anything is read or written.

Example: ``golem-mcp report --since notadate`` ->
``golem-mcp report: --since: 'notadate' is not a date; type one like 2026-11-01 or 2026-11-01T14:30``
"""

from __future__ import annotations

import argparse
import os
import re
import sys

# Loaded by every command, also `golem-mcp report` answered by the daemon in a few tens of ms:
# datetime, pathlib, difflib and typing are imported where they are used
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path
    from typing import Any, NoReturn

FORMATS = ("table", "csv", "json")
USAGE_ERROR = 2  # argparse's own exit status for bad usage; every refused argument uses it


class UsageError(Exception):
    """A bad argument found after parsing (a missing ``--db``, a bad budget amount); exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``golem-mcp report: --top: must be 1 or more, not 0``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{one_line_error(self.prog, message)}\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, and its default width imports shutil
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)  # type: ignore[call-arg]


def one_line_error(prog: str, message: str) -> str:
    message = message.removeprefix("argument ")
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        choices = [c.strip().strip("'") for c in m.group(2).split(",")]
        message = message[:m.start()] + f"{m.group(1)!r} is not one of {', '.join(choices)}" + _closest(m.group(1), choices)
    elif message.startswith(("unrecognized arguments", "the following arguments are required")):
        message += f" (`{prog} --help` lists what it takes)"
    return f"{prog}: {message}"


def _closest(word: str, choices: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {near[0]}?)" if near else ""


def _refuse(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


# -- values ---------------------------------------------------------------------------------------

DATE_FORMS = "type one like 2026-11-01 or 2026-11-01T14:30 (ISO 8601; a time zone such as +02:00 is allowed)"


def iso_datetime(text: str) -> datetime:
    """``--since``/``--now``: an ISO date or date-time, from 1970 on (a window reaches back from it)."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        _refuse(f"{text!r} is not a date; {DATE_FORMS}")
    if not 1970 <= when.year <= 9000:
        _refuse(f"{text!r} is out of range; give a date between 1970 and 9000, e.g. 2026-11-01")
    return when


MAX_COUNT = 1_000_000_000
MAX_DAYS = 36_500  # a window of a century: enough for any history, short of date arithmetic overflowing


def positive_int(text: str) -> int:
    """``--limit``, ``--top``: a whole number, 1 or more."""
    try:
        n = int(text)
    except ValueError:
        _refuse(f"{text!r} is not a whole number; type one like 10")
    if not 1 <= n <= MAX_COUNT:
        _refuse(f"must be between 1 and {MAX_COUNT:,}, not {n}")
    return n


def item_id(text: str) -> int:
    """An improvement item's number as `golem-mcp findings` shows it (``#12`` or ``12``)."""
    return positive_int(text.removeprefix("#"))


def positive_days(text: str) -> float:
    """``analyze --days``: a window of more than 0 days (fractions allowed: 0.5 is 12 hours)."""
    try:
        days = float(text)
    except ValueError:
        _refuse(f"{text!r} is not a number of days; type one like 7 or 0.5")
    if not 0 < days <= MAX_DAYS:
        _refuse(f"must be more than 0 days and at most {MAX_DAYS:,}, not {text}; type one like 7")
    return days


def dashboard_days(text: str) -> int:
    """``dashboard --days``: the dashboard page's own bound (one definition, in dashboard.py)."""
    from ..errors import GolemError
    from .dashboard import parse_days

    try:
        return parse_days(text)
    except GolemError as e:
        _refuse(str(e).removeprefix("days "))


def positive_number(text: str) -> float:
    """``--multiplier``: a number above 0."""
    try:
        x = float(text)
    except ValueError:
        _refuse(f"{text!r} is not a number; type one like 2 or 1.5")
    if not 0 < x < float("inf"):
        _refuse(f"must be more than 0, not {text}")
    return x


def duration_ms(text: str) -> float:
    """A duration as milliseconds: ``60000``, ``60000ms``, ``60s``, ``1.5min``."""
    t = text.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 1.0), ("min", 60_000.0), ("m", 60_000.0), ("s", 1000.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    try:
        ms = float(t) * scale
    except ValueError:
        _refuse(f"{text!r} is not a duration; give milliseconds (60000) or 60s / 1.5min")
    if not 0 < ms < float("inf"):
        _refuse(f"a duration must be more than 0, not {text!r}; e.g. 60s")
    return ms


def port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        _refuse(f"{text!r} is not a port number; type one like 4319 (0 picks a free one)")
    if not 0 <= n <= 65535:
        _refuse(f"must be between 0 and 65535, not {n}")
    return n


class BudgetSet(argparse.Action):
    """``budget --set SCOPE USD``: a scope the budgets know and an amount above 0."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from ..analysis.budgets import SCOPES

        scope, amount = values
        if scope not in SCOPES:
            parser.error(f"--set: {scope!r} is not a budget scope; choose from {', '.join(SCOPES)}"
                         f"{_closest(scope, list(SCOPES))}, e.g. --set workflow 5")
        try:
            usd = float(amount.removeprefix("$"))
        except ValueError:
            usd = float("nan")
        if not 0 < usd < float("inf"):
            parser.error(f"--set: a budget is an amount of dollars above 0, not {amount!r}; e.g. --set {scope} 5")
        setattr(namespace, self.dest, (scope, usd))


def percent_levels(text: str) -> list[int]:
    """``budget --levels 50,80,95,100``."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _refuse(f"{text!r} is not a list of percentages; type one like 50,80,95,100")
    if not levels or any(lv < 1 for lv in levels):
        _refuse(f"percentages must be 1 or more, like 50,80,95,100, not {text!r}")
    return levels


def groupings(text: str) -> list[str]:
    """``report --by``: comma-separated dimensions, each one the cost report knows."""
    from ..analysis.cost import DIMENSIONS

    by = [b.strip() for b in text.split(",") if b.strip()]
    if not by:
        _refuse(f"name at least one of {', '.join(DIMENSIONS)}")
    for b in by:
        if b not in DIMENSIONS:
            _refuse(f"unknown grouping {b!r}; choose from {', '.join(DIMENSIONS)}{_closest(b, list(DIMENSIONS))}")
    return by


def output_folder(text: str) -> Path:
    """``weekly --out``: a folder that exists or can be made, and can be written."""
    from pathlib import Path

    path = Path(text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _refuse(f"cannot make folder {text} ({e.strerror or e}); give a folder you can write, e.g. --out ~/reports")
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        _refuse(f"{text} is not a folder you can write; give one you can, e.g. --out ~/reports")
    return path


def existing_path(text: str) -> Path:
    """``import PATH``: a file or folder that is there."""
    from pathlib import Path

    path = Path(text).expanduser()
    if not path.exists():
        _refuse(f"{text}: no such file or folder; give a transcript folder (e.g. ~/.claude/projects), a file "
                "of captured OTLP bodies or hook payloads, or shards from `golem-mcp export` (a .parquet file or "
                "their folder)")
    return path


# -- options shared by many commands ----------------------------------------------------------------

def add_format(sp: argparse.ArgumentParser) -> None:
    """``--format table|csv|json`` and ``--json`` (its alias, kept for scripts written before it)."""
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--format", choices=FORMATS, default="table",
                   help="table (for people; fits the terminal), csv or json (every value, unformatted)")
    g.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    sp.add_argument("--width", type=positive_int, help=argparse.SUPPRESS)  # the table's width; see table_width


def add_db(sp: argparse.ArgumentParser, create_help: str | None = None) -> None:
    """``--db FILE`` and ``--create``: an explicit database file must exist unless creating is asked for."""
    sp.add_argument("--db", metavar="FILE", help="DuckDB file (default: $GOLEM_DB or golem.duckdb in the data "
                    "folder); one that does not exist is refused unless --create is given")
    sp.add_argument("--create", action="store_true",
                    help=create_help or "with --db: create the database file when it does not exist")


TEAM_HELP = ("read the team store (GOLEM_TEAM_URL and GOLEM_TEAM_DATA_PATH) instead of this machine's: "
             "every machine's pushed facts")


def add_team(sp: argparse.ArgumentParser) -> None:
    """``--team``: a read command answers from the team store (see the README, 'Running for a team')."""
    sp.add_argument("--team", action="store_true", help=TEAM_HELP)


def check_db(args: argparse.Namespace) -> None:
    """Refuse a ``--db`` that names no existing file (usually a typo that would otherwise be created
    and filled), unless ``--create`` asks for it or it is the default store."""
    given = getattr(args, "db", None)
    if not given or getattr(args, "create", True):  # no --create option (serve): the command makes its store
        return
    from pathlib import Path

    from ..config import default_db_path

    path = Path(given).expanduser()
    if path.exists():
        if path.is_dir():
            raise UsageError(f"--db {given} is a folder; give the database file in it (e.g. {path / 'golem.duckdb'})")
        return
    if path.resolve() == default_db_path().resolve():
        return
    raise UsageError(f"--db {given}: no such database; check the path, or add --create to start a new one there")


def table_width(args: argparse.Namespace | None = None) -> int:
    """The width a table must fit: ``--width``, else the terminal's (``$COLUMNS`` first), else 80 (a pipe)."""
    if args is not None and getattr(args, "width", None):
        return int(args.width)
    return max(20, terminal_columns())


def terminal_columns() -> int:
    """``shutil.get_terminal_size((80, 24)).columns`` without shutil's imports (bz2, lzma, fnmatch:
    a few ms of every command's start-up): ``$COLUMNS``, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def prog_of(args: argparse.Namespace) -> str:
    return f"golem-mcp {args.command}" if getattr(args, "command", None) else "golem-mcp"


def refuse_usage(args: argparse.Namespace, message: str) -> int:
    sys.stderr.write(f"{prog_of(args)}: {message}\n")
    return USAGE_ERROR
