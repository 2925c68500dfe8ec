"""Plain ASGI replies for what answers before Starlette is loaded: the guard's refusals and
``/healthz`` while the store opens (``startup``). Stdlib only, so a daemon binds and answers fast."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Scope, Send


class Reply:
    """One whole HTTP response, sent as an ASGI app (the shape of a Starlette ``Response``)."""

    def __init__(self, body: bytes | str, status: int = 200, media_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.headers = [(b"content-type", media_type.encode("latin-1")),
                        (b"content-length", str(len(self.body)).encode())]
        self.headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def json_reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(json.dumps(obj), status, "application/json", headers)
