"""The hook spool: payloads the hook client could not hand to the daemon, kept in files until it can.

Writers (``golem-mcp hook``, one short-lived process per hook event) append one JSON line per
payload to ``spool_dir()/hooks-<date>.jsonl`` in a single ``O_APPEND`` write. The daemon drains
the spool: it renames each file aside, ingests it and deletes it only after the write committed.

Why the locks: a writer may have opened the file just before the daemon renamed it, and write after
the daemon read it; that line would be deleted unread. So writers hold a shared ``flock`` while
writing and check, under the lock, that the path still names the file they opened (else reopen);
the drainer takes an exclusive lock on the renamed file before reading, which waits out any writer
that got in before the rename. Nothing is lost however hooks and the drain interleave.

This module is imported by the hook client on its hot path: keep module-level imports to the
stdlib's cheapest (no pathlib, json, orjson, duckdb); the drain side imports lazily.
"""

from __future__ import annotations

import fcntl
import os
import time

# typing and dataclasses cost milliseconds to import; type checkers honour a local TYPE_CHECKING name
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.db import Store

PREFIX = "hooks-"
SUFFIX = ".jsonl"
DRAINING = ".draining"


def spool_name() -> str:
    """One file per day: hooks of a day share it, so a down daemon leaves a handful of files."""
    return f"{PREFIX}{time.strftime('%Y%m%d')}{SUFFIX}"


def append(spool_dir: str, data: bytes, name: str | None = None) -> str:
    """Append ``data`` (whole lines, ending in a newline) to the spool in one write; returns the path.
    Callers hand it redacted payloads (``golem_mcp.redaction``); the folder is 0700, files 0600."""
    os.makedirs(spool_dir, mode=0o700, exist_ok=True)
    path = os.path.join(spool_dir, name or spool_name())
    for _ in range(10):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                continue  # the drainer renamed it away between our open and our lock: use a fresh file
            view = memoryview(data)
            while view:
                # one write for a line; the loop only matters for short writes (disk nearly full)
                view = view[os.write(fd, view):]
            return path
        finally:
            os.close(fd)  # closing releases the lock
    raise OSError(f"could not append to {path}: it kept being renamed")


class DrainResult:
    """What one drain did: files ingested and deleted, payloads read, lines skipped, files kept."""

    def __init__(self) -> None:
        self.files = 0
        self.payloads = 0
        self.skipped: list[str] = []
        self.failed: list[str] = []


def drain(store: Store, spool_dir: str | os.PathLike[str], store_prompts: bool = False) -> DrainResult:
    """Ingest every spooled hook payload; each file is deleted only after its rows are committed.

    Files left ``.draining`` by a crash are ingested again (hook events dedupe by payload key, so a
    second read adds nothing). A file whose write fails stays for the next drain.
    """
    from .hooks import parse_hook_lines
    from .records import Batch

    res = DrainResult()
    d = os.fspath(spool_dir)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return res
    for n in names:
        if n.startswith(PREFIX) and n.endswith(SUFFIX):
            try:
                os.rename(os.path.join(d, n), os.path.join(d, f"{n}.{time.time_ns()}{DRAINING}"))
            except FileNotFoundError:
                continue  # another drainer got it first
    for n in sorted(os.listdir(d)):
        if not (n.startswith(PREFIX) and n.endswith(DRAINING)):
            continue
        path = os.path.join(d, n)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits for writers that opened it before the rename
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        batch = Batch()
        try:
            res.payloads += parse_hook_lines(b"".join(chunks), path, batch, store_prompts=store_prompts)
            store.write(batch)
        except Exception as e:  # noqa: BLE001 - keep the file for the next drain, report why
            res.failed.append(f"{path}: {e}")
            continue
        res.skipped.extend(str(s) for s in batch.skipped)
        os.unlink(path)
        res.files += 1
    return res
