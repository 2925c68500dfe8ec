"""OTLP/HTTP bodies (logs, metrics, traces; JSON or protobuf) to store rows.

Claude Code's events become typed rows (api_request -> api_requests, tool_result -> tool_calls, ...)
and every event, known or not, also has its row in ``otel_events``. Resource attributes
``workflow_id``, ``stage``, ``task_id`` and ``experiment_id`` are recognised as context; all other
attributes are kept as JSON there: an unknown event's all, a known event's those its typed row does
not hold as they came (:func:`_unheld`).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import InvalidInput
from ..redaction import OTEL_TEXT_KEYS
from ..store import checks
from . import workflow_runs
from .records import (
    CONTEXT_KEYS,
    SRC_OTEL_LOG,
    SRC_OTEL_SPAN,
    Batch,
    error_text,
    iso_to_us,
    mcp_names,
    redact,
    unexpected,
)

SIGNALS = ("logs", "metrics", "traces")
# attribute keys holding prompt or response text: dropped unless the user opted in
_TEXT_KEYS = OTEL_TEXT_KEYS

Attrs = dict[str, Any]


# --- decoding: both encodings to plain (resource attrs, items) ---------------------------------

MAX_DEPTH = 32  # nesting of attribute values (arrays, kvlists); a deeper value rejects its record


def _json_value(v: Any, depth: int = 0) -> Any:
    if not isinstance(v, dict) or not v:
        return None
    if depth > MAX_DEPTH:
        raise ValueError(f"an attribute value is nested deeper than {MAX_DEPTH} levels")
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            i = int(v["intValue"])
        except (TypeError, ValueError):
            return None
        # past int64 it is no OTLP int (and no JSON number orjson writes): kept as its text, and a
        # column that reads it as a number gets it as such, to be judged by the store's checks
        return i if -(2**63) <= i < 2**63 else str(i)
    if "doubleValue" in v:
        return _float(v["doubleValue"])
    if "boolValue" in v:
        return _bool(v["boolValue"])
    if "arrayValue" in v:
        return [_json_value(x, depth + 1) for x in _list(_get(v["arrayValue"], "values"))]
    if "kvlistValue" in v:
        return {str(kv.get("key")): _json_value(kv.get("value"), depth + 1)
                for kv in _list(_get(v["kvlistValue"], "values")) if isinstance(kv, dict)}
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _json_attrs(items: Any) -> Attrs:
    # ~25 attributes a record, nearly all strings: the string case is tested first, inline
    out: Attrs = {}
    for kv in _list(items):
        if not isinstance(kv, dict) or type(kv.get("key")) is not str:
            continue
        v = kv.get("value")
        if type(v) is dict and "stringValue" in v:
            out[kv["key"]] = v["stringValue"]
        else:
            out[kv["key"]] = _json_value(v)
    return out


def _list(x: Any) -> list:
    """A JSON list, or nothing: a field of the wrong type holds no items."""
    return x if isinstance(x, list) else []


def _get(x: Any, key: str) -> Any:
    return x.get(key) if isinstance(x, dict) else None


def _pb_value(v: Any, depth: int = 0) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if depth > MAX_DEPTH:
        raise ValueError(f"an attribute value is nested deeper than {MAX_DEPTH} levels")
    if which == "array_value":
        return [_pb_value(x, depth + 1) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def _pb_attrs(items: Any) -> Attrs:
    # each field access is a call into the protobuf runtime: a non-empty string_value can only be
    # the set member of the oneof, so most attributes cost two accesses and no WhichOneof
    out: Attrs = {}
    for kv in items:
        v = kv.value
        s = v.string_value
        if s:
            out[kv.key] = s
            continue
        i = v.int_value  # the next most common kind (token counts, sequence numbers)
        out[kv.key] = i if i else _pb_value(v)
    return out


_HEX = frozenset("0123456789abcdefABCDEF")


def _hex_id(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, bytes):
        return value.hex()
    # OTLP/JSON ids are hex; some exporters send base64 - normalise to hex
    s = str(value)
    if _HEX.issuperset(s):
        return s.lower()
    try:
        return base64.b64decode(s).hex()
    except ValueError:
        return s


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(v))
        except (TypeError, ValueError, OverflowError):  # "1e400" is inf, which has no int
            return None


def _tokens(v: Any) -> Any:
    """A token count as sent, made an int when it is one: OTLP carries counts as strings or doubles
    ("100", 100.0). Anything else ("12 tokens", 1.5, a list) is passed on as it came, so the store's
    checks (``store/checks.py``, the one rule for every source) leave its record out and say why,
    where a NULL would have been stored as an unknown count without a word to the sender."""
    if v is None or v == "":
        return None
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            return int(v)  # exact, also past a float's precision (the checks then bound it)
        except ValueError:
            pass
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return v
    return int(f) if f.is_integer() else v


def _float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
    if isinstance(v, int | float):
        return bool(v)
    return None


def decode(signal: str, body: bytes, content_type: str) -> Any:
    """Parse a body into the protobuf request message or a JSON dict; InvalidInput when it can't."""
    if signal not in SIGNALS:
        raise InvalidInput(f"unknown OTLP signal {signal!r}; use one of {', '.join(SIGNALS)}")
    if "json" in content_type:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            doc = _lenient_json(body, e)
        key = {"logs": "resourceLogs", "metrics": "resourceMetrics", "traces": "resourceSpans"}[signal]
        if not isinstance(doc, dict) or not isinstance(doc.get(key, []), list):
            raise InvalidInput(f"OTLP/JSON {signal} body must be an object with a '{key}' list")
        return doc
    cls = _pb_class(signal)
    msg = cls()
    try:
        msg.ParseFromString(body)
    except Exception as e:  # noqa: BLE001 - DecodeError, or a nesting deeper than the parser allows
        salvaged = _salvage(signal, body)
        if salvaged is None:
            raise InvalidInput(f"OTLP/protobuf {signal} body does not decode: {type(e).__name__}: {e}") from e
        return salvaged
    return msg


