"""What the CLI prints: tables that fit the width without cutting a number, CSV and JSON.

A table first tries every number in full (``1,404,000``, ``$0.4810``); when that is too wide, the
compact form (``1.4M``, ``$0.48``); then folds text columns (a long model name or path wraps onto
a second line); then drops the columns marked as least useful, saying which in a footnote. A number
is never cut, at any width, in a terminal or a pipe. How each number looks is defined once, in
:mod:`golem_mcp.formatting`.
"""

from __future__ import annotations

import json
import sys

from .. import formatting

# `golem-mcp report --json` through the daemon loads this module and answers in a few tens of ms:
# csv, textwrap, datetime, dataclasses and typing (~10 ms of imports together) stay out of its way
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TextIO

SEP = "  "


class Column:
    """One column: the row key it shows, its header, the unit of its numbers (None: text) and
    ``drop``: 0 when it is always shown, else its turn to go when the width is short (highest first)."""

    __slots__ = ("key", "header", "unit", "drop", "unit_key")

    def __init__(self, key: str, header: str | None = None, unit: str | None = None, drop: int = 0,
                 unit_key: str | None = None) -> None:
        self.key = key
        self.header = header
        self.unit = unit
        self.drop = drop
        self.unit_key = unit_key  # a row key naming the metric this value measures (tokens, dollars, ...)

    def __repr__(self) -> str:
        return f"Column({self.key!r}, {self.header!r}, {self.unit!r}, drop={self.drop})"

    @property
    def title(self) -> str:
        return self.header if self.header is not None else label(self.key)


# the unit a value is shown in says what a suffix of its name said
_SUFFIXES = ("_usd", "_ms", "_seconds", "_id")


def label(key: str) -> str:
    """A field name as a person reads it: ``avg_stage_cost_usd`` -> ``avg stage cost``."""
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and key != suffix.lstrip("_") and key not in ("request_id", "session_id", "run_id",
                                                                             "item_id", "agent_id", "task_id"):
            key = key.removesuffix(suffix)
            break
    return key.replace("_", " ")


class Section:
    """A titled table: what a single analysis prints is one or more of these."""

    __slots__ = ("title", "columns", "rows", "empty", "notes")

    def __init__(self, title: str | None, columns: list[Column], rows: list[dict[str, Any]],
                 empty: str | None = None, notes: list[str] | None = None) -> None:
        self.title = title
        self.columns = columns
        self.rows = rows
        self.empty = empty  # printed instead of the table when there are no rows
        self.notes = notes if notes is not None else []


def columns_for(rows: Sequence[dict[str, Any]], skip: Iterable[str] = (), drop: Iterable[str] = ()) -> list[Column]:
    """Columns for every key of ``rows`` (in order of first appearance), each number in the unit its
    name says (:func:`golem_mcp.formatting.unit_of`); ``drop`` names the low-value ones, first to go
    first."""
    skip, drop = set(skip), list(drop)
    keys: dict[str, Any] = {}
    for r in rows:
        for k, v in r.items():
            if k not in skip and (keys.get(k) is None):
                keys[k] = v
    return [Column(k, unit=formatting.unit_of(k, v), drop=(len(drop) - drop.index(k)) if k in drop else 0)
            for k, v in keys.items()]


def _text(v: Any) -> str:
    from datetime import datetime

    if v is None:
        return formatting.MISSING
    if isinstance(v, dict):
        return ", ".join(f"{k} {_text(x)}" for k, x in v.items()) or formatting.MISSING
    if isinstance(v, list | tuple):
        return ", ".join(_text(x) for x in v) or formatting.MISSING
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, float) and v == int(v):
        return f"{int(v):,}"
    if isinstance(v, float):
        return formatting.number(v)
    return str(v)


def cell(row: dict[str, Any], col: Column, compact: bool) -> str:
    v = row.get(col.key)
    unit = col.unit
    if col.unit_key and isinstance(v, int | float):
        unit = formatting.METRIC_UNITS.get(str(row.get(col.unit_key)), unit)
    if unit is None or v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return _text(v)
    return formatting.show(v, unit, compact)


def _min_header(title: str) -> int:
    return max((len(w) for w in title.split()), default=0)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    lines: list[str] = []
    for part in text.splitlines() or [""]:
        lines += textwrap.wrap(part, width, break_long_words=True, break_on_hyphens=True) or [""]
    return lines


class _Plan:
    __slots__ = ("columns", "widths", "cells", "dropped")

    def __init__(self, columns: list[Column], widths: list[int], cells: list[list[str]], dropped: list[Column]) -> None:
        self.columns = columns
        self.widths = widths
        self.cells = cells
        self.dropped = dropped


