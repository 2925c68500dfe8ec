#!/usr/bin/env python3
"""Build a large ``~/.claude/projects``-shaped history from the real fixture sessions.

Every copy of the fixture sessions gets fresh ids, so nothing dedupes across copies: session ids
(file and folder names and ``sessionId``), every other UUID (``uuid``, ``parentUuid``, ``promptId``,
...), agent ids, ``requestId`` / ``message.id`` / ``tool_use`` ids. Copies are spread over ~30 days
(the date part of every timestamp is shifted) and over a few project folders.

Speed: each fixture file is turned into a *template* once (a regex over 3.6 MB marks where the
per-copy tag and the date go); a copy is then two ``bytes.replace`` calls per file, so 1 GB is
written in a few seconds.

    python bench/gen_history.py --out bench/.data/history --size-gb 1.0

The generated tree is ``OUT/.claude/projects/...`` (so ``CLAUDE_CONFIG_DIR=OUT/.claude`` or
``HOME=OUT`` point tools at it); the script prints that projects folder and the bytes written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_FIXTURE = HERE.parents[1] / "shared" / "fixtures" / "claude-code-2.1.328" / "home" / ".claude" / "projects"
FIXTURE_ENV = "GOLEM_BENCH_FIXTURE"

TAG = b"\x00K\x00"  # replaced by the copy number, 4 hex digits
DATE = b"\x00D\x00"  # replaced by the copy's date, YYYY-MM-DD
DAYS = 30

_UUID = re.compile(rb"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{4}(-[0-9a-f]{12})\b")
_AGENT = re.compile(rb"\ba[0-9a-f]{4}([0-9a-f]{12})\b")
_API_ID = re.compile(rb"\b(req|msg|toolu)_([0-9]+)_")
_DATE = re.compile(rb"\b(20[0-9]{2}-[0-9]{2}-[0-9]{2})T")


def fixture_dir() -> Path:
    return Path(os.environ.get(FIXTURE_ENV, DEFAULT_FIXTURE))


def template(data: bytes) -> tuple[bytes, str | None]:
    """Mark the id parts and dates of one file; returns the template and the fixture's date."""
    data = _UUID.sub(rb"\1" + TAG + rb"\2", data)
    data = _AGENT.sub(rb"a" + TAG + rb"\1", data)
    data = _API_ID.sub(rb"\1_\2k" + TAG + rb"_", data)
    dates = {m.group(1) for m in _DATE.finditer(data)}
    if len(dates) > 1:
        # more than one day: shift each one by the same offset (kept simple: the fixture has one)
        raise SystemExit(f"fixture spans several dates {sorted(dates)}; gen_history shifts one")
    data = _DATE.sub(DATE + b"T", data)
    return data, (dates.pop().decode() if dates else None)


def load_templates(root: Path) -> tuple[list[tuple[str, bytes]], dt.date]:
    out: list[tuple[str, bytes]] = []
    base: dt.date | None = None
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix().encode()
        rel_t, _ = template(rel)
        body, day = template(f.read_bytes())
        if day:
            d = dt.date.fromisoformat(day)
            base = d if base is None else base
        out.append((rel_t.decode("latin-1"), body))
    return out, base or dt.date.today()


def copy_bytes(templates: list[tuple[str, bytes]]) -> int:
    # tags and dates keep their length per copy (4 hex, 10 chars), so every copy has the same size
    return sum(len(b.replace(TAG, b"0000").replace(DATE, b"2026-01-01")) for _, b in templates)


def write_copies(args: tuple[list[tuple[str, bytes]], dt.date, str, list[int]]) -> int:
    templates, base, out, ks = args
    total = 0
    made: set[str] = set()
    for k in ks:
        tag = b"%04x" % k
        day = (base - dt.timedelta(days=k % DAYS)).isoformat().encode()
        group = k % 5  # a few project folders per fixture project, many sessions in each
        for rel_t, body in templates:
            rel = rel_t.replace(TAG.decode("latin-1"), tag.decode())
            first, _, rest = rel.partition("/")
            path = os.path.join(out, f"{first}-g{group}", rest)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            data = body.replace(TAG, tag).replace(DATE, day)
            with open(path, "wb") as fh:
                fh.write(data)
            total += len(data)
    return total


def generate(out: Path, size_gb: float, jobs: int = 2, fixture: Path | None = None, quiet: bool = False) -> dict:
    """Write about ``size_gb`` GB of transcripts under ``out/.claude/projects``; returns a summary."""
    root = fixture or fixture_dir()
    if not root.is_dir():
        raise SystemExit(f"fixture folder {root} not found (set {FIXTURE_ENV})")
    t0 = time.perf_counter()
    templates, base = load_templates(root)
    per_copy = copy_bytes(templates)
    copies = max(1, int(size_gb * 1e9 / per_copy + 0.999))
    if copies > 0xFFFF:
        raise SystemExit("at most 65535 copies (about 230 GB)")
    projects = out / ".claude" / "projects"
    if projects.exists():
        shutil.rmtree(projects)
    projects.mkdir(parents=True)
    jobs = max(1, min(jobs, copies))
    chunks = [list(range(i, copies, jobs)) for i in range(jobs)]
    if jobs == 1:
        total = write_copies((templates, base, str(projects), chunks[0]))
    else:
        with ProcessPoolExecutor(jobs) as ex:
            total = sum(ex.map(write_copies, [(templates, base, str(projects), c) for c in chunks]))
    secs = time.perf_counter() - t0
    summary = {"projects_dir": str(projects), "claude_config_dir": str(out / ".claude"), "copies": copies,
               "files": copies * len(templates), "bytes": total,
               "jsonl_bytes": copies * sum(len(b.replace(TAG, b"0000").replace(DATE, b"2026-01-01"))
                                           for r, b in templates if r.endswith(".jsonl")),
               "seconds": round(secs, 2), "first_day": (base - dt.timedelta(days=min(copies, DAYS) - 1)).isoformat(),
               "last_day": base.isoformat()}
    (out / "history.json").write_text(json.dumps(summary, indent=1))
    if not quiet:
        print(f"wrote {total / 1e9:.2f} GB in {copies * len(templates)} files ({copies} copies) "
              f"in {secs:.1f} s ({total / 1e6 / max(secs, 1e-9):.0f} MB/s) -> {projects}", file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / ".data" / "history",
                   help="output folder; transcripts go to OUT/.claude/projects (default bench/.data/history)")
    p.add_argument("--size-gb", type=float, default=1.0, help="about this many GB of transcripts (default 1.0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="writer processes")
    p.add_argument("--fixture", type=Path, default=None, help=f"source projects folder (default ${FIXTURE_ENV} or the fixtures)")
    args = p.parse_args(argv)
    summary = generate(args.out, args.size_gb, args.jobs, args.fixture)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
