"""DuckDB's allocator returns the pages a checkpoint frees to the kernel for good (see
``golem_mcp/__init__.py``): the option reaches its jemalloc when golem-mcp is imported before DuckDB,
as every entry point does, and a value the user put in the environment is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# jemalloc's option as DuckDB's allocator holds it, read once a connection has allocated
PROBE = """
import ctypes, glob, os, sys
import golem_mcp.store.db  # noqa: F401 - the store's module, as the daemon imports it
import duckdb
duckdb.connect().execute("SELECT 1").fetchall()
libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(duckdb.__file__)), "_duckdb*.so"))
try:
    mallctl = ctypes.CDLL(libs[0]).duckdb_je_mallctl
except (IndexError, OSError, AttributeError):
    print("no-jemalloc"); sys.exit(0)
v, n = ctypes.c_ssize_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_ssize_t))
assert mallctl(b"opt.muzzy_decay_ms", ctypes.byref(v), ctypes.byref(n), None, ctypes.c_size_t(0)) == 0
print(os.environ.get("DUCKDB_JE_MALLOC_CONF"), v.value)
"""


def _probe(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DUCKDB_JE_MALLOC_CONF"}
    return {**env, **extra}


def test_freed_pages_are_returned_for_good():
    got = _probe(_env())
    if got == "no-jemalloc":
        pytest.skip("this DuckDB build does not use its own jemalloc")
    assert got == "muzzy_decay_ms:0 0"


def test_a_value_in_the_environment_is_kept():
    got = _probe(_env(DUCKDB_JE_MALLOC_CONF="muzzy_decay_ms:5000"))
    if got == "no-jemalloc":
        pytest.skip("this DuckDB build does not use its own jemalloc")
    assert got == "muzzy_decay_ms:5000 5000"
