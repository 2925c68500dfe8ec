"""Ingestion: turn what Claude Code writes (transcripts, OTLP, hook payloads) into store rows."""
