"""What the daemon reads and answers over HTTP: bodies (size cap, gzip), the OTLP media type, the
OTLP/HTTP success reply (with ``partial_success``), and JSON replies and errors."""

from __future__ import annotations

import logging
import time
import zlib
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ...errors import GolemError, InvalidInput, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from ...store.batch import Batch

log = logging.getLogger("golem_mcp.daemon")


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return float(o)
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS),
                    status_code=status, media_type="application/json", headers=headers)


def error_response(e: GolemError) -> Response:
    body: dict[str, Any] = {"error": str(e)}
    if isinstance(e, InvalidInput) and e.problems:
        body["problems"] = e.problems
    return json_response(body, e.http_status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when asked; PayloadTooLarge as soon as it passes ``limit``."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            declared = int(cl)
        except ValueError as e:
            raise InvalidInput(f"Content-Length {cl!r} is not a number") from e
        if declared > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes "
                                  "(max_body_bytes in settings.json); send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # no or a lying Content-Length: stop reading, do not buffer the rest
            raise PayloadTooLarge(f"body over the limit of {limit} bytes (max_body_bytes in settings.json); "
                                  "send smaller batches")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        return gunzip(body, limit)
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding")
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress with a cap, so a small gzip bomb cannot fill memory."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInput(f"body is marked gzip but does not decompress: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes (max_body_bytes in "
                              "settings.json); send smaller batches")
    if not d.eof:
        raise InvalidInput("gzip body is truncated")
    return out


def media_type(request: Request) -> str:
    """'json' or 'protobuf' from Content-Type, else UnsupportedMediaType (415)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return "json"
    if ctype in ("application/x-protobuf", "application/protobuf"):
        return "protobuf"
    raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'!r} is not OTLP/HTTP; send application/json "
                               "or application/x-protobuf")


_PARTIAL = {"logs": "rejected_log_records", "traces": "rejected_spans", "metrics": "rejected_data_points"}


def otlp_reply(signal: str, kind: str, rejected: int, message: str) -> Response:
    """The OTLP/HTTP success reply in the request's encoding: an Export*ServiceResponse, with
    ``partial_success`` when records were rejected (or, with 0 rejected, to carry warnings)."""
    field = _PARTIAL[signal]
    if kind == "json":
        body: dict[str, Any] = {}
        if rejected or message:
            camel = "".join(w.capitalize() if i else w for i, w in enumerate(field.split("_")))
            body["partialSuccess"] = {camel: rejected, "errorMessage": message}
        return json_response(body)
    msg = _pb_response(signal)
    if rejected or message:
        setattr(msg.partial_success, field, rejected)
        msg.partial_success.error_message = message
    return Response(msg.SerializeToString(), media_type="application/x-protobuf")




class ThrottledLog:
    """Warnings about what a sender keeps getting wrong: the first at once, then at most one a
    minute per kind with how many were not logged (an exporter that sends the same bad field in
    every batch must not fill the log)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        at, quiet = self.last.get(kind, (-self.every, 0))
        if now - at < self.every:
            self.last[kind] = (at, quiet + 1)
            return
        more = f" ({quiet} more like it not logged)" if quiet else ""
        log.warning("%s: %s%s", kind, message, more)
        self.last[kind] = (now, 0)


def problems_message(batch: Batch, records: int, noun: str, shown: int = 5) -> str:
    """What was rejected or left out of a batch, in a line: the first few problems and a count."""
    if not batch.skipped:
        return ""
    rejected = batch.rejected()
    head = (f"{rejected} of {records} {noun} not stored" if rejected
            else f"all {records} {noun} stored, some values left out")
    parts = [s.reason for s in batch.skipped[:shown]]
    more = len(batch.skipped) - shown
    tail = f"; {more} more problem(s) in the daemon's log" if more > 0 else ""
    return f"{head}: " + "; ".join(parts) + tail + "; the rest was stored"


def _pb_response(signal: str) -> Any:
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        return ExportLogsServiceResponse()
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
        return ExportMetricsServiceResponse()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    return ExportTraceServiceResponse()


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    try:
        args = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"request body is not JSON: {e}") from e
    if not isinstance(args, dict):
        raise InvalidInput("request body must be a JSON object")
    return args