class Salvaged:
    """A protobuf request rebuilt from the parts of a body that parse on their own, and what was lost."""

    def __init__(self, msg: Any, lost: list[str]) -> None:
        self.msg = msg
        self.lost = lost


_PB_PATH = {"logs": ("resource_logs", "scope_logs", "log_records"),
            "traces": ("resource_spans", "scope_spans", "spans"),
            "metrics": ("resource_metrics", "scope_metrics", "metrics")}


def _salvage(signal: str, body: bytes) -> Salvaged | None:
    """A body protobuf refuses as a whole (one record nested past the parser's depth limit, say):
    its resources, scopes and records parsed one by one from the wire format, so that the record
    that does not parse costs only itself. None when the framing itself is broken or nothing parses.
    """
    res_f, scope_f, rec_f = _PB_PATH[signal]
    req = _pb_class(signal)()
    lost: list[str] = []
    try:
        for f, chunk in _wire_fields(body):
            if f != 1:
                continue
            rl = getattr(req, res_f).add()
            try:
                rl.ParseFromString(chunk)
                continue
            except Exception:  # noqa: BLE001 - split it below
                rl.Clear()
            parts = list(_wire_fields(chunk))
            try:
                for f2, c2 in parts:
                    if f2 == 1:
                        rl.resource.ParseFromString(c2)
            except Exception:  # noqa: BLE001 - without its resource, its records would lose their context
                getattr(req, res_f).pop()
                lost.append(f"a {res_f} entry whose resource does not parse")
                continue
            for f2, c2 in parts:
                if f2 != 2:
                    continue
                sl = getattr(rl, scope_f).add()
                try:
                    sl.ParseFromString(c2)
                    continue
                except Exception:  # noqa: BLE001 - split it below
                    sl.Clear()
                for f3, c3 in _wire_fields(c2):
                    if f3 == 1:
                        try:
                            sl.scope.ParseFromString(c3)
                        except Exception:  # noqa: BLE001 - the scope's name is not needed for its records
                            sl.ClearField("scope")
                    elif f3 == 2:
                        rec = getattr(sl, rec_f).add()
                        try:
                            rec.ParseFromString(c3)
                        except Exception as e:  # noqa: BLE001 - this record is lost, its neighbours are not
                            del getattr(sl, rec_f)[-1]
                            lost.append(f"a record does not parse ({type(e).__name__}: {str(e)[:100]})")
    except ValueError:
        return None  # the framing itself is broken: no part can be trusted
    if not any(True for rl in getattr(req, res_f) for sl in getattr(rl, scope_f) for _ in getattr(sl, rec_f)):
        return None
    return Salvaged(req, lost)


def _wire_fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, bytes) of each length-delimited field of a protobuf message; other wire types
    are skipped. ValueError when the bytes are not protobuf framing."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _wire_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _wire_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _wire_varint(buf, i)
            if i + size > n:
                raise ValueError("truncated field")
            yield field, buf[i:i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire}")
    if i > n:
        raise ValueError("truncated field")


def _wire_varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def _lenient_json(body: bytes, error: Exception) -> Any:
    """The body by Python's own JSON reader, which takes what orjson refuses in one record (NaN,
    1e400, a lone surrogate) so that one record does not cost the batch; the store's checks then
    judge the values. InvalidInput when it is not JSON at all."""
    import json

    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"OTLP/JSON body does not decode: {error}") from e


def _pb_class(signal: str) -> Any:
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        return ExportLogsServiceRequest
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        return ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    return ExportTraceServiceRequest


# Walking a body: each item is (resource attributes, raw record). A part of a JSON body that is not
# what OTLP says (``resourceLogs: [1]``, a scope that is a string, a resource whose attributes do
# not decode) is one item whose resource is the exception saying so: it counts as one rejected
# record, and every record beside it is read.
Item = tuple["Attrs | Exception", Any]


def _json_resources(doc: dict, key: str, scopes: str, records: str) -> Iterator[Item]:
    for i, r in enumerate(_list(doc.get(key))):
        if not isinstance(r, dict):
            yield ValueError(f"{key}[{i}] is not an object"), None
            continue
        try:
            res: Attrs | Exception = _json_attrs(_get(r.get("resource"), "attributes"))
        except Exception as e:  # noqa: BLE001 - the records of this resource are rejected, not the body
            res = e
        if not _is_list(r.get(scopes)):
            yield ValueError(f"{key}[{i}].{scopes} is not a list"), None
            continue
        for j, sc in enumerate(_list(r.get(scopes))):
            if not isinstance(sc, dict) or not _is_list(sc.get(records)):
                yield ValueError(f"{key}[{i}].{scopes}[{j}] is not an object with a '{records}' list"), None
                continue
            for rec in _list(sc.get(records)):
                yield res, rec


def _is_list(x: Any) -> bool:
    return x is None or isinstance(x, list)


def _pb_resources(resources: Any, scopes: str, records: str) -> Iterator[Item]:
    for r in resources:
        try:
            res: Attrs | Exception = _pb_attrs(r.resource.attributes)
        except Exception as e:  # noqa: BLE001 - the records of this resource are rejected, not the body
            res = e
        for sc in getattr(r, scopes):
            for rec in getattr(sc, records):
                yield res, rec


