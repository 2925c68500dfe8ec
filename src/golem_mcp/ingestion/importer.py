"""``golem-mcp import``: walk paths, read what is new, write it in batches.

Transcripts are read incrementally from the byte offset already consumed (a re-run over unchanged
files reads nothing); captured OTLP bodies and hook-payload files are re-read only when they
changed, and dedupe keys make re-reading harmless.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import GolemError
from ..store.db import Store
from . import otlp
from .hooks import parse_hook_lines
from .records import Batch, Skipped, now_us
from .transcripts import TranscriptFile, parse_lines, parse_meta

FLUSH_BYTES = 64 * 1024 * 1024
FLUSH_ROWS = 200_000

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


def classify(path: Path) -> str | None:
    name = path.name.lower()
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


def walk(paths: Iterable[Path]) -> Iterator[tuple[Path, os.stat_result]]:
    for p in paths:
        if p.is_dir():
            stack = [str(p)]
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
                                yield Path(e.path), e.stat()
                            except OSError:
                                continue  # deleted between listing and stat
        elif p.exists():
            yield p, p.stat()


class Importer:
    def __init__(self, store: Store, store_prompts: bool = False) -> None:
        self.store = store
        self.store_prompts = store_prompts

    def run(self, paths: Iterable[str | Path], progress: Progress | None = None) -> ImportResult:
        res = ImportResult()
        states = self.store.file_states()
        todo: list[tuple[Path, os.stat_result, str]] = []
        for p in [Path(x).expanduser() for x in paths]:
            if not p.exists():
                res.skipped.append(Skipped(str(p), None, "no such file or folder"))
                continue
            for f, st in walk([p]):
                kind = classify(f)
                if kind is None:
                    continue
                res.files_seen += 1
                old = states.get(str(f))
                if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
                    res.files_unchanged += 1
                    continue
                if kind == "hooks" and not _looks_like_hooks(f):
                    kind = "transcript"
                if kind == "transcript" and _looks_like_hooks(f):
                    kind = "hooks"
                todo.append((f, st, kind))
        total = sum(st.st_size - (states.get(str(f), (0, 0, 0, 0))[2] if k == "transcript" else 0)
                    for f, st, k in todo)
        batch = Batch()
        pending_bytes = 0
        done = 0
        for f, st, kind in todo:
            old = states.get(str(f))
            try:
                n = self._one(f, st, kind, old, batch)
            except FileNotFoundError:
                batch.skip(str(f), None, "file disappeared while being read")
                continue
            except OSError as e:
                batch.skip(str(f), None, f"unreadable: {e}")
                continue
            res.files_read += 1
            res.bytes_read += n
            pending_bytes += n
            done += n
            if pending_bytes >= FLUSH_BYTES or batch.count() >= FLUSH_ROWS:
                res.rows += self._flush(batch, res)
                pending_bytes = 0
            if progress:
                progress(done, total)
        res.rows += self._flush(batch, res)
        return res

    def _flush(self, batch: Batch, res: ImportResult) -> int:
        n = batch.count()
        if n:
            self.store.write(batch)
        res.skipped.extend(batch.skipped)
        batch.clear_rows()
        batch.skipped = []
        return n

    def _state(self, batch: Batch, f: Path, kind: str, st: os.stat_result, offset: int, lines: int, skipped: int) -> None:
        batch.add("ingest_files", {"path": str(f), "kind": kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                   "offset": offset, "lines": lines, "skipped": skipped, "updated_at": now_us()})

    def _one(self, f: Path, st: os.stat_result, kind: str, old: tuple | None, batch: Batch) -> int:
        before = len(batch.skipped)
        if kind == "meta":
            parse_meta(f, batch)
            self._state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
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
                otlp.to_batch(signal, doc, batch, self.store_prompts)
            except GolemError as e:
                batch.skip(str(f), None, str(e))
            self._state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
            return len(data)
        if kind == "hooks":
            data = f.read_bytes()
            parse_hook_lines(data, str(f), batch, self.store_prompts)
            self._state(batch, f, kind, st, st.st_size, 0, len(batch.skipped) - before)
            return len(data)
        # transcript: resume at the byte offset already consumed
        offset, lines = 0, 0
        if old and old[0] <= st.st_size and old[2] <= st.st_size:
            offset, lines = old[2], old[3]
        with open(f, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        tail = data[end:]
        body = data[:end]
        tf = TranscriptFile.from_path(f)
        consumed = parse_lines(tf, body, lines + 1, batch) if body else 0
        new_offset = offset + end
        if tail.strip():
            # a last line without its newline: complete JSON is taken, a torn write waits for more
            try:
                orjson.loads(tail)
                consumed += parse_lines(tf, tail, lines + consumed + 1, batch)
                new_offset = offset + len(data)
            except orjson.JSONDecodeError:
                batch.skip(str(f), lines + consumed + 1,
                           "incomplete last line (no newline, not valid JSON); it is read again when the file grows")
        self._state(batch, f, kind, st, new_offset, lines + consumed, len(batch.skipped) - before)
        return len(data)


def _looks_like_hooks(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    for line in head.split(b"\n"):
        if line.strip():
            return b'"hook_event_name"' in line
    return False
