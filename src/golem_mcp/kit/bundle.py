"""Where the kit's agents, commands and schemas are.

Two layouts must work: a source checkout (editable install, tests), where they are the top-level
``agents/``, ``commands/`` and ``schemas/`` folders next to ``pyproject.toml``; and a regular
``pip install .``, where ``[tool.setuptools.data-files]`` puts them under ``<prefix>/share/golem-mcp/``.
The checkout wins when both exist, so an editable install always serves the files being edited.
"""

from __future__ import annotations

import sys
import sysconfig
from functools import cache
from pathlib import Path

from ..errors import GolemError

KINDS = ("agents", "commands", "schemas")
_SHARE = Path("share") / "golem-mcp"


def _checkout_root() -> Path | None:
    root = Path(__file__).resolve().parents[3]  # src/golem_mcp/kit/bundle.py -> repository root
    if (root / "pyproject.toml").is_file() and (root / "agents" / "master.md").is_file():
        return root
    return None


def _installed_roots() -> list[Path]:
    roots: list[Path] = []
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            dist = distribution("golem-mcp")
            for f in dist.files or ():
                parts = Path(str(f)).parts
                if "share" in parts and "golem-mcp" in parts and parts[-1] == "master.md":
                    roots.append(Path(str(dist.locate_file(f))).resolve().parents[1])
                    break
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - stdlib since 3.8
        pass
    for base in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix):
        if base:
            roots.append(Path(base) / _SHARE)
    return roots


@cache
def kit_root() -> Path:
    """The folder holding ``agents/``, ``commands/`` and ``schemas/``."""
    root = _checkout_root()
    if root:
        return root
    for r in _installed_roots():
        if (r / "agents" / "master.md").is_file():
            return r
    raise GolemError("the golem-mcp kit files (agents/, commands/, schemas/) were not found; "
                     "reinstall golem-mcp with `pip install --force-reinstall golem-mcp`")


def kit_dir(kind: str) -> Path:
    """``kit_dir("agents")`` -> the folder of the agent definitions (also "commands", "schemas")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    return kit_root() / kind


def kit_files(kind: str) -> list[Path]:
    """The kit's files of one kind, sorted by name (``*.md`` for agents/commands, ``*.json`` for schemas)."""
    pattern = "*.json" if kind == "schemas" else "*.md"
    return sorted(kit_dir(kind).glob(pattern))


def schema_path(name: str) -> Path:
    """A schema file by name, e.g. ``schema_path("review-findings.v1.json")``."""
    p = kit_dir("schemas") / name
    if not p.is_file():
        raise GolemError(f"schema {name!r} is not in {kit_dir('schemas')}")
    return p
