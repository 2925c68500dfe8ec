"""The store: one DuckDB file, versioned migrations, typed tables and the views agents query."""

from .db import Store

__all__ = ["Store"]
