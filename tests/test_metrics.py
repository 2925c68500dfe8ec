"""Where Prometheus and Grafana users look: ``GET /metrics`` prints the store's totals in the Prometheus
text format with labels of bounded cardinality; a real Prometheus scrapes it (with the daemon's token)
and its sums equal the store's; the alert rules load in Prometheus and pass promtool's unit tests; every
query of the Grafana dashboard runs on what Prometheus scraped; and golem-mcp's own alerts (a stage's
error-rate spike among them) reach a real loopback webhook in Alertmanager's format."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import FIXTURES, launch_daemon
from golem_mcp.analysis import budgets
from golem_mcp.analysis.metrics import MAX_VALUES, OTHER, store_metrics
from golem_mcp.ingestion.importer import Importer
from golem_mcp.ingestion.records import Batch
from golem_mcp.interfaces.metrics import MetricsPage, render
from golem_mcp.store import Store

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "golem-mcp.rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
KINDS = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
         "cache_creation": "cache_creation_tokens"}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line; fails on a line that is neither a sample nor a comment."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(v for n, labels, v in samples if n == name and all(labels.get(k) == x for k, x in match.items()))


def store_truth(store: Store) -> dict[str, float]:
    """The same totals from the views every other reader uses (not the metrics' own query)."""
    r = store.query("SELECT count(*) AS requests, sum(cost_usd) AS cost, sum(input_tokens) AS input_tokens, "
                    "sum(output_tokens) AS output_tokens, sum(cache_read_tokens) AS cache_read_tokens, "
                    "sum(cache_creation_tokens) AS cache_creation_tokens, count(duration_ms) AS timed, "
                    "sum(duration_ms) / 1000.0 AS duration_s FROM requests")[0]
    t = store.query("SELECT count(*) AS calls, count(*) FILTER (WHERE success = false) AS failures FROM tools")[0]
    r["api_errors"] = store.scalar("SELECT count(*) FROM errors")
    return {k: float(v or 0) for k, v in (r | t).items()}


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, float], set[str]]]:
    """A store of the real Claude Code fixtures (transcripts, OTLP, hooks), its truth, and its ids."""
    tmp = tmp_path_factory.mktemp("metrics")
    db = tmp / "golem.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLEM_HOME", str(tmp / "home"))
        with Store(db) as store:
            imp = Importer(store)
            for src in ([FIXTURES / "home"], [FIXTURES / "otlp"], [FIXTURES / "hooks.jsonl"]):
                assert imp.run(src).skipped == []
            truth = store_truth(store)
            ids = {r["id"] for r in store.query("SELECT session_id AS id FROM sessions UNION SELECT workflow_id "
                                                "FROM workflows UNION SELECT request_id FROM api_requests")}
    assert truth["requests"] > 100 and truth["cost"] > 1 and truth["failures"] > 0
    yield db, truth, ids


