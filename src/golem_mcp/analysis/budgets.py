"""Budgets and alerts: seed 000's defaults (workflow > $5, stage > $2, day > $150), seed 002's 50/80/95/100 %
levels, error-rate spikes and quality regressions; delivered to a log file, the session-start display and
an optional webhook (JSON POST).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from .. import formatting as fmt
from ..config import data_dir
from ..errors import InvalidInput
from ..store.db import Store
from .common import as_naive, dumps, execute, window

DEFAULT_BUDGETS: dict[str, float] = {"workflow": 5.0, "stage": 2.0, "day": 150.0}
DEFAULT_LEVELS = (50, 80, 95, 100)
SCOPES = ("workflow", "stage", "day", "session")
WEBHOOK_ENV = "GOLEM_ALERT_WEBHOOK"

# scope -> (key, spend, first seen) rows for the evaluation window
_SPEND = {
    "workflow": "SELECT workflow_id AS key, total_cost AS spend FROM workflow_summary WHERE ended_at >= ? AND started_at < ?",
    "stage": "SELECT workflow_id || '/' || stage AS key, total_cost AS spend FROM workflow_stage_summary "
             "WHERE ended_at >= ? AND started_at < ?",
    "day": "SELECT CAST(CAST(\"timestamp\" AS DATE) AS VARCHAR) AS key, sum(cost_usd) AS spend FROM requests "
           "WHERE \"timestamp\" >= ? AND \"timestamp\" < ? GROUP BY 1",
    "session": "SELECT session_id AS key, sum(cost_usd) AS spend FROM requests "
               "WHERE \"timestamp\" >= ? AND \"timestamp\" < ? GROUP BY 1",
}


class Budget(BaseModel):
    scope: str = Field(description="workflow, stage, day or session")
    key: str = Field(description="'*' for every workflow/stage/day, or one id")
    limit_usd: float
    levels: list[int]
    source: str = Field(description="'configured' or 'default'")


class Alert(BaseModel):
    kind: str = Field(description="budget, error_spike or quality_regression")
    scope: str
    key: str
    level: int | None = Field(default=None, description="percent of the budget crossed")
    value: float
    limit_value: float | None = None
    message: str
    created_at: datetime | None = None
    delivered: dict | None = None


def list_budgets(store: Store) -> list[Budget]:
    rows = store.query("SELECT scope, key, limit_usd, levels FROM budgets WHERE active ORDER BY scope, key")
    out = [Budget(scope=r["scope"], key=r["key"], limit_usd=r["limit_usd"],
                  levels=[int(x) for x in (r["levels"] or "").split(",") if x.strip()] or list(DEFAULT_LEVELS),
                  source="configured") for r in rows]
    have = {(b.scope, b.key) for b in out}
    for scope, limit in DEFAULT_BUDGETS.items():
        if (scope, "*") not in have:
            out.append(Budget(scope=scope, key="*", limit_usd=limit, levels=list(DEFAULT_LEVELS), source="default"))
    return out


def set_budget(store: Store, scope: str, limit_usd: float, key: str = "*",
               levels: list[int] | None = None, active: bool = True) -> Budget:
    """Configure a budget; ``key='*'`` applies to every workflow/stage/day/session."""
    if scope not in SCOPES:
        raise InvalidInput(f"unknown budget scope {scope!r}; choose from {', '.join(SCOPES)}")
    if limit_usd <= 0:
        raise InvalidInput("limit_usd must be positive")
    lv = sorted(set(levels or DEFAULT_LEVELS))
    if any(not 0 < x <= 1000 for x in lv):
        raise InvalidInput("levels are percentages between 1 and 1000")
    execute(store, "INSERT OR REPLACE INTO budgets (scope, key, limit_usd, levels, active, updated_at) "
            "VALUES (?, ?, ?, ?, ?, current_timestamp)", [scope, key, limit_usd, ",".join(map(str, lv)), active])
    return Budget(scope=scope, key=key, limit_usd=limit_usd, levels=lv, source="configured")


def _limit_for(budgets: list[Budget], scope: str, key: str) -> Budget | None:
    exact = [b for b in budgets if b.scope == scope and b.key == key]
    if exact:
        return exact[0]
    star = [b for b in budgets if b.scope == scope and b.key == "*"]
    return star[0] if star else None


def budget_alert_candidates(store: Store, days: float = 7, now: datetime | None = None) -> list[Alert]:
    """Every budget level crossed by spend in the window (highest level per key), stored or not."""
    start, end = window(now, days)
    budgets = list_budgets(store)
    out = []
    for scope in {b.scope for b in budgets}:
        # spend below every budget's lowest level for this scope can raise nothing: leave it in SQL
        floor = min(b.limit_usd * min(b.levels) / 100.0 for b in budgets if b.scope == scope)
        for r in store.query(f"SELECT * FROM ({_SPEND[scope]}) WHERE spend >= ?", [start, end, floor * (1 - 1e-9)]):
            b = _limit_for(budgets, scope, r["key"])
            if b is None or r["spend"] is None or r["key"] is None:
                continue
            pct = 100.0 * r["spend"] / b.limit_usd
            crossed = [lv for lv in b.levels if pct >= lv]
            if crossed:
                lv = max(crossed)
                verb = "exceeded" if lv >= 100 else "reached"
                out.append(Alert(kind="budget", scope=scope, key=r["key"], level=lv, value=round(r["spend"], 4),
                                 limit_value=b.limit_usd,
                                 message=f"{scope} {r['key']} {verb} {lv}% of its {fmt.usd(b.limit_usd)} budget "
                                         f"({fmt.usd(r['spend'])})"))
    return sorted(out, key=lambda a: (-(a.level or 0), -a.value))


def _other_alerts(store: Store, now: datetime | None) -> list[Alert]:
    from .error_patterns import query_error_patterns

    out = []
    end = as_naive(now)
    for b in query_error_patterns(store, days=7, now=end).bursts:
        out.append(Alert(kind="error_spike", scope="day", key=b.day, value=b.errors, limit_value=b.normal,
                         message=f"error spike on {b.day}: {fmt.count(b.errors)} errors vs {fmt.number(b.normal)} on a normal day "
                                 f"(mostly {b.top_category})"))
    q = store.query("""
        SELECT avg(critical_issues + major_issues) FILTER (WHERE started_at >= ?) AS cur,
               avg(critical_issues + major_issues) FILTER (WHERE started_at < ?) AS prev,
               count(*) FILTER (WHERE started_at >= ?) AS n_cur, count(*) FILTER (WHERE started_at < ?) AS n_prev
        FROM workflow_summary WHERE started_at >= ? AND started_at < ?""",
        [end - timedelta(days=7)] * 4 + [end - timedelta(days=14), end])[0]
    if q["n_cur"] >= 3 and q["n_prev"] >= 3 and q["cur"] is not None and q["prev"] is not None \
            and q["cur"] >= max(q["prev"] * 1.5, q["prev"] + 1):
        week = (end - timedelta(days=7)).date().isoformat()
        out.append(Alert(kind="quality_regression", scope="week", key=week, value=round(q["cur"], 2),
                         limit_value=round(q["prev"], 2),
                         message=f"quality regression: {q['cur']:.1f} critical+major findings per workflow this week "
                                 f"vs {q['prev']:.1f} the week before"))
    return out


def webhook_url(store: Store) -> str | None:
    return os.environ.get(WEBHOOK_ENV) or store.scalar("SELECT value FROM settings WHERE key = 'alert_webhook_url'")


def set_webhook(store: Store, url: str | None) -> None:
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInput("the webhook must be an http:// or https:// URL")
    if url:
        execute(store, "INSERT OR REPLACE INTO settings VALUES ('alert_webhook_url', ?)", [url])
    else:
        execute(store, "DELETE FROM settings WHERE key = 'alert_webhook_url'")


def alert_log_path() -> str:
    return str(data_dir() / "alerts.log")


def deliver(store: Store, alerts: list[Alert], timeout: float = 3.0) -> None:
    """Append to the alert log and POST to the webhook (when set); never raises on delivery failure."""
    if not alerts:
        return
    path = alert_log_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for a in alerts:
            f.write(dumps(a.model_dump(exclude={"delivered"})) + "\n")
    url = webhook_url(store)
    status = None
    if url:
        body = json.dumps({"source": "golem-mcp", "alerts": [json.loads(dumps(a.model_dump(exclude={"delivered"})))
                                                             for a in alerts]}).encode()
        req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own URL
                status = f"ok {resp.status}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            # an unreachable webhook must not lose the alert: it stays in the log and the table
            status = f"error: {e}"
    for a in alerts:
        a.delivered = {"log": path, "webhook": status}


def evaluate_alerts(store: Store, now: datetime | None = None, days: float = 7, send: bool = True) -> list[Alert]:
    """Store and deliver alerts not raised before (one per kind/scope/key/level, ever). Returns the new ones."""
    candidates = budget_alert_candidates(store, days, now) + _other_alerts(store, now)
    created = as_naive(now)
    new: list[Alert] = []
    for a in candidates:
        key = f"{a.kind}|{a.scope}|{a.key}|{a.level or ''}"
        rows = execute(store, "INSERT INTO alerts (alert_key, kind, scope, key, level, value, limit_value, message, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_key) DO NOTHING RETURNING alert_id",
                       [key, a.kind, a.scope, a.key, a.level, a.value, a.limit_value, a.message, created])
        if rows:
            a.created_at = created
            new.append(a)
    if send and new:
        deliver(store, new)
        for a in new:
            key = f"{a.kind}|{a.scope}|{a.key}|{a.level or ''}"
            execute(store, "UPDATE alerts SET delivered = ? WHERE alert_key = ?", [dumps(a.delivered), key])
    return new


def recent_alerts(store: Store, limit: int = 10) -> list[Alert]:
    rows = store.query("SELECT kind, scope, key, level, value, limit_value, message, created_at, "
                       "CAST(delivered AS VARCHAR) AS delivered FROM alerts ORDER BY created_at DESC, alert_id DESC LIMIT ?",
                       [limit])
    return [Alert(**{**r, "delivered": json.loads(r["delivered"]) if r["delivered"] else None}) for r in rows]


class SpendLine(BaseModel):
    scope: str
    key: str
    spent_usd: float
    limit_usd: float
    percent: float
    level_reached: int | None = Field(default=None, description="highest alert level crossed (50/80/95/100)")


class BudgetStatus(BaseModel):
    today: SpendLine
    burn_rate_usd_per_hour: float = Field(description="spend over the last 3 hours / 3")
    projected_today_usd: float = Field(description="today's spend + burn rate x hours left today")
    workflow: SpendLine | None = None
    stage: SpendLine | None = None
    advice: str


def _line(budgets: list[Budget], scope: str, key: str, spent: float) -> SpendLine:
    b = _limit_for(budgets, scope, key)
    limit = b.limit_usd if b else DEFAULT_BUDGETS.get(scope, 0.0)
    pct = 100.0 * spent / limit if limit else 0.0
    crossed = [lv for lv in (b.levels if b else DEFAULT_LEVELS) if pct >= lv]
    return SpendLine(scope=scope, key=key, spent_usd=round(spent, 4), limit_usd=limit, percent=round(pct, 1),
                     level_reached=max(crossed) if crossed else None)


def budget_status(store: Store, workflow_id: str | None = None, stage: str | None = None,
                  now: datetime | None = None) -> BudgetStatus:
    """What is spent against the budgets, the burn rate and a projection: check before an expensive step."""
    end = as_naive(now)
    day_start = end.replace(hour=0, minute=0, second=0, microsecond=0)
    budgets = list_budgets(store)
    spent_today = store.scalar('SELECT COALESCE(sum(cost_usd), 0) FROM requests WHERE "timestamp" >= ? AND "timestamp" < ?',
                               [day_start, end]) or 0.0
    last3 = store.scalar('SELECT COALESCE(sum(cost_usd), 0) FROM requests WHERE "timestamp" >= ? AND "timestamp" < ?',
                         [end - timedelta(hours=3), end]) or 0.0
    burn = last3 / 3.0
    hours_left = (day_start + timedelta(days=1) - end).total_seconds() / 3600
    today = _line(budgets, "day", day_start.date().isoformat(), spent_today)
    wf = st = None
    if workflow_id:
        # one read of the workflow's requests for both lines (resolving the view is the cost)
        row = store.query("SELECT COALESCE(sum(cost_usd), 0) AS wf, COALESCE(sum(cost_usd) FILTER (WHERE stage = ?), 0) "
                          "AS st FROM requests WHERE workflow_id = ?", [stage, workflow_id])[0]
        wf = _line(budgets, "workflow", workflow_id, row["wf"] or 0.0)
        if stage:
            st = _line(budgets, "stage", f"{workflow_id}/{stage}", row["st"] or 0.0)
    worst = max([x for x in (today, wf, st) if x], key=lambda x: x.percent)
    if worst.percent >= 100:
        advice = f"{worst.scope} budget exceeded ({worst.percent:.0f}%): stop or ask the user before more expensive steps"
    elif worst.percent >= 80:
        advice = f"{worst.scope} budget at {worst.percent:.0f}%: use a cheaper model (haiku) and fewer tool calls"
    elif worst.percent >= 50:
        advice = f"{worst.scope} budget at {worst.percent:.0f}%: fine, keep steps focused"
    else:
        advice = "within budget"
    return BudgetStatus(today=today, burn_rate_usd_per_hour=round(burn, 4),
                        projected_today_usd=round(spent_today + burn * hours_left, 4), workflow=wf, stage=st,
                        advice=advice)
