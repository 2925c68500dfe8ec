"""The tree tells the architecture: ingestion -> store <- analysis <- interfaces. A package may import
from the ones below it, never from above: the store knows nothing of who fills it (ingestion) or who
reads it (analysis, interfaces); ingestion nothing of what is asked of the facts; analysis nothing of
the doors it is asked through. Read from the source (every ``import``, at the top or inside a
function), not from what happens to be loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "golem_mcp"
NOT_FROM = {
    "store": {"ingestion", "analysis", "interfaces", "kit"},
    "ingestion": {"analysis", "interfaces", "kit"},
    "analysis": {"interfaces"},
}


def _imported_packages(path: Path) -> set[str]:
    """The golem_mcp subpackages ``path`` imports from."""
    here = path.relative_to(PKG).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level + 1])
                mod = base + (node.module.split(".") if node.module else [])
                names = [mod] if node.module else [mod + [a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "golem_mcp":
                names = [node.module.split(".")[1:]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "golem_mcp"]
        out |= {n[0] for n in names if n}
    return out


@pytest.mark.parametrize("package", sorted(NOT_FROM))
def test_a_package_imports_only_from_below(package: str) -> None:
    files = sorted((PKG / package).rglob("*.py"))
    assert files
    wrong = {f"{f.relative_to(PKG)} imports from {p}" for f in files for p in _imported_packages(f) & NOT_FROM[package]}
    assert not wrong, sorted(wrong)


def test_the_reader_sees_imports_from_above() -> None:
    # the check itself: relative, absolute and in-function imports are all seen
    assert _imported_packages(PKG / "interfaces" / "daemon" / "app.py") & {"store", "ingestion"}
    assert "kit" in _imported_packages(PKG / "analysis" / "findings.py")  # inside a function
