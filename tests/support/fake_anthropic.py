"""A scripted stand-in for the Anthropic Messages API, for running the real Claude Code CLI in tests.

Start it, point Claude Code at it (``ANTHROPIC_BASE_URL=stand_in.url``, ``ANTHROPIC_API_KEY=anything``)
and it answers ``POST /v1/messages`` (streaming SSE or plain JSON) and ``/v1/messages/count_tokens``
from a script, per *role*. It is stateless per conversation: what to answer is derived from the
request alone, so any number of Claude Code sessions (and their subagents) can share one stand-in.

Script format (a dict, or the same as JSON)::

    {
      "roles": {
        "main": {                                   # the master thread (no marker in its system prompt)
          "steps": [
            ["tool", "mcp__golem__record_workflow", {"workflow_id": "{wf}"}],
            ["tool", "Agent", {"subagent_type": "reviewer", "description": "review",
                               "prompt": "Review. WF:{wf}"}],
            ["text", "Workflow complete."]
          ],
          "usage": {"input": 3000, "output": 120, "cache_read": 12000, "cache_write": 800}
        },
        "reviewer": {"steps": [...], "usage": {...}}
      }
    }

- **Role**: the first ``ROLE:<name>`` marker found in the request's system prompt (put it in the
  body of ``.claude/agents/<name>.md``), else in the conversation's first user message (an agent
  without a custom type, e.g. a ``Workflow`` script's ``agent("ROLE:x ...")``); no marker means
  ``"main"`` (or ``default_role``).
- **Step**: the number of assistant messages already in the request's ``messages``: the first request
  of a conversation gets step 0, the request after the first tool result step 1, and so on; past the
  end, the last step is served again. A ``"tool"`` step whose tool is not among the request's
  ``tools`` (Claude Code's side requests: titles, summaries...) gets a plain text answer instead.
- **Templates**: every string in a step may contain ``{wf}``; it is replaced with the value of the
  first ``WF:<value>`` marker found anywhere in the request (system prompt or messages). Put
  ``WF:<id>`` in the ``claude -p`` prompt and in the ``Agent`` prompts the script sends, and each
  session's subagents carry their workflow id along. ``{run_id}`` is replaced with the last
  ``Workflow`` run id (``wf_...``) found in the conversation's tool results, so a script can resume
  the run it launched (``{"resumeFromRunId": "{run_id}"}``).
- **Usage**: every response of a role reports that role's ``usage`` (input, output, cache_read,
  cache_write tokens). ``served`` records each response: role, step, model, usage, request_id,
  tool_use ids, the ``WF`` marker, the last ``Workflow`` run id in the conversation and Claude Code's ``X-Claude-Code-Session-Id`` /
  ``X-Claude-Code-Agent-Id`` request headers, so a test can compute the exact truth to compare against.
- **Reports**: ``["report", "Heading"]`` answers with text built from the conversation: the heading,
  then one line per tool result in ``messages`` (``- <tool name>: <result text>``), so a final answer
  carries exactly what the tools returned (the way a model's report is built from its tool calls).
- **Errors**: ``["error", 529, "Overloaded"]`` as a step answers with that HTTP status once per
  (conversation, step); Claude Code's retry then gets the next step's normal answer.
  ``["error", 529, "Overloaded", "always"]`` answers so every time (Claude Code's retries run out).
- **Refusals**: ``["refusal", "text"]`` answers the text with ``stop_reason: "refusal"`` (the model
  declined; Claude Code reports it as an ``api_refusal`` event).

Example::

    with FakeMessagesAPI(script) as api:
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "test"}
        ...
        per_role = api.totals(wf="wf-1")  # {'main': {'requests': 4, 'input': ...}, ...}
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROLE_RE = re.compile(r"ROLE:([A-Za-z0-9_-]+)")
WF_RE = re.compile(r"WF:([A-Za-z0-9_.-]+)")
RUN_RE = re.compile(r"\bwf_[a-z0-9-]{6,}")
USAGE_KEYS = ("input", "output", "cache_read", "cache_write")


def _texts(value: Any) -> Iterator[str]:
    """Every string inside a request value (system prompt blocks, message contents...)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def _fill(value: Any, wf: str, run_id: str = "") -> Any:
    if isinstance(value, str):
        return value.replace("{wf}", wf).replace("{run_id}", run_id)
    if isinstance(value, dict):
        return {k: _fill(v, wf, run_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, wf, run_id) for v in value]
    return value


def _last_run_id(messages: list[Any]) -> str:
    """The last ``Workflow`` run id (``wf_...``) in the conversation's tool results."""
    found = ""
    for m in messages:
        for b in (m.get("content") if isinstance(m, dict) and isinstance(m.get("content"), list) else []):
            if isinstance(b, dict) and b.get("type") == "tool_result":
                for t in _texts(b.get("content")):
                    ids = RUN_RE.findall(t)
                    if ids:
                        found = ids[-1]
    return found


def _report(heading: str, messages: list[Any]) -> str:
    """The heading and one line per tool result of the conversation, named by its tool_use."""
    names: dict[str, str] = {}
    lines = [heading]
    for m in messages:
        for b in (m.get("content") if isinstance(m, dict) and isinstance(m.get("content"), list) else []):
            if not isinstance(b, dict):
                continue
            if b.get("type") == "tool_use":
                names[b.get("id", "")] = b.get("name", "?")
            elif b.get("type") == "tool_result":
                text = " ".join(_texts(b.get("content")))
                lines.append(f"- {names.get(b.get('tool_use_id', ''), '?')}: {' '.join(text.split())}")
    return "\n".join(lines)