def _plan(columns: list[Column], rows: Sequence[dict[str, Any]], width: int) -> _Plan:
    def attempt(cols: list[Column], compact: bool, fold: int | None) -> _Plan | None:
        cells = [[cell(r, c, compact) for c in cols] for r in rows]
        natural = [max([len(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        least = [max([_min_header(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        sep = len(SEP) * (len(cols) - 1)
        if sum(natural) + sep <= width:
            return _Plan(cols, natural, cells, [])
        # headers on two lines where that saves room; the room left back to single-line headers
        widths = list(least)
        spare = width - sep - sum(widths)
        for i in sorted(range(len(cols)), key=lambda i: natural[i] - least[i]):
            if 0 < natural[i] - widths[i] <= spare:
                spare -= natural[i] - widths[i]
                widths[i] = natural[i]
        if spare >= 0:
            return _Plan(cols, widths, cells, [])
        if fold is None:
            return None
        # fold text columns (never numbers), widest first, down to ``fold`` characters; prose (a fix,
        # a recommendation) keeps a readable line: before it gets thinner, columns go
        floor = [max(_min_header(c.title), min(24 if natural[i] > 40 else fold, widths[i])) if c.unit is None
                 else widths[i] for i, c in enumerate(cols)]
        over = -spare
        while over > 0:
            i = max(range(len(cols)), key=lambda i: widths[i] - floor[i])
            if widths[i] <= floor[i]:
                return None
            widths[i] -= 1
            over -= 1
        return _Plan(cols, widths, cells, [])

    # long labels (paths, prose) fold before a column goes; short ones (a model name) only after
    for compact, fold in ((False, None), (True, None), (True, 20)):
        plan = attempt(columns, compact, fold)
        if plan:
            return plan
    droppable = sorted((c for c in columns if c.drop), key=lambda c: -c.drop)
    for fold in (20, 10):
        for n in range(len(droppable) + 1):
            dropped = droppable[:n]
            kept = [c for c in columns if c not in dropped]
            plan = attempt(kept, True, fold)
            if plan:
                plan.dropped = dropped
                return plan
    # too narrow for even the essential columns: wider than asked, but nothing cut
    cells = [[cell(r, c, True) for c in kept] for r in rows]
    widths = [max([_min_header(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(kept)]
    return _Plan(kept, widths, cells, dropped)


def render_table(columns: list[Column], rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """The lines of a table of ``rows`` no wider than ``width`` when it can be, with every number whole."""
    plan = _plan(columns, rows, width)
    cols, widths = plan.columns, plan.widths
    heads = [_wrap(c.title, w) for c, w in zip(cols, widths, strict=True)]
    depth = max((len(h) for h in heads), default=1)
    lines = []
    for ln in range(depth):
        parts = []
        for c, w, h in zip(cols, widths, heads, strict=True):
            text = h[ln - (depth - len(h))] if ln >= depth - len(h) else ""  # headers sit on the rule
            parts.append(text.ljust(w) if c.unit is None else text.rjust(w))
        lines.append(SEP.join(parts).rstrip())
    rule = "─" if (getattr(sys.stdout, "encoding", None) or "").lower().startswith("utf") else "-"
    lines.append(SEP.join(rule * w for w in widths))
    for row in plan.cells:
        wrapped = [_wrap(t, w) if c.unit is None else [t] for t, c, w in zip(row, cols, widths, strict=True)]
        for ln in range(max(len(x) for x in wrapped) if wrapped else 1):
            parts = []
            for c, w, x in zip(cols, widths, wrapped, strict=True):
                text = x[ln] if ln < len(x) else ""
                parts.append(text.ljust(w) if c.unit is None else text.rjust(w))
            lines.append(SEP.join(parts).rstrip())
    if plan.dropped:
        import textwrap

        lines += textwrap.wrap(f"(not shown at {width} columns: {', '.join(c.title for c in plan.dropped)}; "
                               "--format csv or json has every column)", max(width, 40))
    return lines


def render_sections(sections: Sequence[Section], width: int) -> list[str]:
    lines: list[str] = []
    for s in sections:
        if lines:
            lines.append("")
        if s.title:
            lines.append(s.title)
        if s.rows:
            lines += render_table(s.columns, s.rows, width)
        elif s.empty:
            lines.append(f"  {s.empty}")
        lines += s.notes
    return lines


# -- machine formats --------------------------------------------------------------------------------

def _json_default(o: Any) -> Any:
    from datetime import date, datetime

    if isinstance(o, datetime | date):
        return o.isoformat()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    return str(o)


def to_data(obj: Any) -> Any:
    """Pydantic models (and lists of them) as plain JSON-able data."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [to_data(x) for x in obj]
    return obj


def write_json(obj: Any, out: TextIO, indent: int | None = 1) -> None:
    out.write(json.dumps(to_data(obj), default=_json_default, indent=indent) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], out: TextIO, header: Sequence[str] = ()) -> None:
    """Every key of every row, values unformatted (nested ones as JSON), one header line (``header``
    when there are no rows to take it from)."""
    import csv
    from datetime import date, datetime

    keys: dict[str, None] = dict.fromkeys(header) if not rows else {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    w = csv.writer(out, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        w.writerow(["" if (v := r.get(k)) is None else
                    json.dumps(v, default=_json_default) if isinstance(v, dict | list) else
                    v.isoformat() if isinstance(v, datetime | date) else v for k in keys])


def emit(fmt: str, data: Any, sections: Sequence[Section], out: TextIO, width: int,
         lead: Sequence[str] = (), tail: Sequence[str] = (), csv_rows: Sequence[dict[str, Any]] | None = None) -> None:
    """Print ``data`` as JSON, the rows of the first section (or ``csv_rows``) as CSV, or everything as
    tables for people, with ``lead`` lines before and ``tail`` lines after."""
    if fmt == "json":
        write_json(data, out)
    elif fmt == "csv":
        write_csv(csv_rows if csv_rows is not None else (sections[0].rows if sections else []), out,
                  header=[c.key for c in sections[0].columns] if sections else ())
    else:
        for line in [*lead, *render_sections(sections, width), *tail]:
            out.write(line + "\n")