def _iter_logs(doc: Any) -> Iterator[Item]:
    if isinstance(doc, dict):
        return _json_resources(doc, "resourceLogs", "scopeLogs", "logRecords")
    return _pb_resources(doc.resource_logs, "scope_logs", "log_records")


def _log(r: Any) -> dict:
    """One log record, either encoding, as plain values."""
    if isinstance(r, dict):
        body = r.get("body")
        return {
            "time_ns": _int(r.get("timeUnixNano")) or _int(r.get("observedTimeUnixNano")),
            "body": _json_value(body) if isinstance(body, dict) else body,
            "attrs": _json_attrs(r.get("attributes")),
            "trace_id": _hex_id(r.get("traceId")),
            "span_id": _hex_id(r.get("spanId")),
        }
    if r is None or isinstance(r, list | str | int | float | bool):
        raise ValueError("a log record is not an object")
    return {
        "time_ns": r.time_unix_nano or r.observed_time_unix_nano or None,
        "body": _pb_value(r.body),
        "attrs": _pb_attrs(r.attributes),
        "trace_id": _hex_id(r.trace_id),
        "span_id": _hex_id(r.span_id),
    }


def _iter_spans(doc: Any) -> Iterator[Item]:
    if isinstance(doc, dict):
        return _json_resources(doc, "resourceSpans", "scopeSpans", "spans")
    return _pb_resources(doc.resource_spans, "scope_spans", "spans")


def _span(s: Any) -> dict:
    if isinstance(s, dict):
        st = s.get("status")
        st = st if isinstance(st, dict) else {}
        return {
            "trace_id": _hex_id(s.get("traceId")), "span_id": _hex_id(s.get("spanId")),
            "parent_span_id": _hex_id(s.get("parentSpanId")), "name": s.get("name"),
            "start_ns": _int(s.get("startTimeUnixNano")), "end_ns": _int(s.get("endTimeUnixNano")),
            "attrs": _json_attrs(s.get("attributes")),
            "status_code": _int(st.get("code")), "status_message": st.get("message"),
        }
    if s is None or isinstance(s, list | str | int | float | bool):
        raise ValueError("a span is not an object")
    return {
        "trace_id": _hex_id(s.trace_id), "span_id": _hex_id(s.span_id),
        "parent_span_id": _hex_id(s.parent_span_id), "name": s.name,
        "start_ns": s.start_time_unix_nano or None, "end_ns": s.end_time_unix_nano or None,
        "attrs": _pb_attrs(s.attributes),
        "status_code": s.status.code, "status_message": s.status.message or None,
    }


_METRIC_KINDS = ("sum", "gauge", "histogram", "exponentialHistogram", "summary")


def _iter_metric_points(doc: Any) -> Iterator[Item]:
    """Items are (resource, (metric, its kind, data point)); a data point is a record here."""
    if isinstance(doc, dict):
        for res, m in _json_resources(doc, "resourceMetrics", "scopeMetrics", "metrics"):
            if isinstance(res, Exception) or not isinstance(m, dict):
                yield (res if isinstance(res, Exception) else ValueError("a metric is not an object")), None
                continue
            for kind in _METRIC_KINDS:
                data = m.get(kind)
                if isinstance(data, dict):
                    for dp in _list(data.get("dataPoints")):
                        yield res, (m, kind, data, dp)
    else:
        for res, m in _pb_resources(doc.resource_metrics, "scope_metrics", "metrics"):
            kind = m.WhichOneof("data")
            if kind is None:
                continue
            data = getattr(m, kind)
            for dp in data.data_points:
                yield res, (m, kind, data, dp)


def _point(item: tuple) -> dict:
    m, kind, data, dp = item
    if isinstance(m, dict):
        if not isinstance(dp, dict):
            raise ValueError("a data point is not an object")
        if "asDouble" in dp:
            value = _float(dp["asDouble"])
        elif "asInt" in dp:
            value = _float(dp["asInt"])
        else:
            value = _float(dp.get("sum"))
        return {
            "name": m.get("name"), "unit": m.get("unit"), "kind": kind,
            "temporality": _int(data.get("aggregationTemporality")), "attrs": _json_attrs(dp.get("attributes")),
            "start_ns": _int(dp.get("startTimeUnixNano")), "time_ns": _int(dp.get("timeUnixNano")),
            "value": value,
        }
    if kind in ("sum", "gauge"):
        which = dp.WhichOneof("value")
        value = float(getattr(dp, which)) if which else None
    else:
        value = float(getattr(dp, "sum", 0.0))
    return {
        "name": m.name, "unit": m.unit, "kind": kind, "temporality": getattr(data, "aggregation_temporality", None),
        "attrs": _pb_attrs(dp.attributes), "start_ns": dp.start_time_unix_nano or None,
        "time_ns": dp.time_unix_nano or None, "value": value,
    }


# --- mapping to store rows ---------------------------------------------------------------------

# Claude Code's attribution of a request (whom it was made for), as it names the attributes, to
# our columns. It writes "third-party" / "custom" where it redacts a name; those are kept as written.
_ATTRIBUTION = {"skill.name": "skill_name", "plugin.name": "plugin_name", "marketplace.name": "marketplace_name",
                "mcp_server.name": "mcp_server_name", "mcp_tool.name": "mcp_tool_name"}


