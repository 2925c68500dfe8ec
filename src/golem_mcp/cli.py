"""The ``golem-mcp`` command. Thin: each subcommand opens the store (or asks the daemon that owns
it) and calls one library function."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "hook":
        # hot path: runs on every hook event, so import nothing else
        from .interfaces.hook import main as hook_main

        return hook_main(argv[1:])
    from .interfaces.cli_main import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
