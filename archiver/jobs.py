"""What the pipeline's stage and sync threads do with a folder's work.

The backup engine (:mod:`archiver.engine`) talks to the server and submits
jobs; the methods here run in the pipeline's threads (archiver/pipeline.py):
the *stage* thread writes a batch's files and builds its records
(:meth:`SyncJobs._stage_batch`), the *sync* thread makes them durable and
only then appends the index frame (:meth:`SyncJobs._finish_batch`), and
folder-level changes (flags, expunges, a folder's end) are recorded in the
same order.  Kept apart from the engine so each file holds one side of the
hand-over.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from archiver.archive import Archive
from archiver.headers import date_from_headers, summarize
from archiver.i18n import _
from archiver.index import flags_record, gone_record, link_record, message_key, msg_record
from archiver.plan import FolderPlan, describe
from archiver.progress import Progress
from archiver.state import MessageEntry
from archiver.stores.base import Incoming, Rename, Store, norm_hash


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




def key_of(entry: MessageEntry) -> dict[str, Any]:
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


# ---------------------------------------------------------------- the threads' side


class SyncJobs:
    """The stage and sync threads' work for :class:`archiver.engine.Backup`."""

    store: Store
    archive: Archive
    summary: Summary
    progress: Progress
    on_folder_done: Optional[Callable[[str], None]]
    _lock: threading.Lock
    _folder_records: dict[str, dict[str, Any]]
    _counters: dict[str, Any]
    _written: int
    _reused: int
    _crash_after: Optional[int]

    def _add(self, counter: str, n: int) -> None:
        """Add to a summary counter: connections' threads and the sync thread all count."""
        with self._lock:
            setattr(self.summary, counter, getattr(self.summary, counter) + n)

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
        notes = getattr(self.store, "notes", None)  # Maildir: keywords past the 26th letter
        while notes:
            self.summary.notes.append(notes.pop(0))

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
                records.append(gone_record(name, key_of(old), "uidvalidity",
                                           replaced_by=(plan.uidvalidity, item.uid)))
        for item, other in st.links:
            records.append(self._link_record(name, item, other.uidvalidity, other.uid))
        for item, old in st.takeovers:
            records.append(self._link_record(name, old, plan.uidvalidity, item.uid))
        replaced = [old.path for _, old in st.takeovers]  # before the links repoint them
        self._record(name, records)
        if replaced:  # the POP3 copy differs only in line ends: the IMAP bytes replace it
            self.store.remove(path, replaced)
        self._add("new", len(st.to_write))
        self._add("new_bytes", st.nbytes)
        self._reused += len(st.reused) + len(st.links)
        # The bytes were counted as they arrived (the connection's ByteMeter, settled
        # when the batch was fetched); the messages count once they are durable.
        self.progress.advance(st.count, 0)

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
                        _("{name}: the file of UID {uid} is missing from the archive; run "
                          "'archiver verify'").format(name=name, uid=old.uid))
                records.append(flags_record(name, key_of(old), meta.flags, meta.keywords,
                                            newpath or old.path))
            self._add("flags_updated", len(plan.flag_changes))
        for old in plan.gone:
            records.append(gone_record(name, key_of(old), "expunged"))
        self._add("gone", len(plan.gone))
        self._record(name, records)

    def _retire_old(self, name: str, plan: FolderPlan, retire: bool) -> None:
        """After a full re-read under a new UIDVALIDITY (or of a folder whose UIDs named
        other messages), old copies not seen again are gone; say what was found."""
        note = describe(name, plan)
        if note:
            self.summary.notes.append(note)
        if retire:
            records = [gone_record(name, key_of(old), plan.retire_reason)
                       for pool in plan.reusable.values() for old in pool]
            self._add("gone", len(records))
            self._record(name, records)
