"""The SessionEnd export (issue 11): when ``export_on_session_end`` is set (settings.json or
``GOLEM_EXPORT_ON_SESSION_END``, e.g. ``.golem/telemetry``), a session that ends leaves its
project's new telemetry as Parquet shards in that folder of the project, to be committed with the
work it did (an ephemeral remote run keeps what it spent in the repository).

Run by the daemon (``POST /api/export`` from ``golem-mcp hook``) or, with no daemon, by the hook
itself. Before exporting, what the session wrote that may not be in the store yet is read: the
hook spool and the session's transcript (with its subagents'), so the shard holds the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..store.db import Store


def project_root(cwd: str) -> Path:
    """The project a session ran in: the git work tree holding ``cwd``, else ``cwd`` itself."""
    start = Path(cwd).expanduser().resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


def export_folder(settings: Settings, root: Path, folder: str | None = None) -> Path | None:
    """Where the project at ``root`` exports to: ``folder`` (the hook's own setting, sent to the
    daemon: Claude Code's settings ``env`` reaches the hook, not the daemon), else the setting."""
    folder = folder or settings.export_on_session_end
    if not folder or not isinstance(folder, str):
        return None
    p = Path(folder).expanduser()
    return p if p.is_absolute() else root / p


def session_end_export(store: Store, settings: Settings, payload: dict[str, Any],
                       spool: Callable[[], object] | None = None, folder: str | None = None) -> dict[str, Any] | None:
    """Export the ended session's project to its export folder; None when no export is configured
    or the payload names no folder it ran in. ``spool``: drains the hook spool first (the daemon's
    own drain, which never runs twice at once). Called with the store's import lock held (daemon)."""
    cwd = payload.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        return None
    root = project_root(cwd)
    target = export_folder(settings, root, folder)
    if target is None:
        return None
    if spool is not None:
        spool()
    transcript = payload.get("transcript_path")
    if isinstance(transcript, str):
        from ..ingestion.importer import Importer, session_files

        paths = session_files(transcript)
        if paths:
            Importer(store, settings.store_prompts).run(paths)
    from ..store.shards import export

    return export(store, target, project=root)