def test_exposition_totals_equal_the_store_and_carry_no_ids(fixture_db, tmp_path, monkeypatch):
    db, truth, ids = fixture_db
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(db, read_only=True) as store:
        text = render(store_metrics(store))
    assert text.endswith("\n")
    s = parse(text)
    assert total(s, "golem_api_requests_total") == truth["requests"]
    assert math.isclose(total(s, "golem_cost_usd_total"), truth["cost"], rel_tol=1e-9)
    for kind, col in KINDS.items():
        assert total(s, "golem_tokens_total", kind=kind) == truth[col], kind
    assert total(s, "golem_tool_calls_total") == truth["calls"]
    assert total(s, "golem_tool_failures_total") == truth["failures"]
    assert total(s, "golem_api_errors_total") == truth["api_errors"]
    assert total(s, "golem_api_request_duration_seconds_count") == truth["timed"] > 0
    assert math.isclose(total(s, "golem_api_request_duration_seconds_sum"), truth["duration_s"], rel_tol=1e-9)
    # each histogram's buckets are cumulative and end at its count
    for n, labels, v in s:
        if n == "golem_api_request_duration_seconds_count":
            key = {k: labels[k] for k in ("stage", "model")}
            buckets = [(float(lb["le"]), x) for m, lb, x in s if m.endswith("_bucket")
                       and {k: lb[k] for k in ("stage", "model")} == key]
            counts = [x for _, x in sorted(buckets)]
            assert counts == sorted(counts) and counts[-1] == v and buckets[-1][0] == math.inf
    # bounded labels only: never a workflow, session or request id, as a label name or a value
    names = {k for _, labels, _ in s for k in labels}
    assert names <= {"stage", "model", "experiment", "kind", "tool", "path", "scope", "level", "le", "version"}
    assert not {v for _, labels, _ in s for v in labels.values()} & ids
    assert {labels["stage"] for n, labels, _ in s if n == "golem_api_requests_total"} \
        == {"main", "analyst", "planner", "implementer", "reviewer"}
    promtool = shutil.which("promtool")
    if promtool:  # Prometheus' own linter of the text format (names, units, HELP, TYPE)
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_a_label_that_grows_is_capped_and_loses_no_count(tmp_path, monkeypatch):
    """Sixty MCP tools: the most used keep their name, the rest are summed as 'other'."""
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    b = Batch()
    seq = 0
    for i in range(60):
        for _ in range(60 - i):
            seq += 1
            b.add("tool_calls", {"tool_use_id": f"tu-{seq}", "session_id": "s1", "tool_name": f"mcp__srv__tool{i:02d}",
                                 "timestamp": datetime(2026, 11, 1) + timedelta(seconds=seq), "success": seq % 7 != 0,
                                 "stage": "implementer"})
    with Store(tmp_path / "g.duckdb") as store:
        store.write(b)
        s = parse(render(store_metrics(store)))
    tools = {labels["tool"] for n, labels, _ in s if n == "golem_tool_calls_total"}
    assert len(tools) == MAX_VALUES["tool"] and OTHER in tools and "mcp__srv__tool00" in tools
    assert "mcp__srv__tool59" not in tools
    assert total(s, "golem_tool_calls_total") == seq
    assert total(s, "golem_tool_failures_total") == seq // 7


def test_a_stale_reading_is_served_at_once_and_read_again_behind_it(tmp_path, monkeypatch):
    """A scrape never waits for a reading but the first: on a large store a reading can take longer
    than Prometheus' scrape timeout."""
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))

    def one_call(n: int) -> Batch:
        b = Batch()
        b.add("tool_calls", {"tool_use_id": f"tu-{n}", "session_id": "s1", "tool_name": "Read", "success": True,
                             "timestamp": datetime(2026, 11, 1, 12, n)})
        return b

    with Store(tmp_path / "g.duckdb") as store:
        store.write(one_call(1))
        page = MetricsPage(store, min_age=3600)
        first = page.get()
        assert total(parse(first), "golem_tool_calls_total") == 1
        store.write(one_call(2))
        assert page.get() is first  # young enough: not read again
        page.read_at -= 3600
        assert page.get() is first  # stale: served as it is, read again behind it
        deadline = time.monotonic() + 30
        while page.text is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert total(parse(page.get()), "golem_tool_calls_total") == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _grafana_to_promql(expr: str) -> str:
    """A dashboard query as Grafana sends it with every variable at 'All' over a short range."""
    for var, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "5m")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\w+", ".*", expr)


