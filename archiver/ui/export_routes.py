"""The archive page's "Open in Thunderbird" button (and "Export to a folder").

Mounted by :func:`archiver.ui.app.create_app` like the guided backup: every
request has already passed the token/cookie, Host and Origin checks of
:mod:`archiver.ui.security`, so the forms carry no CSRF field.

* ``POST /a/{key}/export`` -- ``to=thunderbird``: the same library call as
  ``archiver export DEST --to thunderbird`` without OUT
  (:func:`archiver.export.install.into_profile`: the default profile's Local
  Folders; refused while Thunderbird runs; a rerun adds only new mail).
  ``to=mbox|maildir`` with ``out=FOLDER``: ``archiver export DEST OUT --to
  KIND`` (:func:`archiver.export.export_archive`; OUT new or empty).  The
  export runs in a background thread, one at a time; the answer is a redirect
  to the result page.
* ``GET /export`` -- the last export: "working…" (the page reloads itself
  every second with a ``<meta http-equiv="refresh">``, so no script is
  needed), then the CLI's own summary lines, or its one-line error, in the
  page's language.

The export reports no progress of its own: the page shows the time it has
been running.  Killing ``archiver ui`` mid-export is harmless, as for the
CLI: the next run cuts back what was left unrecorded
(:mod:`archiver.export.install`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from archiver.errors import ArchiverError
from archiver.i18n import _

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from archiver.export.plan import ExportReport
    from archiver.ui.context import UIContext

FOLDER_KINDS = ("mbox", "maildir")  # "Export to a folder": what a mail program imports


@dataclass
class ExportJob:
    """One export in its thread: what it writes, then its report or its one-line error."""

    key: str  # the archive's key in the page's registry
    dest: Path
    kind: str  # "thunderbird" (into the profile), or a FOLDER_KINDS with ``out``
    out: Optional[Path] = None
    started: float = field(default_factory=time.monotonic)
    ended: Optional[float] = None
    report: Optional[ExportReport] = None
    error: str = ""  # the CLI's one-line message (ArchiverError.message)
    profile_problem: bool = False  # the error was about the Thunderbird profile
    warning: str = ""  # the index held records that made no sense (archive.skipped_note)
    _thread: Optional[threading.Thread] = None

    @property
    def finished(self) -> bool:
        return self.ended is not None

    def seconds(self) -> int:
        return int((self.ended or time.monotonic()) - self.started)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, daemon=True,
                                        name="archiver-ui-export")
        self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """For tests and shutdown: True once the export ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    def run(self) -> None:
        from archiver.cli.common import require_index
        from archiver.export import export_archive
        from archiver.export.install import into_profile
        from archiver.export.profile import ProfileError
        from archiver.reading import open_archive

        try:
            archive = open_archive(self.dest)
            require_index(archive, self.dest)
            if self.out is None:
                self.report = into_profile(archive, None, None)
            else:
                self.report = export_archive(archive, self.out, self.kind, False, None)
            self.warning = archive.skipped_note() or ""
        except ProfileError as exc:
            self.error, self.profile_problem = exc.message, True
        except ArchiverError as exc:
            self.error = exc.message
        except Exception as exc:  # noqa: BLE001 - a bug: one line and a report file
            from archiver.ui.backup_job import crash_text

            self.error = crash_text(exc, "export")
        finally:
            self.ended = time.monotonic()

    def lines(self) -> list[str]:
        """The CLI's summary of a finished export, in the language of the page now."""
        from archiver.cli.summaries import export_lines, export_repaired, local_folders_added

        report = self.report
        if report is None:
            return []
        out: list[str] = []
        if getattr(report, "added_local_folders", None) is not None:
            out.append(local_folders_added(report))
        out += [export_repaired(f) for f in getattr(report, "repaired", [])]
        if self.warning:
            out.append(_("warning: {note}").format(note=self.warning))
        where = str(getattr(report, "wrapper", None) or self.out)
        out += export_lines(report, self.kind, where, into_profile=self.out is None)
        return out

    def problems(self) -> list[str]:
        from archiver.cli.summaries import export_problem_lines

        return export_problem_lines(self.report) if self.report is not None else []


class ExportPages:
    """The routes' state: the app's context and the one export (running or last)."""

    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx
        self.job: Optional[ExportJob] = None
        self._lock = threading.Lock()

    def running(self) -> Optional[ExportJob]:
        job = self.job
        return job if job is not None and not job.finished else None

    async def start(self, request: Request) -> Response:
        key = request.path_params["key"]
        form = await request.form(max_files=0, max_fields=5)
        to = form.get("to")
        typed = form.get("out")
        dest = self.ctx.registry.path(key)
        if dest is None:
            return self.ctx.render(request, "error.html", status_code=404, message=_(
                "This archive is not known here: go back to the list of archives."))
        out: Optional[Path] = None
        if to in FOLDER_KINDS:
            out = self.ctx.typed_path(typed if isinstance(typed, str) else "")
            if out is None:
                return self.ctx.render(request, "error.html", status_code=400, message=_(
                    "type the folder to export into (a new or empty folder)"))
        elif to != "thunderbird":
            return self.ctx.render(request, "error.html", status_code=400,
                                   message=_("choose what to export to"))
        with self._lock:
            if self.running() is None:
                self.job = ExportJob(key=key, dest=dest, kind=str(to), out=out)
                self.job.start()
        return RedirectResponse("/export", status_code=303)


    def page(self, request: Request) -> Response:
        job = self.job
        if job is None:
            return RedirectResponse("/archives", status_code=303)
        return self.ctx.render(request, "export.html", job=job, lines=job.lines(),
                               problems=job.problems())


def routes(ctx: UIContext) -> list[BaseRoute]:
    """The export's routes, for :func:`archiver.ui.app.create_app`."""
    pages = ExportPages(ctx)
    ctx.export_pages = pages  # type: ignore[attr-defined]  # tests reach the job here
    return [
        Route("/a/{key}/export", pages.start, methods=["POST"]),
        Route("/export", pages.page, methods=["GET"]),
    ]
