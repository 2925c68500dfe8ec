"""Where a pytest process's memory goes: ``pytest -p support.memory`` prints, at the end, the
resident memory (VmRSS) after each test file and what it added, the peak (VmHWM), and the stores
(DuckDB connections) left open by each file's tests after a garbage collection.

A measuring aid for the suite itself (one process for every test grew past the machine's memory):
it changes nothing in what the tests do. Linux only (it reads /proc/self/status).
``GOLEM_TEST_RSS_LIMIT_MB`` stops the run when the process passes it (a shared machine is not
taken down by a leak), naming the file it was in; ``GOLEM_TEST_MEMORY_LOG`` appends each file's
row to that file as it ends (to watch a long run).

Example: ``PYTHONPATH=tests GOLEM_TEST_RSS_LIMIT_MB=6000 .venv/bin/pytest -q -p support.memory tests``
"""

from __future__ import annotations

import gc
import os
import weakref
from typing import Any

import pytest

_open: weakref.WeakSet[Any] = weakref.WeakSet()
_rows: list[tuple[str, int, int, int, int]] = []  # file, RSS after it (kB), added (kB), stores open, children
_state: dict[str, Any] = {"file": None, "rss": 0}


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _still_open() -> int:
    gc.collect()
    return sum(1 for s in list(_open) if not _closed(s))


def _children() -> int:
    """Child processes still running (daemons, servers a test started and did not stop)."""
    import glob

    kids: set[str] = set()
    for path in glob.glob("/proc/self/task/*/children"):
        with open(path) as fh:
            kids.update(fh.read().split())
    return len(kids)


def _closed(store: Any) -> bool:
    try:
        store.con.execute("SELECT 1")
    except Exception:  # a closed DuckDB connection raises on any use: that is the answer
        return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    from golem_mcp.store import db

    init = db.Store.__init__

    def tracked(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        _open.add(self)

    db.Store.__init__ = tracked  # type: ignore[method-assign]
    _state["rss"] = _status("VmRSS")


def _end_file() -> None:
    if _state["file"] is None:
        return
    rss = _status("VmRSS")
    row = (_state["file"], rss, rss - _state["rss"], _still_open(), _children())
    _rows.append(row)
    _state["rss"] = rss
    if os.environ.get("GOLEM_TEST_MEMORY_LOG"):
        with open(os.environ["GOLEM_TEST_MEMORY_LOG"], "a") as fh:
            fh.write(_line(*row) + "\n")


def _line(f: str, rss: int, added: int, n: int, kids: int) -> str:
    return f"{f:44} {rss / 1024:7.0f} {added / 1024:+7.0f} {n:11d} {kids:8d}"


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    limit = os.environ.get("GOLEM_TEST_RSS_LIMIT_MB")
    if limit and _status("VmRSS") > int(limit) * 1024:
        pytest.exit(f"resident memory passed {limit} MB in {item.nodeid}", returncode=3)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    f = item.nodeid.split("::")[0]
    if f != _state["file"]:
        _end_file()
        _state["file"] = f


def pytest_terminal_summary(terminalreporter: Any) -> None:
    _end_file()
    _state["file"] = None
    tr = terminalreporter
    tr.section("memory per test file")
    tr.write_line(f"{'file':44} {'RSS MB':>7} {'added':>7} {'stores open':>11} {'children':>8}")
    for row in _rows:
        tr.write_line(_line(*row))
    tr.write_line(f"peak RSS (VmHWM): {_status('VmHWM') / 1024:.0f} MB")
