"""``archiver verify DEST --repair SOURCE``: fetch damaged messages from the server again.

Why a command of its own: the index says a missing or changed message is
archived, so a rerun of the backup never fetches it again.  A repair

1. verifies DEST (the caller holds its lock, so no backup runs meanwhile);
2. per folder with damage, lists the folder on SOURCE (read-only, exactly as a
   backup does) and keeps the messages the server still has under the
   identity the index recorded: IMAP the same UIDVALIDITY and a listed UID,
   POP3 a listed UIDL;
3. moves their damaged Maildir files (every file named with that
   UIDVALIDITY.UID, since the fetched copy takes the name) to
   ``.archiver/damaged/<UTC time>/<their path>`` -- a rename, then fsyncs of
   both directories; the user's bytes are never deleted -- and notes each
   message in a ``damaged`` index record.  In an mbox archive the damaged bytes
   stay where they are (the file is append-only); the record names them;
4. fetches them through the backup engine (:class:`archiver.refetch.Refetcher`), which
   stores them like new mail (Maildir: the same file name, flags as the server
   has them now; mbox: appended) and writes a ``msg`` record that replaces the
   old one -- durable before recorded, batched and streamed as in a backup;
5. verifies again: that report is the result.

Messages the server no longer has stay missing or changed, with the reason;
their files are left where they are (the only copy left).  Extra files are
reported, never touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from archiver.account import same_account
from archiver.archive import Archive
from archiver.durable import fsync_dir, fsync_parents, replace
from archiver.engine import BackupOptions, Source
from archiver.errors import OTHER_ACCOUNT, ArchiverError, DestinationError
from archiver.fsutil import ensure_dir, translate_os_errors
from archiver.i18n import _
from archiver.index import POP3_UIDVALIDITY, damaged_record, message_key
from archiver.offline.verify import Damage, VerifyReport, check_message, verify_archive
from archiver.plan import Identity, same_message
from archiver.progress import Progress
from archiver.refetch import Pick, Refetch, Refetcher
from archiver.sources.base import FolderStatus, MessageMeta
from archiver.state import MessageEntry
from archiver.stores.base import Store
from archiver.stores.maildir import base_of

DAMAGED_DIR = "damaged"  # under DEST/.archiver/


@dataclass(frozen=True)
class NotRepaired:
    """A damaged message left as it is, and why."""

    message: str  # as verify lists it
    reason: str


@dataclass
class RepairReport:
    """Verify before and after, and what happened in between (``--json``: as_dict)."""

    before: VerifyReport
    after: VerifyReport
    repaired: list[str] = field(default_factory=list)  # labels as verify listed them before
    damaged_copies: list[str] = field(default_factory=list)  # moved aside, relative to DEST
    cannot_repair: list[NotRepaired] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)  # repaired with other bytes than archived
    problems: list[str] = field(default_factory=list)  # what the fetch reported

    @property
    def ok(self) -> bool:
        return self.after.ok

    def as_dict(self) -> dict[str, Any]:
        out = self.after.as_dict()
        out["repair"] = {
            "damaged": len(self.before.damaged), "repaired": self.repaired,
            "damaged_copies": self.damaged_copies,
            "cannot_repair": [{"message": n.message, "reason": n.reason}
                              for n in self.cannot_repair],
            "differs": self.differs, "problems": self.problems,
        }
        return out


def check_account(archive: Archive, source: dict[str, str]) -> None:
    """Refuse a SOURCE that is not the archive's account (before connecting to it).

    The same rule as a backup's (host case-insensitive, user exact; IMAP and
    POP3 of one account are one account), so the same exit code (6).
    """
    have = archive.meta.get("source") or {}
    if not same_account(have, source):
        raise DestinationError(
            _("{dest} is the archive of {have_user}@{have_host}, not "
              "{source_user}@{source_host}: give that account as SOURCE to repair it").format(
              dest=archive.dest, have_user=have.get('user'), have_host=have.get('host'),
              source_user=source.get('user'), source_host=source.get('host')),
                OTHER_ACCOUNT)


def unrepairable_reason(entry: MessageEntry, uidvalidity: int,
                        listed: Mapping[int, MessageMeta]) -> Optional[str]:
    """Why the listed folder cannot give ``entry``'s message back (None: it can).

    ``uidvalidity`` is the opened folder's (POP3: 0) and ``listed`` its
    listing by key (IMAP UIDs; POP3 the numbers made from the UIDLs).  A UID
    whose listing is another message's (plan.same_message) is not trusted.
    """
    pop3 = uidvalidity == POP3_UIDVALIDITY
    if entry.uidl is not None and not pop3:
        return _("archived over POP3: repair it with the account's pop3s:// SOURCE")
    if entry.uidl is None and entry.uidvalidity == POP3_UIDVALIDITY:
        return _("its UID on the server is unknown (the index was rebuilt without a snapshot)")
    if entry.uidl is None and pop3:
        return _("archived over IMAP: repair it with the account's imaps:// SOURCE")
    if not pop3 and entry.uidvalidity != uidvalidity:
        return _("not on the server any more (the folder's UIDVALIDITY changed)")
    meta = listed.get(entry.uid)
    if meta is None:
        return (_("not on the server any more (its UIDL is no longer listed)") if pop3
                else _("not on the server any more (expunged)"))
    if same_message(entry, meta) is Identity.DIFFERENT:
        return _("its {id} now names another message (the server renumbered the folder): "
                 "run 'archiver backup' first, which matches it again").format(
                     id="UIDL" if pop3 else "UID")
    return None


Key = tuple[str, int, int]  # folder, UIDVALIDITY, UID (POP3: 0, uid_for_uidl)


def _key(entry: MessageEntry) -> Key:
    return entry.folder, entry.uidvalidity, entry.uid


class _Repairer:
    """The Picks of one repair run: choose, move aside, note; remember what happened."""

    def __init__(self, archive: Archive, store: Store, damaged: list[Damage],
                 stamp: str) -> None:
        self.archive = archive
        self.store = store
        self.stamp = stamp
        self.by_folder: dict[str, list[Damage]] = {}
        for d in damaged:
            self.by_folder.setdefault(d.entry.folder, []).append(d)
        self.listed: set[str] = set()  # folders whose Pick was called
        self.asked: dict[Key, Damage] = {}  # handed to the engine to fetch
        self.refused: dict[Key, NotRepaired] = {}
        self.copies: list[str] = []
        self._aside_root: Optional[Path] = None

    def picks(self) -> dict[str, Pick]:
        return {name: self._pick_for(name) for name in self.by_folder}

    def _pick_for(self, name: str) -> Pick:
        def pick(path: str, opened: FolderStatus, listing: list[MessageMeta]) -> Refetch:
            return self.pick(name, path, opened, listing)

        return pick

    def pick(self, name: str, path: str, opened: FolderStatus,
             listing: list[MessageMeta]) -> Refetch:
        """Main thread, before the folder's fetches: called again after a lost connection,
        so each message is checked afresh (one moved aside before now reads as missing)."""
        self.listed.add(name)
        listed = {m.uid: m for m in listing}
        folder = self.archive.state().folders[name]
        chosen = Refetch([])
        for damage in self.by_folder[name]:
            key = _key(damage.entry)
            entry = folder.messages.get(key[1:])
            if entry is None:
                continue
            check = check_message(self.archive, entry)
            if check.problem is None:
                continue  # fetched again before the connection was lost
            reason = unrepairable_reason(entry, opened.uidvalidity, listed)
            if reason is not None:
                self.refused[key] = NotRepaired(damage.label, reason)
                continue
            moved = self._move_aside(path, entry)
            chosen.records.append(damaged_record(
                entry.folder, message_key(entry.uidvalidity, entry.uid, entry.uidl),
                check.problem, entry.path, entry.sha256, moved, entry.offset, entry.length))
            chosen.messages.append(listed[entry.uid])
            self.asked.setdefault(key, damage)
        if chosen.messages and self.archive.format == "mbox":
            from archiver.stores.mbox import MboxStore

            if isinstance(self.store, MboxStore):
                self.store.end_cleanly(path)
        return chosen

    def _move_aside(self, path: str, entry: MessageEntry) -> list[str]:
        """Move every file of the message (any flags in its name) out of the Maildir."""
        if self.archive.format == "mbox":
            return []  # append-only: the damaged bytes stay, no longer recorded
        base = self.store.base_name(entry.uidvalidity, entry.uid)
        folder_dir = self.archive.dest.joinpath(*path.split("/"))
        moved: list[str] = []
        for sub in ("cur", "new"):
            try:
                names = sorted(os.listdir(folder_dir / sub))
            except FileNotFoundError:
                continue
            for name in names:
                if base_of(name) == base:
                    moved.append(self._aside(f"{path}/{sub}/{name}"))
        return moved

    def _aside(self, rel: str) -> str:
        """rename into .archiver/damaged/<stamp>/, durably; returns the new path (to DEST)."""
        dest = self.archive.dest
        src = dest.joinpath(*rel.split("/"))
        with translate_os_errors(_("moving {path} aside").format(path=src)):
            target = self._root().joinpath(*rel.split("/"))
            fsync_parents(ensure_dir(target.parent, dest))
            if target.exists():  # never replace a kept copy
                raise DestinationError(_("{target} already exists: move it away and rerun").format(
                                         target=target))
            replace(src, target)
            fsync_dir(target.parent)
            fsync_dir(src.parent)
        moved = target.relative_to(dest).as_posix()
        self.copies.append(moved)
        return moved

    def _root(self) -> Path:
        """This run's directory for damaged copies (made on first use, never reused)."""
        if self._aside_root is None:
            base = self.archive.meta_dir / DAMAGED_DIR
            root = base / self.stamp
            n = 1
            while root.exists():
                n += 1
                root = base / f"{self.stamp}-{n}"
            self._aside_root = root
        return self._aside_root


