"""Where things live and the few settings a user may change.

Defaults: a per-user data directory (``$GOLEM_HOME``, else ``$XDG_DATA_HOME/golem-mcp``, else
``~/.local/share/golem-mcp``) holding the DuckDB file, the daemon's state file and the hook spool.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import home
from .home import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MAIN_STAGE", "Settings", "claude_projects_dir", "data_dir",
           "default_db_path", "spool_dir", "state_file", "token_file"]
MAIN_STAGE = "main"


def data_dir() -> Path:
    return Path(home.data_dir())


def default_db_path() -> Path:
    env = os.environ.get("GOLEM_DB")
    return Path(env).expanduser() if env else data_dir() / "golem.duckdb"


def state_file(db_path: Path | None = None) -> Path:
    """The daemon's state file (url, pid, db, token). One per data directory."""
    return Path(home.state_path())


def token_file() -> Path:
    """The daemon's token (mode 0600), made at its first start; see ``golem_mcp.home``."""
    return Path(home.token_path())


def spool_dir() -> Path:
    return data_dir() / "spool"


def claude_projects_dir() -> Path:
    cfg = os.environ.get("CLAUDE_CONFIG_DIR")
    base = Path(cfg).expanduser() if cfg else Path.home() / ".claude"
    return base / "projects"


@dataclass
class Settings:
    """User-tunable behaviour; read from ``settings.json`` in the data directory when present."""

    main_stage: str = MAIN_STAGE
    store_prompts: bool = False  # privacy default: no prompt or response text is kept
    # privacy default: of a hook payload only its typed columns are kept; True keeps the (redacted)
    # rest in hook_events.payload
    keep_hook_payloads: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    price_file: str | None = None
    # seed 003's auto-trigger: a SessionStart queues an analysis run when the last successful one is
    # older than this many days (0 or less: never)
    analysis_max_age_days: float = 7.0
    # the most memory the process may use (MB): DuckDB gets three quarters of it as its memory_limit
    # (spilling to disk beyond), and an agent's query_sql is stopped when the process grows past it
    memory_budget_mb: int = 2048
    # OTLP bodies answered once their checked rows are committed to the store's write inbox, then
    # resolved into facts by the writer with whatever else arrived (store/inbox.py); False: each
    # answered only once resolved (four exporters then give a write at most four bodies)
    otlp_inbox: bool = True
    # issue 11: a folder (relative to the session's project, e.g. ".golem/telemetry") that the
    # SessionEnd hook exports the project's new telemetry to as Parquet shards; None: no export
    export_on_session_end: str | None = None
    # the team store (DuckLake): its catalog, e.g. "ducklake:postgres:dbname=golem host=db.internal",
    # and where its data files live (an s3:// prefix or a shared folder); both unset: no team store
    team_url: str | None = None
    team_data_path: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Settings:
        path = data_dir() / "settings.json"
        s = cls()
        if path.exists():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError):
                # a broken settings file must not stop ingestion; defaults are safe
                raw = {}
            for k, v in raw.items():
                if hasattr(s, k) and k != "extra":
                    setattr(s, k, v)
                else:
                    s.extra[k] = v
        if os.environ.get("GOLEM_MAIN_STAGE"):
            s.main_stage = os.environ["GOLEM_MAIN_STAGE"]
        if os.environ.get("GOLEM_STORE_PROMPTS") in ("1", "true", "yes"):
            s.store_prompts = True
        if os.environ.get("GOLEM_KEEP_HOOK_PAYLOADS") in ("1", "true", "yes"):
            s.keep_hook_payloads = True
        if os.environ.get("GOLEM_ANALYSIS_MAX_AGE_DAYS"):
            with contextlib.suppress(ValueError):  # a typo must not stop the daemon; the default stands
                s.analysis_max_age_days = float(os.environ["GOLEM_ANALYSIS_MAX_AGE_DAYS"])
        if os.environ.get("GOLEM_MEMORY_BUDGET_MB"):
            with contextlib.suppress(ValueError):  # a typo must not stop the daemon; the default stands
                s.memory_budget_mb = int(os.environ["GOLEM_MEMORY_BUDGET_MB"])
        if os.environ.get("GOLEM_OTLP_INBOX") in ("0", "false", "no"):
            s.otlp_inbox = False
        if os.environ.get("GOLEM_EXPORT_ON_SESSION_END"):
            s.export_on_session_end = os.environ["GOLEM_EXPORT_ON_SESSION_END"]
        if os.environ.get("GOLEM_TEAM_URL"):
            s.team_url = os.environ["GOLEM_TEAM_URL"]
        if os.environ.get("GOLEM_TEAM_DATA_PATH"):
            s.team_data_path = os.environ["GOLEM_TEAM_DATA_PATH"]
        if os.environ.get("GOLEM_PRICES"):
            s.price_file = os.environ["GOLEM_PRICES"]
        return s
