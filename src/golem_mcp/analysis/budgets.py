"""Budgets and alerts: seed 000's defaults (workflow > $5, stage > $2, day > $150), seed 002's 50/80/95/100 %
levels, error spikes (a day's errors, and a stage's tool error rate), quality regressions; delivered to a log
file, the session-start display and an optional webhook, which receives what Alertmanager's webhook receiver
sends (payload version 4), so whatever receives Alertmanager's notifications receives ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import pyarrow as pa
from pydantic import BaseModel, Field

from .. import formatting as fmt
from ..config import data_dir
from ..errors import InvalidInput
from ..store.db import Store
from . import known
from .common import as_naive, dumps, execute, utcnow, window

DEFAULT_BUDGETS: dict[str, float] = {"workflow": 5.0, "stage": 2.0, "day": 150.0}
DEFAULT_LEVELS = (50, 80, 95, 100)
SCOPES = ("workflow", "stage", "day", "session")
WEBHOOK_ENV = "GOLEM_ALERT_WEBHOOK"
WEBHOOK_SETTING = "alert_webhook_url"  # the same in settings.json (the env var wins, then settings.json)
# a stage's tool error rate spikes when, over the last 24 hours, it is above seed 000's target ("< 5 % per
# stage") and at least twice the stage's own rate of the 7 days before, over enough calls to mean something
STAGE_ERROR_RATE = 0.05
STAGE_ERROR_FACTOR = 2.0
STAGE_ERROR_MIN_CALLS = 20
_STAGE_ERRORS = """
SELECT stage, count(*) FILTER (WHERE "timestamp" >= ?) AS calls,
       count(*) FILTER (WHERE "timestamp" >= ? AND success = false) AS failures,
       count(*) FILTER (WHERE "timestamp" < ?) AS base_calls,
       count(*) FILTER (WHERE "timestamp" < ? AND success = false) AS base_failures
FROM tools WHERE "timestamp" >= ? AND "timestamp" < ? GROUP BY stage"""

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
    kind: str = Field(description="budget, error_spike, stage_error_rate or quality_regression")
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
    from .snapshot import summaries

    start, end = window(now, days)
    budgets = list_budgets(store)
    if not budgets:
        return []
    with summaries(store) as reader:  # per workflow and stage: the cache's rows, not the views' sums
        spend = {scope: reader.query(f"SELECT * FROM ({_SPEND[scope]}) WHERE spend >= ?",
                                     [start, end, _floor(budgets, scope) * (1 - 1e-9)])
                 for scope in {b.scope for b in budgets}}
    out = []
    for scope, rows in spend.items():
        for r in rows:
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


def _floor(budgets: list[Budget], scope: str) -> float:
    """Spend below every budget's lowest level for this scope can raise nothing: left in SQL."""
    return min(b.limit_usd * min(b.levels) / 100.0 for b in budgets if b.scope == scope)


def stage_error_rate_alerts(store: Store, now: datetime | None = None) -> list[Alert]:
    """Stages whose tool error rate over the last 24 hours spiked (see STAGE_ERROR_RATE); one alert per
    stage and day."""
    end = as_naive(now)
    recent, base = end - timedelta(days=1), end - timedelta(days=8)
    out = []
    for r in store.query(_STAGE_ERRORS, [recent] * 4 + [base, end]):
        calls, fails = r["calls"] or 0, r["failures"] or 0
        if calls < STAGE_ERROR_MIN_CALLS or r["stage"] is None:
            continue
        rate = fails / calls
        base_rate = (r["base_failures"] or 0) / r["base_calls"] if r["base_calls"] else 0.0
        if rate > STAGE_ERROR_RATE and rate >= STAGE_ERROR_FACTOR * base_rate:
            before = f"{100 * base_rate:.1f}% the week before" if r["base_calls"] else "no calls the week before"
            out.append(Alert(kind="stage_error_rate", scope="stage", key=f"{r['stage']}@{end.date().isoformat()}",
                             value=round(rate, 4), limit_value=round(max(STAGE_ERROR_RATE, STAGE_ERROR_FACTOR * base_rate), 4),
                             message=f"stage {r['stage']}: {100 * rate:.1f}% of its {calls} tool calls failed in the "
                                     f"last 24 h (target < {100 * STAGE_ERROR_RATE:g}%; {before})"))
    return out


