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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional, Protocol

from archiver.archive import Archive
from archiver.errors import ArchiverError, ConnectionFailed, Interrupted
from archiver.headers import date_from_headers, summarize
from archiver.index import (
    flags_record,
    folder_record,
    gone_record,
    link_record,
    message_key,
    msg_record,
)
from archiver.names import assign_path, fold_key
from archiver.pipeline import Job, Pipeline
from archiver.plan import FolderPlan, batches, describe, folder_selected, plan_folder
from archiver.progress import NullProgress, Progress
from archiver.resume import prune_partials, stream_message
from archiver.sources.base import (
    ConnectionLost,
    FetchFailed,
    Folder,
    FolderStatus,
    MessageMeta,
)
from archiver.state import FolderEntry, MessageEntry
from archiver.stores.base import Incoming, Rename, Store, norm_hash

log = logging.getLogger("archiver.engine")

CRASH_ENV = "ARCHIVER_TEST_CRASH_AFTER"  # test hook, see tests/test_crash.py


class Source(Protocol):
    def connect(self) -> None: ...
    def close(self) -> None: ...
    def folders(self) -> list[Folder]: ...
    def status(self, folder: Folder) -> Optional[FolderStatus]: ...
    def open_folder(self, folder: Folder) -> FolderStatus: ...
    def list_messages(self, count: int) -> list[MessageMeta]: ...
    def fetch(self, uids: list[int]) -> Any: ...
    def fetch_headers(self, uids: list[int]) -> dict[int, bytes]: ...
    def fetch_stream(self, uid: int, size_hint: int, write: Callable[[bytes], None],
                     chunk: int = ..., offset: int = ..., overlap: bytes = ...) -> int: ...


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


@dataclass
class Summary:
    """What a run did; ``as_dict`` is the documented ``--json`` output."""

    folders: int = 0
    folders_skipped: int = 0
    new: int = 0
    new_bytes: int = 0
    flags_updated: int = 0
    already: int = 0
    gone: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # found and handled (a renumbered folder)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "partial" if self.problems else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "folders": self.folders,
            "folders_skipped": self.folders_skipped, "new": self.new,
            "new_bytes": self.new_bytes, "flags_updated": self.flags_updated,
            "already": self.already, "gone": self.gone, "problems": self.problems,
            "notes": self.notes, "seconds": round(self.seconds, 3),
        }



def _key(entry: MessageEntry) -> dict[str, Any]:
    """How a record names an archived message (see index.message_key)."""
    return message_key(entry.uidvalidity, entry.uid, entry.uidl)


def _iso(dt: Optional[datetime]) -> Optional[str]:
    return dt.isoformat() if dt is not None else None


# ---------------------------------------------------------------- pipeline records


@dataclass
class _Staged:
    """A batch between the stage and sync threads (see archiver.pipeline)."""

    name: str
    path: str
    plan: FolderPlan
    count: int
    to_write: list[Incoming] = field(default_factory=list)
    reused: list[tuple[Incoming, MessageEntry, str]] = field(default_factory=list)
    links: list[tuple[Incoming, MessageEntry]] = field(default_factory=list)  # POP3 -> IMAP
    takeovers: list[tuple[Incoming, MessageEntry]] = field(default_factory=list)  # IMAP->POP3
    staged: Any = None
    records: list[dict[str, Any]] = field(default_factory=list)
    nbytes: int = 0


# ---------------------------------------------------------------- engine


