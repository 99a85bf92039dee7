"""Restore: upload an archive's folders and messages to an IMAP account.

For each archived folder: map its name (``--map``, ``--special-use``,
``--prefix``, the target's namespace and separator), create it (and its
parents) if missing, SELECT it, and upload what the journal does not record
as landed.  Before uploading into a folder the target's listing is compared
with the archive (:mod:`archiver.restore.match`): mail dragged across by hand,
or APPENDed by a run that was killed before its journal record, is recorded
as found instead of uploaded twice.  Uploads go through the pipelined
:class:`~archiver.restore.target.AppendWriter`; each answer is journalled
(:mod:`archiver.restore.journal`) in frames.

What is uploaded: every archived message of the folder, including those
marked gone (expunged on the old server after they were archived: they are
the user's mail, and the archive is the only copy), except messages flagged
``\\Deleted`` unless ``include_deleted``.  POP3 sights linked to their IMAP
twin are the same message and go once.

How one message is read and sent (whole or streamed): :mod:`archiver.restore.items`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from archiver.archive import Archive
from archiver.connections import Connection, Spread, Stopping, auto_count
from archiver.errors import ArchiverError, ConnectionFailed, Interrupted
from archiver.i18n import _, ngettext
from archiver.names import encode_mutf7
from archiver.namespaces import PERSONAL
from archiver.plan import folder_selected
from archiver.progress import ByteMeter, NullProgress, Progress
from archiver.restore.items import append_item, target_flags
from archiver.restore.journal import Landed, RestoreJournal, landed_record
from archiver.restore.mapping import FolderMapper, wanted
from archiver.restore.match import Candidate, epoch, match
from archiver.restore.options import RestoreOptions as RestoreOptions  # its home before
from archiver.restore.recheck import still_landed
from archiver.restore.target import (
    AppendAborted,
    AppendItem,
    AppendResult,
    ImapTarget,
)
from archiver.sources.base import ConnectionLost
from archiver.state import FolderEntry, MessageEntry
from archiver.stores.base import Store

log = logging.getLogger("archiver.restore.upload")

CRASH_ENV = "ARCHIVER_TEST_RESTORE_CRASH_AFTER"  # test hook: exit after N landed, unjournalled
JOURNAL_EVERY = 200  # landed records per journal frame (a crash loses at most these: found again)

@dataclass
class RestoreSummary:
    """What a restore did (or, with ``dry_run``, would do); ``as_dict`` is ``--json``."""

    dry_run: bool = False
    folders: int = 0
    created: list[str] = field(default_factory=list)
    uploaded: int = 0
    uploaded_bytes: int = 0
    already: int = 0  # the journal says they landed earlier
    found: int = 0  # already on the target (by hand, or a killed run): not uploaded again
    skipped_deleted: int = 0
    keywords_dropped: int = 0
    refused: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # handled, worth a line (folders not ours)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "partial" if self.refused or self.problems else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "dry_run": self.dry_run, "folders": self.folders,
                "created": self.created, "uploaded": self.uploaded,
                "uploaded_bytes": self.uploaded_bytes, "already": self.already,
                "found": self.found, "skipped_deleted": self.skipped_deleted,
                "keywords_dropped": self.keywords_dropped, "refused": self.refused,
                "problems": self.problems, "notes": self.notes,
                "seconds": round(self.seconds, 3)}


class Restore:
    """Upload ``archive`` into ``target``; one instance per run (or per migrate)."""

    def __init__(self, archive: Archive, store: Store, target: ImapTarget,
                 journal: RestoreJournal, options: Optional[RestoreOptions] = None,
                 progress: Optional[Progress] = None) -> None:
        self.archive = archive
        self.store = store
        self.target = target
        self.journal = journal
        self.options = options or RestoreOptions()
        self.progress: Progress = progress or NullProgress()
        self.summary = RestoreSummary(dry_run=self.options.dry_run)
        self._existing: set[bytes] = set()
        self._mapper: Optional[FolderMapper] = None
        self._primary = Connection(target)
        # Several connections (--connections) share the summary, the folders being
        # created and the journal (which has its own lock); Ctrl-C or one connection's
        # failure sets _stop, and the others end after their uploads in flight.
        self._lock = threading.Lock()
        self._mapper_lock = threading.Lock()
        self._stop = threading.Event()
        self._creating: dict[bytes, threading.Event] = {}
        self._parent_names: Optional[frozenset[tuple[str, ...]]] = None  # see _ensure
        self._would_create: set[bytes] = set()  # dry run: "created" without asking the server
        self._busy: dict[str, threading.Lock] = {}  # target folder -> held while restoring into it
        self._keywords_noted = False
        crash = os.environ.get(CRASH_ENV)
        self._crash_after = int(crash) if crash else None
        self._landed_now = 0
        self._done: set[str] = set()
        self._not_ours: set[str] = set()  # folders of other users / shared: never created
        # (folder, uidvalidity, uid) whose bytes failed mid-APPEND: left out when the
        # folder is redone after the dropped line (reported once, in summary.problems)
        self._unreadable: set[tuple[str, int, int]] = set()

    # ------------------------------------------------------------ top level

    def selected_folders(self) -> list[FolderEntry]:
        """The archived folders to restore: selected, and the user's own (see :meth:`ours`)."""
        folders = [f for f in list(self.archive.state().folders.values())
                   if folder_selected(f.name, self.options.include, self.options.exclude)
                   and self.ours(f)]
        folders.sort(key=lambda f: (f.name != "INBOX", f.name))
        return folders

    def ours(self, entry: FolderEntry) -> bool:
        """False for a folder of another user or a shared one: it is not the user's to create.

        Known from the archive (a folder record's ``namespace``), or -- for archives
        made before that field, which kept e.g. ``Other Users/dora/Sent`` as a
        personal folder -- from the target's own NAMESPACE: a name under its
        other-users or shared prefix.  Creating those failed ("Invalid mailbox
        name") on every rerun, or would write into someone else's mailbox.
        """
        if entry.name not in self._not_ours and entry.namespace == PERSONAL:
            mapper = self.mapper()
            name = mapper.server_name(mapper.target(entry.name), note=False)
            if self.target.namespaces.foreign(name) is None:
                return True
        self._not_ours.add(entry.name)
        return False

    def finish(self) -> None:
        """Put what the run left out on purpose, and the target's alerts, in the summary."""
        folders = self.archive.state().folders
        n = sum(1 for name in self._not_ours if name in folders
                and not folders[name].parent_only)
        if n:
            self.summary.notes.append(
                ngettext("{n} folder from other users' or shared namespaces was not restored: "
                         "it is not yours to create",
                         "{n} folders from other users' or shared namespaces were not restored: "
                         "they are not yours to create", n).format(n=n))
        for note in self.target.alert_notes():
            if note not in self.summary.notes:
                self.summary.notes.append(note)

    def run(self) -> RestoreSummary:
        """Restore every selected folder (the CLI's ``restore``)."""
        start = time.monotonic()
        try:
            folders = self.selected_folders()
            self._estimate(folders)
            self.restore_folders([f.name for f in folders])
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.finish()
            self.summary.seconds = time.monotonic() - start
        if self.summary.interrupted:
            raise Interrupted(_("interrupted; what landed is recorded -- run the same command "
                              "to go on"))
        return self.summary

    def _estimate(self, folders: list[FolderEntry]) -> None:
        count = nbytes = 0
        for f in folders:
            target = "/".join(self.mapper().target(f.name))
            for m in wanted(f, self.options.include_deleted)[0]:
                if (target, f.name, m.uidvalidity, m.uid) not in self.journal.landed:
                    count += 1
                    nbytes += m.size
        self.progress.add_total(count, nbytes)

    def mapper(self) -> FolderMapper:
        with self._mapper_lock:
            if self._mapper is None:
                listing = self._with_reconnect(self._primary, self.target.list_folders)
                self._existing = {f.raw_name for f in listing}
                self._mapper = FolderMapper(self.options, listing, self.target.prefix,
                                            self.target.separator,
                                            self.archive.state().folders)
            return self._mapper

    def _add(self, **counts: int) -> None:
        """Add to summary counters: several connections' threads count at once."""
        with self._lock:
            for name, n in counts.items():
                setattr(self.summary, name, getattr(self.summary, name) + n)

    def restore_folders(self, names: list[str]) -> None:
        """Restore these archived folders over one connection, or several side by side.

        Over a slow link one connection leaves the line idle during each folder's
        round trips (CREATE, SELECT, the listing, the last APPEND answers); other
        connections fill those pauses.  Archived folders that go into the same
        target folder form one group, restored in turn by one connection: a
        folder's dedup listing never races another connection's uploads into it.
        """
        with self._lock:
            names = [name for name in names if name not in self._done]
        groups = groups_by_target(self, names)
        count = self.options.connections or auto_count(self.target, len(groups))
        if count <= 1:
            for group in groups:
                self._restore_group(self._primary, group)
            return
        groups.sort(key=lambda group: self._group_bytes(group), reverse=True)  # as Spread wants
        Spread(self.target, count, groups, self._restore_group, self._note, self._stop).run()

    def _note(self, text: str) -> None:
        """A line for the summary's notes (a refused extra connection: handled, worth saying)."""
        with self._lock:
            if text not in self.summary.notes:
                self.summary.notes.append(text)

    def _group_bytes(self, group: list[str]) -> int:
        folders = self.archive.state().folders
        return sum(m.size for name in group if name in folders
                   for m in wanted(folders[name], self.options.include_deleted)[0])

    def open_connection(self, number: int) -> Optional[Connection]:
        """Connection ``number`` (1: the one we have; others: new logins), or None when
        the target refuses one more (a per-user limit): fewer connections, with a note."""
        if number == 1:
            return self._primary
        conn = Connection(self.target.clone(), number)
        try:
            conn.source.connect()
        except ArchiverError as exc:
            self._note(_("the target refused connection {number} ({exc}); its folders went "
                         "over the others").format(number=number, exc=exc))
            return None
        return conn

    def _restore_group(self, conn: Connection, group: list[str]) -> bool:
        for name in group:
            if self._stop.is_set():
                raise Stopping()
            self.restore_folder(name, conn)
        return True

    def restore_folder(self, name: str, conn: Optional[Connection] = None) -> None:
        """Restore one archived folder, reconnecting (and redoing it) if the line drops."""
        conn = conn or self._primary
        with self._lock:
            if name in self._done:
                return
            self._done.add(name)
        entry = self.archive.state().folders.get(name)
        if entry is None or not self.ours(entry):
            return
        self._add(folders=1)
        self.progress.folder(name)
        tname = "/".join(self.mapper().target(name))
        with self._lock:
            busy = self._busy.setdefault(tname, threading.Lock())
        with busy:  # one connection at a time per target folder: its listing sees no race
            self._restore_with_retries(entry, tname, conn)

    def _restore_with_retries(self, entry: FolderEntry, tname: str, conn: Connection) -> None:
        while True:
            count = FolderCount()  # the folder is redone from the journal: counted once
            try:
                self._restore_folder(entry, conn.source, count)
            except ConnectionLost as exc:
                if isinstance(exc, AppendAborted):
                    self._reopen(conn)  # we dropped the line ourselves: no back-off
                else:
                    self._reconnect(conn, exc)
                continue
            self._add(already=count.already, skipped_deleted=count.deleted)
            conn.reconnects = 0
            self.journal.forget(tname, entry.name)  # done with it
            return

    def _with_reconnect(self, conn: Connection, call: Any) -> Any:
        while True:
            try:
                return call()
            except ConnectionLost as exc:
                self._reconnect(conn, exc)

    def _reopen(self, conn: Connection) -> None:
        conn.source.close()
        try:
            conn.source.connect()
        except ConnectionFailed as exc:
            self._reconnect(conn, exc)

    def _reconnect(self, conn: Connection, exc: Exception) -> None:
        if conn.reconnects >= self.options.max_reconnects:
            raise ConnectionFailed(_("lost the connection to the target and could not get it "
                                     "back ({exc}); run the same command again").format(
                                     exc=exc)) from None
        conn.reconnects += 1
        delay = self.options.backoff * 2 ** (conn.reconnects - 1)
        self.progress.note(_("target connection lost ({exc}); reconnecting in "
                             "{delay:.0f} s").format(exc=exc, delay=delay))
        time.sleep(delay)
        conn.source.close()
        try:
            conn.source.connect()
        except ConnectionFailed as again:
            self._reconnect(conn, again)

    # ------------------------------------------------------------ one folder

    def _ensure(self, comps: tuple[str, ...], target: ImapTarget) -> Optional[str]:
        """Create the folder and missing parents; the refusal text if the server says no.

        A parent the archive knows only as a parent (\\Noselect, \\NonExistent) is
        not created first: CREATE of the child makes it a parent on the target as it
        was on the source, where creating it would make it a mail folder.  Only a
        target that refuses the child without its parent gets the parent created.
        """
        mapper = self.mapper()
        if self._parent_names is None:  # worked out once (a race only builds it twice)
            self._parent_names = frozenset(mapper.target(f.name) for f in
                                           self.archive.state().folders.values() if f.parent_only)
        left_out = [comps[:i] for i in range(1, len(comps)) if comps[:i] in self._parent_names]
        refusal: Optional[str] = None
        for leave in ([left_out, []] if left_out else [[]]):
            for i in range(1, len(comps) + 1):
                if (i == 1 and comps[0].upper() == "INBOX") or comps[:i] in leave:
                    continue
                refusal = self._create(encode_mutf7(mapper.server_name(comps[:i])),
                                       "/".join(comps[:i]), target)
                if refusal is not None:
                    break
            if refusal is None:
                return None
        return refusal

    def _create(self, raw: bytes, name: str, target: ImapTarget) -> Optional[str]:
        """Create one target folder unless it exists; the refusal text if the server says no.

        Two connections may need one parent at once (A/B and A/C): one creates
        it while the other waits, so it is created -- and reported -- once.
        """
        while True:
            with self._lock:
                if raw in self._existing or raw in self._would_create:
                    return None
                busy = self._creating.get(raw)
                if busy is None:
                    mine = self._creating[raw] = threading.Event()
            if busy is not None:
                busy.wait()  # then look again: created, or ours to try
                continue
            try:
                refusal = None if self.options.dry_run else target.create(raw)
                if refusal is None:
                    with self._lock:
                        (self._would_create if self.options.dry_run else self._existing).add(raw)
                        self.summary.created.append(name)
                return refusal
            finally:
                with self._lock:
                    del self._creating[raw]
                mine.set()

    def _restore_folder(self, entry: FolderEntry, target: ImapTarget,
                        count: FolderCount) -> None:
        opts = self.options
        mapper = self.mapper()
        comps = mapper.target(entry.name)
        tname = "/".join(comps)
        messages, deleted = wanted(entry, opts.include_deleted)
        count.deleted = deleted
        if entry.parent_only and not messages:
            return  # created as a parent of its children, if it has any
        raw = encode_mutf7(mapper.server_name(comps))
        existed = raw in self._existing
        refusal = self._ensure(comps, target)
        if refusal is not None:
            self.summary.problems.append(_("{name}: the target refused to create '{tname}' "
                                           "({refusal}); its {n} messages were not "
                                           "uploaded").format(name=entry.name, tname=tname,
                                                              refusal=refusal, n=len(messages)))
            return
        for note in mapper.notes:
            self.progress.note(_("note: {note}").format(note=note))
        mapper.notes.clear()
        if opts.dry_run and not existed:
            self._count_upload(entry, messages)  # a new folder: everything would go
            return
        selected = target.select(raw, readonly=opts.dry_run)
        self.journal.start_folder(tname, entry.name, selected.uidvalidity,
                                  write=not opts.dry_run)
        confirmed: list[tuple[MessageEntry, Landed]] = []
        todo: list[MessageEntry] = []
        for m in messages:
            landed = self.journal.landed.get((tname, entry.name, m.uidvalidity, m.uid))
            if landed is not None:
                confirmed.append((m, landed))
            else:
                todo.append(m)
        if any(landed.to_uid is not None for _msg, landed in confirmed):
            confirmed, doubtful = still_landed(
                confirmed, selected.uidvalidity, target.sizes(selected.exists),
                lambda m, size: self.candidate(m).size_ok(size))
            if doubtful:
                self.progress.note(_("note: {name}: {n} messages are no longer under the UID "
                                     "the journal recorded on '{tname}' (the target "
                                     "renumbered or lost them): looked for again").format(
                                     name=entry.name, n=len(doubtful), tname=tname))
                todo = sorted(todo + doubtful, key=lambda m: (m.uidvalidity, m.uid))
        count.already = len(confirmed)
        if todo and opts.dedup and selected.exists:
            todo = self._dedup(entry, target, tname, selected.uidvalidity, selected.exists,
                               confirmed, todo)
        if opts.dry_run:
            self._count_upload(entry, todo)
            return
        if todo:
            self._upload(entry, target, tname, raw, selected.keywords_allowed,
                         selected.permanent_flags, todo)

    def _count_upload(self, entry: FolderEntry, todo: list[MessageEntry]) -> None:
        self._add(uploaded=len(todo), uploaded_bytes=sum(m.size for m in todo))

    def _chunks(self, m: MessageEntry) -> Callable[[], Iterable[bytes]]:
        """The archived bytes of ``m``, for matching (one chunk; a reader may stream them)."""
        return lambda: [self.store.read_message(m)]

    def candidate(self, m: MessageEntry) -> Candidate:
        """How an archived message is matched against a target folder's contents.

        Shared by the dedup before an upload and by ``--verify`` after it.
        """
        return Candidate(m.message_id, m.size, epoch(m.internaldate), m.sha256,
                         self._chunks(m))

    def _dedup(self, entry: FolderEntry, target: ImapTarget, tname: str, uidvalidity: int,
               exists: int, confirmed: list[tuple[MessageEntry, Landed]], todo: list[MessageEntry]
               ) -> list[MessageEntry]:
        """Drop from ``todo`` what the target folder already holds (see sinks.match)."""
        on_target = target.scan(exists)
        known = {landed.to_uid for _, landed in confirmed
                 if landed.to_uid is not None and landed.to_uidvalidity == uidvalidity}
        pool = [t for t in on_target if t.uid not in known]
        # landed without a known target UID (no UIDPLUS): they take their copies first
        cands = [self.candidate(m) for m, landed in confirmed
                 if landed.to_uid is None or landed.to_uidvalidity != uidvalidity]
        first = len(cands)
        cands.extend(self.candidate(m) for m in todo)
        pairs = match(cands, pool, target.body_profiles).pairs
        left: list[MessageEntry] = []
        records: list[dict[str, Any]] = []
        for i, m in enumerate(todo):
            found = pairs.get(first + i)
            if found is None:
                left.append(m)
                continue
            c = cands[first + i]
            records.append(self._landed_record(entry.name, tname, m, uidvalidity,
                                               found.target.uid, (c.ident, m.size, c.ts),
                                               "found"))
        self._add(found=len(records))
        self.progress.advance(len(records), sum(m.size for m in todo) -
                              sum(m.size for m in left))
        if not self.options.dry_run:
            self.journal.record(records)
        return left

    def _landed_record(self, folder: str, tname: str, m: MessageEntry,
                       to_uidvalidity: Optional[int], to_uid: Optional[int],
                       key: tuple[str, int, Optional[int]], how: str) -> dict[str, Any]:
        return landed_record(tname, folder, m.uidvalidity, m.uid, m.sha256, to_uidvalidity,
                             to_uid, key, how)

    def _flags(self, m: MessageEntry, keywords_allowed: bool,
               permanent: tuple[str, ...]) -> tuple[str, ...]:
        flags, dropped = target_flags(m, keywords_allowed, permanent)
        if dropped:
            self._add(keywords_dropped=dropped)
            if not self._keywords_noted:
                self._keywords_noted = True
                self.progress.note(_("note: the target cannot store (some) keywords (no \\* in "
                                   "PERMANENTFLAGS): they are left out and counted"))
        return flags

    def _upload(self, entry: FolderEntry, target: ImapTarget, tname: str, raw: bytes,
                keywords_allowed: bool, permanent: tuple[str, ...],
                todo: list[MessageEntry]) -> None:
        pending: list[dict[str, Any]] = []

        def items() -> Iterator[AppendItem]:
            for m in todo:
                if self._stop.is_set():
                    return  # Ctrl-C or another connection failed: what is in flight lands
                if (entry.name, m.uidvalidity, m.uid) in self._unreadable:
                    continue
                try:
                    item = append_item(self.store, m, self._flags(m, keywords_allowed, permanent))
                except (OSError, ValueError) as exc:
                    self._unreadable_problem(entry, m, exc)
                    continue
                yield item

        # Bytes count as they are sent; each answer settles them to the sizes of the
        # messages it answers (a refused MULTIAPPEND is sent again one by one).
        meter = ByteMeter(self.progress)
        writer = target.writer(meter=meter, **self.options.writer)
        try:
            for results in writer.append(raw, items()):
                meter.settle(sum(res.item.size for res in results))
                for res in results:
                    self._result(entry, tname, res, pending)
                if len(pending) >= JOURNAL_EVERY:
                    self.journal.record(pending)
                    pending.clear()
        except AppendAborted as exc:
            m = exc.item.token[0]
            self._unreadable.add((entry.name, m.uidvalidity, m.uid))
            self._unreadable_problem(entry, m, exc.reason)
            raise
        finally:
            meter.settle(0)  # sent but unanswered (a lost line): uploaded again later
            self.journal.record(pending)

    def _unreadable_problem(self, entry: FolderEntry, m: MessageEntry, why: object) -> None:
        text = getattr(why, "strerror", None) or str(why)
        self.summary.problems.append(_("{name}: cannot read the archived message UID {uid} "
                                       "({text}); run 'archiver verify'").format(
                                       name=entry.name, uid=m.uid, text=text))

    def _result(self, entry: FolderEntry, tname: str, res: AppendResult,
                pending: list[dict[str, Any]]) -> None:
        m: MessageEntry = res.item.token[0]
        size = res.item.size
        if not res.ok:
            self.summary.refused.append(_("{name}: UID {uid} ({message}, {size} bytes): the "
                                          "target refused it: {reason}").format(
                                          name=entry.name, uid=m.uid, message=_describe(m),
                                          size=size, reason=res.reason))
            self.progress.advance(1, 0)  # its bytes were counted as they were sent
            return
        self._landed_now += 1
        if self._crash_after is not None and self._landed_now >= self._crash_after:
            self.journal.record(pending)
            os._exit(137)  # test hook: this APPEND landed, its journal record is not written
        key = (res.item.token[1], m.size, epoch(m.internaldate))
        pending.append(self._landed_record(entry.name, tname, m, res.uidvalidity, res.uid,
                                           key, "append"))
        self._add(uploaded=1, uploaded_bytes=size)
        self.progress.advance(1, 0)


@dataclass
class FolderCount:
    """What one attempt at a folder found already done: added to the summary once it ends."""

    already: int = 0
    deleted: int = 0


def groups_by_target(job: Restore, names: list[str]) -> list[list[str]]:
    """Archived folders grouped by their target folder, in the order of ``names``.

    A connection restores a whole group in turn (see :meth:`Restore.restore_folders`).
    """
    mapper = job.mapper()
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault("/".join(mapper.target(name)), []).append(name)
    return list(groups.values())


def _describe(m: MessageEntry) -> str:
    return f"Message-ID {m.message_id}" if m.message_id else f"file {m.path}"
