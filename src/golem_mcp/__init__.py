"""golem-mcp: telemetry that coding agents can read.

Layout: ``ingestion`` (transcripts, OTLP, hooks) -> ``store`` (DuckDB) -> ``analysis`` (plain
functions over the store) -> ``interfaces`` (CLI, daemon, MCP, hook client).

Nothing heavy is imported here: ``golem-mcp hook`` must start in a few milliseconds.
"""

__version__ = "0.1.0"
