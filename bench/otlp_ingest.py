"""OTLP ingest throughput: log records per second the daemon sustains, each batch committed before
its 200 reply, for OTLP/JSON and OTLP/protobuf side by side.

Batches are built from the fixtures' real ``api_request`` and ``tool_result`` records with fresh
session, request and tool-use ids, so every record is new to the store. Prints figures, asserts
nothing. Run: ``python bench/otlp_ingest.py [--seconds 15] [--batch 500] [--clients 4] [--baseline SRC]
[--workers N]``;
with ``--baseline`` (another checkout's ``src``, e.g. a worktree of an older commit) the same series
runs against a daemon from that code too, so before and after are measured side by side in one run.

``--requests N`` (e.g. 2000000) is the memory run instead: ``--clients`` exporters post protobuf
bodies until N API requests' worth of log records (each body's ``api_request`` records, with their
``tool_result`` records beside them) are committed, and the daemon's resident memory is printed idle
before, at its highest sample while posting (and its kernel high-water mark), right after the last
post and 10 s later, with the rate and records per daemon CPU-second over the whole run.
``--memory-budget MB`` gives that daemon this ``memory_budget_mb`` setting (DuckDB's memory limit is
three quarters of it; the default budget is 2,048 MB).

Besides records per second, each row gives the daemon's CPU seconds (all its threads) per wall
second (its decoding workers included) and the records per daemon CPU-second: on a machine shared with other work the rate follows
the CPU the daemon got, the per-CPU-second figure much less so. The daemon's resident memory (its
workers included) is printed idle after start, as the highest sample during each series, and after
the last post. ``--workers N`` adds a daemon of this checkout decoding in N worker processes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"
TOKEN = "bench-token"  # the daemon requires one; chosen here so every client below can send it
AUTH = {"authorization": f"Bearer {TOKEN}"}
MARK = "B000000000000"  # fixed-width placeholder, replaced per batch: protobuf lengths stay valid


def _attrs(rec: dict) -> dict[str, dict]:
    return {a["key"]: a["value"] for a in rec.get("attributes", [])}


def templates() -> tuple[dict, list[dict]]:
    """The resource of one fixture workflow and its api_request/tool_result records."""
    resource = None
    recs: list[dict] = []
    for f in sorted((FIXTURES / "otlp").glob("*_logs.json")):
        for rl in json.loads(f.read_text())["resourceLogs"]:
            resource = resource or rl["resource"]
            for sl in rl["scopeLogs"]:
                for r in sl["logRecords"]:
                    if _attrs(r).get("event.name", {}).get("stringValue") in ("api_request", "tool_result"):
                        recs.append(r)
    assert resource and recs
    return resource, recs


def body_template(n: int) -> dict:
    """An OTLP/JSON logs request of ``n`` records whose ids all contain MARK."""
    resource, recs = templates()
    out = []
    for i, r in zip(range(n), itertools.cycle(recs), strict=False):
        r = copy.deepcopy(r)
        for a in r["attributes"]:
            k, v = a["key"], a["value"]
            if k == "session.id":
                v["stringValue"] = f"bench-{MARK}"
            elif k == "request_id":
                v["stringValue"] = f"req_{MARK}_{i:05d}"
            elif k == "tool_use_id":
                v["stringValue"] = f"toolu_{MARK}_{i:05d}"
            elif k == "event.sequence":
                v["intValue"] = i
        out.append(r)
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"},
                                                                   "logRecords": out}]}]}


def encodings(n: int) -> dict[str, tuple[str, bytes]]:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    doc = body_template(n)
    pb = json_format.ParseDict(doc, ExportLogsServiceRequest())
    return {"json": ("application/json", json.dumps(doc).encode()),
            "protobuf": ("application/x-protobuf", pb.SerializeToString())}


def start_daemon(home: str, src: str | None = None, workers: int | None = None,
                 memory_budget_mb: int | None = None) -> tuple[subprocess.Popen, str]:
    if memory_budget_mb:
        Path(home, "settings.json").write_text(json.dumps({"memory_budget_mb": memory_budget_mb}))
    env = {**os.environ, "GOLEM_HOME": home, "GOLEM_TOKEN": TOKEN}
    if workers is not None:
        env["GOLEM_OTLP_WORKERS"] = str(workers)
    if src:
        env["PYTHONPATH"] = src
    with open(os.path.join(home, "daemon.err"), "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--no-watch",
                                 "--db", os.path.join(home, "bench.duckdb")], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            url = json.loads(Path(home, "daemon.json").read_text())["url"]
            r = httpx.get(url + "/healthz", timeout=1)
            # it answers while its store still opens; measure ingest once the store is open
            if r.status_code == 200 and r.json().get("store", "ready") == "ready":
                return proc, url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("daemon did not start: " + Path(home, "daemon.err").read_text())


def daemon_log_summary(home: str) -> str:
    """What the daemon's log says went wrong meanwhile: work run again because DuckDB's low memory limit
    was not enough (store/memory.py), and errors (a background refresh that failed, say)."""
    text = ""
    for name in ("daemon.log", "daemon.err"):
        with contextlib.suppress(OSError):
            text += Path(home, name).read_text(errors="replace")
    again = text.count("running again with the whole budget")
    errors = sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))
    return f"daemon log: {again} run(s) again with the whole memory budget, {errors} error line(s)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process (all threads) and of its descendants (the daemon's
    decoding workers); 0 where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (parent, _) in stats.items() if parent == p]
    return total


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MB of a process and its descendants (the decoding workers); 0 where
    /proc is missing. The peak is each process's own high-water mark, summed."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if d.isdigit():
            try:
                parent = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(parent, []).append(int(d))
    now = peak = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                now += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1]) / 1024
    return now, peak


class RssWatch:
    """Samples the daemon's resident memory every 0.2 s while a series runs; ``max`` is the highest."""

    def __init__(self, pid: int) -> None:
        self.pid, self.max, self._stop = pid, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.max = max(self.max, rss_mb(self.pid)[0])

    def __enter__(self) -> RssWatch:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def run(url: str, ctype: str, template: bytes, records: int, seconds: float, clients: int,
        counter: itertools.count, posts: int | None = None) -> tuple[float, int, list[float]]:
    """Send batches from ``clients`` connections for ``seconds`` (or until ``posts`` bodies were sent);
    (records/s, errors, latencies)."""
    lock = threading.Lock()
    done = [0]
    errors = [0]
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    sent = itertools.count()

    def client() -> None:
        with httpx.Client(timeout=60, headers=AUTH) as c:
            while time.monotonic() < stop_at:
                with lock:
                    if posts is not None and next(sent) >= posts:
                        return
                    mark = f"B{next(counter):012d}".encode()
                body = template.replace(MARK.encode(), mark)
                t0 = time.perf_counter()
                r = c.post(url + "/v1/logs", content=body, headers={"content-type": ctype})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        done[0] += records
                        latencies.append(dt)
                    else:
                        errors[0] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a 200 means committed; a daemon that answers from its write inbox may still be resolving the
    # last bodies into facts: the rate counts until a read sees them (reads wait for them)
    httpx.get(url + "/api/status", timeout=600, headers=AUTH).raise_for_status()
    return done[0] / (time.monotonic() - t0), errors[0], latencies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def memory_run(args: argparse.Namespace) -> None:
    """``--requests N``: the daemon's resident memory while N API requests' worth of records are posted."""
    ctype, template = encodings(args.batch)["protobuf"]
    per_body = sum(1 for r in body_template(args.batch)["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                   if _attrs(r)["event.name"]["stringValue"] == "api_request")
    posts = -(-args.requests // per_body)
    src = str(Path(args.baseline).resolve()) if args.baseline else str(Path(__file__).resolve().parents[1] / "src")
    print(f"OTLP memory run: {posts:,} protobuf bodies of {args.batch} records ({per_body} API requests each, "
          f"{posts * per_body:,} in all) from {args.clients} exporters, code {src} "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before)")
    with tempfile.TemporaryDirectory(dir=args.data) as home:
        proc, url = start_daemon(home, src, memory_budget_mb=args.memory_budget)
        try:
            time.sleep(2)
            if args.memory_budget:
                print(f"memory_budget_mb {args.memory_budget:,}")
            print(f"daemon RSS idle after start: {rss_mb(proc.pid)[0]:,.0f} MB")
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            stop = threading.Event()

            def progress() -> None:  # a run takes most of an hour on a busy machine: say where it is
                while not stop.wait(60):
                    try:
                        n = httpx.get(url + "/api/status", timeout=60, headers=AUTH).json()["api_requests"]
                    except (httpx.HTTPError, ValueError, KeyError):
                        continue
                    print(f"  {time.monotonic() - t0:,.0f} s: {n:,} api_requests stored, daemon RSS "
                          f"{rss_mb(proc.pid)[0]:,.0f} MB, {cpu_seconds(proc.pid) - c0:,.0f} CPU-s", flush=True)

            reporter = threading.Thread(target=progress, daemon=True)
            reporter.start()
            with RssWatch(proc.pid) as watch:
                rate, errors, lat = run(url, ctype, template, args.batch, float("inf"), args.clients,
                                        itertools.count(1), posts=posts)
            stop.set()
            cpu, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - t0
            end, peak = rss_mb(proc.pid)
            st = httpx.get(url + "/api/status", timeout=60, headers=AUTH).json()
            time.sleep(10)
            later = rss_mb(proc.pid)[0]
            size = os.path.getsize(os.path.join(home, "bench.duckdb")) / 2**20
            print(f"posted in {wall:,.0f} s: {rate:,.0f} records/s, {rate * wall / cpu:,.0f} records per daemon "
                  f"CPU-s ({cpu:,.0f} CPU-s), p50 / p95 {pct(lat, .5):,.0f} / {pct(lat, .95):,.0f} ms, {errors} errors")
            print(f"store holds {st['api_requests']:,} api_requests, {st['tool_calls']:,} tool_calls, "
                  f"{st['otel_events']:,} otel_events; file {size:,.0f} MB")
            print(f"daemon RSS: highest sample while posting {watch.max:,.0f} MB (kernel high-water mark {peak:,.0f} MB), "
                  f"after the last post {end:,.0f} MB, 10 s later {later:,.0f} MB (target <= 800 MB while posting)")
            print(daemon_log_summary(home))
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"load average {os.getloadavg()[0]:.1f} after")


def rounds_run(args: argparse.Namespace, variants: list[tuple[str, str, int | None]],
               bodies: dict[str, tuple[str, bytes]], counter: itertools.count) -> None:
    """``--rounds N``: the ``--clients`` series of every variant, alternating, N rounds; medians."""
    print(f"OTLP logs ingest, {args.clients} exporters, {args.seconds:g} s a series, {args.rounds} rounds "
          f"alternating ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before)")
    got: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for label, src, workers in (variants if r % 2 == 0 else variants[::-1]):
            with tempfile.TemporaryDirectory() as home:
                proc, url = start_daemon(home, src, workers)
                try:
                    for name, (ctype, template) in bodies.items():
                        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                        rate, errors, lat = run(url, ctype, template, args.batch, args.seconds, args.clients, counter)
                        cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
                        got.setdefault((label, name), []).append(rate)
                        print(f"round {r + 1} {label:<10}{name:<10}{rate:>10,.0f} records/s, p95 {pct(lat, .95):,.1f} ms, "
                              f"{errors} errors, daemon CPU {cpu:.2f} s/s, RSS peak {rss_mb(proc.pid)[1]:,.0f} MB", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(30)
    first = variants[0][0]
    for (label, name), xs in sorted(got.items()):
        med = sorted(xs)[len(xs) // 2]
        ref = sorted(got[(first, name)])[len(xs) // 2]
        print(f"{label:<10}{name:<10} median {med:>9,.0f} records/s ({med / ref:.2f}x {first}); all "
              + ", ".join(f"{x:,.0f}" for x in sorted(xs)))
    print(f"load average {os.getloadavg()[0]:.1f} after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--batch", type=int, default=500, help="log records per request")
    ap.add_argument("--clients", type=int, default=4, help="concurrent connections (exporters)")
    ap.add_argument("--baseline", help="another checkout's src folder: the same series against its daemon")
    ap.add_argument("--workers", type=int, help="also run this checkout with GOLEM_OTLP_WORKERS=N (decoding workers)")
    ap.add_argument("--baseline-workers", type=int, help="the baseline's daemon with GOLEM_OTLP_WORKERS=N")
    ap.add_argument("--rounds", type=int, default=1,
                    help="N > 1: only the --clients series, each variant once a round, the order reversed every "
                         "other round; prints each variant's median (what a noisy machine needs)")
    ap.add_argument("--requests", type=int, help="the memory run: post N API requests' worth of records (see above)")
    ap.add_argument("--memory-budget", type=int, help="the memory run's daemon gets this memory_budget_mb setting")
    ap.add_argument("--data", help="folder for the memory run's store (default: the system's temporary folder)")
    args = ap.parse_args()
    if args.requests:
        memory_run(args)
        return
    bodies = encodings(args.batch)
    counter = itertools.count(1)
    here = str(Path(__file__).resolve().parents[1] / "src")
    variants: list[tuple[str, str, int | None]] = [("this", here, None)]
    if args.workers:
        variants.append((f"this+w{args.workers}", here, args.workers))
    if args.baseline:
        variants.append(("baseline", str(Path(args.baseline).resolve()), args.baseline_workers))
    if args.rounds > 1:
        rounds_run(args, variants, bodies, counter)
        return
    print(f"OTLP logs ingest, {args.batch} records per request, each committed before its 200 "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before)")
    print(f"{'code':<10}{'encoding':<10}{'clients':>8}{'records/s':>12}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}"
          f"{'daemon CPU/s':>14}{'rec/CPU-s':>11}{'max RSS MB':>12}")
    for label, src, workers in variants:
        with tempfile.TemporaryDirectory() as home:
            proc, url = start_daemon(home, src, workers)
            try:
                time.sleep(2)  # idle: started, store open, nothing posted yet
                print(f"{label:<10}daemon RSS idle after start: {rss_mb(proc.pid)[0]:,.0f} MB")
                for clients, seconds in ((1, min(5.0, args.seconds)), (args.clients, args.seconds)):
                    for name, (ctype, template) in bodies.items():
                        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                        with RssWatch(proc.pid) as watch:
                            rate, errors, lat = run(url, ctype, template, args.batch, seconds, clients, counter)
                        cpu, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - t0
                        per_cpu = f"{rate * wall / cpu:>11,.0f}" if cpu else f"{'-':>11}"
                        print(f"{label:<10}{name:<10}{clients:>8}{rate:>12,.0f}{pct(lat, .5):>9.1f}"
                              f"{pct(lat, .95):>9.1f}{errors:>8}{cpu / wall:>14.2f}{per_cpu}{watch.max:>12,.0f}")
                st = httpx.get(url + "/api/status", timeout=30, headers=AUTH).json()
                time.sleep(5)
                now, peak = rss_mb(proc.pid)
                print(f"{label:<10}store now holds {st['api_requests']:,} api_requests, {st['tool_calls']:,} "
                      f"tool_calls, {st['otel_events']:,} otel_events; daemon RSS 5 s after the last post "
                      f"{now:,.0f} MB, peak {peak:,.0f} MB")
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
