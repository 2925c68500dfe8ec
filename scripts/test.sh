#!/usr/bin/env bash
# Install golem-mcp with its test tools into .venv and run the whole check: lint, types, tests.
# This is the README's test command, and what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# Node packages for the end-to-end tests (the real Claude Code CLI, the MCP Inspector, ccusage);
# tests skip themselves with a reason when node/npm are missing.
if [ -f tests/e2e/package.json ] && command -v npm >/dev/null 2>&1; then
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q "$@"