def test_prometheus_scrapes_the_daemon_with_its_token_and_its_sums_equal_the_store(fixture_db, tmp_path):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("the prometheus binary is missing: `apt-get install --no-install-recommends prometheus` "
                    "(scripts/test.sh does it where apt-get is available)")
    db, truth, _ = fixture_db
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(db, tmp_path / "golem.duckdb")
    d = launch_daemon(home, tmp_path / "golem.duckdb")
    prom: subprocess.Popen | None = None
    try:
        assert httpx.get(d.url + "/metrics", timeout=30).status_code == 401  # the token guards it
        host = d.url.removeprefix("http://")
        token_file = home / "token"  # the daemon's own, made at its first start: Prometheus reads it as it is
        assert token_file.read_text().strip()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "golem-mcp", "static_configs": [{"targets": [host]}],
                                "authorization": {"type": "Bearer", "credentials_file": str(token_file)}}]}))
        port = _free_port()
        api = f"http://127.0.0.1:{port}/api/v1"
        log = tmp_path / "prometheus.log"
        with open(log, "wb") as out:
            prom = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=out)

        def query(q: str) -> list[dict]:
            r = httpx.get(f"{api}/query", params={"query": q}, timeout=30)
            body = r.json()
            assert r.status_code == 200 and body["status"] == "success", (q, body)
            return body["data"]["result"]

        deadline = time.monotonic() + 120
        result: list[dict] = []
        while time.monotonic() < deadline:
            assert prom.poll() is None, log.read_text()[-3000:]
            try:  # refused while it starts, 503 until its storage is ready
                ready = httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=10).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and (result := query("sum(golem_cost_usd_total)")):
                break
            time.sleep(0.5)
        assert result, f"Prometheus never scraped golem-mcp:\n{log.read_text()[-3000:]}"
        assert query('up{job="golem-mcp"}')[0]["value"][1] == "1"

        def one(q: str) -> float:
            return float(query(q)[0]["value"][1])

        assert math.isclose(one("sum(golem_cost_usd_total)"), truth["cost"], rel_tol=1e-9)
        assert one("sum(golem_api_requests_total)") == truth["requests"]
        by_kind = {r["metric"]["kind"]: float(r["value"][1]) for r in query("sum by (kind) (golem_tokens_total)")}
        assert by_kind == {k: truth[col] for k, col in KINDS.items()}
        assert one("sum(golem_tool_calls_total)") == truth["calls"]
        assert one("sum(golem_tool_failures_total)") == truth["failures"]
        assert one("sum(golem_api_request_duration_seconds_count)") == truth["timed"]

        # the alert rules load and evaluate on what was scraped (the fixtures cross none of them)
        deadline = time.monotonic() + 60
        groups: list[dict] = []
        while time.monotonic() < deadline:
            groups = httpx.get(f"{api}/rules", timeout=30).json()["data"]["groups"]
            if groups and all(r["lastEvaluation"] > "0001-01-01T00:00:00Z" for g in groups for r in g["rules"]):
                break
            time.sleep(0.5)
        rules = [r for g in groups for r in g["rules"]]
        assert {r["name"] for r in rules} >= {"GolemWorkflowOverBudget", "GolemStageOverBudget",
                                              "GolemDailySpendOver150", "GolemStageErrorRateSpike"}
        assert all(r["health"] == "ok" for r in rules), rules
        assert not [r for r in rules if r["state"] == "firing"]

        # every query of the Grafana dashboard runs on these series, and the cost panels find data
        dash = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 15
        for e in exprs:
            query(_grafana_to_promql(e))
        # increase() needs two scrapes of a series in its window: until the second, it is empty
        cost_by_stage = _grafana_to_promql(next(e for e in exprs if e.startswith("sum by (stage) (increase(golem_cost")))
        deadline = time.monotonic() + 30
        while not (found := query(cost_by_stage)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found, query("count_over_time(golem_cost_usd_total[1m])")
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        d.stop()


def test_rules_pass_promtool_check_and_unit_tests():
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is missing: it comes with Debian's prometheus package")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", "golem-mcp.rules.test.yml"], cwd=MONITORING, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_dashboard_is_grafana_json_built_on_the_metrics_golem_mcp_serves(fixture_db, tmp_path, monkeypatch):
    db, _, _ = fixture_db
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    with Store(db, read_only=True) as store:
        text = render(store_metrics(store))
    # every family, with samples or not yet (the fixtures have no API errors, no alerts)
    served = {n for n, _, _ in parse(text)} | set(re.findall(r"^# TYPE (\S+)", text, re.M))
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    assert dash["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for p in dash["panels"]:
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
        for t in p["targets"]:
            used |= set(re.findall(r"\bgolem_[a-z_]+", t["expr"]))
    assert used <= served, used - served
    assert {"golem_cost_usd_total", "golem_tokens_total", "golem_tool_failures_total",
            "golem_api_request_duration_seconds_bucket", "golem_workflows_total"} <= used


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        _Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: object) -> None:  # keep test output quiet
        pass


def _tool_calls(b: Batch, stage: str, start: datetime, hours: int, per_hour: int, fail_every: int, tag: str) -> None:
    for h in range(hours):
        for i in range(per_hour):
            b.add("tool_calls", {"tool_use_id": f"{tag}-{h}-{i}", "session_id": f"s-{tag}", "tool_name": "Bash",
                                 "timestamp": start + timedelta(hours=h, minutes=i % 60), "stage": stage,
                                 "success": not (fail_every and i % fail_every == 0), "workflow_id": f"wf-{tag}"})


def test_stage_error_rate_spike_reaches_a_webhook_in_alertmanager_format(tmp_path, monkeypatch):
    """implementer: 2% of its calls fail for a week, then 25% today -> one alert. reviewer: 10% all
    along (its usual rate) -> none. analyst: half of a handful of calls today -> too few to say."""
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    now = datetime(2026, 11, 20, 12, 0)
    week_ago = now - timedelta(days=8)
    b = Batch()
    _tool_calls(b, "implementer", week_ago, 7 * 24, 50, 50, "impl-base")
    _tool_calls(b, "implementer", now - timedelta(hours=20), 20, 20, 4, "impl-now")
    _tool_calls(b, "reviewer", week_ago, 8 * 24 - 1, 20, 10, "rev")
    _tool_calls(b, "analyst", now - timedelta(hours=3), 3, 4, 2, "an")
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received.clear()
    try:
        with Store(tmp_path / "g.duckdb") as store:
            store.write(b)
            assert [a.key for a in budgets.stage_error_rate_alerts(store, now=now - timedelta(days=1))] == []
            monkeypatch.setenv(budgets.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/alertmanager")
            new = budgets.evaluate_alerts(store, now=now)
            spikes = [a for a in new if a.kind == "stage_error_rate"]
            assert [(a.key, a.value) for a in spikes] == [("implementer@2026-11-20", 0.25)]
            assert budgets.evaluate_alerts(store, now=now + timedelta(minutes=5)) == []  # once a day
            assert spikes[0].delivered and spikes[0].delivered["webhook"] == "ok 200"
            counted = parse(render(store_metrics(store)))
            assert total(counted, "golem_alerts_total", kind="stage_error_rate", scope="stage") == 1
    finally:
        server.shutdown()
    body = next(p for p in _Receiver.received if p["groupLabels"] == {"alertname": "GolemStageErrorRateSpike"})
    # Alertmanager's webhook payload, version 4, field for field
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                         "commonAnnotations", "externalURL", "alerts"}
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "golem-mcp"
    assert body["groupKey"] == '{}:{alertname="GolemStageErrorRateSpike"}'
    [alert] = body["alerts"]
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert alert["labels"]["stage"] == "implementer" and alert["labels"]["severity"] == "warning"
    assert body["commonLabels"] == alert["labels"] and all(isinstance(v, str) for v in alert["labels"].values())
    assert "25.0% of its 400 tool calls failed" in alert["annotations"]["summary"]
    assert datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).replace(tzinfo=None) == now
    assert alert["endsAt"] == "0001-01-01T00:00:00Z" and re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])


def test_webhook_url_from_the_environment_then_settings_json_then_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLEM_HOME", str(tmp_path))
    monkeypatch.delenv(budgets.WEBHOOK_ENV, raising=False)
    with Store(tmp_path / "a.duckdb") as store:
        budgets.set_webhook(store, "http://127.0.0.1:9/cli")
        assert budgets.webhook_url(store) == "http://127.0.0.1:9/cli"
    (tmp_path / "settings.json").write_text(json.dumps({"alert_webhook_url": "http://127.0.0.1:9/settings"}))
    with Store(tmp_path / "a.duckdb") as store:
        assert budgets.webhook_url(store) == "http://127.0.0.1:9/settings"
        monkeypatch.setenv(budgets.WEBHOOK_ENV, "http://127.0.0.1:9/env")
        assert budgets.webhook_url(store) == "http://127.0.0.1:9/env"
