"""``golem-mcp import``: walk paths, read what is new, write it in batches.

Transcripts are read incrementally from the byte offset already consumed (a re-run over unchanged
files reads nothing); captured OTLP bodies and hook-payload files are re-read only when they
changed, and dedupe keys make re-reading harmless.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import os
import pickle
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..errors import GolemError

if TYPE_CHECKING:
    import subprocess

    from ..store.db import Store  # only a type here: parser processes never load DuckDB
from . import otlp
from .hooks import parse_hook_lines
from .records import Batch, Skipped, now_us
from .transcripts import TOOL_MERGE, TranscriptFile, parse_lines, parse_meta
from .workflow_runs import JOURNAL, is_run_record, parse_journal_lines, parse_run_record

# Fewer, larger transactions: each costs CPU beyond its rows (lookups of stored keys, merges of the
# sessions and agents that span writes, the resolution's and the rollups' statements, the commit).
# A first import of 1 GB of transcripts (149,350 rows), this process' CPU-s with the workers' beside:
# 6.5 at 256 MB (4 writes), 4.9 at 512 MB (2 writes) and 4.2 in one write (2.9-3.3 in the workers
# each time). One write overlaps no parsing, but on two cores the parsers already hold both.
FLUSH_BYTES = 1024 * 1024 * 1024
FLUSH_ROWS = 200_000
HEAD_BYTES = 4096  # how much of a .jsonl file tells hooks from a transcript
# Parallel parsing: worth its process start-up (~0.1 s) from this much new data on
PARALLEL_MIN_BYTES = 48 * 1024 * 1024
MAX_WORKERS = 4
TASK_BYTES = 8 * 1024 * 1024  # files handed to a worker at a time

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class ImportResult:
    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    bytes_read: int = 0
    rows: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"files_seen": self.files_seen, "files_read": self.files_read,
                "files_unchanged": self.files_unchanged, "bytes_read": self.bytes_read, "rows": self.rows,
                "skipped": [str(s) for s in self.skipped]}


def session_files(transcript_path: str) -> list[Path]:
    """A session's transcript and, beside it, the folder of its subagents' transcripts: those of
    them that exist here (a session that ran on another machine has none)."""
    if not transcript_path.endswith(".jsonl"):
        return []
    return [p for p in (Path(transcript_path), Path(transcript_path[:-len(".jsonl")])) if p.exists()]


def classify(path: Path) -> str | None:
    return _classify_name(path.name)


def _classify_name(name: str) -> str | None:
    if name.endswith(".jsonl"):  # the common case first (a large history is thousands of these)
        if name == JOURNAL:  # a Workflow run's per-agent journal, never a session
            return "journal"
        return "hooks" if "hook" in name.lower() else "transcript"
    if is_run_record(name):  # <session>/workflows/<run id>.json
        return "workflow_run"
    name = name.lower()
    if name.endswith(".meta.json"):
        return "meta"
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith((".pb", ".json", ".protobuf")) and otlp.signal_from_filename(base):
        return "otlp"
    if base.endswith(".jsonl"):
        if "hook" in name:
            return "hooks"
        return "transcript"
    return None


def _walk_keys(p: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """Walk one path, yielding (``str(path)``, file name, stat) without making a
    Path per file: a re-sync of a large history is mostly this loop."""
    if not p.is_dir():
        if p.exists():
            yield str(p), p.name, p.stat()
        return
    root = str(p)
    strip = 2 if root == "." else 0  # str(Path("./x")) is "x"
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue  # unreadable folder: nothing to import from it, keep walking the rest
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file():
                    try:
                        yield e.path[strip:], e.name, e.stat()
                    except OSError:
                        continue  # deleted between listing and stat


class Importer:
    def __init__(self, store: Store, store_prompts: bool = False) -> None:
        from ..store.db import POLICY

        if {k: v for k, v in POLICY["tool_calls"].items()} != TOOL_MERGE:
            # transcripts merge a call's two rows before writing; they must merge as the store does
            raise GolemError("internal: transcripts.TOOL_MERGE differs from the store's tool_calls policy")
        self.store = store
        self.store_prompts = store_prompts

    def run(self, paths: Iterable[str | Path], progress: Progress | None = None,
            started: FirstImport | None = None) -> ImportResult:
        """Read what is new under ``paths`` into the store. ``started``: the same paths' parsing, begun
        by :meth:`FirstImport.start` while this (new) store was being created; it is used only when
        the store has indeed read no file yet, and closed either way."""
        states = self.store.file_states()
        if started is not None and (states or started.store_prompts != self.store_prompts):
            started.close()  # (not a new store after all, or other settings: read as usual)
            started = None
        if started is None:
            res, todo = _plan(paths, states)
            parsing = None
        else:
            res, todo, parsing = started.res, started.todo, started.parsing
        total = sum(st.st_size - (states.get(f, (0, 0, 0, 0))[2] if k in ("transcript", "journal") else 0)
                    for f, st, k in todo)
        batch = Batch()
        # a large import holds up to a flush's rows (~150,000 dicts per GiB) and makes as many Arrow
        # values again: the cyclic collector would walk them all every few thousand allocations,
        # ~40% of receiving a worker's rows. They hold no cycles; collection resumes afterwards.
        paused = _gc_paused() if parsing is not None or total >= _parallel_min_bytes() else contextlib.nullcontext()
        with paused:
            res.rows += self._read_flush(todo, states, batch, parsing, started, res, progress, total)
        return res

    def _read_flush(self, todo: list[tuple[str, os.stat_result, str]], states: dict[str, tuple], batch: Batch,
                    parsing: _Parsing | None, started: FirstImport | None, res: ImportResult,
                    progress: Progress | None, total: int) -> int:
        """Read ``todo`` into ``batch``, writing it every FLUSH_BYTES; returns the rows written."""
        rows = 0
        pending_bytes = 0
        done = 0
        failed = True
        try:
            for n in self._read_all(todo, states, batch, parsing):
                if n is None:
                    continue  # skipped (deleted, unreadable); the reason is in batch.skipped
                res.files_read += 1
                res.bytes_read += n
                pending_bytes += n
                done += n
                if pending_bytes >= FLUSH_BYTES or batch.count() >= FLUSH_ROWS:
                    rows += self._flush(batch, res)
                    pending_bytes = 0
                if progress:
                    progress(done, total)
            failed = False
        finally:
            if started is not None:
                started.close(failed)
        return rows + self._flush(batch, res)

    def _read_all(self, todo: list[tuple[str, os.stat_result, str]], states: dict[str, tuple],
                  batch: Batch, parsing: _Parsing | None = None) -> Iterator[int | None]:
        """Read every file into ``batch`` in ``todo`` order; yields bytes read per file (None: skipped).

        A large import is parsed by worker processes (parsing is CPU-bound, and this process writes
        the store meanwhile). Rows come back as plain dicts and are merged here in the same order a
        serial read gives, so which source's value a merge keeps does not depend on timing.
        """
        if parsing is None:
            parsing = _Parsing.start(todo, states, self.store_prompts)
            if parsing is None:
                for f, st, kind in todo:
                    yield read_file(Path(f), st, kind, states.get(f), batch, self.store_prompts)
                return
            try:
                yield from parsing.merge(batch)
            except BaseException:
                parsing.close(failed=True)
                raise
            parsing.close()
            return
        yield from parsing.merge(batch)

    def _flush(self, batch: Batch, res: ImportResult) -> int:
        n = batch.count()
        if n:
            self.store.submit(batch).result()  # the store's one writer, shared with OTLP and hooks
        res.skipped.extend(batch.skipped)
        batch.clear_rows()
        batch.skipped = []
        return n


def _plan(paths: Iterable[str | Path], states: dict[str, tuple], enough: tuple[int, Callable[[], object]] | None = None
          ) -> tuple[ImportResult, list[tuple[str, os.stat_result, str]]]:
    """Walk ``paths``: the files to read (by key: a Path per file cost ~15 us, 0.3 s of a 20,000-file
    first import), and the result's counts of files seen and unchanged since ``states``.
    ``enough``: (bytes, call): ``call()`` once the files to read reach that size, during the walk."""
    res = ImportResult()
    todo: list[tuple[str, os.stat_result, str]] = []
    size = 0
    for p in [Path(x).expanduser() for x in paths]:
        if not p.exists():
            res.skipped.append(Skipped(str(p), None, "no such file or folder"))
            continue
        for key, name, st in _walk_keys(p):
            kind = _classify_name(name)
            if kind is None:
                continue
            res.files_seen += 1
            old = states.get(key)
            if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
                res.files_unchanged += 1
                continue
            # hooks-or-transcript is told by the file's first line, read with the file itself
            todo.append((key, st, kind))
            if enough is not None:
                size += st.st_size
                if size >= enough[0]:
                    enough[1]()
                    enough = None
    return res, todo


class FirstImport:
    """A first import's walk and parsing, begun before its store is open.

    Creating a store (importing DuckDB and pyarrow, the migrations) takes ~1 CPU-s in which the parser
    processes, started first, already read: a new database has no file read yet, so what to read does
    not depend on it. Hand it to :meth:`Importer.run`, which checks that the store is indeed new.
    """

    def __init__(self, paths: Iterable[str | Path], store_prompts: bool) -> None:
        self.store_prompts = store_prompts
        pool: list[_WorkerPool] = []
        workers = _workers()

        def spawn() -> None:
            # the parser processes start (Python, their imports: ~0.1 s) while the walk goes on
            pool.append(_WorkerPool(workers))

        try:
            self.res, self.todo = _plan(paths, {}, (_parallel_min_bytes(), spawn) if workers > 1 else None)
            self.parsing = _Parsing.start(self.todo, {}, store_prompts, pool[0] if pool else None)
        except BaseException:
            for p in pool:
                p.__exit__(RuntimeError, None, None)
            raise

    @classmethod
    def start(cls, paths: Iterable[str | Path], store_prompts: bool = False) -> FirstImport:
        return cls(paths, store_prompts)

    def close(self, failed: bool = False) -> None:
        """Stop the parser processes (after :meth:`Importer.run`, or instead of it)."""
        if self.parsing is not None:
            self.parsing.close(failed)
            self.parsing = None


class _Parsing:
    """Files being parsed by worker processes, from the moment it starts; :meth:`merge` adds their rows
    to a batch in file order."""

    def __init__(self, tasks: list[list[tuple[str, os.stat_result, str, tuple | None]]], store_prompts: bool,
                 workers: int, pool: _WorkerPool | None = None) -> None:
        self.pool = pool or _WorkerPool(min(workers, len(tasks)))
        try:
            self.results = self.pool.map_ordered([(t, store_prompts) for t in tasks])
        except BaseException:
            self.pool.__exit__(RuntimeError, None, None)
            raise

    @classmethod
    def start(cls, todo: list[tuple[str, os.stat_result, str]], states: dict[str, tuple],
              store_prompts: bool, pool: _WorkerPool | None = None) -> _Parsing | None:
        """Parsing of ``todo`` started in worker processes (``pool``'s when given, already started);
        None when too little to be worth them."""
        workers = _workers()
        if not (workers > 1 and len(todo) > 1 and sum(t[1].st_size for t in todo) >= _parallel_min_bytes()):
            if pool is not None:
                pool.__exit__(None, None, None)
            return None
        # consecutive files in tasks of ~TASK_BYTES; workers take the next task when done
        tasks: list[list[tuple[str, os.stat_result, str, tuple | None]]] = []
        cur: list[tuple[str, os.stat_result, str, tuple | None]] = []
        size = 0
        for f, st, kind in todo:
            cur.append((f, st, kind, states.get(f)))
            size += st.st_size
            if size >= TASK_BYTES:
                tasks.append(cur)
                cur, size = [], 0
        if cur:
            tasks.append(cur)
        return cls(tasks, store_prompts, workers, pool)

    def merge(self, batch: Batch) -> Iterator[int | None]:
        # the store's first write imports pyarrow (~0.1-0.3 s): do it while the workers parse
        import pyarrow  # noqa: F401

        for rows, skipped, counts in self.results:
            for table, rs in rows.items():
                batch.rows[table].extend(rs)
            batch.skipped.extend(skipped)
            yield from counts

    def close(self, failed: bool = False) -> None:
        self.results.close()
        self.pool.__exit__(RuntimeError if failed else None, None, None)


class _WorkerPool:
    """Parser processes started as ``python -c`` (neither fork nor multiprocessing's spawn).

    Fork would copy a process holding a DuckDB connection and, in the daemon, server threads;
    multiprocessing's spawn re-imports the caller's ``__main__``, which breaks scripts without a
    ``__main__`` guard. A plain child that imports only the ingestion modules has neither problem.
    Tasks and results are pickled frames on the child's stdin/stdout; one thread per child feeds it.
    """

    def __init__(self, n: int) -> None:
        import subprocess
        import sys

        import golem_mcp

        env = dict(os.environ)
        # the child must import this same golem_mcp, also when it runs from a source tree
        root = str(Path(golem_mcp.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.procs = [subprocess.Popen([sys.executable, "-c", _WORKER_MAIN], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env) for _ in range(n)]

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()  # feeders hand out no more tasks
        for p in self.procs:
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=5 if exc[0] is None else 0.5)
            except Exception:  # noqa: BLE001 - a child that does not stop is killed, whatever went wrong
                p.kill()
                p.wait()

    def _stop(self) -> None:
        pass  # (until map_ordered hands out tasks)

    def map_ordered(self, tasks: list) -> Generator[Any, None, None]:
        """Results in task order (tasks run in any order; early results wait for their turn). The
        children start on the tasks at once, before the first result is asked for."""
        import queue
        import threading

        todo = list(reversed(list(enumerate(tasks))))
        lock = threading.Lock()
        results: queue.SimpleQueue = queue.SimpleQueue()
        done = object()

        def stop() -> None:
            with lock:
                todo.clear()  # on an error, feeders stop after their current task

        self._stop = stop  # type: ignore[method-assign]

        def take() -> tuple[int, Any] | None:
            with lock:
                return todo.pop() if todo else None

        def feed(proc: subprocess.Popen) -> None:
            try:
                item = take()
                if item is not None:
                    send_frame(proc.stdin, item[1])
                while item is not None:
                    i = item[0]
                    data = recv_bytes(proc.stdout)
                    # the child gets its next task before this result is unpickled: it parses meanwhile
                    # instead of waiting for this thread (which waits for the GIL while the store opens)
                    item = take()
                    if item is not None:
                        send_frame(proc.stdin, item[1])
                    results.put((i, pickle.loads(data)))
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread and raised there
                results.put(e)
            finally:
                results.put(done)

        threads = [threading.Thread(target=feed, args=(p,), daemon=True) for p in self.procs]
        for t in threads:
            t.start()
        return self._in_order(results, done, len(threads), len(tasks))

    def _in_order(self, results: Any, done: object, running: int, n_tasks: int) -> Generator[Any, None, None]:
        waiting: dict[int, object] = {}
        nxt = 0
        try:
            while running:
                item = results.get()
                if item is done:
                    running -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                i, res = item
                if isinstance(res, tuple) and len(res) == 2 and res[0] == "error":
                    raise GolemError(f"transcript parser process failed: {res[1]}")
                waiting[i] = res
                while nxt in waiting:
                    yield waiting.pop(nxt)
                    nxt += 1
            if waiting or nxt != n_tasks:
                raise GolemError("transcript parser processes lost a task")
        finally:
            self._stop()


def send_frame(fh: IO[bytes] | None, obj: object) -> None:
    """Write ``obj`` pickled, after its length, to a child process' pipe (the one framing the
    transcript parsers and the daemon's OTLP decoders use)."""
    if fh is None:
        raise OSError("worker pipe closed")
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(len(data).to_bytes(8, "little"))
    fh.write(data)
    fh.flush()


def recv_frame(fh: IO[bytes] | None, gone: type[Exception] = GolemError,
               what: str = "transcript parser process ended unexpectedly") -> object:
    """Read one :func:`send_frame` frame; ``gone(what)`` is raised when the pipe ends first."""
    return pickle.loads(recv_bytes(fh, gone, what))


def recv_bytes(fh: IO[bytes] | None, gone: type[Exception] = GolemError,
               what: str = "transcript parser process ended unexpectedly") -> bytes:
    """:func:`recv_frame`'s bytes, not yet unpickled."""
    if fh is None:
        raise OSError("worker pipe closed")
    head = fh.read(8)
    if len(head) < 8:
        raise gone(what)
    n = int.from_bytes(head, "little")
    data = fh.read(n)
    if len(data) < n:
        raise gone(what)
    return data


_WORKER_MAIN = "from golem_mcp.ingestion.importer import worker_main; worker_main()"


def worker_main() -> None:
    """Body of a parser process: read tasks on stdin, write results on stdout, until stdin closes."""
    import sys
    import traceback

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing may print into the result channel
    # a parser makes rows (dicts of plain values, no cycles) that are freed by reference counting
    # once sent: the cyclic collector only walks them over and over (~7% of a parser's CPU)
    gc.disable()
    while True:
        try:
            task = recv_frame(inp)
        except GolemError:
            return  # stdin closed: the parent is done
        try:
            result: object = _read_task(task)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            result = ("error", traceback.format_exc(limit=5))
        send_frame(out, result)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (restored as it was after: GC is process-wide, and a
    daemon's import must not leave it off)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _workers() -> int:
    env = os.environ.get("GOLEM_IMPORT_WORKERS")
    if env and env.strip().isdigit():
        return max(1, int(env))
    return min(os.cpu_count() or 1, MAX_WORKERS)


def _parallel_min_bytes() -> int:
    # an explicit worker count means "use them" (tests run the parallel path on small data)
    return 0 if os.environ.get("GOLEM_IMPORT_WORKERS") else PARALLEL_MIN_BYTES


def _read_task(args: tuple[list[tuple[str, os.stat_result, str, tuple | None]], bool]
               ) -> tuple[dict[str, list[dict]], list[Skipped], list[int | None]]:
    """Worker process: read a list of files; returns their rows, what was skipped, bytes per file."""
    items, store_prompts = args
    batch = Batch()
    counts = [read_file(Path(path), st, kind, old, batch, store_prompts) for path, st, kind, old in items]
    return dict(batch.rows), batch.skipped, counts


def _state(batch: Batch, f: Path, kind: str, st: os.stat_result, offset: int, lines: int, skipped: int) -> None:
    batch.add("ingest_files", {"path": str(f), "kind": kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "offset": offset, "lines": lines, "skipped": skipped, "updated_at": now_us()})


def read_file(f: Path, st: os.stat_result, kind: str, old: tuple | None, batch: Batch,
              store_prompts: bool = False) -> int | None:
    """Read one file's new content into ``batch``; returns the bytes read, None when it could not be read."""
    try:
        return _read(f, st, kind, old, batch, store_prompts)
    except FileNotFoundError:
        batch.skip(str(f), None, "file disappeared while being read")
    except OSError as e:
        batch.skip(str(f), None, f"unreadable: {e}")
    return None


def _read(f: Path, st: os.stat_result, kind: str, old: tuple | None, batch: Batch, store_prompts: bool) -> int:
    before = len(batch.skipped)
    if kind in ("meta", "workflow_run"):
        (parse_meta if kind == "meta" else parse_run_record)(f, batch)
        _state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
        return st.st_size
    if kind == "otlp":
        data = f.read_bytes()
        if f.name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except OSError as e:
                batch.skip(str(f), None, f"not gzip: {e}")
                return len(data)
        signal = otlp.signal_from_filename(f.name) or "logs"
        ctype = "application/json" if ".json" in f.name.lower() else "application/x-protobuf"
        try:
            doc = otlp.decode(signal, data, ctype)
            otlp.to_batch(signal, doc, batch, store_prompts, source=str(f))
        except GolemError as e:
            batch.skip(str(f), None, str(e))
        _state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
        return len(data)
    # a JSON-lines file: hook payloads or a transcript, told by its first line
    offset, lines = 0, 0
    if old and old[0] <= st.st_size and old[2] <= st.st_size:
        offset, lines = old[2], old[3]
    with open(f, "rb") as fh:
        if offset:
            head = fh.read(HEAD_BYTES)
            fh.seek(offset)
            data = fh.read()
        else:
            data = fh.read()
            head = data[:HEAD_BYTES]
        head_kind = _head_kind(head) if kind != "journal" else None
        hooks = head_kind == "hooks"
        if hooks and offset:
            fh.seek(0)
            data = fh.read()
    if hooks:
        parse_hook_lines(data, str(f), batch, store_prompts)
        _state(batch, f, "hooks", st, st.st_size, 0, len(batch.skipped) - before)
        return len(data)
    if head_kind == "foreign" and kind == "transcript":
        # e.g. ~/.cache/claude-cli-nodejs/<project>/mcp-logs-<server>/*.jsonl when a whole home is
        # imported: one reason for the file, not "unknown record type" for each of its lines (also
        # for the lines it gained since: its head is read from the start either way)
        batch.skip(str(f), None, "not a Claude Code transcript or hook file (its first record has no "
                   "\"type\"; an MCP server's log, for one): skipped whole")
        _state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
        return len(data)
    # transcript or workflow journal: resume at the byte offset already consumed
    end = data.rfind(b"\n") + 1
    tail = data[end:]
    body = data[:end]
    if kind == "journal":
        def parse(chunk: bytes, first: int) -> int:
            return parse_journal_lines(f, chunk, first, batch)
    else:
        tf = TranscriptFile.from_path(f)

        def parse(chunk: bytes, first: int) -> int:
            return parse_lines(tf, chunk, first, batch)
    consumed = parse(body, lines + 1) if body else 0
    new_offset = offset + end
    if tail.strip():
        # a last line without its newline: complete JSON is taken, a torn write waits for more
        try:
            orjson.loads(tail)
            consumed += parse(tail, lines + consumed + 1)
            new_offset = offset + len(data)
        except orjson.JSONDecodeError:
            batch.skip(str(f), lines + consumed + 1,
                       "incomplete last line (no newline, not valid JSON); it is read again when the file grows")
    _state(batch, f, "journal" if kind == "journal" else "transcript", st, new_offset, lines + consumed,
           len(batch.skipped) - before)
    return len(data)


def _head_kind(head: bytes) -> str | None:
    """What a .jsonl file is, told by its first non-blank line: "hooks" (a hook's JSON: it has
    "hook_event_name"); "foreign" (a JSON object with neither that nor "type", which every transcript
    record has: JSON lines of another program); else None, a transcript (a first line that is not
    JSON, or is cut off by ``head``'s end, tells nothing: the lines are read and reported)."""
    for line in head.split(b"\n"):
        if not line.strip():
            continue
        if b'"hook_event_name"' in line:
            return "hooks"
        if b'"type"' in line:
            return None  # (a transcript's first line: told without parsing it, per file of an import)
        try:
            return "foreign" if isinstance(orjson.loads(line), dict) else None
        except orjson.JSONDecodeError:
            return None
    return None
