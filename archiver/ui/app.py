"""The Starlette application: security in front, pages behind, one language per page.

:func:`create_app` builds it; ``archiver ui`` (archiver/cli/ui.py) serves it
with uvicorn on 127.0.0.1.  Pages are Jinja2 templates (``templates/``)
rendered through :meth:`UIContext.render`, which gives every template ``_``
and ``ngettext`` bound to the request's language -- the same gettext
catalogue as the CLI (``scripts/i18n`` extracts ``_("...")`` from the
templates too).

The language of a request: the one the user picked with the page's language
links (a cookie), else ``archiver ui --lang``, else the browser's
Accept-Language, else the CLI's environment rules.  Library code (error
messages raised by the engine) reads the process-wide language of
:mod:`archiver.i18n`; the page sets it to each request's language, which for
the one user of a local page is the language of the page they are looking at.

The guided backup lives in :mod:`archiver.ui.backup_routes` (a separate
module, so the two halves can be built apart); see that module's docstring
for the interface.  The archive page's "Open in Thunderbird" and "Export to a
folder" buttons live in :mod:`archiver.ui.export_routes`.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from archiver.i18n import normalise
from archiver.i18n import set_language as set_process_language
from archiver.ui.archives import Registry, default_home
from archiver.ui.context import HERE, LANG_COOKIE, UIContext
from archiver.ui.security import Guard


class _SpeakTheRequestLanguage:
    """Plain ASGI middleware: the process language follows the page (see the module doc)."""

    def __init__(self, app: Any, ctx: UIContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            set_process_language(self.ctx.language_of(Request(scope)))
        await self.app(scope, receive, send)


def _backup_module() -> Any:
    """:mod:`archiver.ui.backup_routes` if present (the guided backup), else None."""
    try:
        return importlib.import_module("archiver.ui.backup_routes")
    except ModuleNotFoundError as exc:
        if exc.name != "archiver.ui.backup_routes":
            raise
        return None


def create_app(dest: Optional[Path], token: str, language: Optional[str] = None, *,
               port: Optional[int] = None, home: Optional[Path] = None) -> Starlette:
    """The whole page: security middleware, start page, browsing, the guided backup.

    ``port`` is the port the server listens on (the Host and Origin checks
    need it); None takes it from the server socket of each request.
    """
    from archiver.ui import browse, export_routes

    ctx = UIContext(dest=dest, home=home or default_home(), language=normalise(language or "")
                    if language else None)
    if dest is not None:
        key = ctx.registry.register(dest)
        # read the index now, while the user's browser starts: the first page is then warm
        threading.Thread(target=_warm, args=(ctx.registry, key), daemon=True,
                         name="archiver-ui-warm").start()
    routes: list[BaseRoute] = [
        Route("/", _bound(_root, ctx)),
        Route("/archives", _bound(browse.start_page, ctx)),
        Route("/lang/{code}", _switch_language),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    backup = _backup_module()
    if backup is not None:
        routes.extend(backup.routes(ctx))
        ctx.new_backup_path = getattr(backup, "NEW_BACKUP_PATH", None)
    routes.extend(browse.routes(ctx))
    routes.extend(export_routes.routes(ctx))  # the archive page's "Open in Thunderbird"
    app = Starlette(routes=routes, middleware=[
        Middleware(Guard, token=token, port=port),
        Middleware(_SpeakTheRequestLanguage, ctx=ctx),
    ])
    app.state.ctx = ctx
    return app


def _warm(registry: Registry, key: str) -> None:
    try:
        registry.browsable(key)
    except Exception:  # noqa: BLE001 - the page that needs it reports the problem
        pass


def _bound(view: Callable[[UIContext, Request], Response], ctx: UIContext
           ) -> Callable[[Request], Response]:
    """A plain (thread pool) endpoint calling ``view(ctx, request)``."""
    def endpoint(request: Request) -> Response:
        return view(ctx, request)
    return endpoint


def _root(ctx: UIContext, request: Request) -> Response:
    """With a DEST: its folders; without: the start page."""
    from archiver.ui import browse

    if ctx.dest is not None:
        return RedirectResponse(f"/a/{ctx.registry.register(ctx.dest)}/", status_code=303)
    return browse.start_page(ctx, request)


async def _switch_language(request: Request) -> Response:
    """The page's language links: a cookie, then back where the user was."""
    code = normalise(request.path_params["code"]) or "en"
    back = request.query_params.get("next", "/")
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"
    response = RedirectResponse(back, status_code=303)
    response.set_cookie(LANG_COOKIE, code, samesite="strict", path="/", httponly=True)
    return response
