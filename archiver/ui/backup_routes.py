"""The guided backup's pages: sign in, where and what, progress (and Cancel).

Mounted by :func:`archiver.ui.app.create_app` through :func:`routes` (all
requests already passed the token/cookie, Host and Origin checks of
:mod:`archiver.ui.security`, so the forms carry no CSRF field).  The work is
:mod:`archiver.ui.backup_job`'s, with the CLI's library calls; this module
only turns it into pages:

* ``GET /backup`` -- step 1: server (preset or URL), user name, password,
  CA file (an upload or a path).  ``POST /backup/signin`` logs in and lists
  the folders; an error is shown in the CLI's words, the password field is
  left empty (a password is never put into a page).
* ``GET /backup/where`` -- step 2: DEST (default ``HOME/USER@HOST``) with its
  free space, Maildir or mbox, the folders with counts and sizes and whether
  the mail fits.  ``POST /backup/where``: ``action=check`` reckons again for
  another DEST or format, ``action=start`` starts the backup.
* ``GET /backup/progress`` -- step 3: the figures as they are now (so a
  reload shows the final state), kept live by ``/static/backup.js`` reading
  ``GET /backup/events`` (server-sent events); ``POST /backup/cancel``.

One backup at a time per server: while one runs, every step leads to it.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from archiver.account import PRESETS
from archiver.errors import ArchiverError, UsageError
from archiver.i18n import _
from archiver.ui.backup_job import (
    FORMATS,
    Backups,
    SignIn,
    crash_text,
    existing_format,
    sse,
)

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from archiver.ui.context import UIContext

NEW_BACKUP_PATH: Optional[str] = "/backup"
MAX_CAFILE = 1 << 20  # a PEM certificate (chain) is a few kB
EVENT_WAIT = 5.0  # seconds an event stream waits for news before a keep-alive comment
EVENT_GAP = 0.2  # at most five updates a second


class CaFiles:
    """Uploaded CA certificates: a 0600 file in a 0700 directory, removed at exit."""

    def __init__(self) -> None:
        self._dir: Optional[Path] = None

    def save(self, data: bytes) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="archiver-ui-ca-"))
            atexit.register(shutil.rmtree, self._dir, True)
        path = self._dir / "ca.pem"
        path.write_bytes(data)
        path.chmod(0o600)
        return path


class BackupPages:
    """The routes' state: the context of the app, the one backup hub, the CA files."""

    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx
        self.hub = Backups(home=ctx.home)
        self.cafiles = CaFiles()

    # ------------------------------------------------------------ step 1

    def step1(self, request: Request) -> Response:
        if self.hub.busy() is not None:
            return _to("/backup/progress")
        last = self.hub.last
        return self._signin_page(request, server=last.server if last else "ecc-new",
                                 user=last.user if last else "",
                                 cafile=str(last.cafile or "") if last else "")

    def _signin_page(self, request: Request, server: str, user: str, cafile: str,
                     error: str = "", status: int = 200) -> Response:
        preset = server if server in PRESETS else "url"
        return self.ctx.render(request, "backup.html", status_code=status,
                               presets=sorted(PRESETS.values(), key=lambda p: p.name),
                               preset=preset, url="" if preset != "url" else server,
                               user=user, cafile=cafile, error=error,
                               job=self.hub.job)

    async def signin(self, request: Request) -> Response:
        if self.hub.busy() is not None:
            return _to("/backup/progress")
        form = await request.form(max_files=1, max_fields=20)
        preset = _text(form.get("preset"))
        server = _text(form.get("url")).strip() if preset == "url" else preset
        user = _text(form.get("user")).strip()
        password = _text(form.get("password"))
        ca_path = _text(form.get("cafile")).strip()
        upload = form.get("cafile_upload")
        try:
            cafile: Optional[Path] = Path(ca_path).expanduser() if ca_path else None
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read(MAX_CAFILE + 1)
                if data:
                    if len(data) > MAX_CAFILE:
                        raise UsageError(_("the CA file is too big for a certificate: choose "
                                           "its PEM file"))
                    cafile = self.cafiles.save(data)
            if not server:
                raise UsageError(_("choose a server, or type its address "
                                   "(imaps://USER@HOST)"))
            sign_in = SignIn(server, user, cafile)
            await run_in_threadpool(self.hub.sign_in, sign_in, password)
        except ArchiverError as exc:
            return self._signin_page(request, server, user, ca_path, error=exc.message,
                                     status=400)
        except Exception as exc:  # noqa: BLE001 - a bug: one line and a report file
            return self._signin_page(request, server, user, ca_path, error=crash_text(exc),
                                     status=500)
        finally:
            del password
        return _to("/backup/where")

    # ------------------------------------------------------------ step 2

    def step2(self, request: Request) -> Response:
        if self.hub.busy() is not None:
            return _to("/backup/progress")
        pending = self.hub.pending()
        if pending is None:
            return _to("/backup")
        return self._where_page(request)

    def _where_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        pending = self.hub.pending()
        if pending is None:
            return _to("/backup")
        view = pending.overview
        return self.ctx.render(request, "backup_where.html", status_code=status, view=view,
                               account=pending.endpoint.display(), formats=FORMATS,
                               existing=existing_format(view.dest), error=error)

    async def where(self, request: Request) -> Response:
        if self.hub.busy() is not None:
            return _to("/backup/progress")
        form = await request.form(max_files=0, max_fields=10)
        if _text(form.get("action")) == "forget":
            self.hub.forget()
            return _to("/backup")
        pending = self.hub.pending()
        if pending is None:
            return _to("/backup")
        dest = self._dest(_text(form.get("dest")), pending.overview.dest)
        fmt = _text(form.get("format"))
        chosen = fmt if fmt in FORMATS else None
        if _text(form.get("action")) == "start":
            job = self.hub.start(dest, chosen)
            return _to("/backup/progress" if job is not None else "/backup")
        try:
            await run_in_threadpool(self.hub.relook, dest, chosen)
        except ArchiverError as exc:
            return self._where_page(request, error=exc.message, status=400)
        except Exception as exc:  # noqa: BLE001
            return self._where_page(request, error=crash_text(exc), status=500)
        return _to("/backup/where")

    def _dest(self, typed: str, default: Path) -> Path:
        """The DEST typed (UIContext.typed_path), else ``default``."""
        return self.ctx.typed_path(typed) or default

    # ------------------------------------------------------------ step 3

    def progress(self, request: Request) -> Response:
        job = self.hub.job
        if job is None:
            return _to("/backup")
        snap = job.feed.snapshot()
        browse = None
        if snap["final"] and (job.dest / ".archiver" / "archive.json").is_file():
            key = self.ctx.registry.register(job.dest)
            self.ctx.registry.forget(key)  # the backup changed it: read it afresh
            browse = f"/a/{key}/"
        return self.ctx.render(request, "backup_progress.html", snap=snap, dest=job.dest,
                               account=job.request.sign_in.endpoint().display(),
                               browse=browse)

    async def events(self, request: Request) -> Response:
        job = self.hub.job
        if job is None:
            return Response(status_code=204)  # EventSource: stop reconnecting
        feed = job.feed

        async def stream() -> AsyncIterator[str]:
            version = -1
            while True:
                snap = await run_in_threadpool(feed.wait, version, EVENT_WAIT)
                if snap["version"] == version and not snap["final"]:
                    yield ": still working\n\n"
                    continue
                version = snap["version"]
                yield sse(snap)
                if snap["final"]:
                    return
                await asyncio.sleep(EVENT_GAP)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    def cancel(self, request: Request) -> Response:
        job = self.hub.job
        if job is not None:
            job.cancel()
        return _to("/backup/progress")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _to(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def routes(ctx: UIContext) -> list[BaseRoute]:
    """The backup's routes, for :func:`archiver.ui.app.create_app`."""
    pages = BackupPages(ctx)
    ctx.backup_pages = pages  # type: ignore[attr-defined]  # tests reach the hub here
    return [
        Route("/backup", pages.step1, methods=["GET"]),
        Route("/backup/signin", pages.signin, methods=["POST"]),
        Route("/backup/where", pages.step2, methods=["GET"]),
        Route("/backup/where", pages.where, methods=["POST"]),
        Route("/backup/progress", pages.progress, methods=["GET"]),
        Route("/backup/events", pages.events, methods=["GET"]),
        Route("/backup/cancel", pages.cancel, methods=["POST"]),
    ]
