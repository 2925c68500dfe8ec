"""The store: one DuckDB file, versioned migrations, typed tables and the views agents query."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .db import Store

__all__ = ["Store"]


def __getattr__(name: str) -> Any:
    # lazily: parsers import store.batch (their unit of writing), and worker processes and the hook
    # must not pay for DuckDB and pyarrow to get it
    if name == "Store":
        from .db import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