def _other_alerts(store: Store, now: datetime | None) -> list[Alert]:
    from .common import window
    from .error_patterns import error_bursts

    out = stage_error_rate_alerts(store, now)
    end = as_naive(now)
    for b in error_bursts(store, *window(end, 7))[1]:
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
    """$GOLEM_ALERT_WEBHOOK, else ``alert_webhook_url`` in settings.json, else ``golem-mcp budget --webhook``'s."""
    configured = store.settings.extra.get(WEBHOOK_SETTING)
    return (os.environ.get(WEBHOOK_ENV) or (configured if isinstance(configured, str) and configured else None)
            or store.scalar("SELECT value FROM settings WHERE key = 'alert_webhook_url'"))


def set_webhook(store: Store, url: str | None) -> None:
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInput("the webhook must be an http:// or https:// URL")
    if url:
        execute(store, "INSERT OR REPLACE INTO settings VALUES ('alert_webhook_url', ?)", [url])
    else:
        execute(store, "DELETE FROM settings WHERE key = 'alert_webhook_url'")


def alert_log_path() -> str:
    return str(data_dir() / "alerts.log")


ALERT_NAMES = {"budget": "GolemBudget", "error_spike": "GolemErrorSpike",
               "stage_error_rate": "GolemStageErrorRateSpike", "quality_regression": "GolemQualityRegression"}


def _rfc3339(ts: datetime | None) -> str:
    return (ts or utcnow()).replace(microsecond=0).isoformat() + "Z"  # the store's times are naive UTC


def alert_labels(a: Alert) -> dict[str, str]:
    """An alert's Alertmanager labels: its name and what it is about (all strings, as Alertmanager wants)."""
    labels = {"alertname": ALERT_NAMES.get(a.kind, "Golem" + a.kind.title().replace("_", "")),
              "severity": "critical" if a.kind == "budget" and (a.level or 0) >= 100 else "warning",
              "kind": a.kind, "scope": a.scope, "key": a.key, "source": "golem-mcp"}
    if a.level is not None:
        labels["level"] = str(a.level)
    if a.kind == "budget" and a.scope == "workflow":
        labels["workflow_id"] = a.key
    elif a.kind == "budget" and a.scope == "stage":
        labels["workflow_id"], _, labels["stage"] = a.key.rpartition("/")
    elif a.kind == "stage_error_rate":
        labels["stage"] = a.key.rpartition("@")[0]
    return labels


