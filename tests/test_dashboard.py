"""The dashboard the daemon serves at ``/``: real HTTP on loopback, the real fixtures imported through the
daemon, the page parsed and its figures checked against what Claude Code served (truth.json)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from collections import defaultdict
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from conftest import FIXTURES, api
from golem_mcp.interfaces.dashboard import render
from golem_mcp.store.db import Store
from synthetic import Planted, generate

TRUTH = json.loads((FIXTURES / "truth.json").read_text())
DAYS = "365"  # the fixtures were recorded on 2026-11-21; a year's window keeps them in view


class Page(HTMLParser):
    """section id -> list of tables -> rows of cell texts; plus all text per section."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[list[list[str]]]] = defaultdict(list)
        self.text: dict[str, str] = defaultdict(str)
        self.section: str | None = None
        self.cell: list[str] | None = None
        self.row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs).get("id")
        elif tag == "table" and self.section:
            self.sections[self.section].append([])
        elif tag == "tr" and self.section:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.section:
            self.sections[self.section][-1].append(self.row)
            self.row = None
        elif tag == "section":
            self.section = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if self.section:
            self.text[self.section] += data


def money(cell: str) -> float:
    return float(cell.lstrip("$").replace(",", ""))


def count(cell: str) -> int:
    return int(cell.replace(",", ""))


@pytest.fixture
def loaded(daemon: str) -> str:
    # all three sources: transcripts, and OTLP and hooks, which name each session's workflow
    paths = [str(FIXTURES / "home"), str(FIXTURES / "otlp"), str(FIXTURES / "hooks.jsonl")]
    r = api.post(daemon + "/api/import", json={"paths": paths}, timeout=120)
    assert r.status_code == 200, r.text
    # an analysis run as of a few days after the fixtures, so findings and a run are there to show
    r = api.post(daemon + "/api/cli", json={"argv": ["analyze", "--now", "2026-11-25", "--days", "30"]}, timeout=120)
    assert r.status_code == 200 and r.json()["exit"] == 0, r.text
    return daemon


def test_dashboard_shows_the_stores_figures(loaded: str, tmp_path: Path) -> None:
    r = api.get(loaded + "/", params={"days": DAYS}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]   # no script can run
    page = Page()
    page.feed(r.text)
    assert set(page.text) == {"spend", "trends", "cost", "latency", "experiments", "paths", "errors", "sequences",
                              "findings", "alerts", "runs"}
    assert "this widget failed" not in r.text

    # cost per workflow: what Claude Code itself reported each run cost
    workflows, stages, models = page.sections["cost"][:3]
    assert workflows[0][:3] == ["workflow", "cost", "requests"]
    got = {row[0]: (money(row[1]), count(row[2])) for row in workflows[1:]}
    assert set(got) == set(TRUTH)
    for wf, t in TRUTH.items():
        # shown to 4 places: off by at most half a unit of the last (0.84515 may show as 0.8451)
        assert got[wf][0] == pytest.approx(t["total_cost_usd"], abs=5e-5 + 1e-9), wf
        assert got[wf][1] == sum(s["requests"] for s in t["stages"].values()), wf
    # tokens per stage, summed over the workflows: exactly what the API served (truth.json)
    by_stage = {row[0]: row for row in stages[1:]}
    for stage in {s for t in TRUTH.values() for s in t["stages"]}:
        served = [t["stages"][stage] for t in TRUTH.values() if stage in t["stages"]]
        row = by_stage[stage]
        assert count(row[2]) == sum(s["requests"] for s in served), stage
        assert (count(row[3]), count(row[4]), count(row[5]), count(row[6])) == (
            sum(s["input"] for s in served), sum(s["output"] for s in served),
            sum(s["cache_read"] for s in served), sum(s["cache_write"] for s in served)), stage
    # model efficiency: every request is on some model, and the costs add up to the same total
    assert sum(count(row[2]) for row in models[1:]) == sum(got[wf][1] for wf in got)
    assert sum(money(row[1]) for row in models[1:]) == pytest.approx(sum(c for c, _ in got.values()), abs=1e-3)

    # the analysis' loops (wf-006, wf-007) are among the open findings, and its run is listed
    findings = page.sections["findings"][0]
    loops = [row for row in findings[1:] if row[1] == "loop"]
    assert {wf for wf in ("wf-006", "wf-007") if any(wf in row[2] for row in loops)} == {"wf-006", "wf-007"}
    runs = page.sections["runs"][0]
    assert runs[1][1] == "succeeded" and runs[1][2] == "cli"
    # the spend cards and four charts
    assert "burn rate" in page.text["spend"] and r.text.count("<svg") == 4
    # a year's window on a few days of use: every day a slot, all but the recorded days shaded as empty
    trends_html = r.text[r.text.index('<section id="trends">'):r.text.index('<section id="cost">')]
    cost_chart = trends_html.split("<svg")[1]
    used = {day for day in re.findall(r"<title>(\d{4}-\d\d-\d\d): \$", cost_chart)}
    assert used and "2026-11-21" in " ".join(used)
    assert cost_chart.count('class="empty"') + cost_chart.count('class="bar"') in (int(DAYS), int(DAYS) + 1)
    assert cost_chart.count('class="empty"') >= int(DAYS) - 10
    # latency per model from the requests' durations, the paths the workflows took
    latency = page.sections["latency"][0]
    assert latency[0][:7] == ["by", "key", "what is timed", "samples", "p50", "p95", "p99"]
    models = [row for row in latency[1:] if row[0] == "model"]
    assert models and all(re.fullmatch(r"[\d.]+(ms|s|min)", cell) for row in models for cell in row[4:7])
    assert page.sections["paths"] and sum(count(row[1]) for row in page.sections["paths"][0][1:]) == len(TRUTH)
    arms = {row[0]: count(row[1]) for row in page.sections["experiments"][0][1:]}
    assert arms == {"baseline (baseline)": 4, "analyst-file-limit-v2": 4}
    assert not re.search(r"\de[+-]\d", r.text)   # no exponent notation anywhere
    if CHROMIUM:
        screenshot(r.text, tmp_path)


