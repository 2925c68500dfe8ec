"""Read the MCP answers' columns+rows tables as dicts in tests."""

from __future__ import annotations

from typing import Any


def rows(tbl: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(tbl["columns"], r, strict=True)) for r in tbl["rows"]]


def by(tbl: dict[str, Any], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows(tbl)}
