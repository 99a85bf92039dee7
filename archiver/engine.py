"""The backup loop: one engine for every source and store.

The main thread talks to the server (plan, fetch); the pipeline's stage
thread writes each fetched batch into the store and its sync thread makes it
durable and only then appends its index frame (archiver/pipeline.py).  They
overlap, so network and disk time are not added up.  Every index record is
written by the sync thread, in submission order, after the files it names
are durable.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from archiver.archive import Archive
from archiver.connections import Connection, Spread, Stopping, auto_count
from archiver.errors import ArchiverError, ConnectionFailed, Interrupted
from archiver.i18n import _
from archiver.index import (
    folder_record,
)
from archiver.jobs import Summary, SyncJobs
from archiver.names import assign_path, fold_key
from archiver.namespaces import PERSONAL, choose
from archiver.pipeline import Job, Pipeline
from archiver.plan import FolderPlan, batches, folder_selected, plan_folder
from archiver.preflight import Preflight, RecordedFolders
from archiver.progress import ByteMeter, NullProgress, Progress
from archiver.resume import prune_partials, stream_message
from archiver.sources.alerts import alert_notes
from archiver.sources.base import (
    ConnectionLost,
    FetchFailed,
    Folder,
    FolderStatus,
    MessageMeta,
)
from archiver.sources.base import Source as Source  # the engine's side of a source
from archiver.state import FolderEntry
from archiver.stores.base import Incoming, Store

log = logging.getLogger("archiver.engine")

CRASH_ENV = "ARCHIVER_TEST_CRASH_AFTER"  # test hook, see tests/test_crash.py


@dataclass
class BackupOptions:
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    batch_bytes: int = 8 << 20
    batch_count: int = 1000
    stream_threshold: int = 16 << 20
    stream_chunk: int = 4 << 20
    max_reconnects: int = 5
    backoff: float = 1.0
    connections: int = 0  # 0: auto (archiver.connections.auto_count)
    all_namespaces: bool = False  # also other users' and shared folders (namespaces.py)
    # The folder listing and STATUS answers the start-of-run checks already have
    # (archiver.preflight): used instead of asking the server again.
    preflight: Optional[Preflight] = None
    # Set from another thread (the web page's Cancel button) to end the run as Ctrl-C
    # ends the CLI's: checked between batches and between folders, so what was fetched
    # is made durable and recorded, and Interrupted is raised; a rerun goes on from there.
    cancel: Optional[threading.Event] = None


class Cancelled(Exception):
    """The run's ``cancel`` event was set: unwound like Ctrl-C (KeyboardInterrupt)."""




# ---------------------------------------------------------------- engine


