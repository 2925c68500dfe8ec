"""The one chart the dashboard and the weekly report draw: a value per calendar period on a time axis,
as a self-contained SVG (no script, no external asset).

Every period is a slot of the same width, so the axis is time: a day with no activity is a shaded,
empty slot, not closed up. The y axis is labelled at 0, half and the top (a rounded-up maximum), and
the x axis with dates at an interval that fits the width; numbers go through
:mod:`golem_mcp.formatting`.

Example: ``time_chart([1.5, None, 0.2], ["2026-11-20", "2026-11-21", "2026-11-22"], "cost per day",
unit="usd")``
"""

from __future__ import annotations

import math
from datetime import date
from html import escape

from . import formatting as fmt

BAR = "#4a7fb5"
LINE = "#d9822b"
EMPTY = "#ececec"
GRID = "#dddddd"
LABEL_STEPS = (1, 2, 7, 14, 28, 56, 91, 182, 364)   # days between date labels; weeks once days get crowded


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 3, 4, 5, 6, 8 x 10^k at or above ``value`` (a y axis' top); 1 for nothing."""
    if not value or value <= 0 or not math.isfinite(value):
        return 1.0
    k = math.floor(math.log10(value))
    for m in (1, 2, 3, 4, 5, 6, 8, 10):   # so that half the top is a round number too
        top = m * 10.0 ** k
        if top >= value * (1 - 1e-9):
            return top
    return 10.0 ** (k + 1)  # pragma: no cover


def _date_label(label: str, with_year: bool) -> str:
    try:
        d = date.fromisoformat(label[:10])
    except ValueError:
        return label
    return f"{d:%b} {d.day}" + (f" {d.year}" if with_year else "")


def _tick(value: float, unit: str) -> str:
    """An axis label: compact, but a share keeps its decimal when it has one (7.5%, not 8%)."""
    if unit in ("rate", "percent"):
        whole = round(value * (100 if unit == "rate" else 1), 6)
        return fmt.show(value, unit, compact=whole == int(whole))
    return fmt.show(value, unit, compact=True)


def time_chart(values: list[float | None], labels: list[str], title: str, unit: str = "number",
               empty: list[bool] | None = None, line: list[float | None] | None = None,
               width: int = 560, height: int = 190) -> str:
    """One bar per period (``labels``: ISO dates, oldest first); ``None`` or ``empty[i]`` = no data that
    period, drawn as a shaded slot; ``line`` an optional second series (e.g. a moving average)."""
    n = max(len(values), 1)
    empty = empty or [False] * len(values)
    left, right, top_pad, bottom = 62, 12, 24, 22
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    base_y = top_pad + plot_h
    peak = max([v for v in values if v is not None] + [v for v in (line or []) if v is not None] + [0.0])
    top = nice_top(peak * 1.05)   # a little headroom: a bar at the top edge looks cut off
    bw = plot_w / n

    def y(v: float) -> float:
        return base_y - plot_h * v / top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" role="img">',
           f"<title>{escape(title)}</title>",
           f'<text x="4" y="13" font-size="11" font-weight="bold">{escape(title)}</text>']
    if any(empty[i] or values[i] is None for i in range(len(values))):
        out.append(f'<rect x="{width - right - 64}" y="5" width="9" height="9" fill="{EMPTY}"/>'
                   f'<text x="{width - right}" y="13" text-anchor="end" fill="#666">no activity</text>')
    # y axis: gridlines and labels at 0, half and the top
    for frac in (0.0, 0.5, 1.0):
        tick = top * frac
        gy = y(tick)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 5}" y="{gy + 3.5:.1f}" text-anchor="end" fill="#444">'
                   f"{escape(_tick(tick, unit))}</text>")
    for i, v in enumerate(values):
        x = left + i * bw
        tip = escape(f"{labels[i]}: " + ("no activity" if empty[i] or v is None else fmt.show(v, unit)))
        if empty[i] or v is None:
            out.append(f'<rect class="empty" x="{x + 0.5:.1f}" y="{top_pad}" width="{max(bw - 1, 1):.1f}" '
                       f'height="{plot_h}" fill="{EMPTY}"><title>{tip}</title></rect>')
            continue
        h = max(plot_h * v / top, 0.0)
        out.append(f'<rect class="bar" x="{x + 0.5:.1f}" y="{base_y - h:.1f}" width="{max(bw - 1.5, 1):.1f}" '
                   f'height="{h:.1f}" fill="{BAR}"><title>{tip}</title></rect>')
    if line:
        # one polyline per run of periods that have a value: a missing value breaks the line
        runs: list[list[str]] = [[]]
        for i, lv in enumerate(line):
            if lv is None:
                runs.append([])
            else:
                runs[-1].append(f"{left + i * bw + bw / 2:.1f},{y(lv):.1f}")
        for pts in runs:
            if len(pts) > 1:
                out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{base_y}" y2="{base_y}" stroke="#888"/>')
    # x axis: a date every ``step`` periods, counted back from the newest so today is always labelled
    step = next((s for s in LABEL_STEPS if n / s * 46 <= plot_w), LABEL_STEPS[-1])
    years = {lbl[:4] for lbl in labels}
    for i in range(len(labels) - 1, -1, -step):
        cx = left + i * bw + bw / 2
        text = _date_label(labels[i], len(years) > 1 and i in (0, len(labels) - 1))
        half = len(text) * 2.9   # about half the label's width at 10px: keep it inside the picture
        tx = min(max(cx, half + 2), width - half - 2)
        out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{base_y}" y2="{base_y + 4}" stroke="#888"/>'
                   f'<text x="{tx:.1f}" y="{base_y + 15}" text-anchor="middle" fill="#444">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)
