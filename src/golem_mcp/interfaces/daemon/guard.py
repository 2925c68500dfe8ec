"""The daemon's door: Origin and Host checks against DNS rebinding (the loopback rule itself is
``interfaces/loopback.py``'s) and the bearer token."""

from __future__ import annotations

import contextlib
import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from ..loopback import is_loopback_host, is_loopback_origin
from .asgi import Reply, json_reply


class Guard:
    """ASGI middleware: Origin and Host checks against DNS rebinding, and the bearer token.

    The token is sent as ``Authorization: Bearer <token>`` by every client; a browser cannot, so the
    dashboard's pages (GET ``/``, ``/dashboard``) also take it once as ``?token=`` (the link that
    ``golem-mcp dashboard`` opens), which answers with a redirect to the same page without it and
    an HttpOnly, SameSite=Strict cookie that later page loads carry. The cookie opens the pages
    only, never an API or MCP route, so another page on a loopback port cannot use it to write.

    Plain ASGI (not BaseHTTPMiddleware) so streamed MCP responses pass through untouched.
    """

    PAGES = frozenset({"/", "/dashboard"})

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        problem: tuple[int, str] | Reply | None = self.check(path, headers)
        if problem is None and self.token and path != "/healthz":
            problem = self.authorize(scope, path, headers)
        if isinstance(problem, Reply):
            await problem(scope, receive, send)
            return
        if problem:
            status, message = problem
            extra = {"www-authenticate": "Bearer"} if status == 401 else None
            await json_reply({"error": message}, status, extra)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """Origin and Host (DNS rebinding); every route, /healthz too."""
        origin = headers.get("origin")
        if origin is not None and not is_loopback_origin(origin):
            return 403, f"requests from web origin {origin!r} are refused: golem-mcp serves local tools only"
        if self.loopback_only:
            host = headers.get("host", "")
            if not is_loopback_host(host):
                return 403, (f"Host {host!r} is not a loopback address; connect to 127.0.0.1, [::1] or localhost "
                             "(DNS names are refused: they could point anywhere)")
        return None

    def _is_token(self, candidate: str | None) -> bool:
        assert self.token is not None
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def authorize(self, scope: Scope, path: str, headers: dict[str, str]) -> tuple[int, str] | Reply | None:
        """None when the request carries the token; a redirect that sets the page cookie; or 401."""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self._is_token(auth[7:].strip()):
            return None
        page = path in self.PAGES and scope.get("method") in ("GET", "HEAD")
        if page:
            port = (scope.get("server") or (None, None))[1]
            cookie_name = f"golem_token_{port}" if port else "golem_token"
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given and self._is_token(given[-1]):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                return Reply(b"", 303, "text/plain; charset=utf-8", headers={
                    "location": path + (f"?{rest}" if rest else ""), "cache-control": "no-store",
                    "referrer-policy": "no-referrer",
                    "set-cookie": f"{cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"})
            cookies = SimpleCookie()
            with contextlib.suppress(CookieError):  # a malformed Cookie header is no token
                cookies.load(headers.get("cookie", ""))
            if not given and cookie_name in cookies and self._is_token(cookies[cookie_name].value):
                return None
            return Reply("golem-mcp: this page needs the daemon's token. Open it with `golem-mcp dashboard`, "
                         "which opens a link carrying it.\n", 401, "text/plain; charset=utf-8",
                         headers={"cache-control": "no-store"})
        return 401, ("missing or wrong token: send 'Authorization: Bearer <token>'. Local clients read it from "
                     "GOLEM_TOKEN or the daemon's data folder by themselves")
