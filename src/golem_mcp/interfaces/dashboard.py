"""The local dashboard: one HTML page the daemon serves at ``/`` (and ``/dashboard``).

Seed 002's widgets, rendered on the server from the analysis functions (no SQL here, no script, no
external asset; the page reloads itself every minute, or less often where building it takes long:
see ``PageCache``): spend today against the day budget with the burn rate and a projection; daily
cost with its 7-day average, error rate, cache hit rate and tokens (charts of
:mod:`golem_mcp.charts`, a slot per calendar day); cost by workflow, stage and model (model
efficiency); latency (p50/p95/p99 per model, stage and tool) and bottlenecks; experiment arms on cost
and tokens per workflow; fast-track vs full path; error patterns with a suggested fix and recovery
rates per stage; the most common tool sequences; the open improvement items, review findings and
recent alerts; the last analysis runs. Each widget is computed on its own: one that fails shows its
error and the others still render.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from html import escape
from typing import Any

from .. import formatting
from ..analysis import (
    bottlenecks,
    budgets,
    error_patterns,
    experiments,
    findings_store,
    predict,
    runs,
    sequences,
    trends,
)
from ..analysis.common import as_naive
from ..analysis.cost import cost_by
from ..charts import time_chart
from ..errors import InvalidInput
from ..store.db import Store

log = logging.getLogger("golem_mcp.dashboard")

MAX_DAYS = 365
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'"

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem 2rem;color:#222;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .2rem} h2{font-size:1.1rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #ddd}
h3{font-size:.95rem;margin:.8rem 0 .3rem;color:#444}
.sub{color:#666;font-size:.85rem} .grid{display:flex;flex-wrap:wrap;gap:1rem}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.6rem .9rem;min-width:11rem}
.card b{display:block;font-size:1.25rem} .warn{color:#b35c00} .bad{color:#b00020} .ok{color:#2e7d32}
table{border-collapse:collapse;background:#fff;font-size:.85rem;margin:.3rem 0}
th,td{border:1px solid #e3e3e3;padding:.2rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} .err{color:#b00020;font-size:.85rem}
form{display:inline} input{width:4rem} .card svg{display:block}
"""


def parse_days(value: str | None) -> int:
    if value in (None, ""):
        return 30
    try:
        days = int(str(value))
    except ValueError:
        raise InvalidInput(f"days must be a whole number of days (1-{MAX_DAYS}), not {value!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, not {days}")
    return days