def _attribution(a: Attrs) -> dict:
    return {col: _text(a.get(k)) for k, col in _ATTRIBUTION.items()}


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def recorded_cost(a: Attrs) -> float | None:
    """Claude Code's own cost of a request: ``cost_usd``, else its ``cost_usd_micros``.

    The micro-dollars are ``cost_usd`` rounded per request (0.0011875 arrives as 1188), so summed
    they drift from Claude Code's own session total (``total_cost_usd``, the sum of the unrounded
    figures: 0.553328 against 0.553325 for one captured workflow); they stand in only when
    ``cost_usd`` is missing. What the store's cost rule then prefers to the price table."""
    cost = _float(a.get("cost_usd"))
    if cost is not None:
        return cost
    micros = _int(a.get("cost_usd_micros"))
    return micros / 1_000_000 if micros is not None and micros >= 0 else None


def _ctx(res: Attrs, attrs: Attrs) -> dict:
    return {k: (attrs.get(k) if attrs.get(k) not in (None, "") else res.get(k)) or None for k in CONTEXT_KEYS}


def _ns_to_us(ns: int | None) -> int | None:
    return ns // 1000 if ns else None


def _json(d: dict) -> str:
    return orjson.dumps(d, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _private(attrs: Attrs, store_prompts: bool) -> Attrs:
    if store_prompts or _TEXT_KEYS.isdisjoint(attrs):
        return attrs
    return {k: v for k, v in attrs.items() if k not in _TEXT_KEYS}


# What a known event's typed row holds of its attributes, so its otel_events row need not repeat it
# (it was ~70% of that row: a JSON copy of every attribute, most of what a write of OTLP records
# logged to the WAL). Attribute -> the column holding it: of the otel_events row itself (any event),
# of the typed row (by event). Every other attribute stays in otel_events.attributes, whatever Claude
# Code adds tomorrow, and so does each of these whose column did not take its value as it came
# (:func:`_unheld`).
_EVENT_COLUMNS = {"event.name": "event_name", "session.id": "session_id", "prompt.id": "prompt_id",
                  "agent_id": "agent_id", "request_id": "request_id", "tool_use_id": "tool_use_id",
                  "event.sequence": "sequence", **{k: k for k in CONTEXT_KEYS}}
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "cache_creation_5m_tokens",
           "cache_creation_1h_tokens")
_TYPED_COLUMNS: dict[str, dict[str, str]] = {
    "api_request": {"model": "model", **{t: t for t in _TOKENS}, "cost_usd": "recorded_cost_usd",
                    "cost_usd_micros": "cost_usd_micros", "duration_ms": "duration_ms", "ttft_ms": "ttft_ms",
                    "query_source": "query_source", "effort": "effort", "speed": "speed",
                    "client_request_id": "client_request_id", "attempt": "attempt", **_ATTRIBUTION},
    "api_error": {k: k for k in ("model", "status_code", "error", "attempt", "duration_ms")},
    "api_retries_exhausted": {"model": "model", "status_code": "status_code", "error": "error",
                              "total_attempts": "attempt", "total_retry_duration_ms": "total_retry_duration_ms"},
    "api_refusal": {"model": "model", "attempt": "attempt"},
    "compaction": {k: k for k in ("trigger", "success", "duration_ms", "pre_tokens", "post_tokens", "error")},
    "tool_result": {"tool_name": "tool_name", "success": "success", "duration_ms": "duration_ms", "error": "error",
                    "error_type": "error_type", "tool_input_size_bytes": "input_size_bytes",
                    "tool_result_size_bytes": "result_size_bytes", "tool_parameters": "tool_parameters"},
    "tool_decision": {"tool_name": "tool_name", "decision": "decision"},
}
# the typed row's key, by event (a bad one rejects the row: then it holds nothing)
_TYPED_KEYS = {"api_request": "request_id", "api_error": "error_key", "api_retries_exhausted": "error_key",
               "api_refusal": "error_key", "compaction": "event_key", "tool_result": "tool_use_id",
               "tool_decision": "tool_use_id"}


# per event: attribute -> (True: a column of the otel_events row, else of the typed row; the column;
# whether it is a cost), and the typed row's token counts (one the checks refuse rejects the row)
_HELD = {name: {**{k: (False, c, c.endswith("cost_usd")) for k, c in cols.items()},
                **{k: (True, c, False) for k, c in _EVENT_COLUMNS.items()}}
         for name, cols in _TYPED_COLUMNS.items()}
_HELD_TOKENS = {"api_request": _TOKENS, "compaction": ("pre_tokens", "post_tokens")}


def _unheld(attrs: Attrs, name: str, event_us: int | None, event: dict, typed: dict) -> Attrs:
    """``attrs`` less what the otel_events row ``event`` and the typed row ``typed`` of a ``name``
    event hold as it came (``event_us``: the record's ``event.timestamp`` read). A typed row the
    store's checks would reject (a bad key or token count) holds nothing; a value a column took
    otherwise (a number it could not read, a text past a limit, an error it cut) is not held either."""
    held = _HELD.get(name)
    if held is None:
        return attrs
    k = typed.get(_TYPED_KEYS[name])
    if not (type(k) is str and 0 < len(k) <= checks.MAX_ID_CHARS):
        return attrs
    for tokens in _HELD_TOKENS.get(name, ()):
        v = typed.get(tokens)
        if v is not None and not (type(v) is int and 0 <= v <= checks.MAX_TOKENS):
            return attrs
    out: Attrs = {}
    get = held.get
    max_id = checks.MAX_ID_CHARS
    for k, v in attrs.items():
        where = get(k)
        if where is None:
            if k == "event.timestamp" and event_us is not None and event_us == event["timestamp"] \
                    and checks.MIN_TIME_US <= event_us <= checks.MAX_TIME_US:
                continue
            out[k] = v
            continue
        is_event, col, cost = where
        stored = event.get(col) if is_event else typed.get(col)
        t = type(v)
        if t is type(stored) and v == stored and col != "tool_parameters":  # held as it came, if in bounds
            if (len(v) <= max_id) if t is str else _within(stored, cost):
                continue
        elif col == "tool_parameters":  # parsed, redacted and without text keys: held once it is JSON
            if t is str and stored is not None and len(stored) <= checks.MAX_JSON_CHARS:
                continue
        elif _held(v, stored, cost):
            continue
        out[k] = v
    return out


