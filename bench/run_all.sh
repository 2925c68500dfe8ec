#!/usr/bin/env bash
# Run every benchmark in bench/ at a modest size and print their figures.
#   bash bench/run_all.sh                 # defaults below (a few minutes on 2 cores)
#   SIZE_GB=1.0 bash bench/run_all.sh     # the import figure of record
# PYTHON selects the interpreter that has golem-mcp installed (default: python3 on PATH).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
SIZE_GB="${SIZE_GB:-0.25}"          # import_bench: GB of generated transcripts
OTLP_SECONDS="${OTLP_SECONDS:-5}"   # otlp_ingest: seconds per encoding
HOOK_RUNS="${HOOK_RUNS:-30}"        # hook_latency: runs per case
ANALYSIS_REQUESTS="${ANALYSIS_REQUESTS:-200000}"  # analysis_bench: API requests in the store
failed=()

run() {
  local name="$1"; shift
  if [ ! -f "bench/$name" ]; then
    echo "== $name: not present, skipped"
    return
  fi
  echo
  echo "== $name $*"
  local t0=$SECONDS
  if ! "$PY" "bench/$name" "$@"; then
    failed+=("$name")
    echo "!! $name failed"
  fi
  echo "-- $name took $((SECONDS - t0)) s"
}

run import_bench.py --size-gb "$SIZE_GB" --runs 5
run otlp_ingest.py --seconds "$OTLP_SECONDS"
run hook_latency.py -n "$HOOK_RUNS"
run bridge_start.py -n 5
run analysis_bench.py --requests "$ANALYSIS_REQUESTS"
run tools_bench.py --requests "$ANALYSIS_REQUESTS"
run metrics_bench.py --requests "$ANALYSIS_REQUESTS" --size-gb "$SIZE_GB"
run sql_guard_bench.py --requests "$ANALYSIS_REQUESTS"
run checks_bench.py
run shards_bench.py --size-gb 0.05
run resolve_bench.py --prefill "$ANALYSIS_REQUESTS" --batches 60 --session 50000

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all benchmarks ran"
