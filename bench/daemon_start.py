"""Daemon start-up: from spawning ``golem-mcp serve`` to its first ``/healthz`` answer, and to its first
answer that needs the store (``GET /api/status``), on an empty store and on one holding the fixtures'
import. With ``--baseline SRC`` the same runs alternate with another checkout's ``src`` (e.g. a
worktree of main), so both columns are measured under the same load. Prints min/median/max, asserts
nothing. The daemon's CPU seconds at each point are printed too (steadier than wall times on a shared machine).

Run: ``python bench/daemon_start.py [-n 5] [--baseline ../other-checkout/src]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def once(src: str | None, home: str, db: str) -> tuple[float, float, float, float]:
    """Seconds from spawn to /healthz 200 and to /api/status 200, and the daemon's CPU seconds at each."""
    env = {**os.environ, "GOLEM_HOME": home, "CLAUDE_CONFIG_DIR": os.path.join(home, "no-claude")}
    env.pop("GOLEM_URL", None)
    env.pop("GOLEM_TOKEN", None)
    if src:
        env["PYTHONPATH"] = src
    state = Path(home, "daemon.json")
    state.unlink(missing_ok=True)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--db", db, "--no-watch"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    healthz = ready = None
    cpu_healthz = cpu_ready = 0.0
    try:
        while time.monotonic() - t0 < 120:
            try:
                st = json.loads(state.read_text())
            except (OSError, ValueError):
                time.sleep(0.005)
                continue
            url = st["url"]
            try:
                if healthz is None:
                    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                        if r.status == 200:
                            healthz = time.monotonic() - t0
                            cpu_healthz = cpu_of(p.pid)
                req = urllib.request.Request(url + "/api/status", headers={"authorization": f"Bearer {st['token']}"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status == 200:
                        ready = time.monotonic() - t0
                        cpu_ready = cpu_of(p.pid)
                        break
            except OSError:
                time.sleep(0.005)
    finally:
        p.terminate()
        p.wait(60)
    if healthz is None or ready is None:
        raise SystemExit("the daemon did not answer within 120 s")
    return healthz, ready, cpu_healthz, cpu_ready


def fmt(xs: list[float]) -> str:
    return f"{min(xs):6.2f} {statistics.median(xs):6.2f} {max(xs):6.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--baseline", help="another checkout's src folder, measured in alternation")
    args = ap.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    variants = [("this checkout", here)] + ([("baseline", str(Path(args.baseline).resolve()))] if args.baseline else [])
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"empty store": None, "fixtures imported": FIXTURES}
        print(f"{'store':<20}{'variant':<16}{'healthz s (min med max)':>26}{'store ready s (min med max)':>30}"
              f"{'daemon CPU-s at healthz / ready (med)':>40}")
        for label, fixtures in stores.items():
            results: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v, _ in variants}
            for name, src in variants:  # each variant its own store: a newer schema must not meet an older one
                home = os.path.join(tmp, f"{label}-{name}".replace(" ", "_"))
                os.makedirs(home)
                if fixtures is not None and fixtures.exists():
                    env = {**os.environ, "GOLEM_HOME": home, "PYTHONPATH": src}
                    env.pop("GOLEM_URL", None)
                    subprocess.run([sys.executable, "-m", "golem_mcp", "import", "--quiet", "--create", str(fixtures), "--db",
                                    os.path.join(home, "g.duckdb")], env=env, check=True, capture_output=True)
            for _ in range(args.n):
                for name, src in variants:
                    home = os.path.join(tmp, f"{label}-{name}".replace(" ", "_"))
                    results[name].append(once(src, home, os.path.join(home, "g.duckdb")))
            for name, _ in variants:
                rs = results[name]
                cpu = f"{statistics.median(r[2] for r in rs):.2f} / {statistics.median(r[3] for r in rs):.2f}"
                print(f"{label:<20}{name:<16}{fmt([r[0] for r in rs]):>26}{fmt([r[1] for r in rs]):>30}{cpu:>40}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
