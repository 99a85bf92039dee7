"""The restore journal: which archived messages have landed on one target account.

``restore-<host>[_<port>]-<user>.jsonl.zst`` -- the same append-only
zstd-frames format as the index (:mod:`archiver.index`), so a torn tail after
a kill is cut the same way.  A record is written only after the server said
OK; a message whose APPEND landed but whose record was lost (the crash
window) is found again by the next run's look at the target folder
(:mod:`archiver.restore.match`), so the journal may lag but never lie.

Where it lives: in ``DEST/.archiver/`` when that is writable; an archive on
a DVD, a read-only mount or a snapshot cannot take it, so it then goes to
the user's state directory, in a directory named for the archive (its
account and ``archive.json``'s creation time: two archives never share one,
while the same archive mounted elsewhere finds its journal again).  Both
places are always read and merged, so a journal begun while DEST was
writable goes on when it is read-only, and the other way round; new
records go to the writable one, whose ``.lock`` is held.
docs/FORMAT.md ("The restore journal") is the contract.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

from archiver import platform
from archiver.archive import Archive
from archiver.fsutil import DIR_MODE, hold_lock, translate_os_errors
from archiver.i18n import _
from archiver.index import FORMAT_VERSION, IndexWriter, cut_torn_tail, read_index, timestamp

DEFAULT_IMAPS_PORT = 993
STATE_SUBDIR = "restore"  # under the user state directory: one directory per read-only archive
_NONSENSE = (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError)
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def _safe(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}" if ord(m.group(0)) < 256
                       else "_", text)


def journal_name(host: str, port: int, user: str) -> str:
    """File name for one target account; other ports than 993 are part of the name."""
    where = _safe(host.lower()) + ("" if port == DEFAULT_IMAPS_PORT else f"_{port}")
    return f"restore-{where}-{_safe(user)}.jsonl.zst"


def archive_key(archive: Archive) -> str:
    """Directory name for an archive's journals in the state directory.

    ``USER@HOST-<16 hex digits>``: the hash covers ``archive.json``'s source
    and creation time (the archive's identity, the same wherever it is
    mounted); an archive.json without a creation time adds the path.
    """
    meta = archive.meta
    raw = meta.get("source")
    source: dict[str, Any] = raw if isinstance(raw, dict) else {}
    ident: dict[str, Any] = {"source": source, "created": meta.get("created")}
    if not meta.get("created"):
        ident["path"] = str(archive.dest.resolve())
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, ensure_ascii=False)
                            .encode()).hexdigest()[:16]
    who = f"{source.get('user', '')}@{str(source.get('host', '')).lower()}"
    return f"{_safe(who)}-{digest}"


def writable(directory: Path) -> bool:
    """Can we create files in ``directory``?  (A read-only mount says no even to root.)"""
    return platform.writable(directory)


@dataclass(frozen=True)
class Landed:
    """One archived message known to be in a target folder."""

    target: str  # target folder (logical name, '/' between levels)
    to_uidvalidity: Optional[int]
    to_uid: Optional[int]  # from APPENDUID (UIDPLUS) or the dedup match
    key: tuple[str, int, Optional[int]]  # (identity, size, INTERNALDATE as epoch seconds)


MsgKey = tuple[str, str, int, int]  # (target folder, source folder, uidvalidity, uid)


class RestoreJournal:
    """Read the journal(s) into memory; append records as durable frames (not in a dry run).

    ``meta_dir`` is where records are written; ``also_read`` are journals of
    the same archive and target kept elsewhere (see the module docstring).
    """

    def __init__(self, meta_dir: Path, host: str, port: int, user: str,
                 also_read: Sequence[Path] = ()) -> None:
        self.path = meta_dir / journal_name(host, port, user)
        self.lock_path = self.path.with_suffix(".lock")
        self.also_read = tuple(p for p in also_read if p != self.path)
        self.in_state_dir = False  # set by for_archive when DEST is read-only
        self.target = {"host": host, "port": port, "user": user}
        self.landed: dict[MsgKey, Landed] = {}
        self.folders: dict[str, int] = {}  # target folder -> UIDVALIDITY the records are for
        self._writer: Optional[IndexWriter] = None
        self._good = 0
        self._lock_fh: Optional[IO[bytes]] = None
        self._names: dict[str, str] = {}  # one str object per folder name, not one per record
        # Several target connections (restore --connections) share one journal: records
        # are written one frame at a time, in the order they were handed in, and ``landed``
        # is never iterated while another thread changes it.
        self._lock = threading.RLock()

    @classmethod
    def for_archive(cls, archive: Archive, host: str, port: int, user: str,
                    state_dir: Path) -> RestoreJournal:
        """The journal for restoring ``archive`` into this account: in DEST if writable."""
        in_dest = archive.meta_dir / journal_name(host, port, user)
        in_state = state_dir / STATE_SUBDIR / archive_key(archive)
        if writable(archive.meta_dir) and (not in_dest.exists()
                                           or os.access(in_dest, os.W_OK)):
            return cls(archive.meta_dir, host, port, user,
                       also_read=[in_state / in_dest.name])
        journal = cls(in_state, host, port, user, also_read=[in_dest])
        journal.in_state_dir = True
        return journal

    def open(self, write: bool) -> RestoreJournal:
        """Read what is recorded; with ``write``, lock it and cut a torn tail."""
        if write:
            with translate_os_errors(_("opening {path}").format(path=self.lock_path)):
                if not self.path.parent.exists():  # the user state directory's, first time
                    self.path.parent.mkdir(mode=DIR_MODE, parents=True)
            self._lock_fh = hold_lock(
                self.lock_path, _("another archiver is already restoring into {user}@{host} "
                                  "from this archive: wait for it to finish (or stop it) and "
                                  "rerun").format(user=self.target['user'],
                                                  host=self.target['host']))
            with translate_os_errors(_("repairing {path}").format(path=self.path)):
                cut_torn_tail(self.path)
        others = [other for other in self.also_read if other.exists()]
        if not others:  # the usual case: folded as read, no list of every record
            self._good = read_index(self.path, sink=self.apply).good_length
            return self
        res = read_index(self.path)
        self._good = res.good_length
        records = list(res.records)
        for other in others:
            try:
                records.extend(read_index(other).records)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM):
                    raise
        # merged by time, so the latest folder record of either journal wins
        records.sort(key=lambda r: str(r.get("t", "")))
        for rec in records:
            self.apply(rec)
        return self

    def apply(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        target = rec.get("target")
        if not isinstance(target, str):
            return
        target = self._names.setdefault(target, target)
        if kind == "folder":
            try:
                uidvalidity = int(rec["uidvalidity"])
            except _NONSENSE:  # a record that makes no sense is skipped, not fatal
                return
            if self.folders.get(target, uidvalidity) != uidvalidity:
                # the folder was recreated: what landed in the old one is not there
                for key in [k for k in self.landed if k[0] == target]:
                    del self.landed[key]
            self.folders[target] = uidvalidity
        elif kind == "landed":
            try:
                folder = str(rec["folder"])
                key = (target, self._names.setdefault(folder, folder), int(rec["uidvalidity"]),
                       int(rec["uid"]))
                ident, size, ts = rec.get("key") or ("", 0, None)
                self.landed[key] = Landed(
                    target, _int(rec.get("to_uidvalidity")), _int(rec.get("to_uid")),
                    (str(ident), int(size), _int(ts)))
            except _NONSENSE:  # a record that makes no sense is skipped, not fatal
                return

    def forget(self, target: str, folder: str) -> None:
        """Drop what is held in memory about archive ``folder`` in ``target`` (the file keeps it).

        For a run that is done with that folder: the records of every finished
        folder need not stay in memory till the end of a long migrate.
        """
        with self._lock:
            for key in [k for k in self.landed if k[0] == target and k[1] == folder]:
                del self.landed[key]

    def start_folder(self, target: str, folder: str, uidvalidity: int, write: bool) -> None:
        """Archive ``folder`` goes into ``target``, now at ``uidvalidity``.

        When that differs from what the records are about, the target folder was
        recreated: what landed in the old one is forgotten (checked afresh), and
        with ``write`` a folder record says so for the next run.
        """
        with self._lock:
            if self.folders.get(target) == uidvalidity:
                return
            for key in [k for k in self.landed if k[0] == target]:
                del self.landed[key]
            if write:
                self.record([folder_record(target, folder, uidvalidity)])

    def record(self, records: list[dict[str, Any]]) -> None:
        """Append one durable frame and apply it (one thread at a time: one writer)."""
        if not records:
            return
        with self._lock:
            self._record(records)

    def _record(self, records: list[dict[str, Any]]) -> None:
        with translate_os_errors(_("writing {path}").format(path=self.path)):
            if self._writer is None:
                fresh = not self.path.exists() or self._good == 0
                self._writer = IndexWriter(self.path, self._good)
                if fresh:
                    self._writer.append([target_record(self.target)])
            self._writer.append(records)
        for rec in records:
            self.apply(rec)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None


# ---------------------------------------------------------------- records
# Every journal record is built here (docs/FORMAT.md, "The restore journal").


def target_record(target: dict[str, Any]) -> dict[str, Any]:
    """The first record of a journal: which account it is about."""
    return {"v": FORMAT_VERSION, "type": "target", **target, "t": timestamp()}


def folder_record(target: str, folder: str, uidvalidity: int) -> dict[str, Any]:
    """Archived ``folder`` goes to target folder ``target``, whose UIDVALIDITY this is."""
    return {"v": FORMAT_VERSION, "type": "folder", "target": target, "folder": folder,
            "uidvalidity": uidvalidity, "t": timestamp()}


def landed_record(target: str, folder: str, uidvalidity: int, uid: int, sha256: str,
                  to_uidvalidity: Optional[int], to_uid: Optional[int],
                  key: tuple[str, int, Optional[int]], how: str) -> dict[str, Any]:
    """An archived message is on the target (``how``: ``append`` or ``found``)."""
    return {"v": FORMAT_VERSION, "type": "landed", "target": target, "folder": folder,
            "uidvalidity": uidvalidity, "uid": uid, "sha256": sha256,
            "to_uidvalidity": to_uidvalidity, "to_uid": to_uid, "key": list(key),
            "how": how, "t": timestamp()}


def _int(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
