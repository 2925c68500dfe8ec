"""Where the end-to-end tests find Node and the npm packages of ``tests/e2e/package.json``.

``GOLEM_NODE_PREFIX`` may name a folder holding ``node_modules`` (an ``npm install`` prefix); the
default is ``tests/e2e`` itself (``cd tests/e2e && npm install``, which scripts/test.sh runs).
Tests skip with a reason only when node/npm are missing; a missing package with npm present is
installed here, once, so CI cannot silently skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
_lock = threading.Lock()


def prefix() -> Path:
    env = os.environ.get("GOLEM_NODE_PREFIX")
    return Path(env).expanduser() if env else E2E_DIR


def require_node() -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed: the end-to-end tests need them (see tests/e2e/package.json)")


def bin_path(name: str) -> Path:
    """``node_modules/.bin/<name>``, running ``npm install`` first when the package is missing."""
    require_node()
    p = prefix() / "node_modules" / ".bin" / name
    with _lock:
        if not p.exists():
            target = prefix()
            if not (target / "package.json").exists():
                shutil.copy(E2E_DIR / "package.json", target / "package.json")
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0 or not p.exists():
                pytest.fail(f"npm install in {target} failed ({r.returncode}): {r.stderr[-2000:]}")
    return p