class Backup(SyncJobs):
    """Back up every selected folder of ``source`` into ``archive`` via ``store``."""

    def __init__(self, source: Source, archive: Archive, store: Store,
                 options: Optional[BackupOptions] = None,
                 progress: Optional[Progress] = None) -> None:
        self.source = source
        self.archive = archive
        self.store = store
        self.options = options or BackupOptions()
        self.progress: Progress = progress or NullProgress()
        self.summary = Summary()
        self._assigned: set[str] = set()
        self._taken: Optional[set[str]] = None  # fold_key of every path given (see names)
        self._paths: dict[str, str] = {}  # folder name -> path given in this run
        self._lock = threading.Lock()  # summary counters and path assignment (connections)
        self._stop = threading.Event()  # set when one connection's failure ends the run
        crash = os.environ.get(CRASH_ENV)
        self._crash_after = int(crash) if crash else None
        self._written = 0
        self._reused = 0  # sync-thread counter, folded into the summary at the end
        # Folder records waiting to go out in that folder's first index frame, and the
        # STATUS counters of folders whose pass is durable (both touched by the sync thread).
        self._folder_records: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, Any] = {}
        self._statuses: dict[str, Optional[FolderStatus]] = {}
        # Per folder, the messages and bytes it adds to the progress total that are
        # not yet fetched: a replanned pass (after a reconnect) changes the total by
        # the difference only, and the bar ends exactly at its total.
        self._estimates: dict[str, tuple[int, int]] = {}
        # Called with a folder's name once everything the archive holds of it is durable
        # (from the sync thread, or at once for an unchanged folder): migrate restores it.
        self.on_folder_done: Optional[Callable[[str], None]] = None

    # ------------------------------------------------------------ top level

    def run(self) -> Summary:
        start = time.monotonic()
        pipeline = Pipeline()
        self._pipeline = pipeline
        self._counters = self.archive.folder_counters()
        self._prepare_parents()
        try:
            try:
                self._run_folders()
                pipeline.drain()
            except (KeyboardInterrupt, Cancelled):
                self.summary.interrupted = True
                pipeline.drain()  # the batches in flight are finished and recorded
            finally:
                pipeline.stop()  # raises a pipeline error nobody has seen yet
        finally:
            # Counters only ever describe passes whose every batch is durable (the
            # pipeline is fail-stop), so saving them is always safe.
            self.archive.save_folder_counters(self._counters)
            self.summary.already += self._reused
            self.summary.seconds = time.monotonic() - start
        if self.summary.interrupted:
            stopped = Interrupted(_("interrupted; what was fetched is saved -- run the same "
                                    "command to go on"))
            stopped.summary = self.summary
            raise stopped
        self.summary.notes.extend(alert_notes(self.source))
        return self.summary

    def _prepare_parents(self) -> None:
        """mbox: the empty files of parent-only folders (MboxStore.prepare_parents) for
        every recorded folder, also those skipped below as unchanged."""
        prepare = getattr(self.store, "prepare_parents", None)
        if prepare is None:
            return
        folders = self.archive.state().folders.values()
        prepare([(f.path, not f.parent_only) for f in folders if f.path])

    def _run_folders(self) -> None:
        conn = Connection(self.source)
        pre = self.options.preflight
        listed = pre.listed if pre is not None else self._with_reconnect(conn,
                                                                          self.source.folders)
        if pre is not None:
            self.summary.notes.extend(pre.notes)
        choice = choose(listed, self.options.all_namespaces, RecordedFolders(self.archive))
        self.summary.problems.extend(choice.problems)
        if choice.note:
            self.summary.notes.append(choice.note)
        folders = choice.folders
        selected = [f for f in folders
                    if folder_selected(f.name, self.options.include, self.options.exclude)]
        selected.sort(key=lambda f: (f.name != "INBOX", f.name))
        self._statuses = self._prefetch_status(conn, selected)
        count = self.options.connections or auto_count(self.source, self._with_work(selected))
        log.info("round trip %.1f ms; %s; %d connection(s)",
                 1000 * getattr(self.source, "rtt", 0.0),
                 "compressed" if getattr(self.source, "compressed", False) else "not compressed",
                 count)
        if count <= 1:
            for folder in selected:
                if not self._pass(conn, folder):
                    return
            return
        # Largest first, so no connection is left with a big folder at the end.
        order = sorted(selected, key=self._expected_bytes, reverse=True)
        Spread(self.source, count, order, self._pass, self.progress.note, self._stop).run()

    def _pass(self, conn: Connection, folder: Folder) -> bool:
        return self._folder_pass(conn, folder, functools.partial(self._one_folder, conn, folder))

    def _with_work(self, folders: list[Folder]) -> int:
        """Folders whose STATUS says there may be something to fetch."""
        return sum(1 for f in folders if f.selectable and (
            (st := self._statuses.get(f.name)) is None or st.highestmodseq is None
            or self._counters.get(f.name) != st.as_dict()))

    def _expected_bytes(self, folder: Folder) -> int:
        st = self._statuses.get(folder.name)
        return (st.size or st.messages) if st is not None else 0

    def _folder_pass(self, conn: Connection, folder: Folder, work: Callable[[], None]) -> bool:
        """Run one folder's pass, redone after a reconnect; False when out of reconnects.

        After a lost connection the pipeline is flushed first, so the redone
        pass plans against everything already recorded.
        """
        self._add("folders", 1)
        meter = self._meter(conn)
        while True:
            try:
                work()
                return True
            except ConnectionLost as exc:
                self._pipeline.flush()
                if not self._reconnect(conn, exc):
                    meter.settle(0)  # what arrived of the lost batch is not archived
                    return False
            except FetchFailed as exc:
                self.summary.problems.append(f"{folder.name}: {exc}")
                meter.settle(0)
                self._plan_total(folder.name, 0, 0)  # not archived this time
                return True

    def _meter(self, conn: Connection) -> ByteMeter:
        """The connection's byte meter, handed to its source (which calls it as bytes arrive)."""
        if conn.meter is None:
            conn.meter = ByteMeter(self.progress)
        meter = conn.meter
        if getattr(conn.source, "meter", None) is not meter:
            try:
                conn.source.meter = meter
            except AttributeError:  # a source that cannot meter: settling credits it all
                pass
        return meter

    def _plan_total(self, name: str, messages: int, nbytes: int) -> None:
        """The folder's part of the progress total is now ``messages``/``nbytes``."""
        with self._lock:
            old_m, old_b = self._estimates.get(name, (0, 0))
            self._estimates[name] = (messages, nbytes)
        self.progress.add_total(messages - old_m, nbytes - old_b)

    def _settle(self, conn: Connection, name: str, fetched: list[MessageMeta],
                failed: list[MessageMeta]) -> None:
        """A batch (or a streamed message) is done: the bytes its connection reported
        become the sizes of the messages fetched; failed ones leave the total."""
        done = sum(m.size for m in fetched)
        lost = sum(m.size for m in failed)
        self._meter(conn).settle(done)
        if failed:
            self.progress.add_total(-len(failed), -lost)
        with self._lock:
            m, b = self._estimates.get(name, (0, 0))
            self._estimates[name] = (m - len(fetched) - len(failed), b - done - lost)

    def _check_stop(self) -> None:
        # On a cancel every connection still hands in the batch it has fetched (and then
        # stops in _check_cancel): Cancel saves what came, as Ctrl-C does with one.
        if self._stop.is_set() and not self._cancelled():
            raise Stopping()

    def _cancelled(self) -> bool:
        cancel = self.options.cancel
        return cancel is not None and cancel.is_set()

    def _check_cancel(self) -> None:
        """After a batch is handed to the pipeline, or before a folder: stop if asked to."""
        if self._cancelled():
            raise Cancelled()

    def _prefetch_status(self, conn: Connection,
                         folders: list[Folder]) -> dict[str, Optional[FolderStatus]]:
        """STATUS of every folder up front, so the progress bar knows the size of a first run.

        A folder never completed before is expected to be fetched whole; the
        estimate is corrected when the folder is planned.  The answers the
        start-of-run checks got (``options.preflight``) are not asked again.
        """
        selectable = [f for f in folders if f.selectable]
        pre = self.options.preflight
        known = pre.statuses if pre is not None else {}
        out: dict[str, Optional[FolderStatus]] = {f.name: known[f.name] for f in selectable
                                                  if f.name in known}
        ask = [f for f in selectable if f.name not in out]
        many = getattr(self.source, "status_many", None)  # one round trip (IMAP)
        if ask and many is not None:
            out.update(self._with_reconnect(conn, functools.partial(many, ask)))
        elif ask:
            out.update({f.name: self._with_reconnect(conn, functools.partial(
                self.source.status, f)) for f in ask})
        for folder in selectable:
            status = out.get(folder.name)
            if status is not None and folder.name not in self._counters:
                self._plan_total(folder.name, status.messages, status.size or 0)
        return out

    def _with_reconnect(self, conn: Connection, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return call()
            except ConnectionLost as exc:
                if not self._reconnect(conn, exc):
                    raise ConnectionFailed(_("lost the connection and could not get it back "
                                             "({exc}); run the same command again").format(
                                             exc=exc)) from None

    def _reconnect(self, conn: Connection, exc: Exception) -> bool:
        """Reconnect with back-off; False (and a problem noted) when out of attempts."""
        while conn.reconnects < self.options.max_reconnects:
            conn.reconnects += 1
            delay = self.options.backoff * (2 ** (conn.reconnects - 1))
            self.progress.note(_("connection lost ({exc}); reconnecting in {delay:.0f} s "
                                 "(attempt {reconnects}/{max_reconnects})").format(
                                 exc=exc, delay=delay, reconnects=conn.reconnects,
                                 max_reconnects=self.options.max_reconnects))
            if self._stop.wait(delay):
                raise Stopping()
            conn.source.close()
            try:
                conn.source.connect()
                return True
            except ConnectionFailed as again:
                exc = again
        self.summary.problems.append(_("connection lost and not recovered: {exc}; run the "
                                       "same command again to finish").format(exc=exc))
        return False

    # ------------------------------------------------------------ one folder

    def _one_folder(self, conn: Connection, folder: Folder) -> None:
        """Plan and fetch one folder; its durable end is a pipeline job (no waiting here)."""
        self._check_cancel()
        if not folder.selectable:
            if folder.name not in self._counters:
                path = self._ensure_folder(folder)
                self._pipeline.submit(Job(folder.name, path, lambda _: self._finish_folder(
                    folder.name, path, {"noselect": True})))
            return
        # Asked once up front; a folder STATUS refused then (None) is not asked again.
        source = conn.source
        status = (self._statuses.pop(folder.name) if folder.name in self._statuses
                  else source.status(folder))
        cached = self._counters.get(folder.name)
        if (status is not None and status.highestmodseq is not None
                and cached == status.as_dict()):
            self._add("folders_skipped", 1)
            self._add("already", status.messages)
            self.progress.folder(folder.name, 0, 0)
            if self.on_folder_done is not None:
                self.on_folder_done(folder.name)
            return
        path = self._ensure_folder(folder)
        both = getattr(source, "open_and_list", None)  # one round trip (IMAP)
        if both is not None:
            opened, listing = both(folder, status)
        else:
            opened = source.open_folder(folder)
            listing = source.list_messages(opened.messages)
        entry = self.archive.state().folders.get(folder.name)
        plan = plan_folder(entry, opened.uidvalidity, listing)
        if entry is not None and (plan.suspects or plan.reusable):
            plan = self._rematch(conn, folder.name, path, entry, plan, listing)
        self._add("already", plan.already)
        self._plan_total(folder.name, len(plan.to_fetch), plan.fetch_bytes())
        self.progress.folder(folder.name, len(plan.to_fetch), plan.fetch_bytes())
        if plan.flag_changes or plan.gone:
            self._pipeline.submit(Job(folder.name, path,
                                       lambda _: self._commit_changes(folder.name, path, plan)))
        prune_partials(self.store, path, plan, self.options.stream_threshold)
        failures = self._fetch_all(conn, folder, path, plan)
        if plan.uidvalidity_changed or plan.report:
            self._pipeline.submit(Job(folder.name, path, lambda _: self._retire_old(
                folder.name, plan, retire=not failures)))
        done = status.as_dict() if (status is not None and not failures) else None
        self._pipeline.submit(Job(folder.name, path,
                                   lambda _: self._finish_folder(folder.name, path, done)))

    def _rematch(self, conn: Connection, name: str, path: str, entry: FolderEntry,
                 plan: FolderPlan, listing: list[MessageMeta]) -> FolderPlan:
        """UIDs that may not name the archived messages: match again (archiver.renumber,
        imported here: a no-op rerun never needs it)."""
        from archiver.renumber import rearrange, resolve

        plan, work = resolve(entry, plan, listing, conn.source.fetch_headers, self.store)
        self._add("flags_updated", work.flag_updates)
        if work:
            self._pipeline.submit(Job(name, path, lambda _: self.summary.problems.extend(
                rearrange(self.store, path, work, functools.partial(self._record, name)))))
            self._pipeline.flush()  # the stage thread must find the files where the index says
        return plan

    def _ensure_folder(self, folder: Folder) -> str:
        """The folder's path (assigned once, for ever) with its directories made."""
        with self._lock:  # two connections must never be given one path
            path = self._assign(folder)
        self.store.prepare_folder(path, mailbox=folder.selectable)
        state = self.archive.state()
        entry = state.folders.get(folder.name)
        # Always: a folder cut before its first frame has bytes but no records yet.
        self.store.repair(path, list(entry.messages.values()) if entry is not None else [])
        extra = {} if folder.namespace == PERSONAL else {"namespace": folder.namespace}
        rec = folder_record(folder.name, path, folder.server_name, folder.separator,
                            folder.attributes, **extra)
        if entry is None or (entry.server_name, entry.separator, entry.attributes,
                             entry.namespace) != (folder.server_name, folder.separator,
                                                  tuple(folder.attributes), folder.namespace):
            self._folder_records[folder.name] = rec  # goes out with the folder's first frame
        return path

    def _assign(self, folder: Folder) -> str:
        state = self.archive.state()
        entry = state.folders.get(folder.name)
        if entry is not None and entry.path:
            path = entry.path
        elif folder.name in self._paths:
            # Given earlier in this run, its record still pending (the pass was cut
            # before its first frame): the retry must not take a second, suffixed path.
            path = self._paths[folder.name]
        else:
            if self._taken is None:  # folded once per run, then kept up to date
                self._taken = {fold_key(p) for p in state.all_paths() | self._assigned}
            path = assign_path(folder.components, (), self.store.path_for(folder.components),
                               folded=self._taken)
        self._assigned.add(path)
        if self._taken is not None:
            self._taken.add(fold_key(path))
        self._paths[folder.name] = path
        return path

    def _fetch_all(self, conn: Connection, folder: Folder, path: str, plan: FolderPlan) -> int:
        """Fetch the plan's messages: batches pipelined where the source can, then the
        messages big enough to stream one by one; returns how many failed."""
        opts = self.options
        groups: list[list[MessageMeta]] = []
        streamed: list[MessageMeta] = []
        for group in batches(plan.to_fetch, opts.batch_bytes, opts.batch_count,
                             opts.stream_threshold):
            if len(group) == 1 and group[0].size > opts.stream_threshold:
                streamed.append(group[0])
            else:
                groups.append(group)
        metas = {m.uid: m for group in groups for m in group}
        failures = 0
        for answers in self._fetch_groups(conn.source, groups):
            self._check_stop()
            items: list[Incoming] = []
            fetched: list[MessageMeta] = []
            failed: list[MessageMeta] = []
            for uid, body in answers:
                if isinstance(body, FetchFailed):
                    failures += 1
                    self.summary.problems.append(f"{folder.name}: {body}")
                    failed.append(metas[uid])
                    continue
                m = metas[uid]
                fetched.append(m)
                items.append(Incoming(plan.uidvalidity, uid, m.flags, m.keywords,
                                      m.internaldate, data=body, uidl=m.uidl,
                                      server_size=m.size))
            self._settle(conn, folder.name, fetched, failed)
            self._submit_batch(conn, folder, path, plan, items)
            self._check_cancel()
        for meta in streamed:
            self._check_stop()
            item = self._stream_one(conn, path, plan, meta)
            if item is None:
                failures += 1
            self._settle(conn, folder.name, [meta] if item else [], [] if item else [meta])
            self._submit_batch(conn, folder, path, plan, [item] if item else [])
            self._check_cancel()
        return failures

    def _fetch_groups(self, source: Source, groups: list[list[MessageMeta]]
                      ) -> Iterator[list[tuple[int, Any]]]:
        """Each batch's answers: pipelined (IMAP's fetch_many) or one batch at a time."""
        many = getattr(source, "fetch_many", None)
        if many is not None:
            yield from many([([m.uid for m in g], sum(m.size for m in g)) for g in groups],
                            self.options.batch_bytes)
            return
        for group in groups:
            yield list(source.fetch([m.uid for m in group]))

    def _submit_batch(self, conn: Connection, folder: Folder, path: str, plan: FolderPlan,
                      items: list[Incoming]) -> None:
        if not items:
            return
        conn.reconnects = 0  # progress: a flaky line gets a fresh retry budget
        self._pipeline.submit(Job(
            folder.name, path, finish=self._finish_batch,
            prepare=functools.partial(self._stage_batch, folder.name, path, plan, items),
            discard=self._discard_batch))

    def _stream_one(self, conn: Connection, path: str, plan: FolderPlan,
                    meta: MessageMeta) -> Optional[Incoming]:
        """Stream one large message into a spool file, continuing a partial one if safe
        (archiver.resume: after a lost connection the redone pass asks only for the rest)."""
        try:
            spool = stream_message(conn.source, self.store, path, plan.uidvalidity, meta,
                                   self.options.stream_chunk)
        except FetchFailed as exc:
            self.summary.problems.append(f"{path}: {exc}")
            return None
        return Incoming(plan.uidvalidity, meta.uid, meta.flags, meta.keywords,
                        meta.internaldate, spool=spool, uidl=meta.uidl, server_size=meta.size)


def run_backup(source: Source, archive: Archive, store: Store,
               options: Optional[BackupOptions] = None,
               progress: Optional[Progress] = None, connect: bool = True) -> Summary:
    """Library entry point: connect (unless done), back up, close the source and the store.

    A run that changed the index also refreshes the compact snapshot beside it
    (keywords, UIDLs, gone marks), so a lost index can be rebuilt from the
    message files with little loss (``archiver reindex``).
    """
    try:
        if connect:
            source.connect()
        summary = Backup(source, archive, store, options, progress).run()
    finally:
        source.close()
        store.close()
    refresh_snapshot(archive, summary)
    return summary


def refresh_snapshot(archive: Archive, summary: Summary) -> None:
    """After a run that changed the index, save the snapshot ``archiver reindex`` uses.

    A failure here is logged, not fatal: the index itself is complete.
    """
    if not (summary.new or summary.flags_updated or summary.gone):
        return
    from archiver.snapshot import write_snapshot

    try:
        write_snapshot(archive)
    except (ArchiverError, OSError, ValueError) as exc:
        log.warning("could not refresh the index snapshot: %s", exc)
