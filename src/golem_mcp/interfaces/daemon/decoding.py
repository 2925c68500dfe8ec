"""OTLP bodies to batches off the writer's GIL: worker processes decode and map each body
(``ingestion.otlp.body_to_batch``) and, for the write inbox, check, redact and encode its rows as the
store would (``store.checks.land``, by the store's own table specs); the daemon then only commits
the bytes to the inbox and submits the batch (``Decoder.landed``).

Decoding and mapping a 500-record body is pure Python (orjson or protobuf, then a dict per row) and
cost about as much CPU as committing it, all under the one GIL the writer and the event loop need
too: the daemon used one core of two. The workers are plain ``python -c`` children that import the
OTLP decoder and nothing of the daemon's state (the importer's parsers start the same way, for the
same reasons: a fork would copy DuckDB's threads, and multiprocessing's spawn re-imports the
caller's ``__main__``). Bodies and batches cross as pickled frames on the child's stdin/stdout. A
worker that dies is replaced and its body decoded in the daemon, so a sender never sees it.
Without workers (the default for now, see :func:`default_workers`; ``GOLEM_OTLP_WORKERS=N`` turns
them on) bodies are decoded in a thread of the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio.to_thread

from ...ingestion.importer import recv_frame, send_frame
from ...store.batch import Batch

if TYPE_CHECKING:
    from ...store.checks import TableSpec
    from ...store.db import Store

log = logging.getLogger("golem_mcp.daemon")

CTYPE = {"json": "application/json", "protobuf": "application/x-protobuf"}
_WORKER_MAIN = "from golem_mcp.interfaces.daemon.decoding import worker_main; worker_main()"


def default_workers() -> int:
    """``GOLEM_OTLP_WORKERS`` (at most 8), else 0: decoding in the daemon.

    Off by default: two workers add ~190 MB (two interpreters with pyarrow), which the daemon's
    memory target while posting (<= 800 MB, ~770 MB without them) has no room for. With the write
    inbox they gave 14-31% more records a second with 4 exporters (bench/README, "OTLP workers that
    check for the inbox", 2026-12-05; before the inbox 7-17%, when the writer bounded the rate),
    using the second core: ~1.8 CPU-seconds a second against ~1.3.
    """
    env = os.environ.get("GOLEM_OTLP_WORKERS", "").strip()
    return min(int(env), 8) if env.isdigit() else 0


class WorkerGone(Exception):
    """A decoding worker ended or answered garbage; the body is decoded in the daemon instead."""


class Decoder:
    """``await decoder.batch(signal, body, kind)`` -> (batch, records); raises what decoding raised
    (InvalidInput for a body that does not decode)."""

    def __init__(self, workers: int, store_prompts: bool,
                 specs: Callable[[], dict[str, TableSpec]] | None = None) -> None:
        self.workers = workers
        self.store_prompts = store_prompts
        # what the workers check rows by (the store's, asked at their start); None: they only decode
        self._specs = specs
        self._spec_frame: tuple[str, dict[str, TableSpec]] | None = None
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes]] = queue.SimpleQueue()
        self._all: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def warm(self) -> None:
        """Start the workers; done at the first body (not at start, where two more interpreters
        starting would slow the store's opening, and a daemon serving only MCP needs none)."""
        with self._lock:
            if self._started or self._closed or self.workers <= 0:
                return
            self._started = True
            for _ in range(self.workers):
                self._idle.put(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        import golem_mcp

        env = dict(os.environ)
        # the child must import this same golem_mcp, also when it runs from a source tree
        root = str(Path(golem_mcp.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # Arrow's default pool (mimalloc) kept ~17 MB more per worker after a few bodies than malloc's
        env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env)
        self._all.append(proc)
        if self._specs is not None:
            if self._spec_frame is None:
                self._spec_frame = ("specs", self._specs())
            with contextlib.suppress(OSError):  # gone already: its first task fails and it is replaced
                _send(proc.stdin, self._spec_frame)
        return proc

    def _decode_in_worker(self, op: str, task: tuple[str, bytes, str, bool]) -> tuple[Any, ...]:
        """``op`` "decode": (batch, records); "land": (inbox blobs, skipped, records)."""
        proc = self._idle.get()
        try:
            _send(proc.stdin, (op, *task))
            kind, *result = _recv(proc.stdout)  # type: ignore[misc]
        except (OSError, EOFError, pickle.UnpicklingError, WorkerGone) as e:
            log.warning("an OTLP decoding worker (pid %d) failed (%s); starting another", proc.pid, e)
            proc.kill()
            with self._lock:
                if not self._closed:
                    proc = self._spawn()
            raise WorkerGone(str(e)) from e
        finally:
            self._idle.put(proc)
        if kind == "error":
            raise result[0]
        if kind != "ok":
            raise WorkerGone(str(result[0]))
        return tuple(result)

    def _decode(self, task: tuple[str, bytes, str, bool]) -> tuple[Batch, int]:
        if self.workers > 0 and not self._closed:
            self.warm()
            try:
                batch, n = self._decode_in_worker("decode", task)
                return batch, n
            except WorkerGone:
                pass  # decoded here instead, below
        from ...ingestion.otlp import body_to_batch

        return body_to_batch(*task)

    async def batch(self, signal: str, body: bytes, kind: str) -> tuple[Batch, int]:
        return await anyio.to_thread.run_sync(self._decode, (signal, body, CTYPE[kind], self.store_prompts))

    def _land(self, store: Store, task: tuple[str, bytes, str, bool]) -> tuple[Batch, int]:
        if self.workers > 0 and self._specs is not None and not self._closed:
            self.warm()
            try:
                blobs, skipped, n = self._decode_in_worker("land", task)
            except WorkerGone:
                pass  # decoded and checked here instead, below
            else:
                return store.land_checked(blobs, skipped), n
        batch, n = self._decode(task)
        store.land(batch)
        return batch, n

    async def landed(self, store: Store, signal: str, body: bytes, kind: str) -> tuple[Batch, int]:
        """The body decoded, its rows checked, redacted and committed to ``store``'s write inbox
        (:meth:`Store.land`): by a worker when there are workers (this process then only commits
        the bytes it sends), else here. Then ``store.submit`` the batch."""
        return await anyio.to_thread.run_sync(self._land, store, (signal, body, CTYPE[kind], self.store_prompts))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs, self._all = self._all, []
        for p in procs:
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass  # already gone
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _send(fh: IO[bytes] | None, obj: object) -> None:
    send_frame(fh, obj)


def _recv(fh: IO[bytes] | None) -> Any:
    return recv_frame(fh, WorkerGone, "the worker ended")


def worker_main() -> None:
    """Body of a decoding worker. On stdin: ("specs", the store's table specs) once, then tasks
    ("decode" | "land", signal, body, content type, store_prompts). On stdout, per task: ("ok", batch,
    n), ("ok", inbox blobs, skipped, n) for "land", or ("error", exc)."""
    import traceback

    from ...ingestion.otlp import body_to_batch
    from ...store.checks import land

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing may print into the result channel
    specs: dict[str, TableSpec] = {}
    while True:
        try:
            task = _recv(inp)
        except WorkerGone:
            return  # stdin closed: the daemon is stopping
        op, *args = task
        if op == "specs":  # the store's tables, sent once at start
            specs = args[0]
            continue
        try:
            batch, n = body_to_batch(*args)
            # "land": checked, redacted and encoded for the write inbox here; "decode": the rows
            result: tuple = ("ok", land(batch, specs), batch.skipped, n) if op == "land" else ("ok", batch, n)
        except Exception as e:  # noqa: BLE001 - handed to the daemon, which answers the sender with it
            result = ("error", e)
        try:
            _send(out, result)
        except (pickle.PicklingError, TypeError, AttributeError):
            _send(out, ("crash", traceback.format_exc(limit=5)))