def _within(stored: Any, cost: bool) -> bool:
    """Whether the store's checks take ``stored`` whole (see :func:`_held`)."""
    t = type(stored)
    if t is str:
        return len(stored) <= checks.MAX_ID_CHARS
    if t is int:
        return 0 <= stored <= checks.MAX_TOKENS
    if t is float:
        return math.isfinite(stored) and 0 <= stored <= (checks.MAX_COST_USD if cost else math.inf)
    return t is bool


def _held(v: Any, stored: Any, cost: bool = False) -> bool:
    """Whether a column's value ``stored`` is the attribute value ``v`` as it came, one the store's
    checks take whole: the same text (of an id's length at most), number (also written as text) or
    truth value."""
    if stored is None or v is None:
        return False
    if isinstance(stored, bool):
        return v is stored or (isinstance(v, str) and v.lower() == ("true" if stored else "false"))
    if isinstance(stored, int):
        return (0 <= stored <= checks.MAX_TOKENS
                and ((type(v) is int and v == stored) or (isinstance(v, str) and v == str(stored))))
    if isinstance(stored, float):
        if not (math.isfinite(stored) and 0 <= stored <= (checks.MAX_COST_USD if cost else math.inf)):
            return False
        if isinstance(v, bool):
            return False
        return (isinstance(v, int | float) and float(v) == stored) or (isinstance(v, str) and _float(v) == stored)
    return isinstance(stored, str) and v == stored and len(v) <= checks.MAX_ID_CHARS


def _parent(res: Attrs, attrs: Attrs) -> str | None:
    """The workflow that started this one (``parent_workflow_id``, or the tracing API's
    ``golem.parent_workflow_id``), from the record or its resource."""
    for d in (attrs, res):
        for k in ("parent_workflow_id", "golem.parent_workflow_id"):
            v = d.get(k)
            if isinstance(v, str) and v:
                return v
    return None


def _link(batch: Batch, session_id: str | None, ctx: dict, ts: int | None, parent: str | None = None,
          stage: str | None = None) -> None:
    """The session's workflow link from a record's context. ``stage``: the one its resource names (the
    whole process's; a record's own stage attribute is that record's alone), so that the session's
    facts no OTel record brought take it too (migration 024)."""
    wf = ctx.get("workflow_id")
    if session_id and wf:
        # resource attributes are session-wide, so the link holds from the session's start
        batch.add("workflow_links", {"session_id": session_id, "valid_from": 0, "workflow_id": wf,
                                     "task_id": ctx.get("task_id"), "experiment_id": ctx.get("experiment_id"),
                                     "stage": stage, "source": "otel"})
        batch.add("workflows", {"workflow_id": wf, "experiment_id": ctx.get("experiment_id"),
                                "task_id": ctx.get("task_id"), "started_at": ts, "updated_at": ts,
                                "parent_workflow_id": parent if parent != wf else None})


def logs_to_batch(doc: Any, batch: Batch, store_prompts: bool = False, source: str = "/v1/logs") -> int:
    """Map an OTLP logs request; returns the number of log records seen. A record that cannot be
    read is reported in ``batch.skipped`` with its index (1-based) in the request."""
    st = _Seen()
    return _each(_iter_logs(doc), batch, source, lambda res, raw: _log_rows(res, _log(raw), batch, store_prompts, st))


class _Seen:
    """What one request's mapping already sent (rows that every record would repeat)."""

    def __init__(self) -> None:
        self.linked: set[tuple[Any, Any]] = set()
        self.agents_seen: set[tuple[Any, Any, Any]] = set()
        self.runs: set[tuple[Any, ...]] = set()  # Workflow runs and their agents already sent
        self.res: Attrs | None = None
        self.res_json = ""


def _each(items: Iterator[Item], batch: Batch, source: str, fn: Any) -> int:
    """``fn(resource, raw record)`` for each record, one record's failure costing only itself."""
    n = 0
    for n, (res, raw) in enumerate(items, start=1):  # noqa: B007 - n is the count returned
        batch.at = (source, n)
        try:
            if isinstance(res, Exception):
                raise res
            fn(res, raw)
        except Exception as e:  # noqa: BLE001 - a record no check foresaw costs only itself
            batch.skip(source, n, f"record {n}: " + (str(e) if type(e) is ValueError else unexpected(e)))
    batch.at = None
    return n