def test_dashboard_escapes_what_it_shows_and_refuses_bad_arguments(daemon: str) -> None:
    # a workflow id is whatever a launcher put in OTEL_RESOURCE_ATTRIBUTES: it must reach the page as text
    evil = "<script>alert(1)</script>"
    body = {"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "claude-code"}},
        {"key": "workflow_id", "value": {"stringValue": evil}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": str(time.time_ns()), "attributes": [
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "session.id", "value": {"stringValue": "sess-evil"}},
            {"key": "request_id", "value": {"stringValue": "req_evil"}},
            {"key": "model", "value": {"stringValue": "claude-sonnet-4-5"}},
            {"key": "input_tokens", "value": {"stringValue": "10"}},
            {"key": "output_tokens", "value": {"stringValue": "5"}},
            {"key": "cost_usd", "value": {"stringValue": "0.01"}}]}]}]}]}
    r = api.post(daemon + "/v1/logs", json=body, timeout=30)
    assert r.status_code == 200, r.text
    page = api.get(daemon + "/dashboard", timeout=60)
    assert page.status_code == 200
    assert evil not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    # a page is kept for a minute (a dashboard left open must not keep a big store's daemon busy):
    # new data shows at the next build, not on every reload
    for attr in body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"]:
        if attr["key"] == "request_id":
            attr["value"]["stringValue"] = "req_evil_2"
    assert api.post(daemon + "/v1/logs", json=body, timeout=30).status_code == 200
    again = api.get(daemon + "/", timeout=60)
    assert again.text == page.text and 'http-equiv="refresh" content="60"' in again.text
    for bad in ("0", "abc", "9999"):
        r = api.get(daemon + "/", params={"days": bad}, timeout=10)
        assert r.status_code == 400 and "days must be" in r.json()["error"], (bad, r.text)


def test_cli_dashboard_starts_the_daemon_and_prints_the_page(golem_home, tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "GOLEM_HOME": str(golem_home), "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "golem_mcp", "dashboard", "--no-open", "--days", "7", "--db", str(tmp_path / "d.duckdb"),
           "--create"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        url = out.stdout.strip()
        token = (golem_home / "token").read_text().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/?days=7&token={token}")
        # as a browser follows the link: the token is traded for a page cookie, and dropped from the address
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            page = browser.get(url)
            assert page.status_code == 200 and "last 7 days" in page.text
            assert [str(r.url) for r in page.history] == [url] and str(page.url) == url.split("&token=")[0]
            assert browser.get(url.split("?")[0] + "?days=30").status_code == 200   # the cookie opens the pages
            assert browser.get(url.split("?")[0] + "api/status").status_code == 401  # but nothing else
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)   # running: same daemon
        assert again.returncode == 0 and again.stdout.strip() == url
        bad = subprocess.run([*cmd[:4], "--days", "0"], capture_output=True, text=True, env=env, timeout=60)
        assert bad.returncode == 2 and "--days: must be between 1 and 365" in bad.stderr
    finally:
        subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env=env, capture_output=True, timeout=60)


# --- looked at as a person would: the page on a synthetic history, and a headless browser's screenshot ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no chromium binary on PATH (apt-get install chromium) to take the dashboard's screenshot"
IDLE = frozenset({3, 4, 10, 11, 12, 20})   # days of the synthetic history with no workflow


def screenshot(html: str, folder: Path) -> bytes:
    """The page as headless Chromium draws it, 1400 x 2000; checked to be a PNG that is not blank."""
    assert CHROMIUM
    page, png = folder / "dashboard.html", folder / "dashboard.png"
    page.write_text(html)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1400,2000", page.as_uri()], capture_output=True, timeout=120, check=True,
                   env={**os.environ, "HOME": str(folder)})
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2000)
    idat, pos = b"", 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    # a blank page is one colour: its rows are a handful of byte values; text, bars and tables are not
    assert len(set(zlib.decompress(idat))) > 100
    return data


