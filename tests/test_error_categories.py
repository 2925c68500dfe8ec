"""Error categories at least as fine as seed 004's (import, connection, timeout, syntax, type, file,
permission, rate limit, ...): the store's one classification, each with a suggested fix."""

from __future__ import annotations

import pytest

from golem_mcp.analysis.error_patterns import FIXES
from golem_mcp.store import Store

CASES = [
    (None, "ModuleNotFoundError: No module named 'requests'", None, "import"),
    (None, "ImportError: cannot import name 'x' from 'y'", None, "import"),
    (None, "Error: Cannot find module 'left-pad'", None, "import"),
    (None, "curl: (7) Failed to connect: Connection refused", None, "connection"),
    (None, "connect ECONNREFUSED 127.0.0.1:5432", None, "connection"),
    (None, "could not resolve host: example.invalid", None, "connection"),
    (None, "TypeError: unsupported operand type(s) for +: 'int' and 'str'", None, "type"),
    (None, "AttributeError: 'NoneType' object has no attribute 'id'", None, "type"),
    (None, "src/a.ts(3,7): Type 'string' is not assignable to type 'number'", None, "type"),
    (None, "SyntaxError: invalid syntax", None, "syntax"),
    (None, "Command timed out after 2m", None, "timeout"),
    (None, "cat: x.txt: No such file or directory", None, "file_not_found"),
    (None, "Permission denied (publickey)", None, "permission"),
    (429, "rate limited", None, "rate_limit"),
    (529, "Overloaded", None, "overload"),
    (None, "MemoryError", None, "memory"),
    (None, "Exit code 1\n=== 3 failed, 10 passed in 0.5s ===", None, "test_failure"),
    (None, "Exit code 1", None, "shell_exit"),
    (None, "String to replace not found in file", None, "edit_conflict"),
    (500, "internal server error", None, "server_error"),
    # Claude Code's own classes: an api_refusal, and StopFailure's error when its text says nothing more
    (None, "the model refused", "refusal", "refusal"),
    (None, "API Error: the model is busy", "overloaded", "overload"),
    (None, "API Error: flagged", "invalid_request", "bad_request"),
    (None, "something nobody has seen", None, "other"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("ec") / "ec.duckdb")
    yield s
    s.close()


@pytest.mark.parametrize(("status", "msg", "etype", "want"), CASES, ids=[c[3] + ":" + c[1][:24] for c in CASES])
def test_category(store, status, msg, etype, want):
    got = store.scalar("SELECT golem_error_category(?::INTEGER, lower(?), ?::VARCHAR)", [status, msg, etype])
    assert got == want
    assert want in FIXES
