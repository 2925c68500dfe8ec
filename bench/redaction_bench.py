#!/usr/bin/env python3
"""Redaction throughput on realistic text: what the one rule (golem_mcp.redaction) costs per text
and per stored row.

    python bench/redaction_bench.py            # figures of record
    python bench/redaction_bench.py --rows 20000

Texts come from the fixtures (what Claude Code 2.1.328 really wrote): every Bash command, tool
parameter and failed tool result of the transcripts, every hook payload, every OTel log record's
attributes. Measured in CPU time, best of ``--repeat`` runs each:

(a) ``redact()`` over all those texts as they are (nearly none holds a secret: most fail the
    DETECT check), and the same texts each with a secret appended (every rule runs): texts/s, MB/s;
(b) ``redact_value()`` over the hook payloads (what the hook client does before spooling);
(c) the store's wall, ``redact_table()``, over Arrow batches shaped like an OTLP write
    (``otel_events``: ids, names and attribute JSON) and a transcript write (``tool_calls``):
    rows/s, and what share of a row's write it is next to building the Arrow table itself;
(d) importing the module and compiling every rule, in fresh processes (the hook client's cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from golem_mcp.redaction import redact, redact_table, redact_value  # noqa: E402

FIXTURES = HERE.parents[1] / "shared" / "fixtures" / "claude-code-2.1.328"
SECRET = " && curl -u deploy:hunter2 https://ci.example.com"


def fixture_texts() -> tuple[list[str], list[dict], list[dict]]:
    """(texts of transcripts, hook payloads, OTel log-record attribute dicts) of the fixtures."""
    texts: list[str] = []
    for f in (FIXTURES / "home" / ".claude" / "projects").rglob("*.jsonl"):
        for line in f.read_bytes().splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            content = (rec.get("message") or {}).get("content") if isinstance(rec, dict) else None
            for b in content if isinstance(content, list) else ():
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "tool_use" and isinstance(b.get("input"), dict):
                    texts.extend(v for v in b["input"].values() if isinstance(v, str) and len(v) < 2000)
                elif b.get("type") == "tool_result" and b.get("is_error"):
                    c = b.get("content")
                    texts.append(c if isinstance(c, str) else json.dumps(c)[:500])
    hooks = [json.loads(x) for x in (FIXTURES / "hooks.jsonl").read_text().splitlines() if x.strip()]
    attrs: list[dict] = []
    for f in sorted((FIXTURES / "otlp").glob("*_logs.json")):
        doc = json.loads(f.read_text())
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    attrs.append({a["key"]: next(iter(a["value"].values()), None) for a in r.get("attributes", [])})
    return texts, hooks, attrs


def best(fn, repeat: int) -> float:
    """CPU seconds of the best of ``repeat`` runs (steadier than wall time on a shared machine)."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=50_000, help="rows per Arrow batch in (c)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    texts, hooks, attrs = fixture_texts()
    mb = sum(len(t) for t in texts) / 1e6
    with_secret = [t + SECRET for t in texts]
    flagged = sum(redact(t) != t for t in texts)
    print(f"fixtures: {len(texts)} texts ({mb * 1000:.1f} kB, {flagged} changed by redact), {len(hooks)} hook payloads, "
          f"{len(attrs)} OTel log records\n")

    t = best(lambda: [redact(x) for x in texts], args.repeat)
    print(f"(a) redact(), texts as they are:     {len(texts) / t:>10,.0f} texts/s  {mb / t:7.1f} MB/s  "
          f"{t / len(texts) * 1e6:6.2f} us/text")
    t = best(lambda: [redact(x) for x in with_secret], args.repeat)
    mb2 = sum(len(x) for x in with_secret) / 1e6
    print(f"    redact(), each with a secret:     {len(texts) / t:>10,.0f} texts/s  {mb2 / t:7.1f} MB/s  "
          f"{t / len(texts) * 1e6:6.2f} us/text")

    hb = sum(len(json.dumps(h)) for h in hooks) / 1e6
    t = best(lambda: [redact_value(h) for h in hooks], args.repeat)
    print(f"(b) redact_value(), hook payloads:   {len(hooks) / t:>10,.0f} payloads/s {hb / t:6.1f} MB/s  "
          f"{t / len(hooks) * 1e6:6.1f} us/payload")

    n = args.rows
    # every record's attributes differ (as in real OTLP: sequence numbers, timestamps)
    attr_json = [orjson.dumps({**attrs[i % len(attrs)], "event.sequence": str(i)}).decode() for i in range(n)]
    otel = [{"event_key": f"s{i}|{i}|api_request", "event_name": "api_request", "session_id": f"s{i % 97}",
             "prompt_id": f"p{i}", "request_id": f"req_{i:020d}", "attributes": a, "resource": attr_json[0]}
            for i, a in enumerate(attr_json)]
    calls = [{"tool_use_id": f"toolu_{i:024d}", "session_id": f"s{i % 97}", "tool_name": "Bash",
              "error": texts[i % len(texts)][:500] if i % 5 == 0 else None,
              "tool_parameters": orjson.dumps({"bash_command": texts[i % len(texts)][:2000]}).decode()}
             for i in range(n)]
    for name, rows, json_cols in (("otel_events", otel, {"attributes", "resource"}),
                                  ("tool_calls", calls, {"tool_parameters"})):
        schema = pa.schema([(c, pa.string()) for c in rows[0]])
        build = best(lambda rows=rows, schema=schema: pa.Table.from_pylist(rows, schema=schema), args.repeat)
        table = pa.Table.from_pylist(rows, schema=schema)
        t = best(lambda table=table, json_cols=json_cols: redact_table(table, json_cols), args.repeat)
        changed = redact_table(table, json_cols)[1]
        print(f"(c) redact_table(), {name:<12} {n / t:>10,.0f} rows/s   {t / n * 1e6:5.2f} us/row; "
              f"Arrow table build {build / n * 1e6:5.2f} us/row; columns changed: {sorted(changed) or 'none'}")

    code = "import time; t = time.process_time(); import golem_mcp.redaction as r; a = time.process_time(); " \
           "r.redact('API_KEY=x -u a:b mysql -px Bearer abcdefghijklmnopq Cookie: x https://u:p@h " \
           "-----BEGIN RSA PRIVATE KEY----- --token x'); print(a - t, time.process_time() - a)"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONPATH": str(HERE.parent / "src")}).stdout.split() for _ in range(7)]
    imp = statistics.median(float(r[0]) for r in runs)
    comp = statistics.median(float(r[1]) for r in runs)
    print(f"(d) fresh process, CPU: import {imp * 1e3:.1f} ms (re, DETECT and the clues), first redact() "
          f"with every rule {comp * 1e3:.1f} ms (compiles them)")


if __name__ == "__main__":
    main()