def _log_rows(res: Attrs, rec: dict, batch: Batch, store_prompts: bool, st: _Seen) -> None:
    if res is not st.res:  # one resource holds many records: its JSON is made once
        st.res, st.res_json = res, _json(res)
    a = rec["attrs"]
    body = rec["body"] if isinstance(rec["body"], str) else None
    name = a.get("event.name") or (body.rsplit(".", 1)[-1] if body and body.startswith("claude_code.") else body) or "unknown"
    event_us = iso_to_us(a.get("event.timestamp"))
    ts = event_us or _ns_to_us(rec["time_ns"])
    sid = a.get("session.id") or res.get("session.id")
    session_ctx = _ctx(res, a)
    # an agent of a native Workflow run: its facts belong to the run (workflow_runs.fact_context)
    ctx = workflow_runs.fact_context(a, session_ctx, batch, ts, st.runs)
    seq = _int(a.get("event.sequence"))
    agent_id = a.get("agent_id") or None
    request_id = a.get("request_id") or None
    tool_use_id = a.get("tool_use_id") or None
    if seq is not None and sid:
        key = f"{sid}|{seq}|{name}"
    else:
        key = "h:" + hashlib.sha1(_json({"r": res, "t": rec["time_ns"], "a": a}).encode()).hexdigest()
    event = {
        "event_key": key, "event_name": name, "timestamp": ts, "session_id": sid,
        "prompt_id": a.get("prompt.id"), "agent_id": agent_id, "request_id": request_id,
        "tool_use_id": tool_use_id, "sequence": seq, **ctx, "resource": st.res_json,
    }
    typed: dict[str, Any] | None = None  # the typed row of a known event: what it holds of the attributes
    try:
        typed = _typed_rows(name, a, res, batch, st, sid, ctx, session_ctx, ts, seq, key, agent_id, request_id,
                            tool_use_id)
    finally:  # (a record whose typed row fails keeps all its attributes here, as reported)
        kept = _private(a, store_prompts)
        if typed is not None:
            kept = _unheld(kept, name, event_us, event, typed)
        event["attributes"] = _json(kept)
        batch.add("otel_events", event)


def _typed_rows(name: str, a: Attrs, res: Attrs, batch: Batch, st: _Seen, sid: Any, ctx: dict, session_ctx: dict,
                ts: int | None, seq: int | None, key: str, agent_id: Any, request_id: Any,
                tool_use_id: Any) -> dict[str, Any] | None:
    """The rows a log record adds besides its otel_events row; returns its typed fact row (api_requests,
    api_errors, compaction_events, tool_calls), if any."""
    out: dict[str, Any] | None = None
    if sid and session_ctx.get("workflow_id") and (sid, session_ctx["workflow_id"]) not in st.linked:
        st.linked.add((sid, session_ctx["workflow_id"]))
        _link(batch, sid, session_ctx, ts, _parent(res, a), _text(res.get("stage")))
    if name == "api_request":
        batch.add("api_requests", out := {
            "request_id": request_id or f"otel:{key}", "session_id": sid, "agent_id": agent_id,
            "prompt_id": a.get("prompt.id"), "model": a.get("model"), "timestamp": ts,
            "input_tokens": _tokens(a.get("input_tokens")), "output_tokens": _tokens(a.get("output_tokens")),
            "cache_read_tokens": _tokens(a.get("cache_read_tokens")),
            "cache_creation_tokens": _tokens(a.get("cache_creation_tokens")),
            "cache_creation_5m_tokens": _tokens(a.get("cache_creation_5m_tokens")),
            "cache_creation_1h_tokens": _tokens(a.get("cache_creation_1h_tokens")),
            "recorded_cost_usd": recorded_cost(a), "cost_usd_micros": _int(a.get("cost_usd_micros")),
            "duration_ms": _float(a.get("duration_ms")),
            "ttft_ms": _float(a.get("ttft_ms")), "query_source": a.get("query_source"),
            "effort": _text(a.get("effort")), "speed": _text(a.get("speed")),
            "client_request_id": _text(a.get("client_request_id")), **_attribution(a),
            "attempt": _int(a.get("attempt")), "success": True, **ctx, "source_mask": SRC_OTEL_LOG,
        })
        agent = (agent_id, sid, a.get("agent.name"))
        if agent_id and agent not in st.agents_seen:
            # one agent makes many requests: the same row again would merge to the same result
            # (its columns keep the first value or prefer a real type), so it is sent once
            st.agents_seen.add(agent)
            batch.add("agents", {"agent_id": agent_id, "session_id": sid, "agent_type": agent[2]})
    elif name == "api_error":
        batch.add("api_errors", out := {
            "error_key": "o:" + key, "session_id": sid, "agent_id": agent_id, "request_id": request_id,
            "prompt_id": a.get("prompt.id"), "model": a.get("model"), "timestamp": ts,
            "status_code": _int(a.get("status_code")), "error": error_text(a.get("error")),
            "attempt": _int(a.get("attempt")), "duration_ms": _float(a.get("duration_ms")), **ctx,
            "source": "otel", "kind": "api_error",
        })
    elif name == "api_retries_exhausted":
        # Claude Code sends it right after the api_error of the same failure (the next event.sequence
        # of the session): it is that row's "gave up after N attempts", merged into it, not a second error
        ekey = f"o:{sid}|{seq - 1}|api_error" if seq is not None and sid else "o:" + key
        batch.add("api_errors", out := {
            "error_key": ekey, "session_id": sid, "agent_id": agent_id, "prompt_id": a.get("prompt.id"),
            "model": a.get("model"), "timestamp": ts, "status_code": _int(a.get("status_code")),
            "error": error_text(a.get("error")), "attempt": _int(a.get("total_attempts")),
            "retries_exhausted": True, "total_retry_duration_ms": _float(a.get("total_retry_duration_ms")),
            **ctx, "source": "otel", "kind": "api_error",
        })
    elif name == "api_refusal":
        category = _text(a.get("category"))
        batch.add("api_errors", out := {
            "error_key": "o:" + key, "session_id": sid, "agent_id": agent_id, "request_id": request_id,
            "prompt_id": a.get("prompt.id"), "model": a.get("model"), "timestamp": ts,
            "error": "the model refused" + (f" ({category})" if category else ""), "error_type": "refusal",
            "attempt": _int(a.get("attempt")), **ctx, "source": "otel", "kind": "refusal",
        })
    elif name == "compaction":
        batch.add("compaction_events", out := {
            "event_key": "o:" + key, "source": "otel", "session_id": sid, "agent_id": agent_id,
            "prompt_id": a.get("prompt.id"), "timestamp": ts, "trigger": _text(a.get("trigger")),
            "success": _bool(a.get("success")), "duration_ms": _float(a.get("duration_ms")),
            "pre_tokens": _tokens(a.get("pre_tokens")), "post_tokens": _tokens(a.get("post_tokens")),
            "error": error_text(a.get("error")), **ctx,
        })
    elif name in ("tool_result", "tool_decision"):
        row: dict[str, Any] = {
            "tool_use_id": tool_use_id or f"otel:{key}", "session_id": sid, "agent_id": agent_id,
            "request_id": request_id, "prompt_id": a.get("prompt.id"), "tool_name": a.get("tool_name"),
            **ctx, "source_mask": SRC_OTEL_LOG,
        }
        if name == "tool_decision":
            row["decision"] = a.get("decision")
        else:
            success = _bool(a.get("success"))
            params = a.get("tool_parameters")
            if isinstance(params, str):
                try:
                    params = orjson.loads(params)
                except orjson.JSONDecodeError:
                    params = None
            if isinstance(params, dict):
                params = {k: (redact(v) if isinstance(v, str) else v) for k, v in params.items()
                          if k not in _TEXT_KEYS}
            server, tool = mcp_names(a.get("tool_name"), params)
            row.update({
                "mcp_server_name": server, "mcp_tool_name": tool,
                "timestamp": ts, "success": success, "duration_ms": _float(a.get("duration_ms")),
                "error": error_text(a.get("error")) if success is False else None,
                "error_type": a.get("error_type") or None,
                "input_size_bytes": _int(a.get("tool_input_size_bytes")),
                "result_size_bytes": _int(a.get("tool_result_size_bytes")),
                "tool_parameters": _json(params) if isinstance(params, dict) and params else None,
            })
        batch.add("tool_calls", out := row)
    elif name == "subagent_completed" and agent_id:
        batch.add("agents", {"agent_id": agent_id, "session_id": sid, "agent_type": a.get("agent_type"),
                             "model": a.get("final_model") or a.get("model"), "ended_at": ts,
                             "total_tokens": _tokens(a.get("total_tokens")),
                             "total_tool_uses": _int(a.get("total_tool_uses")),
                             "duration_ms": _float(a.get("duration_ms"))})
    return out