# how numbers look is defined once, for the CLI, the weekly report and this page
_money = formatting.usd
_pct = formatting.rate
_int = formatting.count
_ms = formatting.duration_ms


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    if not rows:
        return '<p class="sub">nothing in this window</p>'
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{escape(str(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _every(seconds: float) -> str:
    return "minute" if seconds <= 60 else f"{seconds / 60:.0f} minutes"


def _level_class(percent: float) -> str:
    return "bad" if percent >= 100 else "warn" if percent >= 80 else "ok"


def _spend(store: Store, days: int, now: datetime) -> str:
    st = budgets.budget_status(store, now=now)
    total = cost_by(store, [], since=now - timedelta(days=days), until=now)
    t = total[0] if total else {}
    cards = [
        ("today", f'<b class="{_level_class(st.today.percent)}">{_money(st.today.spent_usd)}</b>'
                  f"{st.today.percent:.0f}% of the {_money(st.today.limit_usd)} day budget"),
        ("burn rate", f"<b>{_money(st.burn_rate_usd_per_hour)}/h</b>over the last 3 hours"),
        ("projected today", f"<b>{_money(st.projected_today_usd)}</b>{escape(st.advice)}"),
        (f"last {days} days", f"<b>{_money(t.get('cost_usd'))}</b>{_int(t.get('requests'))} API requests, "
                              f"{_int(t.get('total_tokens'))} tokens"),
        ("cache hit rate", f"<b>{_pct(t.get('cache_hit_rate'))}</b>of input tokens read from the cache"),
    ]
    return '<div class="grid">' + "".join(f'<div class="card"><span class="sub">{escape(k)}</span>{v}</div>'
                                          for k, v in cards) + "</div>"


def _trends(store: Store, days: int, now: datetime) -> str:
    tr = trends.query_trends(store, "day", days=days, now=now)
    if not any(p.requests for p in tr.points):
        return '<p class="sub">no API requests in this window</p>'
    labels = [p.period for p in tr.points]
    empty = [p.requests == 0 for p in tr.points]   # every calendar day is a slot; these are shaded
    charts = [
        time_chart([p.cost_usd for p in tr.points], labels, "cost per day (line: 7-day average)", unit="usd",
                   empty=empty, line=[p.cost_ma7 for p in tr.points]),
        time_chart([p.error_rate for p in tr.points], labels, "error rate per day (failures per operation)",
                   unit="rate", empty=empty),
        time_chart([p.cache_hit_rate for p in tr.points], labels, "cache hit rate per day", unit="rate", empty=empty),
        time_chart([float(p.tokens) for p in tr.points], labels, "tokens per day", unit="tokens", empty=empty),
    ]
    change = tr.cost_change_vs_previous_window
    note = f'<p class="sub">cost vs the {days} days before: {formatting.change(change)}</p>' if change is not None else ""
    return note + '<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in charts) + "</div>"


def _cost_tables(store: Store, days: int, now: datetime) -> str:
    since = now - timedelta(days=days)
    out = []
    rows = cost_by(store, ["workflow"], since=since, until=now, limit=15)
    out.append("<h3>Top workflows</h3>" + _table(
        ["workflow", "cost", "requests", "tokens", "cache hit", "retries"],
        [[r["workflow"] or "(none)", _money(r["cost_usd"]), _int(r["requests"]), _int(r["total_tokens"]),
          _pct(r["cache_hit_rate"]), _int(r["retries"])] for r in rows], {1, 2, 3, 4, 5}))
    rows = cost_by(store, ["stage"], since=since, until=now, limit=20)
    out.append("<h3>By stage</h3>" + _table(
        ["stage", "cost", "requests", "input", "output", "cache read", "cache write", "cache hit"],
        [[r["stage"], _money(r["cost_usd"]), _int(r["requests"]), _int(r["input_tokens"]), _int(r["output_tokens"]),
          _int(r["cache_read_tokens"]), _int(r["cache_creation_tokens"]), _pct(r["cache_hit_rate"])] for r in rows],
        {1, 2, 3, 4, 5, 6, 7}))
    rows = cost_by(store, ["model"], since=since, until=now, limit=20)
    out.append("<h3>Model efficiency</h3>" + _table(
        ["model", "cost", "requests", "cost per request", "tokens per request", "cache hit"],
        [[r["model"] or "(unknown)", _money(r["cost_usd"]), _int(r["requests"]),
          _money((r["cost_usd"] or 0) / r["requests"] if r["requests"] else None),
          _int((r["total_tokens"] or 0) / r["requests"] if r["requests"] else None), _pct(r["cache_hit_rate"])]
         for r in rows], {1, 2, 3, 4, 5}))
    return "".join(out)


_TIMED = {"stage": "a stage's wall time", "model": "one API request", "tool": "one tool call"}


def _latency(store: Store, days: int, now: datetime) -> str:
    rep = bottlenecks.find_bottlenecks(store, days=days, now=now, dimensions=list(_TIMED))
    durs = rep.durations
    rows = [d for d in durs if d["dimension"] != "tool"] + [d for d in durs if d["dimension"] == "tool"][:10]
    out = ['<p class="sub">p50/p95/p99 duration in the window, against the configured baseline or the '
           "dimension's own earlier history; at least 3 samples</p>"]
    out.append(_table(
        ["by", "key", "what is timed", "samples", "p50", "p95", "p99", "vs baseline"],
        [[d["dimension"], d["key"], _TIMED[d["dimension"]], _int(d["samples"]), _ms(d["p50_ms"]), _ms(d["p95_ms"]),
          _ms(d["p99_ms"]), formatting.ratio(d["severity"]) if d.get("severity") is not None else "no baseline yet"]
         for d in rows], {3, 4, 5, 6, 7}))
    out.append("<h3>Bottlenecks (p50 over its baseline x multiplier)</h3>")
    out.append("<ul>" + "".join(f"<li>{escape(b.line())}</li>" for b in rep.bottlenecks[:10]) + "</ul>"
               if rep.bottlenecks else '<p class="sub">none: nothing ran slower than its baseline allows</p>')
    return "".join(out)


def _experiments(store: Store, days: int, now: datetime) -> str:
    try:
        cost = experiments.compare_experiments(store, metric="cost")
        tokens = experiments.compare_experiments(store, metric="tokens")
    except InvalidInput as e:
        return f'<p class="sub">no comparison yet: {escape(str(e))}</p>'
    vs = {c["arm"]: c for c in cost["comparisons"]}
    tvs = {c["arm"]: c for c in tokens["comparisons"]}
    rows = []
    for arm, st in cost["arms"].items():
        c, t = vs.get(arm), tvs.get(arm)
        rows.append([arm + (" (baseline)" if arm == cost["baseline"] else ""), _int(st["n"]), _money(st["mean"]),
                     _money(st["median"]), _int(tokens["arms"][arm]["mean"]),
                     formatting.change(c["relative_change"]) if c else "-", formatting.change(t["relative_change"]) if t else "-",
                     f'{c["verdict"]}: {c["reason"]}' if c else "-"])
    return ('<p class="sub">per workflow, all history; verdict on cost (Mann-Whitney U, '
            f'alpha {cost["alpha"]:g}, at least {cost["min_runs"]} runs per arm)</p>' + _table(
                ["arm", "workflows", "mean cost", "median cost", "mean tokens", "cost vs baseline",
                 "tokens vs baseline", "verdict"], rows, {1, 2, 3, 4, 5, 6}))


def _paths(store: Store, days: int, now: datetime) -> str:
    rows = predict.compare_paths(store, days=days, now=now)
    return ('<p class="sub">per workflow started in the window; a workflow without a recorded path gets the one '
            "its stages show (analyst and planner ran: full)</p>" + _table(
                ["path", "workflows", "of which inferred", "mean cost", "median cost", "mean tokens", "median duration"],
                [[r.path, _int(r.workflows), _int(r.inferred), _money(r.avg_cost_usd), _money(r.median_cost_usd),
                  _int(r.avg_tokens), formatting.duration_s(r.median_duration_seconds)] for r in rows],
                {1, 2, 3, 4, 5, 6}))


def _errors(store: Store, days: int, now: datetime) -> str:
    rep = error_patterns.query_error_patterns(store, days=days, now=now)
    out = [f'<p class="sub">{rep.total_errors:,} failures (failed tool calls, API errors, retries)</p>']
    out.append(_table(["category", "count", "stages", "suggested fix"],
                      [[c.category, c.count, ", ".join(f"{k} {v}" for k, v in c.stages.items()), c.fix]
                       for c in rep.categories[:10]], {1}))
    out.append("<h3>Error rate and recovery by stage</h3>" + _table(
        ["stage", "operations", "failures", "error rate", "recovered", "recovery rate"],
        [[s.stage, _int(s.operations), _int(s.failures), _pct(s.error_rate), _int(s.recovered), _pct(s.recovery_rate)]
         for s in rep.by_stage], {1, 2, 3, 4, 5}))
    if rep.repeated_failures:
        out.append("<h3>Repeated failures</h3>" + _table(
            ["count", "category", "stage", "tool", "example", "fix"],
            [[f.count, f.category, f.stage, f.tool_name or "api", f.example or "", f.fix]
             for f in rep.repeated_failures[:10]], {0}))
    return "".join(out)


def _sequences(store: Store, days: int, now: datetime) -> str:
    rep = sequences.tool_sequences(store, n=3, days=days, now=now, limit=10, learn=False)
    return _table(["stage", "sequence", "count", "all succeeded", "workflows", "avg stage cost", "in good workflows"],
                  [[s.stage, s.sequence, s.count, _pct(s.success_rate), s.workflows, _money(s.avg_stage_cost_usd),
                    _pct(s.good_share)] for s in rep.top], {2, 3, 4, 5, 6})


def _findings(store: Store, days: int, now: datetime) -> str:
    items = findings_store.list_findings(store, limit=10)
    out = [_table(["severity", "kind", "finding", "recommendation", "seen"],
                  [[f"{i.severity:.1f}", i.kind, i.title, i.recommendation, i.times_seen] for i in items], {0, 4})]
    q = trends.query_quality(store, days=days, now=now)
    sev = ", ".join(f"{k} {v}" for k, v in q.by_severity.items()) or "none"
    out.append(f"<h3>Review findings</h3><p class=sub>{q.reports} reports; by severity: {escape(sev)}; rework rate "
               f"{_pct(q.rework_rate)}</p>")
    out.append(_table(["file", "findings"], [[f.file, f.findings] for f in q.top_files], {1}))
    return "".join(out)


def _alerts(store: Store, days: int, now: datetime) -> str:
    rows = budgets.recent_alerts(store, limit=10)
    return _table(["when", "kind", "alert"],
                  [[f"{a.created_at:%Y-%m-%d %H:%M}" if a.created_at else "-", a.kind, a.message] for a in rows])


def _runs(store: Store, days: int, now: datetime) -> str:
    rows = runs.list_runs(store, limit=5)
    return _table(["run", "status", "trigger", "finished", "produced"],
                  [[r.run_id, r.status, r.trigger or "-", f"{r.finished_at:%Y-%m-%d %H:%M}" if r.finished_at else "-",
                    r.error_detail or ", ".join(f"{k} {v}" for k, v in (r.produced or {}).items() if v)]
                   for r in rows])


WIDGETS: list[tuple[str, str, Callable[[Store, int, datetime], str]]] = [
    ("spend", "Spend and budget", _spend),
    ("trends", "Trends", _trends),
    ("cost", "Where the money goes", _cost_tables),
    ("latency", "Latency and bottlenecks", _latency),
    ("experiments", "Experiments", _experiments),
    ("paths", "Fast-track vs full path", _paths),
    ("errors", "Errors", _errors),
    ("sequences", "Tool sequences", _sequences),
    ("findings", "Findings", _findings),
    ("alerts", "Alerts", _alerts),
    ("runs", "Analysis runs", _runs),
]


class PageCache:
    """Rendered pages kept for a while, so a dashboard left open cannot keep the daemon busy, and
    answered at once.

    A page is rebuilt when it is older than ``max(MIN_AGE, 10 x the time it took to build)`` (on a
    store of 10M requests a build takes seconds of CPU; reloading it every minute would starve
    ingestion). The first page of a window is built while its request waits (requests meanwhile wait
    for it and share it); after that an expired page is still answered, at once, while one rebuild
    runs beside it (``rebuilding``), and the next request gets the new page."""

    MIN_AGE = 60.0

    def __init__(self) -> None:
        self._pages: dict[int, tuple[str, float, float]] = {}  # days -> (html, built at, seconds)
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.rebuilding: dict[int, threading.Thread] = {}

    def _fresh(self, hit: tuple[str, float, float]) -> bool:
        return time.monotonic() - hit[1] < max(self.MIN_AGE, 10 * hit[2])

    def get(self, store: Store, days: int) -> str:
        with self._guard:
            lock = self._locks.setdefault(days, threading.Lock())
        hit = self._pages.get(days)
        if hit:
            # expired: one rebuild at a time beside the request, which gets the old page meanwhile
            if not self._fresh(hit) and lock.acquire(blocking=False):
                t = threading.Thread(target=self._rebuild, args=(store, days, lock), daemon=True,
                                     name=f"dashboard-{days}d")
                self.rebuilding[days] = t
                t.start()
            return hit[0]
        with lock:
            hit = self._pages.get(days)
            return hit[0] if hit else self._build(store, days)

    def _rebuild(self, store: Store, days: int, lock: threading.Lock) -> None:
        try:
            self._build(store, days)
        except Exception:  # noqa: BLE001 - the old page stays; the next expired request tries again
            log.exception("dashboard page for %d days: rebuild failed", days)
        finally:
            lock.release()

    def _build(self, store: Store, days: int) -> str:
        end = as_naive(None)
        s = time.monotonic()
        sections = _sections(store, days, end)
        took = time.monotonic() - s
        # the page reloads itself no sooner than it will be rebuilt
        html = _page(days, end, sections, took, reload_after=max(self.MIN_AGE, 10 * took))
        self._pages[days] = (html, time.monotonic(), took)
        return html


def render(store: Store, days: int = 30, now: datetime | None = None, reload_after: float = 60.0) -> str:
    """The whole page for the last ``days`` days up to ``now``."""
    end = as_naive(now)
    s = time.monotonic()
    sections = _sections(store, days, end)
    return _page(days, end, sections, time.monotonic() - s, reload_after)


def _sections(store: Store, days: int, end: datetime) -> str:
    with store.memory.heavy():  # the page reads history: DuckDB gets the whole budget (store/memory.py)
        return "".join(_section(store, days, end, wid, title, fn) for wid, title, fn in WIDGETS)


def _section(store: Store, days: int, end: datetime, wid: str, title: str,
             fn: Callable[[Store, int, datetime], str]) -> str:
    s = time.monotonic()
    try:
        body = fn(store, days, end)
    except Exception as e:  # noqa: BLE001 - one widget's failure must not take the page down
        log.exception("dashboard widget %s failed", wid)
        body = f'<p class="err">this widget failed: {escape(type(e).__name__)}: {escape(str(e)[:300])}</p>'
    return (f'<section id="{wid}"><h2>{escape(title)}</h2>{body}'
            f"<!-- {wid}: {time.monotonic() - s:.3f}s --></section>")


def _page(days: int, end: datetime, sections: str, took: float, reload_after: float) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{int(reload_after)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>golem-mcp dashboard</title><style>{_STYLE}</style></head><body>
<h1>golem-mcp</h1>
<p class="sub">Claude Code telemetry, last {days} days up to {end:%Y-%m-%d %H:%M} UTC ·
<form method="get">window <input name="days" type="number" min="1" max="{MAX_DAYS}" value="{days}"> days</form>
· built {end:%H:%M:%S} in {took:.2f}s · reloads every {_every(reload_after)}</p>
{sections}
</body></html>
"""
