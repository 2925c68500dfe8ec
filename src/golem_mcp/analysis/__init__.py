"""Analyses: plain functions over the store. No MCP, CLI or HTTP code here."""
