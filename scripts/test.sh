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

# Prometheus for tests/test_metrics.py (a real scrape of /metrics, promtool for the alert rules): Debian's
# package where apt-get runs as root (CI), without letting it start a system service; the tests skip
# themselves with a reason when it is missing.
if ! command -v prometheus >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== installing prometheus (Debian package) for tests/test_metrics.py"
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # invoke-rc.d asks it; 101 = do not start services
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  apt_quiet() { DEBIAN_FRONTEND=noninteractive apt-get "$@" -qq >/dev/null 2>&1; }
  if ! apt_quiet install -y --no-install-recommends prometheus; then
    apt_quiet update && apt_quiet install -y --no-install-recommends prometheus \
      || echo "   could not install prometheus; its tests will skip"
  fi
  if [ -n "$policy_added" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  # belt and braces: a service manager that started it anyway stops it (our tests run their own)
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
fi

# PostgreSQL for tests/test_team.py (the team store's catalog): the tests start their own server in a
# temporary folder (as the postgres user when run as root); here only the binaries are installed when
# missing, with no system service started. The tests skip themselves with a reason without them.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== installing postgresql (Debian package) for tests/test_team.py"
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; } \
    || echo "   could not install postgresql; the team store tests will skip"
  if [ -n "$policy_added" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# Arguments (a test file, -k ...) run as given. The whole suite runs in two processes, the end-to-end
# tests and the rest. One process once grew past 24 GB (the machine's memory) on ~700 tests: stores the
# tests dropped without close() stayed open, their writer thread holding each with its DuckDB buffers.
# Since that was fixed (store/writer.py) every tests/test_*.py file in one process peaked at 1.3 GB.
# `PYTHONPATH=tests .venv/bin/pytest -p support.memory ...` prints resident memory and open stores per
# file. Options (e.g. -x, -p no:cacheprovider) go to every group.
paths=()
opts=()
for a in "$@"; do
  case "$a" in
    tests/*|./tests/*) paths+=("$a") ;;
    *) opts+=("$a") ;;
  esac
done
if [ ${#paths[@]} -gt 0 ]; then
  exec .venv/bin/pytest -q "${opts[@]}" "${paths[@]}"
fi
status=0
for group in "tests/e2e" "tests/test_*.py"; do
  echo "-- $group"
  # shellcheck disable=SC2086  # the group is a glob, expanded here
  .venv/bin/pytest -q "${opts[@]}" $group || status=$?
  if [ "$status" -ne 0 ] && printf '%s\n' "${opts[@]}" | grep -qx -- '-x'; then
    break
  fi
done
exit "$status"
