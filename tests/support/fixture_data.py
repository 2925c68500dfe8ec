"""The real Claude Code fixtures as the tests read them: their sources, a store imported from them in a
given order, and the per-group request and token counts every comparison with a fixture's truth asks for.

Example::

    store = import_fixture(Store(tmp_path / "g.duckdb"), FIXTURES, ["otlp", "transcripts"])
    assert token_counts(store, ("workflow_id", "stage")) == want
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golem_mcp.ingestion.importer import Importer

# the captured Claude Code 2.1.328 sessions shared by the project (../shared beside the repository)
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "claude-code-2.1.328"
TOKENS = ("input", "output", "cache_read", "cache_write")  # the truth files' names for the token kinds
COUNTS = ("requests", *TOKENS)


def sources(fixture: Path) -> dict[str, list[Path]]:
    """A fixture folder's three sources, by the name ``import_fixture`` takes them in."""
    return {"transcripts": [fixture / "home"], "otlp": [fixture / "otlp"], "hooks": [fixture / "hooks.jsonl"]}


def import_fixture(store: Any, fixture: Path, order: Sequence[str]) -> Any:
    """Import ``fixture``'s sources into ``store`` one after the other, in ``order``; each must be
    read without a skipped record. Returns the store."""
    imp = Importer(store)
    for name in order:
        res = imp.run(sources(fixture)[name])
        assert res.skipped == [], res.skipped
    return store


def token_counts(store: Any, keys: Sequence[str], view: str = "requests", where: str = "true"
                 ) -> dict[tuple[Any, ...], dict[str, int]]:
    """Requests and tokens per group of ``keys`` (columns of ``view``), named as in the truth files."""
    cols = ", ".join(keys)
    rows = store.query(f"""
        SELECT {cols}, count(*) AS requests, sum(input_tokens) AS input, sum(output_tokens) AS output,
               sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_write
        FROM {view} WHERE {where} GROUP BY ALL""")
    return {tuple(r[k] for k in keys): {k: r[k] for k in COUNTS} for r in rows}
