"""The web page's guided backup, without the web: sign in, look, run in a thread, cancel.

The page drives the same library calls as ``archiver backup`` -- the same
endpoint parsing and presets (:mod:`archiver.account`), the same source
(:func:`archiver.sources.make_source`), the same checks before DEST is made
(:func:`archiver.preflight.start_checks`), the same engine
(:func:`archiver.engine.run_backup`) and the same summary words
(:mod:`archiver.cli.summaries`) -- so a backup started from the browser is
the CLI's backup, and a rerun from either continues the other's.

The password lives only in memory: in the :class:`Backups` hub between the
sign-in and the start (at most :data:`PENDING_SECONDS`), then in the job's
source while it runs; it is never written, logged, or put in an event.  No
web framework here: :mod:`archiver.ui.backup_routes` turns this into pages.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from archiver.account import Endpoint, TLSOptions, parse_endpoint
from archiver.errors import ArchiverError, DestinationError, Interrupted
from archiver.i18n import _
from archiver.progress import RateMeter
from archiver.units import human_duration, human_rate, human_size

log = logging.getLogger("archiver.ui.backup")

PENDING_SECONDS = 15 * 60  # a sign-in not started within this is forgotten (its password too)
FORMATS = ("maildir", "mbox")
# The phases a job goes through; the last four are final.
RUNNING_PHASES = ("connecting", "checking", "running")
FINAL_PHASES = ("done", "partial", "cancelled", "failed")


@dataclass(frozen=True)
class SignIn:
    """What step 1 of the page asks: a server (preset or URL), a login, a CA file."""

    server: str
    user: str = ""
    cafile: Optional[Path] = None

    def endpoint(self) -> Endpoint:
        """Parsed as the CLI parses SOURCE with ``--user`` and ``--cafile`` (same errors)."""
        return parse_endpoint(self.server.strip(), user=self.user.strip() or None,
                              tls=TLSOptions(cafile=self.cafile))


def identity(ep: Endpoint) -> dict[str, str]:
    """The account an archive belongs to (as ``archive.json`` records it)."""
    from archiver.cli.common import endpoint_identity

    return endpoint_identity(ep)


_UNSAFE = '/\\:*?"<>|'


def default_home() -> Path:
    """``Documents/MailArchive`` (``$ARCHIVER_UI_HOME`` when set): where new archives go,
    the same folder the page's start page lists (archiver.ui.archives)."""
    explicit = os.environ.get("ARCHIVER_UI_HOME", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_documents_dir()) / "MailArchive"


def default_dest(ep: Endpoint, home: Optional[Path] = None) -> Path:
    """``HOME/USER@HOST``: one archive per account in the user's documents folder."""
    name = "".join("_" if c in _UNSAFE or ord(c) < 32 else c for c in f"{ep.user}@{ep.host}")
    return (home or default_home()) / name


def existing_format(dest: Path) -> Optional[str]:
    """The format of the archive already in ``dest`` (None: none there, or unreadable)."""
    from archiver.reading import open_archive

    if not (dest / ".archiver" / "archive.json").is_file():
        return None
    try:
        return open_archive(dest).format
    except ArchiverError:
        return None


# ---------------------------------------------------------------- step 2: what is there


@dataclass
class Overview:
    """Step 2's numbers: the server's folders (as ``archiver folders`` lists them) and
    whether the mail not yet in DEST fits there (as ``archiver check`` reckons it)."""

    folders: list[Any]  # survey.FolderInfo
    left_out: int
    dest: Path
    fmt: str
    free: int = 0
    needed: int = 0
    new_messages: int = 0
    new_bytes: int = 0
    fits: bool = True
    dest_problem: str = ""  # DEST cannot take this archive (another account, a file ...)
    notes: list[str] = field(default_factory=list)

    @property
    def total_messages(self) -> int:
        return sum(f.messages or 0 for f in self.folders)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes or 0 for f in self.folders)


def connect(ep: Endpoint, password: str, timeout: float, on_alert: Optional[
        Callable[[str], None]] = None) -> Any:
    """Log in as the CLI does (no protocol trace: nothing of the session is logged)."""
    from archiver.sources import make_source

    src = make_source(ep, password, timeout=timeout, trace=False, on_alert=on_alert)
    src.connect()
    return src