def repair_archive(source: Source, archive: Archive, store: Store,
                   options: Optional[BackupOptions] = None,
                   progress: Optional[Progress] = None) -> RepairReport:
    """Verify ``archive``, fetch its damaged messages from ``source`` again, verify again.

    ``archive`` must be open for writing (``Archive.create_or_open``: it holds
    the lock) and be ``source``'s account (:func:`check_account`).  ``source``
    is connected only if something is damaged, and closed, as is ``store``,
    before returning.
    """
    before = verify_archive(archive)
    report = RepairReport(before=before, after=before)
    try:
        if not before.damaged:
            return report
        archive.writer()  # a damaged index refuses here, before any file is moved
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        repairer = _Repairer(archive, store, before.damaged, stamp)
        source.connect()
        engine = Refetcher(source, archive, store, repairer.picks(), options, progress)
        summary = engine.run()
    finally:
        source.close()
        store.close()
    report.problems = list(summary.problems)
    report.damaged_copies = list(repairer.copies)
    _outcome(report, repairer, archive, engine.unlisted, getattr(source, "protocol", ""))
    if summary.new:
        from archiver.snapshot import write_snapshot

        try:  # mbox snapshots list offsets: the repaired ones moved
            write_snapshot(archive)
        except (ArchiverError, OSError, ValueError) as exc:
            report.problems.append(_("could not refresh the index snapshot: {exc}").format(
                                     exc=exc))
    report.after = verify_archive(archive)
    return report


def _outcome(report: RepairReport, repairer: _Repairer, archive: Archive,
             unlisted: list[str], protocol: str) -> None:
    """Sort every damaged message into repaired or not (with the reason)."""
    folders = archive.state().folders
    for key, damage in repairer.asked.items():
        entry = folders[key[0]].messages.get(key[1:])
        if entry is not None and check_message(archive, entry).problem is None:
            report.repaired.append(damage.label)
            if entry.sha256 != damage.entry.sha256:
                report.differs.append(damage.label)
        else:
            repairer.refused[key] = NotRepaired(
                damage.label, _("the server did not deliver it (see the problems): run the "
                                "same command again"))
    for name, damages in repairer.by_folder.items():
        if name in repairer.listed:
            continue
        if name not in unlisted:
            why = _("not reached (the connection was lost): run the same command again")
        elif protocol == "pop3":
            why = _("POP3 reaches only the INBOX: repair it with the account's imaps:// SOURCE")
        else:
            why = _("not on the server any more (the server does not list the folder)")
        for d in damages:
            repairer.refused[_key(d.entry)] = NotRepaired(d.label, why)
    report.cannot_repair = sorted(repairer.refused.values(), key=lambda n: n.message)
    report.repaired.sort()
    report.differs.sort()
