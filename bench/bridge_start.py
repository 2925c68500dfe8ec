"""``golem-mcp stdio`` start-up as Claude Code sees it: from spawning the bridge to its answers to
``initialize`` and ``tools/list``, when no daemon runs (answered from the daemon's snapshot while a
daemon starts; here its port is held by another listener, so none ever starts and every answer is
the bridge's own) and when a daemon runs (forwarded). Also the time until a tool call is told why no
daemon can start, or until it is answered by the daemon that starts meanwhile. Prints p50/p95, asserts
nothing.

Run: ``python bench/bridge_start.py [-n 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "query_sql",
                                                                     "arguments": {"sql": "SELECT 1"}}}


def session(env: dict[str, str], call: bool) -> list[float]:
    """Seconds from spawn to the reply of initialize, tools/list (and the tool call)."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "golem_mcp", "stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    assert p.stdin and p.stdout
    out = []
    for msg in (INIT, LIST, *([CALL] if call else [])):
        p.stdin.write((json.dumps(msg) + "\n").encode())
        p.stdin.flush()
        reply = json.loads(p.stdout.readline())
        assert reply.get("id") == msg["id"], reply
        out.append(time.monotonic() - t0)
    p.stdin.close()
    p.wait(60)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GOLEM_HOME": home, "GOLEM_DB": os.path.join(home, "bench.duckdb"),
               "CLAUDE_CONFIG_DIR": os.path.join(home, "no-claude")}
        env.pop("GOLEM_URL", None)
        env.pop("GOLEM_TOKEN", None)
        up = subprocess.run([sys.executable, "-m", "golem_mcp", "serve", "--detach", "--no-watch", "--port", "0"],
                            env=env, capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(home, "mcp-tools.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"{'case':<34}{'initialize p50':>16}{'p95':>8}{'tools/list p50':>16}{'p95':>8}{'call p50':>10}")
        try:
            runs = [session(env, call=False) for _ in range(args.n)]
            print(f"{'daemon up (forwarded)':<34}{pct([r[0] for r in runs], .5):>14.0f}ms{pct([r[0] for r in runs], .95):>6.0f}ms"
                  f"{pct([r[1] for r in runs], .5):>14.0f}ms{pct([r[1] for r in runs], .95):>6.0f}ms")
        finally:
            subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env=env, capture_output=True, timeout=60)
        runs = []
        for _ in range(min(args.n, 3)):  # each starts a daemon (seconds), stopped after
            runs.append(session({**env, "GOLEM_PORT": "0"}, call=True))
            subprocess.run([sys.executable, "-m", "golem_mcp", "stop"], env=env, capture_output=True, timeout=60)
        print(f"{'no daemon (one starts meanwhile)':<34}{pct([r[0] for r in runs], .5):>14.0f}ms"
              f"{pct([r[0] for r in runs], .95):>6.0f}ms{pct([r[1] for r in runs], .5):>14.0f}ms"
              f"{pct([r[1] for r in runs], .95):>6.0f}ms{pct([r[2] for r in runs], .5):>8.0f}ms")
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            down = {**env, "GOLEM_PORT": str(held.getsockname()[1])}
            runs = [session(down, call=True) for _ in range(args.n)]
        print(f"{'no daemon, port held (snapshot)':<34}{pct([r[0] for r in runs], .5):>14.0f}ms"
              f"{pct([r[0] for r in runs], .95):>6.0f}ms{pct([r[1] for r in runs], .5):>14.0f}ms"
              f"{pct([r[1] for r in runs], .95):>6.0f}ms{pct([r[2] for r in runs], .5):>8.0f}ms")
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
