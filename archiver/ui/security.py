"""Who may use the page: the token, its cookie, the Host and the Origin, and the headers.

The server listens on 127.0.0.1, but every local user (and every web page the
student visits, through their browser) can reach 127.0.0.1.  So:

* **Token.**  ``archiver ui`` makes a random token and prints the URL
  ``http://127.0.0.1:PORT/?token=TOKEN``.  A GET with the right token sets an
  HttpOnly, SameSite=Strict cookie and redirects to the same path without the
  token (so it leaves the address bar and history).  Any request with neither
  a valid cookie nor a valid token gets 403 -- static files and the event
  streams too.  The cookie's name carries the port: cookies are per host, not
  per port, and two ``archiver ui`` on one machine must not overwrite each
  other's.
* **Host.**  The Host header must be ``127.0.0.1:PORT`` or ``localhost:PORT``:
  a DNS-rebinding page (evil.example resolving to 127.0.0.1) sends its own
  name and is refused.
* **Origin (CSRF).**  A request that changes anything (every method but GET
  and HEAD) must come from this server's own origin: its Origin header, or,
  without one, its Referer, must be ``http://127.0.0.1:PORT`` (or localhost).
  SameSite=Strict already keeps the cookie off cross-site requests; this is
  the second lock.  Forms therefore need no hidden CSRF field.
* **Headers.**  A strict Content-Security-Policy (no inline script, nothing
  from elsewhere, the page cannot be framed), nosniff, and a referrer policy
  of ``same-origin``: *not* ``no-referrer``, because with that policy a
  browser sends ``Origin: null`` on the page's own POSTs (Fetch standard,
  "serializing a request origin") and the Origin check above could not tell
  them from a sandboxed attacker's.  The token is never in a URL the page
  links from, so nothing leaks.  A response that sets its own CSP (the
  sandboxed message body) keeps it.

Implemented as plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``),
so server-sent event streams pass through unbuffered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlencode

from starlette.datastructures import URL, Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from archiver.i18n import _

TOKEN_PARAM = "token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


def new_token() -> str:
    """256 bits from the OS's CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    return f"archiver_ui_{port}"


def allowed_hosts(port: int) -> tuple[str, ...]:
    return (f"127.0.0.1:{port}", f"localhost:{port}")


def same_origin(headers: Headers, port: int) -> bool:
    """Does a state-changing request come from this server's own pages?"""
    origins = [f"http://{h}" for h in allowed_hosts(port)]
    origin = headers.get("origin")
    if origin is not None:
        return origin in origins
    referer = headers.get("referer")
    if referer is None:
        return False
    return any(referer == o or referer.startswith(o + "/") for o in origins)


@dataclass
class Guard:
    """ASGI middleware in front of the whole app (see the module doc)."""

    app: ASGIApp
    token: str
    port: Optional[int] = None  # None: the port the server socket is bound to (scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        refusal = self.check(scope)
        if refusal is not None:
            if scope["type"] == "http":
                await _with_headers(refusal, scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def port_of(self, scope: Scope) -> int:
        if self.port is not None:
            return self.port
        server = scope.get("server") or ("", 0)
        return int(server[1] or 0)

    def check(self, scope: Scope) -> Optional[Response]:
        """None if the request may go on, else the response that refuses (or signs in)."""
        port = self.port_of(scope)
        headers = Headers(scope=scope)
        if headers.get("host", "") not in allowed_hosts(port):
            return _forbidden(_("refused: this page only answers at http://127.0.0.1:{port}/ "
                                "(wrong Host header)").format(port=port))
        method = scope.get("method", "GET")
        if method not in SAFE_METHODS and scope["type"] == "http" \
                and not same_origin(headers, port):
            return _forbidden(_("refused: the request did not come from this page (Origin "
                                "check)"))
        request = Request(scope)
        cookie = request.cookies.get(cookie_name(port), "")
        given = request.query_params.get(TOKEN_PARAM)
        if given is not None and method in SAFE_METHODS and self.valid(given):
            return self.sign_in(request, port)
        if cookie and self.valid(cookie):
            return None
        return _forbidden(_("refused: open the address that 'archiver ui' printed (it "
                            "carries the access token)"))

    def valid(self, value: str) -> bool:
        return secrets.compare_digest(value.encode(), self.token.encode())

    def sign_in(self, request: Request, port: int) -> Response:
        """The token was right: set the cookie and send the browser to the same URL without it."""
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAM]
        path = request.url.path
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            path = "/"  # "//host" would send the browser to another site
        target = URL(path=path, query=urlencode(rest))
        response = RedirectResponse(str(target), status_code=303)
        response.set_cookie(cookie_name(port), self.token, httponly=True, samesite="strict",
                            path="/")
        return response


def _forbidden(text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=403)


def _add_headers(message: Message) -> None:
    headers = MutableHeaders(scope=message)
    if "content-security-policy" not in headers:
        headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"


async def _with_headers(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            _add_headers(message)
        await send(message)

    await response(scope, receive, send_with_headers)