def traces_to_batch(doc: Any, batch: Batch, source: str = "/v1/traces") -> int:
    """Map an OTLP traces request; returns the number of spans seen (see :func:`logs_to_batch`)."""
    runs: set[tuple[Any, ...]] = set()  # Workflow runs and their agents already sent
    return _each(_iter_spans(doc), batch, source, lambda res, raw: _span_rows(res, _span(raw), batch, runs))


def _span_rows(res: Attrs, s: dict, batch: Batch, runs: set[tuple[Any, ...]]) -> None:
    a = s["attrs"]
    if not s["span_id"]:
        raise ValueError(f"span {str(s['name'])[:80]!r} has no span id")
    sid = a.get("session.id") or res.get("session.id")
    kind = a.get("golem.kind")
    raw_res = res
    if kind is not None or any(str(k).startswith("golem.") for k in (*a, *res)):
        # the tracing convention (golem_mcp/tracing.py): golem.workflow_id, golem.queue_wait_ms,
        # golem.attempt, ... read as their plain names
        a = {**a, **{k[6:]: v for k, v in a.items() if isinstance(k, str) and k.startswith("golem.")}}
        res = {**res, **{k[6:]: v for k, v in res.items() if isinstance(k, str) and k.startswith("golem.")}}
    session_ctx = _ctx(res, a)
    start = _ns_to_us(s["start_ns"])
    ctx = workflow_runs.fact_context(a, session_ctx, batch, start, runs)
    end = _ns_to_us(s["end_ns"])
    dur = _float(a.get("duration_ms"))
    if dur is None and s["start_ns"] and s["end_ns"]:
        dur = (s["end_ns"] - s["start_ns"]) / 1e6
    name = s["name"] if isinstance(s["name"], str) else ""
    span_type = a.get("span.type") or kind or name.removeprefix("claude_code.")
    tool_use_id = a.get("tool_use_id") or a.get("gen_ai.tool.call.id")
    request_id = a.get("request_id")
    agent_id = a.get("agent_id") or None
    qw = a.get("queue_wait_ms", a.get("queue.wait_ms"))
    batch.add("spans", {
        "span_id": s["span_id"], "trace_id": s["trace_id"], "parent_span_id": s["parent_span_id"],
        "name": s["name"], "span_type": span_type, "start_time": start, "end_time": end, "duration_ms": dur,
        "status_code": s["status_code"], "status_message": s["status_message"], "session_id": sid,
        "agent_id": agent_id, "request_id": request_id, "tool_use_id": tool_use_id,
        "tool_name": a.get("tool_name"), "attempt": _int(a.get("attempt")), "queue_wait_ms": _float(qw),
        **ctx, "attributes": _json(_private(s["attrs"], False)), "resource": _json(raw_res),
    })
    if sid and session_ctx.get("workflow_id"):
        _link(batch, sid, session_ctx, start, _parent(res, a), _text(res.get("stage")))
    elif kind is not None and ctx.get("workflow_id"):  # an orchestrator's span: its workflow exists
        parent = _parent(res, a)
        batch.add("workflows", {"workflow_id": ctx["workflow_id"], "experiment_id": ctx.get("experiment_id"),
                                "task_id": ctx.get("task_id"), "started_at": start, "updated_at": end,
                                "parent_workflow_id": parent if parent != ctx["workflow_id"] else None})
    if span_type == "llm_request" and request_id:
        batch.add("api_requests", {
            "request_id": request_id, "session_id": sid, "agent_id": agent_id, "model": a.get("model"),
            "timestamp": end, "input_tokens": _tokens(a.get("input_tokens")),
            "output_tokens": _tokens(a.get("output_tokens")), "cache_read_tokens": _tokens(a.get("cache_read_tokens")),
            "cache_creation_tokens": _tokens(a.get("cache_creation_tokens")), "duration_ms": dur,
            "ttft_ms": _float(a.get("ttft_ms")), "attempt": _int(a.get("attempt")),
            "success": _bool(a.get("success")), "stop_reason": a.get("stop_reason"), **ctx,
            "source_mask": SRC_OTEL_SPAN,
        })
    elif span_type == "llm_request" and _bool(a.get("success")) is False:
        batch.add("api_errors", {
            "error_key": "s:" + s["span_id"], "session_id": sid, "agent_id": agent_id,
            "model": a.get("model"), "timestamp": end, "status_code": _int(a.get("status_code")),
            "error": error_text(a.get("error") or s["status_message"]), "attempt": _int(a.get("attempt")),
            "duration_ms": dur, **ctx, "source": "otel_span",
        })
    elif span_type in ("tool", "tool.execution") and tool_use_id:
        row: dict[str, Any] = {"tool_use_id": tool_use_id, "session_id": sid, **ctx, "source_mask": SRC_OTEL_SPAN}
        if span_type == "tool":
            row.update({"tool_name": a.get("tool_name"), "agent_id": agent_id, "timestamp": start})
        else:
            success = _bool(a.get("success"))
            row.update({"success": success, "duration_ms": dur,
                        "error": error_text(a.get("error")) if success is False else None,
                        "error_type": a.get("error.type") or a.get("error_class")})
        batch.add("tool_calls", row)


