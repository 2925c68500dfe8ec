"""``golem-mcp hook`` latency: wall time of one hook process, from spawn to exit, as Claude Code
sees it. Daemon down (the payload is spooled) and daemon up (spooled by the hook, which nudges the
daemon to drain it at once; hooks run back to back, so each start competes with the daemon's drain
of the one before), for the installed
console script and for ``python -m golem_mcp hook``. Prints p50/p95, asserts nothing.

Run: ``python bench/hook_latency.py [-n 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code-2.1.328"


def payload() -> bytes:
    for line in (FIXTURES / "hooks.jsonl").read_text().splitlines():
        if line.strip() and json.loads(line)["hook_event_name"] == "PostToolUse":
            return line.encode()
    raise SystemExit("no PostToolUse payload in the fixtures")


def start_daemon(home: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "GOLEM_HOME": home}
    proc = subprocess.Popen([sys.executable, "-m", "golem_mcp", "serve", "--port", "0", "--no-watch",
                             "--db", os.path.join(home, "bench.duckdb")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            url = json.loads(Path(home, "daemon.json").read_text())["url"]
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("daemon did not start")


def measure(cmd: list[str], home: str, data: bytes, n: int) -> list[float]:
    env = {**os.environ, "GOLEM_HOME": home}
    env.pop("GOLEM_URL", None)
    times = []
    subprocess.run(cmd, input=data, env=env, capture_output=True)  # warm the OS file cache
    for _ in range(n):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, input=data, env=env, capture_output=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"hook exited {r.returncode}: {r.stderr.decode()}")
    return sorted(times)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100, help="runs per case")
    args = ap.parse_args()
    data = payload()
    script = shutil.which("golem-mcp", path=str(Path(sys.executable).parent)) or shutil.which("golem-mcp")
    commands = {"python -m golem_mcp hook": [sys.executable, "-m", "golem_mcp", "hook"]}
    if script:
        commands = {"golem-mcp hook (script)": [script, "hook"], **commands}
    baseline = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as home:
        print(f"golem-mcp hook latency, {args.n} runs each, {len(data)} byte PostToolUse payload "
              f"({os.cpu_count()} cores)")
        print(f"{'case':<30}{'daemon':>8}{'p50 ms':>9}{'p95 ms':>9}")
        t = measure(baseline, home, b"", args.n)
        print(f"{'python -c pass (floor)':<30}{'-':>8}{pct(t, .5):>9.1f}{pct(t, .95):>9.1f}")
        for name, cmd in commands.items():
            t = measure(cmd, home, data, args.n)
            print(f"{name:<30}{'down':>8}{pct(t, .5):>9.1f}{pct(t, .95):>9.1f}")
        spooled = sum(len(f.read_bytes().splitlines()) for f in Path(home, "spool").iterdir())
        proc, url = start_daemon(home)
        try:
            # let the daemon drain what was spooled while it was down, and warm its import caches
            deadline = time.monotonic() + 30
            while any(Path(home, "spool").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.2)
            measure(next(iter(commands.values())), home, data, 5)
            for name, cmd in commands.items():
                t = measure(cmd, home, data, args.n)
                print(f"{name:<30}{'up':>8}{pct(t, .5):>9.1f}{pct(t, .95):>9.1f}")
            time.sleep(1)
            token = json.loads(Path(home, "daemon.json").read_text())["token"]  # as the hook reads it
            st = httpx.get(url + "/api/status", timeout=10, headers={"authorization": f"Bearer {token}"}).json()
            print(f"spooled while down: {spooled} lines; hook_events stored now: {st['hook_events']} "
                  "(one payload repeated: dedupe keeps 1)")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
