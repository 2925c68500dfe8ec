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
    from .records import Batch

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


QUARANTINE = "quarantine.jsonl"


def quarantine_path(spool_dir: str | os.PathLike[str]) -> str:
    """Where payloads the drain could not store are kept: beside the spool folder, in the data folder."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(spool_dir))), QUARANTINE)


class DrainResult:
    """What one drain did: files ingested and deleted, payloads read, lines skipped, lines put in
    quarantine, files kept."""

    def __init__(self) -> None:
        self.files = 0
        self.payloads = 0
        self.skipped: list[str] = []
        self.quarantined = 0
        self.failed: list[str] = []


def drain(store: Store, spool_dir: str | os.PathLike[str], store_prompts: bool = False,
          quarantine: str | None = None) -> DrainResult:
    """Ingest every spooled hook payload; each file is deleted only after its rows are committed.

    Files left ``.draining`` by a crash are ingested again (hook events dedupe by payload key, so a
    second read adds nothing). A line that is not a hook payload, or whose rows the store refused
    (see ``store/checks.py``), is appended to the quarantine file (``quarantine_path``) with why,
    and the rest of its file lands: one bad payload never blocks the ones beside it. A file whose
    write fails as a whole (the disk, not its data) stays for the next drain.
    """
    from .records import Batch

    res = DrainResult()
    d = os.fspath(spool_dir)
    qpath = quarantine or quarantine_path(d)
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
        data = b"".join(chunks)
        batch = Batch()
        try:
            res.payloads += _ingest(store, data, path, batch, store_prompts)
        except Exception as e:  # noqa: BLE001 - keep the file for the next drain, report why
            res.failed.append(f"{path}: {e}")
            continue
        res.skipped.extend(str(s) for s in batch.skipped)
        bad: dict[int, list[str]] = {}
        for s in batch.skipped:
            if s.dropped and s.line is not None:
                bad.setdefault(s.line, []).append(s.reason)
        if bad:
            _quarantine(qpath, path, data, bad)
            res.quarantined += len(bad)
        os.unlink(path)
        res.files += 1
    return res


def _ingest(store: Store, data: bytes, path: str, batch: Batch, store_prompts: bool) -> int:
    """Parse and write one spool file's payloads; returns how many were read.

    The store checks every value, so a write fails only for a reason no check foresaw: then each
    payload is written on its own, and those that still fail are reported in ``batch.skipped``
    (to be quarantined). When every one fails, the fault is not in the data: the error is raised
    and the file kept.
    """
    import orjson

    from .hooks import hook_to_batch, parse_hook_lines
    from .records import Batch, Skipped

    n = parse_hook_lines(data, path, batch, store_prompts=store_prompts)
    parsed = len(batch.skipped)
    try:
        store.submit(batch).result()  # the store's one writer, shared with OTLP and the watcher
        return n
    except Exception as whole:  # noqa: BLE001 - retried payload by payload below
        error = whole
    del batch.skipped[parsed:]  # what the failed write reported is reported again below
    stored = 0
    failed: list[Skipped] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        one = Batch()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # blank, or reported by the first parse
        if not hook_to_batch(payload, one, store_prompts=store_prompts, source=path, line=i):
            continue
        try:
            store.submit(one).result()
        except Exception as e:  # noqa: BLE001 - this payload goes to quarantine, its neighbours land
            failed.append(Skipped(path, i, f"could not be stored: {type(e).__name__}: {str(e)[:200]}"))
            continue
        stored += 1
        batch.skipped.extend(one.skipped)
    if not stored and failed:
        raise error
    batch.skipped.extend(failed)
    return n


def _quarantine(qpath: str, source: str, data: bytes, bad: dict[int, list[str]]) -> None:
    """Append the refused lines of ``source`` to the quarantine file (mode 0600), durably, with why."""
    import orjson

    lines = data.split(b"\n")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = []
    for line, reasons in sorted(bad.items()):
        raw = lines[line - 1] if 0 < line <= len(lines) else b""
        out.append(orjson.dumps({"quarantined_at": now, "spool_file": os.path.basename(source), "line": line,
                                 "reasons": reasons, "payload": raw.decode("utf-8", "replace")}) + b"\n")
    fd = os.open(qpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(b"".join(out))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # before the spool file, the only other copy, is deleted
    finally:
        os.close(fd)


def quarantined(qpath: str) -> int:
    """Payloads in the quarantine file (0 when there is none)."""
    try:
        with open(qpath, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0
