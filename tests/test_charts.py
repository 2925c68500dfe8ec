"""The time-axis chart of the dashboard and the weekly report: a slot per period, empty ones shaded,
labelled axes in human number formats."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from golem_mcp.charts import nice_top, time_chart

NS = "{http://www.w3.org/2000/svg}"


def _days(n: int, start: date = date(2026, 10, 27)) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def test_every_day_is_a_slot_and_empty_days_stay_visible() -> None:
    labels = _days(30)
    values: list[float | None] = [None if i % 5 in (1, 2) else 1_000.0 * i for i in range(30)]
    svg = time_chart(values, labels, "tokens per day", unit="tokens")
    root = ET.fromstring(svg)   # well-formed, standalone SVG
    bars = [r for r in root.iter(NS + "rect") if r.get("class") == "bar"]
    empty = [r for r in root.iter(NS + "rect") if r.get("class") == "empty"]
    assert len(bars) == 18 and len(empty) == 12
    # slots are evenly spaced: the x of every slot is left + i * width, empty or not
    xs = sorted(float(r.get("x") or 0) for r in bars + empty)
    gaps = {round(b - a, 1) for a, b in zip(xs, xs[1:], strict=False)}
    assert len(gaps) == 1
    assert "2026-10-28: no activity" in svg and "2026-11-25: 29,000" in svg
    texts = [t.text for t in root.iter(NS + "text")]
    # y axis: 0, half and a rounded top, compact (29,000 -> 40k); x axis: dates, the newest one labelled
    assert {"0", "20k", "40k"} <= set(texts)
    assert "Nov 25" in texts and "Oct 28" in texts and len([t for t in texts if t and re.match(r"[A-Z][a-z]{2} \d", t)]) <= 10
    assert "no activity" in texts and not any("e+" in (t or "") for t in texts)


def test_units_and_a_broken_average_line() -> None:
    labels = _days(10)
    svg = time_chart([0.5, 0.0, 0.25, None, 0.1, 0.2, 0.3, 0.4, 0.45, 0.05], labels, "error rate", unit="rate",
                     line=[0.1, 0.2, None, None, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    root = ET.fromstring(svg)
    texts = {t.text for t in root.iter(NS + "text")}
    assert {"0%", "30%", "60%"} <= texts
    assert len(list(root.iter(NS + "polyline"))) == 2          # the missing days break the line
    low = ET.fromstring(time_chart([0.025, 0.01], labels[:2], "error rate", unit="rate"))
    assert {"0%", "1.5%", "3%"} <= {t.text for t in low.iter(NS + "text")}
    cost = time_chart([12.5, 178_700.0], labels[:2], "cost", unit="usd")
    assert "$200k" in cost and "$100k" in cost and "$178,700.00" in cost


def test_nice_top() -> None:
    assert [nice_top(v) for v in (0, 0.3, 1, 1.2, 2.1, 4.9, 29_000, 178_700)] == pytest.approx([1, 0.3, 1, 2, 3, 5, 30_000, 200_000])