def look(ep: Endpoint, password: str, dest: Path, fmt: Optional[str],
         timeout: float = 60.0) -> Overview:
    """Log in, list the folders with counts and sizes, and check DEST's room (read-only)."""
    from archiver.archive import Archive
    from archiver.preflight import select, space_needed
    from archiver.survey import survey

    chosen = fmt or existing_format(dest) or "maildir"
    src = connect(ep, password, timeout)
    try:
        found = survey(src)
        view = Overview(found.folders, found.left_out, dest, chosen)
        try:
            archive = Archive.prepare(dest, chosen, identity(ep), lock=False)
        except DestinationError as exc:
            view.dest_problem = exc.message
            return view
        pre = select(src, archive, (), (), False)
        need, volume = space_needed(src, pre, archive, chosen, dest)
    finally:
        src.close()
    view.notes = list(pre.notes)
    view.free, view.needed = volume.free, need.needed_bytes
    view.new_messages, view.new_bytes = need.messages, need.bytes
    view.fits = need.needed_bytes <= volume.free
    return view


# ---------------------------------------------------------------- step 3: progress


class ProgressFeed:
    """The engine's Progress (archiver.progress.Progress) for a page: thread-safe counts,
    read as snapshots; :meth:`wait` wakes a server-sent-events stream on each change.

    The connections' threads and the pipeline's sync thread all report; the
    figures are kept as the terminal bar keeps them (done clamped to the total),
    so the page reaches exactly 100 % when the bar would.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._clock = clock
        self._rate = RateMeter(clock=clock)
        self.version = 0
        self.total_messages = 0
        self.total_bytes = 0
        self.done_messages = 0
        self.done_bytes = 0
        self.current_folder = ""
        self.notes: list[str] = []
        self.phase = "connecting"
        # a final error (the library's text, in the language of its time), or why it
        # stopped (made again in the page's language when shown)
        self.message: Union[str, Callable[[], str]] = ""
        self.summary: Optional[Any] = None  # the run's jobs.Summary, shown in the CLI's words
        self.problems: list[str] = []
        self.started = clock()
        self.finished: Optional[float] = None

    def _changed(self) -> None:
        self.version += 1
        self._cond.notify_all()

    # ------------------------------------------------------------ what the engine calls

    def add_total(self, messages: int, nbytes: int) -> None:
        with self._cond:
            self.total_messages += messages
            self.total_bytes += nbytes
            self._changed()

    def advance(self, messages: int, nbytes: int) -> None:
        with self._cond:
            self.done_messages += messages
            self.done_bytes += nbytes
            self._changed()

    def transferred(self, nbytes: int) -> None:
        with self._cond:
            self.done_bytes += nbytes
            self._changed()

    def folder(self, name: str, messages: Optional[int] = None,
               nbytes: Optional[int] = None) -> None:
        with self._cond:
            self.current_folder = name
            self._changed()

    def note(self, text: str) -> None:
        log.info("%s", text)
        with self._cond:
            self.notes.append(text)
            self._changed()

    # ------------------------------------------------------------ what the job sets

    def set_phase(self, phase: str, message: Union[str, Callable[[], str]] = "",
                  summary: Optional[Any] = None,
                  problems: Optional[list[str]] = None) -> None:
        with self._cond:
            self.phase = phase
            self.message = message
            self.summary = summary if summary is not None else self.summary
            if problems is not None:
                self.problems = list(problems)
            if phase in FINAL_PHASES:
                self.finished = self._clock()
            self._changed()

    # ------------------------------------------------------------ what the page reads

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    def snapshot(self) -> dict[str, Any]:
        """The page's figures, numbers and texts (in the language in use now)."""
        with self._cond:
            total_b, total_m = max(0, self.total_bytes), max(0, self.total_messages)
            done_b = min(max(0, self.done_bytes), total_b) if total_b else max(0, self.done_bytes)
            done_m = min(self.done_messages, total_m) if total_m else self.done_messages
            self._rate.update(self.done_bytes)
            share = done_b / total_b if total_b else (done_m / total_m if total_m else 0.0)
            if self.phase == "done" and not total_b:
                share = 1.0
            eta = (self._rate.eta(total_b - done_b) if total_b and self.phase == "running"
                   else None)
            return {
                "version": self.version, "phase": self.phase, "final": self.final,
                "phase_text": phase_text(self.phase),
                "bytes_done": done_b, "bytes_total": total_b,
                "messages_done": done_m, "messages_total": total_m,
                "percent": int(share * 100), "folder": self.current_folder,
                "bytes_text": _("{done} of {total}").format(done=human_size(done_b),
                                                             total=human_size(total_b)),
                "messages_text": _("{done} of {total} messages").format(done=done_m,
                                                                       total=total_m),
                "rate_text": human_rate(self._rate.rate),
                "eta_seconds": None if eta is None else round(eta, 1),
                "eta_text": "" if eta is None else human_duration(eta),
                "notes": list(self.notes[-20:]),
                "message": self.message if isinstance(self.message, str) else self.message(),
                "summary": "" if self.summary is None else _summary_line(self.summary),
                "problems": list(self.problems),
            }

    def wait(self, after: int, timeout: float) -> dict[str, Any]:
        """The snapshot once the version passed ``after`` (or after ``timeout`` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > after, timeout)
        return self.snapshot()


def phase_text(phase: str) -> str:
    texts = {
        "connecting": _("Signing in…"),
        "checking": _("Checking the folders and the free space…"),
        "running": _("Copying…"),
        "done": _("Finished"),
        "partial": _("Finished, but some messages were not saved"),
        "cancelled": _("Cancelled"),
        "failed": _("Stopped by an error"),
    }
    return texts.get(phase, phase)


def sse(snapshot: dict[str, Any]) -> str:
    """One server-sent event carrying a snapshot (JSON on one ``data:`` line)."""
    return f"data: {json.dumps(snapshot, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class Request:
    """A backup to run: who, where to, in which format (None: DEST's own, else Maildir)."""

    sign_in: SignIn
    dest: Path
    fmt: Optional[str] = None


class BackupJob:
    """One backup in a background thread, reporting to a :class:`ProgressFeed`."""

    def __init__(self, request: Request, password: str, timeout: float = 60.0,
                 tune: Optional[Callable[[Any], None]] = None) -> None:
        self.request = request
        self.feed = ProgressFeed()
        self.cancel_event = threading.Event()
        self.timeout = timeout
        self.tune = tune  # tests: adjust BackupOptions (smaller batches)
        self.summary: Optional[Any] = None
        self._password: Optional[str] = password
        self._thread = threading.Thread(target=self._run, name="ui-backup", daemon=True)

    @property
    def dest(self) -> Path:
        return self.request.dest

    def start(self) -> BackupJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop as Ctrl-C stops the CLI: what is in flight is saved, a rerun goes on."""
        self.cancel_event.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() or not self.feed.final

    def _run(self) -> None:
        feed = self.feed
        try:
            self._backup()
        except Interrupted as exc:
            self.summary = exc.summary
            feed.set_phase("cancelled", cancelled_text, summary=exc.summary)
        except ArchiverError as exc:
            feed.set_phase("failed", exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug: a short text and a report file
            feed.set_phase("failed", crash_text(exc))
        finally:
            self._password = None
            if not feed.final:  # e.g. a BaseException: never leave the page waiting
                feed.set_phase("failed", _("the backup stopped unexpectedly"))

    def _backup(self) -> None:
        from archiver.archive import Archive
        from archiver.engine import BackupOptions, run_backup
        from archiver.preflight import start_checks
        from archiver.stores import open_store

        req, feed = self.request, self.feed
        ep = req.sign_in.endpoint()
        for note in ep.notes:
            feed.note(note)
        # As the CLI: DEST usable and its lock free first, then the login, the checks,
        # and only then is DEST created.
        archive = Archive.prepare(req.dest, req.fmt, identity(ep))
        try:
            password, self._password = self._password or "", None
            src = connect(ep, password, self.timeout, on_alert=feed.note)
            del password
            try:
                feed.set_phase("checking")
                pre = start_checks(src, archive, req.dest, archive.format, (), (), False)
                if self.cancel_event.is_set():
                    raise Interrupted(_("cancelled before the first message"))
                archive.create()
            except BaseException:
                src.close()
                raise
            feed.set_phase("running")
            options = BackupOptions(preflight=pre, cancel=self.cancel_event)
            if self.tune is not None:
                self.tune(options)
            summary = run_backup(src, archive, open_store(archive.dest, archive.format),
                                 options, feed, connect=False)
        finally:
            archive.close()
        self.summary = summary
        skipped = archive.skipped_note()
        notes = list(summary.notes) + list(getattr(src, "warnings", []))
        if skipped:
            notes.append(_("warning: {note}").format(note=skipped))
        for note in notes:
            feed.note(note)
        problems = list(summary.problems)
        if problems:
            problems.append(_("some messages were not saved: run the same command again to "
                              "retry them"))
        feed.set_phase("partial" if summary.problems else "done", summary=summary,
                       problems=problems)


def cancelled_text() -> str:
    return _("Cancelled; what was copied is saved. Start the same backup again to go on.")


def _summary_line(summary: Any) -> str:
    from archiver.cli.summaries import backup_line

    return backup_line(summary)


def crash_text(exc: BaseException, what: str = "backup") -> str:
    """A bug, told in one line as the CLI tells it (the traceback goes to a 0600 file)."""
    from archiver.crash import save_report

    path = save_report(exc, ["ui", what])
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = (_("the details are in {path}").format(path=path) if path is not None
             else _("rerun with --debug to see the details"))
    return _("internal error: {what}; {where}").format(what=what, where=where)


# ---------------------------------------------------------------- one per server process


EXIT_WAIT = 60.0  # seconds a stopping server gives the job to save its batch in flight


def at_exit(call: Callable[..., None], *args: Any) -> None:
    """Run ``call(*args)`` when the process ends, *before* thread pools shut down.

    A plain :mod:`atexit` handler runs after ``concurrent.futures`` refused new
    work (its own exit hook comes first), and the pipeline's fsync pool
    (archiver.durable) then could not make the last batch durable.  threading's
    exit hooks run in reverse order of registration, and concurrent.futures.thread
    registers its hook when imported: importing it first puts ours ahead of it.
    """
    import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered first

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(call, *args)
            return
    except RuntimeError:  # already shutting down
        return
    atexit.register(call, *args)


def finish_at_exit(job: BackupJob) -> None:
    """The server is stopping (Ctrl+C on ``archiver ui``): end the job as Cancel does, so
    the batch in flight is saved and recorded, instead of the thread dying with the
    process (safe too, but what was fetched would be fetched again)."""
    if job.running:
        job.cancel()
        job.join(EXIT_WAIT)


@dataclass
class Pending:
    """A sign-in that worked, waiting for step 2 (its password in memory only)."""

    sign_in: SignIn
    endpoint: Endpoint
    password: str
    overview: Overview
    since: float


class Backups:
    """The server's one backup: the pending sign-in, and the job (one at a time)."""

    def __init__(self, timeout: float = 60.0, home: Optional[Path] = None) -> None:
        self._lock = threading.Lock()
        self.timeout = timeout
        self.home = home
        self.last: Optional[SignIn] = None  # step 1's server and user, shown again (no password)
        self._pending: Optional[Pending] = None
        self.job: Optional[BackupJob] = None
        self.tune: Optional[Callable[[Any], None]] = None

    def busy(self) -> Optional[BackupJob]:
        """The job still running, if any."""
        job = self.job
        return job if job is not None and job.running else None

    def sign_in(self, sign_in: SignIn, password: str, dest: Optional[Path] = None,
                fmt: Optional[str] = None) -> Pending:
        """Log in and look (step 1 -> 2); ArchiverError with the CLI's words on failure."""
        from archiver.errors import UsageError

        if not password:
            raise UsageError(_("no password given for {what}").format(what=sign_in.server))
        ep = sign_in.endpoint()
        self.last = sign_in
        where = dest or default_dest(ep, self.home)
        view = look(ep, password, where, fmt, self.timeout)
        view.notes[:0] = list(ep.notes)
        pending = Pending(sign_in, ep, password, view, time.monotonic())
        with self._lock:
            self._pending = pending
        return pending

    def pending(self) -> Optional[Pending]:
        with self._lock:
            p = self._pending
            if p is not None and time.monotonic() - p.since > PENDING_SECONDS:
                self._forget()
                p = None
            return p

    def relook(self, dest: Path, fmt: Optional[str]) -> Optional[Pending]:
        """Step 2 again for another DEST or format (logs in once more)."""
        p = self.pending()
        if p is None:
            return None
        p.overview = look(p.endpoint, p.password, dest, fmt, self.timeout)
        p.since = time.monotonic()
        return p

    def start(self, dest: Path, fmt: Optional[str]) -> Optional[BackupJob]:
        """Start the backup of the pending sign-in; the running job if there is one
        (one at a time); None when there is nothing signed in."""
        with self._lock:
            running = self.busy()
            if running is not None:
                return running
            p = self._pending
            if p is None:
                return None
            job = BackupJob(Request(p.sign_in, dest, fmt), p.password, self.timeout,
                            tune=self.tune)
            self._forget()
            self.job = job
        at_exit(finish_at_exit, job)
        return job.start()

    def forget(self) -> None:
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        if self._pending is not None:
            self._pending.password = ""
        self._pending = None
