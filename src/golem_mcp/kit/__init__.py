"""The Golem workflow kit: the agents, slash commands and JSON Schemas that ship with golem-mcp, and
the plain functions that install them into a Claude Code project (or user scope), remove them
again, and check that every piece of the telemetry path works (``doctor``).

The canonical files live at the top of the repository (``agents/``, ``commands/``, ``schemas/``);
``bundle.kit_dir`` finds them in a source checkout or, for a regular install, where pip put them
(``share/golem-mcp/`` under the installation prefix).
"""

from .bundle import kit_dir, kit_files

__all__ = ["kit_dir", "kit_files"]