class Backup:
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
        self._reconnects = 0
        crash = os.environ.get(CRASH_ENV)
        self._crash_after = int(crash) if crash else None
        self._written = 0
        self._reused = 0  # sync-thread counter, folded into the summary at the end
        # Folder records waiting to go out in that folder's first index frame, and the
        # STATUS counters of folders whose pass is durable (both touched by the sync thread).
        self._folder_records: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, Any] = {}
        self._statuses: dict[str, Optional[FolderStatus]] = {}
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
        try:
            try:
                self._run_folders()
                pipeline.drain()
            except KeyboardInterrupt:
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
            raise Interrupted("interrupted; what was fetched is saved -- run the same command "
                              "to go on")
        return self.summary

    def _run_folders(self) -> None:
        folders = self._with_reconnect(self.source.folders)
        selected = [f for f in folders
                    if folder_selected(f.name, self.options.include, self.options.exclude)]
        selected.sort(key=lambda f: (f.name != "INBOX", f.name))
        self._statuses = self._prefetch_status(selected)
        for folder in selected:
            if not self._folder_pass(folder, functools.partial(self._one_folder, folder)):
                return

    def _folder_pass(self, folder: Folder, work: Callable[[], None]) -> bool:
        """Run one folder's pass, redone after a reconnect; False when out of reconnects.

        After a lost connection the pipeline is drained first, so the redone
        pass plans against everything already recorded.
        """
        self.summary.folders += 1
        self.progress.folder(folder.name)
        while True:
            try:
                work()
                return True
            except ConnectionLost as exc:
                self._pipeline.drain()
                if not self._reconnect(exc):
                    return False
            except FetchFailed as exc:
                self.summary.problems.append(f"{folder.name}: {exc}")
                return True

    def _prefetch_status(self, folders: list[Folder]) -> dict[str, Optional[FolderStatus]]:
        """STATUS of every folder up front, so the progress bar knows the size of a first run.

        A folder never completed before is expected to be fetched whole; the
        estimate is corrected when the folder is planned.
        """
        out: dict[str, Optional[FolderStatus]] = {}
        for folder in folders:
            if not folder.selectable:
                continue
            status = self._with_reconnect(functools.partial(self.source.status, folder))
            out[folder.name] = status
            if status is not None and folder.name not in self._counters:
                estimate = (status.messages, status.size or 0)
                self._estimates[folder.name] = estimate
                self.progress.add_total(*estimate)
        return out

    def _with_reconnect(self, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return call()
            except ConnectionLost as exc:
                if not self._reconnect(exc):
                    raise ConnectionFailed(f"lost the connection and could not get it back "
                                           f"({exc}); run the same command again") from None

    def _reconnect(self, exc: Exception) -> bool:
        """Reconnect with back-off; False (and a problem noted) when out of attempts."""
        while self._reconnects < self.options.max_reconnects:
            self._reconnects += 1
            delay = self.options.backoff * (2 ** (self._reconnects - 1))
            self.progress.note(f"connection lost ({exc}); reconnecting in {delay:.0f} s "
                               f"(attempt {self._reconnects}/{self.options.max_reconnects})")
            time.sleep(delay)
            self.source.close()
            try:
                self.source.connect()
                return True
            except ConnectionFailed as again:
                exc = again
        self.summary.problems.append(f"connection lost and not recovered: {exc}; "
                                     "run the same command again to finish")
        return False

    # ------------------------------------------------------------ one folder

    def _one_folder(self, folder: Folder) -> None:
        """Plan and fetch one folder; its durable end is a pipeline job (no waiting here)."""
        if not folder.selectable:
            if folder.name not in self._counters:
                path = self._ensure_folder(folder)
                self._pipeline.submit(Job(folder.name, path, lambda _: self._finish_folder(
                    folder.name, path, {"noselect": True})))
            return
        # Asked once up front; a folder STATUS refused then (None) is not asked again.
        status = (self._statuses.pop(folder.name) if folder.name in self._statuses
                  else self.source.status(folder))
        cached = self._counters.get(folder.name)
        if (status is not None and status.highestmodseq is not None
                and cached == status.as_dict()):
            self.summary.folders_skipped += 1
            self.summary.already += status.messages
            if self.on_folder_done is not None:
                self.on_folder_done(folder.name)
            return
        path = self._ensure_folder(folder)
        opened = self.source.open_folder(folder)
        listing = self.source.list_messages(opened.messages)
        entry = self.archive.state().folders.get(folder.name)
        plan = plan_folder(entry, opened.uidvalidity, listing)
        if entry is not None and (plan.suspects or plan.reusable):
            plan = self._rematch(folder.name, path, entry, plan, listing)
        self.summary.already += plan.already
        est_messages, est_bytes = self._estimates.pop(folder.name, (0, 0))
        self.progress.add_total(len(plan.to_fetch) - est_messages,
                                plan.fetch_bytes() - est_bytes)
        if plan.flag_changes or plan.gone:
            self._pipeline.submit(Job(folder.name, path,
                                       lambda _: self._commit_changes(folder.name, path, plan)))
        prune_partials(self.store, path, plan, self.options.stream_threshold)
        failures = self._fetch_all(folder, path, plan)
        if plan.uidvalidity_changed or plan.report:
            self._pipeline.submit(Job(folder.name, path, lambda _: self._retire_old(
                folder.name, plan, retire=not failures)))
        done = status.as_dict() if (status is not None and not failures) else None
        self._pipeline.submit(Job(folder.name, path,
                                   lambda _: self._finish_folder(folder.name, path, done)))

    def _rematch(self, name: str, path: str, entry: FolderEntry, plan: FolderPlan,
                 listing: list[MessageMeta]) -> FolderPlan:
        """UIDs that may not name the archived messages: match again (archiver.renumber,
        imported here: a no-op rerun never needs it)."""
        from archiver.renumber import rearrange, resolve

        plan, work = resolve(entry, plan, listing, self.source.fetch_headers, self.store)
        self.summary.flags_updated += work.flag_updates
        if work:
            self._pipeline.submit(Job(name, path, lambda _: self.summary.problems.extend(
                rearrange(self.store, path, work, functools.partial(self._record, name)))))
            self._pipeline.drain()  # the stage thread must find the files where the index says
        return plan

    def _finish_folder(self, name: str, path: str, counters: Optional[dict[str, Any]]) -> None:
        """Sync thread: the folder's records are durable; remember its counters."""
        self._record(name, [])
        self.store.forget(path)
        if counters is not None:
            self._counters[name] = counters
        else:
            self._counters.pop(name, None)
        if self.on_folder_done is not None:
            self.on_folder_done(name)

    def _record(self, name: str, records: list[dict[str, Any]]) -> None:
        """Sync thread: append records, preceded by the folder's pending folder record."""
        pending = self._folder_records.pop(name, None)
        self.archive.record(([pending] if pending else []) + records)

    def _ensure_folder(self, folder: Folder) -> str:
        """The folder's path (assigned once, for ever) with its directories made."""
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
        self.store.prepare_folder(path, mailbox=folder.selectable)
        # Always: a folder cut before its first frame has bytes but no records yet.
        self.store.repair(path, list(entry.messages.values()) if entry is not None else [])
        rec = folder_record(folder.name, path, folder.server_name, folder.separator,
                            folder.attributes)
        if entry is None or (entry.server_name, entry.separator, entry.attributes) != (
                folder.server_name, folder.separator, tuple(folder.attributes)):
            self._folder_records[folder.name] = rec  # goes out with the folder's first frame
        return path

    def _fetch_all(self, folder: Folder, path: str, plan: FolderPlan) -> int:
        opts = self.options
        failures = 0
        for group in batches(plan.to_fetch, opts.batch_bytes, opts.batch_count,
                             opts.stream_threshold):
            items: list[Incoming] = []
            if len(group) == 1 and group[0].size > opts.stream_threshold:
                item = self._stream_one(path, plan, group[0])
                if item is not None:
                    items.append(item)
                else:
                    failures += 1
            else:
                metas = {m.uid: m for m in group}
                for uid, body in self.source.fetch([m.uid for m in group]):
                    if isinstance(body, FetchFailed):
                        failures += 1
                        self.summary.problems.append(f"{folder.name}: {body}")
                        continue
                    m = metas[uid]
                    items.append(Incoming(plan.uidvalidity, uid, m.flags, m.keywords,
                                          m.internaldate, data=body, uidl=m.uidl,
                                          server_size=m.size))
            if items:
                self._reconnects = 0  # progress: a flaky line gets a fresh retry budget
                self._pipeline.submit(Job(
                    folder.name, path, finish=self._finish_batch,
                    prepare=functools.partial(self._stage_batch, folder.name, path, plan,
                                              items),
                    discard=self._discard_batch))
        return failures

    def _stream_one(self, path: str, plan: FolderPlan, meta: MessageMeta) -> Optional[Incoming]:
        """Stream one large message into a spool file, continuing a partial one if safe
        (archiver.resume: after a lost connection the redone pass asks only for the rest)."""
        try:
            spool = stream_message(self.source, self.store, path, plan.uidvalidity, meta,
                                   self.options.stream_chunk)
        except FetchFailed as exc:
            self.summary.problems.append(f"{path}: {exc}")
            return None
        return Incoming(plan.uidvalidity, meta.uid, meta.flags, meta.keywords,
                        meta.internaldate, spool=spool, uidl=meta.uidl, server_size=meta.size)

    # ------------------------------------------------------------ pipeline jobs

    def _stage_batch(self, name: str, path: str, plan: FolderPlan,
                     items: list[Incoming]) -> _Staged:
        """Stage thread: decide reuse/links, write new files (not yet durable), build records."""
        st = _Staged(name, path, plan, len(items))
        for item in items:
            if item.internaldate is None:
                item.internaldate, item.date_source = date_from_headers(item.head)
            if plan.reusable:
                digest = item.sha256()
                pool = plan.reusable.get(digest)
                if pool:
                    st.reused.append((item, pool.pop(0), digest))
                    self._drop_spool(item)
                    continue
            other = self._cross_match(plan, item) if plan.cross else None
            if other is not None and item.uidl is not None:
                st.links.append((item, other))
                self._drop_spool(item)
                continue
            if other is not None and other.sha256 == item.sha256():
                st.reused.append((item, other, other.sha256))
                self._drop_spool(item)
                continue
            if other is not None:
                st.takeovers.append((item, other))
            st.to_write.append(item)
        st.staged, stored = self.store.stage_batch(path, st.to_write)
        try:
            for item, done in zip(st.to_write, stored):
                st.records.append(self._msg_record(name, plan.uidvalidity, item, done.path,
                                                   done.size, done.sha256, done.offset,
                                                   done.length))
                st.nbytes += done.size
                item.data = None  # in the page cache now; keep memory flat
        except BaseException:
            self.store.discard_staged(st.staged)
            raise
        return st

    def _discard_batch(self, st: _Staged) -> None:
        """Stage thread's work that will never be committed (an earlier job failed)."""
        self.store.discard_staged(st.staged)

    def _finish_batch(self, st: _Staged) -> None:
        """Sync thread: make the staged files durable, then append their index frame."""
        name, path, plan = st.name, st.path, st.plan
        self.store.commit_staged(st.staged)
        self._written += len(st.to_write)
        if self._crash_after is not None and self._written >= self._crash_after:
            os._exit(137)  # test hook: files durable, index frame not yet written
        moves = [Rename(self.store.base_name(old.uidvalidity, old.uid), plan.uidvalidity,
                        item.uid, item.flags, item.keywords) for item, old, _ in st.reused]
        moved = self.store.rename(path, moves) if moves else []
        records = st.records
        for (item, old, digest), newpath in zip(st.reused, moved):
            records.append(self._msg_record(name, plan.uidvalidity, item, newpath or old.path,
                                            old.size, digest, old.offset, old.length))
            if old.uidl is not None:  # an IMAP message took over a POP3 sight's file
                records.append(self._link_record(name, old, plan.uidvalidity, item.uid))
            else:
                records.append(gone_record(name, _key(old), "uidvalidity",
                                           replaced_by=(plan.uidvalidity, item.uid)))
        for item, other in st.links:
            records.append(self._link_record(name, item, other.uidvalidity, other.uid))
        for item, old in st.takeovers:
            records.append(self._link_record(name, old, plan.uidvalidity, item.uid))
        replaced = [old.path for _, old in st.takeovers]  # before the links repoint them
        self._record(name, records)
        if replaced:  # the POP3 copy differs only in line ends: the IMAP bytes replace it
            self.store.remove(path, replaced)
        self.summary.new += len(st.to_write)
        self.summary.new_bytes += st.nbytes
        self._reused += len(st.reused) + len(st.links)
        self.progress.advance(st.count, st.nbytes + sum(o.size for _, o, _ in st.reused))

    def _drop_spool(self, item: Incoming) -> None:
        if item.spool is not None:
            item.spool.discard()

    def _cross_match(self, plan: FolderPlan, item: Incoming) -> Optional[MessageEntry]:
        """The same message seen over the other protocol (multiset, by norm hash)."""
        if plan.cross_index is None:
            index: dict[str, list[MessageEntry]] = {}
            for m in plan.cross:
                norm = m.sha256_norm
                if not norm:
                    try:
                        norm = norm_hash(self.store.read(m.path))
                    except OSError:
                        continue
                index.setdefault(norm, []).append(m)
            plan.cross_index = index
        pool = plan.cross_index.get(item.sha256_norm())
        return pool.pop(0) if pool else None

    def _link_record(self, name: str, sight: Any, uidvalidity: int, uid: int) -> dict[str, Any]:
        size = sight.server_size if isinstance(sight, Incoming) else sight.rfc822_size
        return link_record(name, sight.uidl, (uidvalidity, uid), rfc822_size=size)

    def _msg_record(self, name: str, uidvalidity: int, item: Incoming, path: str, size: int,
                    sha256: str, offset: Optional[int] = None,
                    length: Optional[int] = None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if item.uidl is not None:
            extra["flags_known"] = False  # POP3 has no flags
            extra["internaldate_source"] = item.date_source
            extra["sha256_norm"] = item.sha256_norm() if item.data is not None else ""
        extra.update(summarize(item.head))
        return msg_record(name, message_key(uidvalidity, item.uid, item.uidl), path=path,
                          size=size, sha256=sha256, internaldate=_iso(item.internaldate),
                          flags=item.flags, keywords=item.keywords, offset=offset,
                          length=length, rfc822_size=item.server_size, **extra)

    def _commit_changes(self, name: str, path: str, plan: FolderPlan) -> None:
        records: list[dict[str, Any]] = []
        if plan.flag_changes:
            moves = [Rename(self.store.base_name(old.uidvalidity, old.uid), old.uidvalidity,
                            old.uid, meta.flags, meta.keywords) for old, meta in plan.flag_changes]
            newpaths = self.store.rename(path, moves)
            for (old, meta), newpath in zip(plan.flag_changes, newpaths):
                if not newpath:
                    self.summary.problems.append(
                        f"{name}: the file of UID {old.uid} is missing from the archive; "
                        "run 'archiver verify'")
                records.append(flags_record(name, _key(old), meta.flags, meta.keywords,
                                            newpath or old.path))
            self.summary.flags_updated += len(plan.flag_changes)
        for old in plan.gone:
            records.append(gone_record(name, _key(old), "expunged"))
        self.summary.gone += len(plan.gone)
        self._record(name, records)

    def _retire_old(self, name: str, plan: FolderPlan, retire: bool) -> None:
        """After a full re-read under a new UIDVALIDITY (or of a folder whose UIDs named
        other messages), old copies not seen again are gone; say what was found."""
        note = describe(name, plan)
        if note:
            self.summary.notes.append(note)
        if retire:
            records = [gone_record(name, _key(old), plan.retire_reason)
                       for pool in plan.reusable.values() for old in pool]
            self.summary.gone += len(records)
            self._record(name, records)


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
