"""The weekly Markdown report with small hand-written SVG charts of trends, bottlenecks, leaks,
loops, errors, budgets, quality and model advice."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from .. import formatting as fmt
from ..charts import time_chart
from ..errors import InvalidInput
from ..store.db import Store
from .anomalies import detect_anomalies
from .bottlenecks import find_bottlenecks
from .budgets import budget_alert_candidates
from .common import as_naive
from .error_patterns import query_error_patterns
from .experiments import compare_experiments
from .findings_store import list_findings
from .loops import find_loops
from .predict import compare_paths, model_advice
from .sequences import reusable_sequences
from .trends import query_quality, query_trends


def weekly_report(store: Store, out_dir: str | Path, now: datetime | None = None) -> Path:
    """Write ``weekly-YYYY-MM-DD.md`` and its charts into ``out_dir``; returns the Markdown file."""
    end = as_naive(now)
    out = Path(out_dir)
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    stamp = end.date().isoformat()
    tr = query_trends(store, "day", days=30, now=end)
    labels = [p.period for p in tr.points]

    empty = [p.requests == 0 for p in tr.points]

    def chart(name: str, values: list[float | None], title: str, line: list[float | None] | None = None,
              unit: str = "number", mark_empty: bool = True) -> str:
        (charts / f"{name}-{stamp}.svg").write_text(
            time_chart(values, labels, title, unit=unit, empty=empty if mark_empty else None, line=line))
        return f"![{title}](charts/{name}-{stamp}.svg)"

    md: list[str] = [f"# golem-mcp weekly report — week ending {stamp}", ""]
    cutoff = (end - timedelta(days=7)).date().isoformat()
    week = [p for p in tr.points if p.period >= cutoff]
    cost_w = sum(p.cost_usd for p in week)
    md += ["## Cost and usage", "",
           f"Last 7 days: **{fmt.usd(cost_w)}**, {fmt.count(sum(p.workflows for p in week))} workflow-days, "
           f"{fmt.count(sum(p.requests for p in week))} API requests. 30 days: {fmt.usd(sum(p.cost_usd for p in tr.points))}"
           + (f" ({fmt.change(tr.cost_change_vs_previous_window)} vs the 30 days before)." if tr.cost_change_vs_previous_window is not None else "."),
           "", chart("cost", [p.cost_usd for p in tr.points], "cost per day, $ (line: 7-day average)",
                     [p.cost_ma7 for p in tr.points], unit="usd"), "",
           chart("tokens", [float(p.tokens) for p in tr.points], "tokens per day", unit="tokens"), "",
           chart("errors", [p.error_rate for p in tr.points], "error rate per day", unit="rate"), "",
           chart("cache", [p.cache_hit_rate for p in tr.points], "cache hit rate per day", unit="rate"), ""]
    bn = find_bottlenecks(store, days=7, now=end)
    md += ["## Bottlenecks (p50 over 7 days vs baseline)", ""]
    md += [f"- {b.line()}" for b in bn.bottlenecks[:10]] or ["- none"]
    md += ["", f"({fmt.count(bn.samples_scanned)} samples, {fmt.count(bn.dimensions_evaluated)} dimensions)", ""]
    lat = [d for d in bn.durations if d["dimension"] in ("model", "stage")]
    md += ["## Latency (7 days)", "", "| by | key | samples | p50 | p95 | p99 |", "|---|---|---:|---:|---:|---:|"]
    md += [f"| {d['dimension']} | {d['key']} | {fmt.count(d['samples'])} | {fmt.duration_ms(d['p50_ms'])} | "
           f"{fmt.duration_ms(d['p95_ms'])} | {fmt.duration_ms(d['p99_ms'])} |" for d in lat] or ["| - | none | | | | |"]
    md += ["", "## Experiments (cost per workflow, all history)", ""]
    try:
        ex = compare_experiments(store, metric="cost")
        md += ["| arm | workflows | mean cost | median cost | vs baseline | verdict |", "|---|---:|---:|---:|---:|---|"]
        vs = {c["arm"]: c for c in ex["comparisons"]}
        md += [f"| {arm}{' (baseline)' if arm == ex['baseline'] else ''} | {fmt.count(a['n'])} | {fmt.usd(a['mean'])} | "
               f"{fmt.usd(a['median'])} | {fmt.change(vs[arm]['relative_change']) if arm in vs else '-'} | "
               f"{vs[arm]['verdict'] + ': ' + vs[arm]['reason'] if arm in vs else '-'} |" for arm, a in ex["arms"].items()]
    except InvalidInput as e:
        md += [f"- no comparison yet: {e}"]
    md += ["", "## Fast-track vs full path (workflows started in the last 7 days)", "",
           "| path | workflows | inferred | mean cost | median cost | mean tokens | median duration |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r.path} | {fmt.count(r.workflows)} | {fmt.count(r.inferred)} | {fmt.usd(r.avg_cost_usd)} | "
           f"{fmt.usd(r.median_cost_usd)} | {fmt.tokens(r.avg_tokens)} | {fmt.duration_s(r.median_duration_seconds)} |"
           for r in compare_paths(store, days=7, now=end)] or ["| none | | | | | | |"]
    md += [""]
    an = detect_anomalies(store, days=7, now=end)
    md += ["## Token leaks and anomalies", ""]
    md += [f"- {a.level} {a.workflow_id}{'/' + a.stage if a.stage else ''}: {a.metric} {fmt.metric(a.metric, a.value)} = "
           f"{fmt.ratio(a.ratio)} normal ({fmt.metric(a.metric, a.normal)}, {fmt.count(a.peers)} runs)" for a in an.anomalies[:10]] or ["- none"]
    if an.note:
        md += ["", f"_{an.note}_"]
    lp = find_loops(store, days=7, now=end)
    md += ["", "## Loops, retries, rework", ""]
    md += [f"- {x.workflow_id} {x.stage}: {x.tool_name} `{x.command}` x{fmt.count(x.count)} ({fmt.count(x.failures)} failed)" for x in lp.loops[:10]]
    md += [f"- retry: {r.workflow_id} {r.stage} request {r.request_id} attempt {r.attempt}" for r in lp.retries[:10]]
    md += [f"- rework: {r.workflow_id} ({r.reason})" for r in lp.rework[:10]]
    if not (lp.loops or lp.retries or lp.rework):
        md.append("- none")
    ep = query_error_patterns(store, days=7, now=end)
    md += ["", "## Error patterns", "", "| category | count | stages | suggested fix |", "|---|---:|---|---|"]
    md += [f"| {c.category} | {fmt.count(c.count)} | {', '.join(f'{k} {fmt.count(v)}' for k, v in c.stages.items())} | {c.fix} |"
           for c in ep.categories[:10]]
    md += ["", *[f"- burst on {b.day}: {fmt.count(b.errors)} errors vs {fmt.number(b.normal)} normal ({b.top_category})" for b in ep.bursts]]
    md += ["", "## Budgets", ""]
    md += [f"- {a.message}" for a in budget_alert_candidates(store, days=7, now=end)[:10]] or ["- all within budget"]
    q = query_quality(store, days=7, now=end)
    md += ["", "## Quality (review findings)", "",
           f"{q.reports} reports; by severity: {', '.join(f'{k} {v}' for k, v in q.by_severity.items()) or 'none'}; "
           f"rework rate: {fmt.rate(q.rework_rate)}", ""]
    md += [f"- {f.file}: {f.findings} findings ({f.critical} critical, {f.major} major)" for f in q.top_files]
    md += ["", "Cleanest workflows: " + (", ".join(f"{c.workflow_id} ({fmt.usd(c.total_cost or 0)})" for c in q.cleanest_workflows) or "-"),
           "", chart("findings", [float(p.findings_critical + p.findings_major) for p in tr.points],
                     "critical + major findings per day", unit="count", mark_empty=False), ""]
    ru = reusable_sequences(store, days=30, now=end, limit=5)
    md += ["## Reusable sequences (30 days)", "",
           f"Runs of tool calls (or of stages) in at least {ru.min_support} of the {fmt.count(ru.successful_workflows)} "
           f"successful workflows that go with success ({fmt.count(ru.failed_workflows)} did not go well):", ""]
    md += [f"- {r.stage or 'stages'}: `{r.sequence}` — in {fmt.count(r.successful_with)} of "
           f"{fmt.count(r.successful_total)} successful and {fmt.count(r.failed_with)} of {fmt.count(r.failed_total)} "
           f"failed; success {fmt.rate(r.with_success_rate)} with, {fmt.rate(r.without_success_rate)} without; median "
           f"cost {fmt.usd(r.median_cost_with_usd)} vs {fmt.usd(r.median_cost_without_usd)}; e.g. "
           f"{', '.join(r.examples)}" for r in ru.sequences] or [f"- none ({ru.note})"]
    md += ["", "## Model advice", ""]
    md += [f"- {a.stage}: {a.verdict}" + (f" — {a.suggested_model} instead of {a.current_model}, {fmt.percent(a.saving_pct, compact=True)} cheaper"
                                          if a.suggested_model else "") for a in model_advice(store, now=end)] or ["- not enough data"]
    md += ["", "## Open improvement items", ""]
    md += [f"- [{i.kind}] {i.title} — {i.recommendation}" for i in list_findings(store, limit=15)] or ["- none"]
    path = out / f"weekly-{stamp}.md"
    path.write_text("\n".join(md) + "\n")
    return path
