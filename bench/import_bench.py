#!/usr/bin/env python3
"""Transcript import benchmark, side by side with ``ccusage daily --json`` on the same history.

    python bench/import_bench.py --size-gb 1.0      # the figure of record (~1 GB of transcripts)
    python bench/import_bench.py --size-gb 0.1      # a quick run

Measures, on a history built by ``gen_history.py`` (reused when it already has the asked size):

(a) first import: ``golem-mcp import DIR --db FILE`` into a fresh DB (a subprocess, start-up
    included) -> MB/s; then ``golem-mcp report --json --no-sync --db FILE``.
(b) re-sync of the unchanged history plus a report, three ways: the library path in one process
    that already has the store open (what the daemon does), the same with opening the store, and
    the CLI (``golem-mcp import`` + ``golem-mcp report --json``, two processes). Python start-up and
    ``import duckdb`` are timed on their own so the CLI figure can be read honestly.
(c) ``ccusage daily --json --offline`` (npm package, installed into bench/.data/node) with HOME and
    CLAUDE_CONFIG_DIR pointed at the history, run right after each first import (pairs side by
    side in time): its time, our figures as ratios of it (best over best, and the median of the
    pairs' ratios), and whether token totals (input, output, cache read, cache creation; all days,
    and per day) agree.
(d) ``golem-mcp report --json`` with a daemon running (``serve --detach`` on the imported store):
    the whole CLI process, wall and CPU, median of ``--runs``, and how many times faster than (c).

Targets (issue 10): first import >= 0.5x ccusage's throughput (MB/s); (d) >= 15x faster than ccusage.

Files are in the page cache (just written or read): this measures parsing and storing, not the disk.
Results go to stdout as a table and to bench/.data/import_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

import gen_history  # noqa: E402

# 20.0.26's native binary for linux-x64 was not published; 20.0.24 is the newest that runs here
CCUSAGE_VERSION = os.environ.get("CCUSAGE_VERSION", "20.0.24")
TOKENS = (("input_tokens", "inputTokens"), ("output_tokens", "outputTokens"),
          ("cache_read_tokens", "cacheReadTokens"), ("cache_creation_tokens", "cacheCreationTokens"))
TARGET_MBPS = 150.0
TARGET_RESYNC_S = 0.2
TARGET_FIRST_VS_CCUSAGE = 0.5   # first import throughput, as a share of ccusage's
TARGET_DAEMON_REPORT_X = 15.0   # report --json through a daemon, times faster than ccusage


def golem_bin() -> str:
    exe = Path(sys.executable).parent / "golem-mcp"
    return str(exe) if exe.exists() else shutil.which("golem-mcp") or "golem-mcp"


def timed(cmd: list[str], env: dict[str, str], check: bool = True) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return secs, p.stdout


def ensure_history(out: Path, size_gb: float, regen: bool) -> dict:
    meta = out / "history.json"
    if meta.exists() and not regen:
        summary = json.loads(meta.read_text())
        per_copy = summary["bytes"] / summary["copies"]
        want = max(1, int(size_gb * 1e9 / per_copy + 0.999))
        if summary["copies"] == want and Path(summary["projects_dir"]).is_dir():
            summary["reused"] = True
            return summary
    summary = gen_history.generate(out, size_gb)
    summary["reused"] = False
    return summary


def ensure_ccusage(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    prefix = DATA / "node"
    exe = prefix / "node_modules" / ".bin" / "ccusage"
    want = CCUSAGE_VERSION
    pkg = prefix / "node_modules" / "ccusage" / "package.json"
    if exe.exists() and pkg.exists() and json.loads(pkg.read_text()).get("version") == want:
        return str(exe)
    npm = shutil.which("npm")
    if not npm:
        print("npm not found: ccusage comparison skipped", file=sys.stderr)
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"installing ccusage@{want} into {prefix} ...", file=sys.stderr)
    p = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"ccusage@{want}"],
                       capture_output=True, text=True)
    if p.returncode != 0 or not exe.exists():
        print(f"ccusage install failed: {p.stderr[-1500:]}", file=sys.stderr)
        return None
    return str(exe)


def totals(rows: list[dict]) -> dict[str, int]:
    return {ours: int(sum(r.get(ours) or 0 for r in rows)) for ours, _ in TOKENS}


def library_resync(db: Path, projects: str, runs: int) -> dict:
    """Re-sync + report in-process: store already open (daemon), and including opening it."""
    from golem_mcp.analysis.cost import cost_by
    from golem_mcp.ingestion.importer import Importer
    from golem_mcp.store.db import Store

    warm: list[float] = []
    imp: list[float] = []
    rep: list[float] = []
    with Store(db) as store:
        for _ in range(runs):
            t0 = time.perf_counter()
            res = Importer(store).run([projects])
            t1 = time.perf_counter()
            cost_by(store, ["workflow", "stage"], {})
            t2 = time.perf_counter()
            if res.files_read:
                raise SystemExit(f"re-sync read {res.files_read} files; expected none")
            warm.append(t2 - t0)
            imp.append(t1 - t0)
            rep.append(t2 - t1)
    cold: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with Store(db) as store:
            Importer(store).run([projects])
            cost_by(store, ["workflow", "stage"], {})
        cold.append(time.perf_counter() - t0)
    return {"open_store_s": statistics.median(warm), "open_store_import_s": statistics.median(imp),
            "open_store_report_s": statistics.median(rep), "with_store_open_s": statistics.median(cold)}


def daemon_report(gm: str, db: Path, env: dict[str, str], runs: int) -> dict:
    """``golem-mcp report --json`` while a daemon owns ``db``: wall and CPU of the CLI process."""
    started = subprocess.run([gm, "serve", "--detach", "--port", "0", "--no-watch", "--db", str(db)], env=env,
                             capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"serve --detach failed: {started.stderr[-2000:]}")
    try:
        timed([gm, "report", "--json"], env)  # the daemon's first answer warms its caches
        walls, cpus = [], []
        pid = json.loads((Path(env["GOLEM_HOME"]) / "daemon.json").read_text())["pid"]
        d0 = _cpu_of(pid)
        for _ in range(max(runs, 5)):
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            secs, out = timed([gm, "report", "--json"], env)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls.append(secs)
            cpus.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
        daemon_cpu = (_cpu_of(pid) - d0) / len(walls)
        rows = json.loads(out)
    finally:
        subprocess.run([gm, "stop"], env=env, capture_output=True, timeout=120)
    return {"daemon_report_s": statistics.median(walls), "daemon_report_best_s": min(walls),
            "daemon_report_cpu_s": statistics.median(cpus), "daemon_report_daemon_cpu_s": daemon_cpu,
            "daemon_report_rows": len(rows)}


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=1.0, help="history size (default 1.0)")
    p.add_argument("--history", type=Path, default=None,
                   help="where the generated history lives (default bench/.data/history-<size>gb)")
    p.add_argument("--regen", action="store_true", help="regenerate the history even if it exists")
    p.add_argument("--runs", type=int, default=5, help="re-sync repetitions (median reported)")
    p.add_argument("--first-runs", type=int, default=3,
                   help="first imports, each into a fresh DB (best and median reported; default 3)")
    p.add_argument("--ccusage", help="path of a ccusage executable (default: npm-install into bench/.data/node)")
    p.add_argument("--no-ccusage", action="store_true", help="skip the ccusage comparison")
    p.add_argument("--json-out", type=Path, default=DATA / "import_bench.json")
    args = p.parse_args(argv)

    DATA.mkdir(parents=True, exist_ok=True)
    # one folder per size, so a quick run does not replace the 1 GB history
    hist = ensure_history(args.history or DATA / f"history-{args.size_gb:g}gb", args.size_gb, args.regen)
    projects = hist["projects_dir"]
    jsonl_mb = hist["jsonl_bytes"] / 1e6
    work = Path(tempfile.mkdtemp(prefix="import-bench-", dir=DATA))
    db = work / "bench.duckdb"
    env = dict(os.environ)
    env.update({"GOLEM_HOME": str(work / "home"), "TZ": "UTC"})  # no daemon, no user settings
    env.pop("GOLEM_URL", None)
    env.pop("GOLEM_DB", None)
    gm = golem_bin()
    py = sys.executable
    r: dict = {"history": {k: hist[k] for k in ("copies", "files", "bytes", "jsonl_bytes", "seconds", "reused")},
               "cpus": os.cpu_count(), "load_avg_before": os.getloadavg()[0]}

    try:
        # -- start-up costs, to read the CLI figures honestly
        r["python_startup_s"] = statistics.median(timed([py, "-c", "pass"], env)[0] for _ in range(5))
        r["python_import_duckdb_s"] = statistics.median(
            timed([py, "-c", "import duckdb"], env)[0] for _ in range(5)) - r["python_startup_s"]
        r["golem_version_s"] = statistics.median(timed([gm, "--version"], env)[0] for _ in range(5))

        # -- (a) first import into a fresh DB (best and median of --first-runs, the machine may be shared),
        # each run followed by one of ccusage (c): on a shared machine the load changes from one minute
        # to the next, so the ratio is also taken per pair of runs that were side by side in time
        exe = None if args.no_ccusage else ensure_ccusage(args.ccusage)
        cenv = dict(os.environ, HOME=str(Path(projects).parent.parent), CLAUDE_CONFIG_DIR=str(Path(projects).parent),
                    TZ="UTC", NO_COLOR="1")
        firsts: list[float] = []
        cpus: list[float] = []
        cc_runs: list[float] = []
        cc_cpus: list[float] = []
        cc_out = ""
        for _ in range(args.first_runs):
            for f in (db, db.with_suffix(".duckdb.wal")):
                f.unlink(missing_ok=True)
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            secs, out = timed([gm, "import", projects, "--db", str(db), "--create", "--json"], env)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            firsts.append(secs)
            cpus.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
            res = json.loads(out)
            if exe:
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                secs, cc_out = timed([exe, "daily", "--json", "--offline", "--timezone", "UTC"], cenv)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cc_runs.append(secs)
                cc_cpus.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
        secs = min(firsts)
        r["first_import_runs_s"] = firsts
        r["first_import_s"] = secs
        r["first_import_median_s"] = statistics.median(firsts)
        r["first_import_cpu_s"] = min(cpus)
        r["first_import_bytes"] = res["bytes_read"]
        r["first_import_mbps"] = res["bytes_read"] / 1e6 / secs
        r["first_import_median_mbps"] = res["bytes_read"] / 1e6 / r["first_import_median_s"]
        r["first_import_rows"] = res["rows"]
        r["first_import_skipped"] = len(res["skipped"])
        secs, _ = timed([gm, "report", "--json", "--no-sync", "--db", str(db)], env)
        r["first_report_s"] = secs
        r["first_total_s"] = r["first_import_s"] + r["first_report_s"]

        # -- (d) report --json through a running daemon (on the store the first import made)
        r.update(daemon_report(gm, db, env, args.runs))

        # -- (b) re-sync of the unchanged history + report
        cli_imp, cli_rep, one_cmd = [], [], []
        senv = dict(env, CLAUDE_CONFIG_DIR=str(Path(projects).parent))
        for _ in range(args.runs):
            s1, out = timed([gm, "import", projects, "--db", str(db), "--json"], env)
            if json.loads(out)["files_read"]:
                raise SystemExit("re-sync read files; the history changed?")
            s2, _ = timed([gm, "report", "--json", "--no-sync", "--db", str(db)], env)
            # one command: `report` syncs ~/.claude/projects (here CLAUDE_CONFIG_DIR) first
            s3, _ = timed([gm, "report", "--json", "--db", str(db)], senv)
            cli_imp.append(s1)
            cli_rep.append(s2)
            one_cmd.append(s3)
        r["resync_cli_import_s"] = statistics.median(cli_imp)
        r["resync_cli_report_s"] = statistics.median(cli_rep)
        r["resync_cli_total_s"] = r["resync_cli_import_s"] + r["resync_cli_report_s"]
        r["resync_cli_one_command_s"] = statistics.median(one_cmd)
        r.update({f"resync_lib_{k}": v for k, v in library_resync(db, projects, args.runs).items()})

        # our per-day totals, for the comparison
        secs, out = timed([gm, "report", "--json", "--no-sync", "--by", "day", "--db", str(db)], env)
        ours_days = json.loads(out)
        r["ours_totals"] = totals(ours_days)
        r["ours_requests"] = sum(d["requests"] for d in ours_days)

        # -- (c) ccusage on the same history (its runs were paired with the first imports above)
        if exe:
            secs = min(cc_runs)
            r["ccusage_runs_s"] = cc_runs
            r["ccusage_median_s"] = statistics.median(cc_runs)
            r["ccusage_cpu_s"] = min(cc_cpus)
            cc = json.loads(cc_out)
            r["ccusage_version"] = CCUSAGE_VERSION if not args.ccusage else "given"
            r["ccusage_s"] = secs
            ct = cc.get("totals") or {}
            r["ccusage_totals"] = {ours: int(ct.get(theirs) or 0) for ours, theirs in TOKENS}
            r["tokens_agree"] = r["ccusage_totals"] == r["ours_totals"]
            theirs_by_day = {d["period"]: {o: int(d.get(t) or 0) for o, t in TOKENS} for d in cc.get("daily", [])}
            ours_by_day = {str(d["day"])[:10]: {o: int(d.get(o) or 0) for o, _ in TOKENS} for d in ours_days}
            r["days_ours"] = len(ours_by_day)
            r["days_ccusage"] = len(theirs_by_day)
            r["days_agree"] = theirs_by_day == ours_by_day
            r["day_differences"] = {d: {"ours": ours_by_day.get(d), "ccusage": theirs_by_day.get(d)}
                                    for d in sorted(set(ours_by_day) | set(theirs_by_day))
                                    if ours_by_day.get(d) != theirs_by_day.get(d)}
            r["ratio_first_vs_ccusage"] = r["first_total_s"] / secs
            r["ratio_resync_cli_vs_ccusage"] = r["resync_cli_total_s"] / secs
            r["ratio_resync_one_command_vs_ccusage"] = r["resync_cli_one_command_s"] / secs
            r["ratio_resync_lib_vs_ccusage"] = r["resync_lib_open_store_s"] / secs
            # throughput of the first import as a share of ccusage's (same bytes: its time over ours)
            r["first_import_share_of_ccusage"] = secs / r["first_import_s"]
            # the same per pair (each first import and the ccusage run right after it), median of pairs
            r["first_import_share_of_ccusage_paired"] = statistics.median(
                c / f for c, f in zip(cc_runs, firsts, strict=True))
            r["daemon_report_times_faster"] = secs / r["daemon_report_s"]
            # the same ratios in CPU seconds (all processes): steadier than wall times on a shared machine
            r["first_import_cpu_share_of_ccusage"] = r["ccusage_cpu_s"] / r["first_import_cpu_s"]
            r["daemon_report_cpu_times_less"] = r["ccusage_cpu_s"] / max(
                r["daemon_report_cpu_s"] + r["daemon_report_daemon_cpu_s"], 1e-6)
        r["load_avg_after"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.json_out.write_text(json.dumps(r, indent=1, default=str))
    print_table(r, jsonl_mb)
    return 0


def print_table(r: dict, jsonl_mb: float) -> None:
    ok = lambda good: "meets target" if good else "MISSES target"  # noqa: E731
    cc = r.get("ccusage_s")

    def ratio(x: float) -> str:
        return f"{x / cc:.2f}x ccusage" if cc else ""

    h = r["history"]
    made = "reused" if h["reused"] else f"generated in {h['seconds']:.1f} s"
    print(f"\nhistory: {h['bytes'] / 1e9:.2f} GB ({jsonl_mb:.0f} MB of .jsonl), {h['files']} files, {h['copies']} copies"
          f" ({made}); {r['cpus']} CPUs; "
          f"load average {r['load_avg_before']:.1f} before, {r.get('load_avg_after', 0):.1f} after")
    rows = [
        ("(a) first import (CLI, fresh DB), best", fmt_s(r["first_import_s"]),
         f"{r['first_import_mbps']:.0f} MB/s, {ok(r['first_import_mbps'] >= TARGET_MBPS)} (>= {TARGET_MBPS:.0f} MB/s)"),
        (f"    median of {len(r['first_import_runs_s'])}", fmt_s(r["first_import_median_s"]),
         f"{r['first_import_median_mbps']:.0f} MB/s"),
        ("    CPU time (all processes)", fmt_s(r["first_import_cpu_s"]),
         f"{r['first_import_bytes'] / 1e6 / r['first_import_cpu_s']:.0f} MB per CPU-second"),
        ("    report --json --no-sync", fmt_s(r["first_report_s"]), ""),
        ("    first import (best) + report", fmt_s(r["first_total_s"]), ratio(r["first_total_s"])),
        ("(b) re-sync + report, library, store open", fmt_s(r["resync_lib_open_store_s"]),
         f"import {r['resync_lib_open_store_import_s']:.3f} + report {r['resync_lib_open_store_report_s']:.3f}; "
         f"{ok(r['resync_lib_open_store_s'] < TARGET_RESYNC_S)} (< {TARGET_RESYNC_S} s); {ratio(r['resync_lib_open_store_s'])}"),
        ("    library, opening the store too", fmt_s(r["resync_lib_with_store_open_s"]),
         ok(r["resync_lib_with_store_open_s"] < TARGET_RESYNC_S)),
        ("    CLI: import + report --json (2 processes)", fmt_s(r["resync_cli_total_s"]),
         f"import {r['resync_cli_import_s']:.3f} + report {r['resync_cli_report_s']:.3f}; "
         f"{ok(r['resync_cli_total_s'] < TARGET_RESYNC_S)}; {ratio(r['resync_cli_total_s'])}"),
        ("    CLI: report --json (syncs first, 1 process)", fmt_s(r["resync_cli_one_command_s"]),
         f"{ok(r['resync_cli_one_command_s'] < TARGET_RESYNC_S)}; {ratio(r['resync_cli_one_command_s'])}"),
        ("    of which: python start-up", fmt_s(r["python_startup_s"]), "per process"),
        ("    of which: import duckdb", fmt_s(r["python_import_duckdb_s"]), "per process that opens the DB"),
        ("    golem-mcp --version", fmt_s(r["golem_version_s"]), "CLI start-up floor"),
    ]
    if cc:
        rows.append((f"(c) ccusage daily --json (v{r['ccusage_version']}), best", fmt_s(cc),
                     f"{r['first_import_bytes'] / 1e6 / cc:.0f} MB/s; our first import {r['first_import_share_of_ccusage']:.2f}x "
                     f"its throughput (best/best), {ok(r['first_import_share_of_ccusage'] >= TARGET_FIRST_VS_CCUSAGE)} "
                     f"(>= {TARGET_FIRST_VS_CCUSAGE}x)"))
        rows.append((f"    median of {len(r['ccusage_runs_s'])} (each after a first import)", fmt_s(r["ccusage_median_s"]),
                     f"our first import {r['first_import_share_of_ccusage_paired']:.2f}x its throughput "
                     f"(median of the pairs' ratios)"))
        rows.append(("    ccusage CPU time", fmt_s(r["ccusage_cpu_s"]),
                     f"our first import's CPU time is {1 / r['first_import_cpu_share_of_ccusage']:.1f}x it; "
                     f"the report's through the daemon (CLI + daemon) {r['daemon_report_cpu_times_less']:.0f}x less"))
    rows.append(("(d) report --json, daemon running (median)", fmt_s(r["daemon_report_s"]),
                 f"best {r['daemon_report_best_s']:.3f} s, CLI CPU {r['daemon_report_cpu_s']:.3f} s, "
                 f"daemon CPU {r['daemon_report_daemon_cpu_s']:.3f} s"
                 + (f"; {r['daemon_report_times_faster']:.1f}x faster than ccusage, "
                    f"{ok(r['daemon_report_times_faster'] >= TARGET_DAEMON_REPORT_X)} (>= {TARGET_DAEMON_REPORT_X:.0f}x)"
                    if cc else "")))
    w = max(len(a) for a, _, _ in rows)
    print(f"\n{'measure':<{w}}  {'time':>9}  notes")
    print("-" * (w + 60))
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>9}  {c}")
    print("\ntoken totals (all days)")
    print(f"{'':<22}{'golem-mcp':>16}{'ccusage':>16}")
    for k, _ in TOKENS:
        theirs = r.get("ccusage_totals", {}).get(k)
        print(f"{k:<22}{r['ours_totals'][k]:>16,}{(f'{theirs:,}' if theirs is not None else '-'):>16}")
    if cc:
        print(f"totals agree: {r['tokens_agree']}; per-day agree: {r['days_agree']} "
              f"({r['days_ours']} days ours, {r['days_ccusage']} days ccusage); requests (ours): {r['ours_requests']:,}")
        for d, v in list(r["day_differences"].items())[:5]:
            print(f"  {d}: ours {v['ours']} ccusage {v['ccusage']}")


if __name__ == "__main__":
    sys.exit(main())