class FakeMessagesAPI:
    """The stand-in server: ``url``, ``served`` (one dict per response), ``totals()``."""

    def __init__(self, script: dict[str, Any], default_role: str = "main") -> None:
        self.tool_schemas: dict[str, Any] = {}  # every tool definition Claude Code offered, by name
        self.script = script
        self.default_role = script.get("default_role", default_role)
        self.served: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._errors_sent: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read `served`, not a console log

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                api.paths.append("GET " + self.path)
                self._json(200, {"data": [], "has_more": False})

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b"{}"
                api.paths.append("POST " + self.path)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "body is not JSON"}})
                    return
                path = self.path.split("?")[0]
                if path.endswith("/count_tokens"):
                    self._json(200, {"input_tokens": 100})
                elif path.endswith("/v1/messages"):
                    api.answer(self, body)
                else:
                    self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeMessagesAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answers -----------------------------------------------------------------------------------
    def role_of(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        for where in (body.get("system"), first_user):
            for text in _texts(where):
                m = ROLE_RE.search(text)
                if m and m.group(1) in self.script["roles"]:
                    return m.group(1)
        return self.default_role

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        role = self.role_of(body)
        spec = self.script["roles"][role]
        steps = spec["steps"]
        messages = body.get("messages") or []
        step_no = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        idx = min(step_no, len(steps) - 1)
        wf_m = next((m for t in _texts([body.get("system"), messages]) if (m := WF_RE.search(t))), None)
        wf = wf_m.group(1) if wf_m else ""
        run_id = _last_run_id(messages)
        step = _fill(steps[idx], wf, run_id)
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        conv = json.dumps(messages[:1], sort_keys=True)[:2000] + role
        if step[0] == "error":
            key = (conv, idx)
            with self._lock:
                first = key not in self._errors_sent
                self._errors_sent.add(key)
            if first or (len(step) > 3 and step[3] == "always"):
                handler._json(int(step[1]), {"type": "error", "error": {"type": "overloaded_error",  # type: ignore[attr-defined]
                                                                        "message": step[2]}})
                return
            step = _fill(steps[min(idx + 1, len(steps) - 1)], wf, run_id)
        if step[0] == "report":
            step = ["text", _report(step[1], messages)]
        if step[0] == "tool" and step[1] not in tools:
            step = ["text", "OK."]  # a side request (title, summary...) that cannot call the scripted tool
        usage = spec.get("usage") or {}
        u = {k: int(usage.get(k, 0)) for k in USAGE_KEYS}
        request_id = "req_" + uuid.uuid4().hex[:24]
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        model = body.get("model") or "claude-test"
        blocks: list[dict[str, Any]] = []
        if step[0] == "tool":
            blocks.append({"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": step[1],
                           "input": step[2]})
            stop_reason = "tool_use"
        elif step[0] == "refusal":
            blocks.append({"type": "text", "text": step[1]})
            stop_reason = "refusal"
        else:
            blocks.append({"type": "text", "text": step[1]})
            stop_reason = "end_turn"
        with self._lock:
            self.served.append({"role": role, "step": idx, "model": model, "wf": wf, "run_id": run_id or None,
                                "request_id": request_id,
                                "session_id": handler.headers.get("x-claude-code-session-id"),
                                "agent_id": handler.headers.get("x-claude-code-agent-id"),
                                "tool": step[1] if step[0] == "tool" else None,
                                "tool_use_ids": [b["id"] for b in blocks if b["type"] == "tool_use"],
                                "tools_offered": sorted(str(t) for t in tools), **u})
            for t in body.get("tools") or []:
                if isinstance(t, dict) and t.get("name"):
                    self.tool_schemas.setdefault(t["name"], t)
        usage_start = {"input_tokens": u["input"], "cache_creation_input_tokens": u["cache_write"],
                       "cache_read_input_tokens": u["cache_read"], "output_tokens": 1}
        if not body.get("stream"):
            handler._json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model,  # type: ignore[attr-defined]
                                "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                                "usage": {**usage_start, "output_tokens": u["output"]}},
                          headers={"request-id": request_id})
            return
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage_start}})]
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": b["text"]}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(b["input"])}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                             "stop_sequence": None},
                                         "usage": {"output_tokens": u["output"]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        data = b"".join(f"event: {name}\ndata: {json.dumps(ev)}\n\n".encode() for name, ev in events)
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("request-id", request_id)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # -- truth -------------------------------------------------------------------------------------
    def totals(self, wf: str | None = None, session_id: str | None = None) -> dict[str, dict[str, int]]:
        """Per role: responses served and tokens reported, optionally only for one ``WF`` marker or one
        Claude Code session (its ``X-Claude-Code-Session-Id`` request header)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = [r for r in self.served if (wf is None or r["wf"] == wf)
                    and (session_id is None or r["session_id"] == session_id)]
        for r in rows:
            t = out.setdefault(r["role"], {"requests": 0, **{k: 0 for k in USAGE_KEYS}})
            t["requests"] += 1
            for k in USAGE_KEYS:
                t[k] += r[k]
        return out