@pytest.fixture
def synthetic_page(tmp_path: Path) -> tuple[str, Planted]:
    with Store(tmp_path / "synthetic.duckdb") as st:
        planted = generate(st, {"cheap_model", "error_burst"}, idle_days=IDLE, fast_track_every=3)
        return render(st, days=30, now=planted.now), planted


def test_dashboard_on_a_synthetic_history_shows_empty_days_latency_experiments_and_paths(
        synthetic_page: tuple[str, Planted]) -> None:
    html, planted = synthetic_page
    page = Page()
    page.feed(html)
    assert "this widget failed" not in html
    assert {"latency", "experiments", "paths"} <= set(page.text)
    # every calendar day of the window is a slot; the days without activity are shaded, named as such
    days = [(planted.now - timedelta(days=30 - i)).date() for i in range(30)]
    active = {(planted.start + timedelta(days=d)).date() for d in range(28) if d not in IDLE}
    trends_html = html[html.index('<section id="trends">'):html.index('<section id="cost">')]
    charts = trends_html.split("<svg")[1:]
    assert len(charts) == 4
    for svg in charts:
        assert svg.count('class="empty"') + svg.count('class="bar"') == 30
        for d in days:
            assert (f"{d}: no activity" in svg) == (d not in active), d
    assert "Feb 28" in charts[0] and "$0.00" in charts[0] and "no activity" in charts[0]
    # latency: p50/p95/p99 per model (one API request takes ~2 s in the history) and per stage
    latency = {(r[0], r[1]): r for r in page.sections["latency"][0][1:]}
    assert {k for d, k in latency if d == "model"} == {"claude-haiku-test", "claude-sonnet-test", "claude-opus-test"}
    assert {k for d, k in latency if d == "stage"} == {"analyst", "planner", "implementer", "reviewer"}
    assert latency[("model", "claude-opus-test")][4] in ("1.9s", "2.0s", "2.1s")
    # experiments: arm-b's reviewer runs on sonnet, so arm-a (opus) costs more per workflow
    arms = {r[0]: r for r in page.sections["experiments"][0][1:]}
    assert set(arms) == {"arm-b (baseline)", "arm-a"} or set(arms) == {"arm-a (baseline)", "arm-b"}
    a = arms.get("arm-a") or arms["arm-a (baseline)"]
    b = arms.get("arm-b") or arms["arm-b (baseline)"]
    assert money(a[2]) > money(b[2]) and count(a[1]) + count(b[1]) == len(planted.workflows) == 3 * (28 - len(IDLE))
    # paths: a fast-track workflow skips two stages, so it costs less than a full one
    paths = {r[0]: r for r in page.sections["paths"][0][1:]}
    assert set(paths) == {"fast-track", "full"}
    # the third workflow of each day is fast-track; all started inside the 30-day window
    assert (count(paths["fast-track"][1]), count(paths["full"][1])) == (28 - len(IDLE), 2 * (28 - len(IDLE)))
    assert money(paths["fast-track"][3]) < money(paths["full"][3])
    assert not re.search(r"\de[+-]\d", html)   # no exponent notation anywhere


@pytest.mark.skipif(not CHROMIUM, reason=NO_CHROMIUM)
def test_dashboard_screenshot_of_a_synthetic_history(synthetic_page: tuple[str, Planted], tmp_path: Path) -> None:
    screenshot(synthetic_page[0], tmp_path)


def test_an_expired_page_is_answered_at_once_while_it_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    """The daemon's page cache: the first page of a window is built while its request waits; once it
    has expired, the old page is answered at once while one rebuild runs beside it, and the next
    request gets the rebuilt page with what was written meanwhile."""
    from golem_mcp.interfaces.dashboard import PageCache
    from golem_mcp.store.batch import Batch

    def requests_shown(html: str) -> str:
        return re.search(r"(\d[\d,]*) API requests", html).group(1)  # type: ignore[union-attr]

    with Store(tmp_path / "s.duckdb") as store:
        p = generate(store, days=2)
        monkeypatch.setenv("GOLEM_CLOCK", p.now.isoformat())  # the page's window ends at the history's end
        cache = PageCache()
        first = cache.get(store, 30)
        assert cache.get(store, 30) is first and not cache.rebuilding   # fresh: the same page
        b = Batch()
        b.add("api_requests", {"request_id": "late-1", "session_id": "sess-late", "model": "claude-sonnet-4-5",
                               "timestamp": store.scalar('SELECT max("timestamp") FROM api_requests'),
                               "input_tokens": 10, "output_tokens": 1})
        store.write(b)
        html, built, took = cache._pages[30]
        cache._pages[30] = (html, built - 10 * max(cache.MIN_AGE, 10 * took), took)   # expired
        assert cache.get(store, 30) is first                               # answered at once, old
        cache.rebuilding[30].join(timeout=120)
        again = cache.get(store, 30)
        assert again is not first and int(requests_shown(again).replace(",", "")) == \
            int(requests_shown(first).replace(",", "")) + 1
