"""Interfaces: CLI, the loopback daemon (OTLP, hooks, MCP, dashboard), the hook client, MCP stdio."""
