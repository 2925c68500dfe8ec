"""golem-mcp: telemetry that coding agents can read.

Layout: ``ingestion`` (transcripts, OTLP, hooks) -> ``store`` (DuckDB) -> ``analysis`` (plain
functions over the store) -> ``interfaces`` (CLI, daemon, MCP, hook client).

Nothing heavy is imported here: ``golem-mcp hook`` must start in a few milliseconds.
"""

import os as _os

__version__ = "0.1.0"

# DuckDB's allocator (its own jemalloc) hands freed pages back to the kernel in two steps: after ~1 s
# with MADV_FREE, which leaves them counted in the process's resident memory until the kernel needs
# them, and later for good. Each checkpoint frees the rows it wrote (~300 MB at a 256 MB WAL), and
# those pages stayed resident: up to ~250 MB of the daemon's RSS while ingesting was such pages.
# Skipping the lazy step returns them for good after the same ~1 s. jemalloc reads this once, when
# DuckDB first allocates, so it is set before any module imports duckdb; a value already in the
# environment wins. (bench/README.md, "Posting RSS: the checkpoint's peak".)
_os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", "muzzy_decay_ms:0")