def alertmanager_payloads(alerts: list[Alert], receiver: str = "golem-mcp", external_url: str = "") -> list[dict]:
    """The bodies Alertmanager's webhook receiver would POST for ``alerts`` (payload version 4): one per
    alert name, as with Alertmanager's usual ``group_by: [alertname]``. Every alert is firing (golem-mcp
    raises each crossing once and does not track resolution), so ``endsAt`` is Alertmanager's zero time."""
    groups: dict[str, list[dict]] = {}
    for a in alerts:
        labels = alert_labels(a)
        annotations = {"summary": a.message, "value": f"{a.value:g}"}
        if a.limit_value is not None:
            annotations["limit"] = f"{a.limit_value:g}"
        fingerprint = hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
        groups.setdefault(labels["alertname"], []).append(
            {"status": "firing", "labels": labels, "annotations": annotations, "startsAt": _rfc3339(a.created_at),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": external_url, "fingerprint": fingerprint})
    out = []
    for name, items in groups.items():
        common_labels = {k: v for k, v in items[0]["labels"].items() if all(i["labels"].get(k) == v for i in items)}
        common_ann = {k: v for k, v in items[0]["annotations"].items()
                      if all(i["annotations"].get(k) == v for i in items)}
        out.append({"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
                    "status": "firing", "receiver": receiver, "groupLabels": {"alertname": name},
                    "commonLabels": common_labels, "commonAnnotations": common_ann, "externalURL": external_url,
                    "alerts": items})
    return out


def deliver(store: Store, alerts: list[Alert], timeout: float = 3.0) -> None:
    """Append to the alert log and POST to the webhook (when set) in Alertmanager's webhook format; never
    raises on delivery failure."""
    if not alerts:
        return
    path = alert_log_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for a in alerts:
            f.write(dumps(a.model_dump(exclude={"delivered"})) + "\n")
    url = webhook_url(store)
    status: dict[str, str] = {}  # alert name -> how its group's POST went
    if url:
        for payload in alertmanager_payloads(alerts):
            req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            name = payload["groupLabels"]["alertname"]
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own URL
                    status[name] = f"ok {resp.status}"
            except (urllib.error.URLError, OSError, ValueError) as e:
                # an unreachable webhook must not lose the alert: it stays in the log and the table
                status[name] = f"error: {e}"
    for a in alerts:
        a.delivered = {"log": path, "webhook": status.get(alert_labels(a)["alertname"])}


def evaluate_alerts(store: Store, now: datetime | None = None, days: float = 7, send: bool = True) -> list[Alert]:
    """Store and deliver alerts not raised before (one per kind/scope/key/level, ever). Returns the new ones."""
    from .snapshot import summaries

    with summaries(store) as reader:  # workflows and stages: the cache's rows, not the views' sums
        candidates = budget_alert_candidates(reader, days, now) + _other_alerts(reader, now)
    created = as_naive(now)
    if not candidates:
        return []
    firsts: dict[str, Alert] = {}
    for a in candidates:  # a key twice among the candidates is raised once
        firsts.setdefault(_alert_key(a), a)
    keys, candidates = list(firsts), list(firsts.values())
    # one statement for all candidates (one each took 400 s on a store with 250k workflows over budget)
    table = pa.table({
        "alert_key": pa.array(keys, pa.string()), "kind": pa.array([a.kind for a in candidates], pa.string()),
        "scope": pa.array([a.scope for a in candidates], pa.string()),
        "key": pa.array([a.key for a in candidates], pa.string()),
        "level": pa.array([a.level for a in candidates], pa.int64()),
        "value": pa.array([a.value for a in candidates], pa.float64()),
        "limit_value": pa.array([a.limit_value for a in candidates], pa.float64()),
        "message": pa.array([a.message for a in candidates], pa.string())})
    with store._lock:  # the Store's single write lock, as analysis.common.execute takes it
        store.con.register("_golem_alert_candidates", table)
        try:
            rows = store.con.execute(
                "INSERT INTO alerts (alert_key, kind, scope, key, level, value, limit_value, message, created_at) "
                "SELECT alert_key, kind, scope, key, level, value, limit_value, message, ? "
                "FROM _golem_alert_candidates ON CONFLICT (alert_key) DO NOTHING RETURNING alert_key",
                [created]).fetchall()
        finally:
            store.con.unregister("_golem_alert_candidates")
    inserted = {r[0] for r in rows}
    new: list[Alert] = []
    for k, a in zip(keys, candidates, strict=True):
        if k in inserted:
            a.created_at = created
            new.append(a)
    if send and new:
        deliver(store, new)
        delivered = pa.table({"alert_key": pa.array([_alert_key(a) for a in new], pa.string()),
                              "delivered": pa.array([dumps(a.delivered) for a in new], pa.string())})
        with store._lock:
            store.con.register("_golem_alert_delivered", delivered)
            try:
                store.con.execute("UPDATE alerts SET delivered = d.delivered FROM _golem_alert_delivered d "
                                  "WHERE alerts.alert_key = d.alert_key")
            finally:
                store.con.unregister("_golem_alert_delivered")
    return new


def _alert_key(a: Alert) -> str:
    """An alert is raised once ever per kind, scope, key and level."""
    return f"{a.kind}|{a.scope}|{a.key}|{a.level or ''}"


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
    """What is spent against the budgets, the burn rate and a projection: check before an expensive step.
    A workflow or stage the store has never seen is an error naming the closest (:mod:`.known`), not
    "$0.00, within budget"."""
    known.require_all(store, workflow_id=workflow_id, stage=stage)
    end = as_naive(now)
    day_start = end.replace(hour=0, minute=0, second=0, microsecond=0)
    budgets = list_budgets(store)
    # one statement (each is ~1 ms of a call that agents make before every step):
    # today: its rollup groups, less what lies after ``end`` (nothing, unless ``now`` is in the past);
    # the last three hours' requests; the workflow's rollup groups for its line and its stage's
    row = store.query(
        "SELECT COALESCE((SELECT sum(cost_usd) FROM rollup_requests WHERE day = $day), 0) "
        '- COALESCE((SELECT sum(cost_usd) FROM requests WHERE "timestamp" >= $end AND "timestamp" < $next), 0) AS today, '
        '(SELECT COALESCE(sum(cost_usd), 0) FROM requests WHERE "timestamp" >= $since AND "timestamp" < $end) AS last3, '
        "wf.* FROM (SELECT COALESCE(sum(cost_usd), 0) AS wf, COALESCE(sum(cost_usd) FILTER (WHERE stage = $stage), 0) AS st "
        "FROM rollup_requests WHERE $wf IS NOT NULL AND workflow_id = $wf) wf",
        {"day": day_start.date(), "end": end, "next": day_start + timedelta(days=1),
         "since": end - timedelta(hours=3), "stage": stage, "wf": workflow_id})[0]
    spent_today = row["today"] or 0.0
    burn = (row["last3"] or 0.0) / 3.0
    hours_left = (day_start + timedelta(days=1) - end).total_seconds() / 3600
    today = _line(budgets, "day", day_start.date().isoformat(), spent_today)
    wf = st = None
    if workflow_id:
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
