"""One error hierarchy. Each interface translates it once (CLI message, MCP isError, HTTP 4xx)."""

from __future__ import annotations


class GolemError(Exception):
    """Base of every error golem-mcp raises on purpose; the message says what to do next."""

    http_status = 400


class NotFound(GolemError):
    """A workflow, task, session or experiment that the store does not know."""

    http_status = 404


class InvalidInput(GolemError):
    """Input that does not match what the tool or endpoint accepts; lists each problem."""

    http_status = 400

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.message = message
        self.problems = problems or []
        if self.problems:
            message = message + "\n" + "\n".join(f"- {p}" for p in self.problems)
        super().__init__(message)

    def __reduce__(self) -> tuple:
        # whole across processes (the daemon decodes OTLP bodies in worker processes)
        return type(self), (self.message, self.problems)


class PayloadTooLarge(GolemError):
    """A body or argument over the configured size limit."""

    http_status = 413


class UnsupportedMediaType(GolemError):
    """An OTLP body whose content type is neither JSON nor protobuf."""

    http_status = 415


class ReadOnlyViolation(GolemError):
    """SQL that would write, attach, copy, install or touch files or the network."""

    http_status = 403


class StoreBusy(GolemError):
    """The DuckDB file is held by another process (usually the daemon)."""

    http_status = 503


class DaemonUnavailable(GolemError):
    """The daemon could not be reached or started."""

    http_status = 503