def metrics_to_batch(doc: Any, batch: Batch, source: str = "/v1/metrics") -> int:
    """Map an OTLP metrics request; returns the number of data points seen (see :func:`logs_to_batch`)."""
    return _each(_iter_metric_points(doc), batch, source, lambda res, raw: _point_rows(res, _point(raw), batch))


def _point_rows(res: Attrs, p: dict, batch: Batch) -> None:
    a = p["attrs"]
    sid = a.get("session.id") or res.get("session.id")
    key = "|".join([str(p["name"]), str(sid), _json(dict(sorted(a.items()))), str(p["start_ns"]), str(p["time_ns"])])
    batch.add("metric_points", {
        "point_key": hashlib.sha1(key.encode()).hexdigest(), "name": p["name"], "unit": p["unit"],
        "kind": p["kind"], "temporality": p["temporality"], "session_id": sid, "model": a.get("model"),
        "type": a.get("type"), "start_time": _ns_to_us(p["start_ns"]), "time": _ns_to_us(p["time_ns"]),
        "value": p["value"], **_ctx(res, a), "attributes": _json(a), "resource": _json(res),
    })


NOUN = {"logs": "log records", "traces": "spans", "metrics": "data points"}


def body_to_batch(signal: str, body: bytes, content_type: str, store_prompts: bool = False) -> tuple[Batch, int]:
    """One OTLP/HTTP request body to a batch and the number of records it held; InvalidInput when it
    does not decode, or when none of its records can be read (the sender's error as a whole). Pure:
    the daemon runs it in worker processes."""
    doc = decode(signal, body, content_type)
    batch = Batch()
    n = to_batch(signal, doc, batch, store_prompts)
    if n and batch.rejected() >= n:
        raise InvalidInput(f"none of the {n} OTLP {NOUN[signal]} in the body could be read; fix the "
                           "exporter's data and send again", [str(s) for s in batch.skipped[:10]])
    return batch, n


def to_batch(signal: str, doc: Any, batch: Batch, store_prompts: bool = False, source: str | None = None) -> int:
    """Map a decoded request; returns the records seen. Records that cannot be read are reported in
    ``batch.skipped`` as ``source`` (default ``/v1/<signal>``) and their index in the request."""
    src = source or f"/v1/{signal}"
    lost: list[str] = []
    if isinstance(doc, Salvaged):
        doc, lost = doc.msg, doc.lost
    if signal == "logs":
        n = logs_to_batch(doc, batch, store_prompts, src)
    elif signal == "traces":
        n = traces_to_batch(doc, batch, src)
    else:
        n = metrics_to_batch(doc, batch, src)
    for i, why in enumerate(lost, start=n + 1):  # counted after the records that were read
        batch.skip(src, i, f"record {i}: {why}")
    return n + len(lost)


def signal_from_filename(name: str) -> str | None:
    """Captured bodies are named by signal: ``00001_logs.json``, ``metrics.pb``, ..."""
    low = name.lower()
    for s in SIGNALS:
        if s in low:
            return s
    return None
