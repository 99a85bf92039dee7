"""The restore journal: which archived messages have landed on one target account.

``DEST/.archiver/restore-<host>[_<port>]-<user>.jsonl.zst`` -- the same
append-only zstd-frames format as the index (:mod:`archiver.index`), so a
torn tail after a kill is cut the same way.  A record is written only after
the server said OK; a message whose APPEND landed but whose record was lost
(the crash window) is found again by the next run's look at the target folder
(:mod:`archiver.restore.match`), so the journal may lag but never lie.
docs/FORMAT.md ("The restore journal") is the contract.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

from archiver.archive import _lock
from archiver.errors import LockedError
from archiver.fsutil import translate_os_errors
from archiver.index import FORMAT_VERSION, IndexWriter, cut_torn_tail, read_index, timestamp

DEFAULT_IMAPS_PORT = 993
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def journal_name(host: str, port: int, user: str) -> str:
    """File name for one target account; other ports than 993 are part of the name."""
    def safe(text: str) -> str:
        return _UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}" if ord(m.group(0)) < 256
                           else "_", text)
    where = safe(host.lower()) + ("" if port == DEFAULT_IMAPS_PORT else f"_{port}")
    return f"restore-{where}-{safe(user)}.jsonl.zst"




@dataclass(frozen=True)
class Landed:
    """One archived message known to be in a target folder."""

    target: str  # target folder (logical name, '/' between levels)
    to_uidvalidity: Optional[int]
    to_uid: Optional[int]  # from APPENDUID (UIDPLUS) or the dedup match
    key: tuple[str, int, Optional[int]]  # (identity, size, INTERNALDATE as epoch seconds)


MsgKey = tuple[str, str, int, int]  # (target folder, source folder, uidvalidity, uid)


class RestoreJournal:
    """Read the journal into memory; append records as durable frames (not in a dry run)."""

    def __init__(self, meta_dir: Path, host: str, port: int, user: str) -> None:
        self.path = meta_dir / journal_name(host, port, user)
        self.lock_path = self.path.with_suffix(".lock")
        self.target = {"host": host, "port": port, "user": user}
        self.landed: dict[MsgKey, Landed] = {}
        self.folders: dict[str, int] = {}  # target folder -> UIDVALIDITY the records are for
        self._writer: Optional[IndexWriter] = None
        self._good = 0
        self._lock_fh: Optional[IO[bytes]] = None
        self._names: dict[str, str] = {}  # one str object per folder name, not one per record

    def open(self, write: bool) -> RestoreJournal:
        """Read what is recorded; with ``write``, lock it and cut a torn tail."""
        if write:
            with translate_os_errors(f"opening {self.lock_path}"):
                fh = open(self.lock_path, "ab")  # noqa: SIM115 - held until close()
                os.chmod(self.lock_path, 0o600)
            if not _lock(fh):
                fh.close()
                raise LockedError(f"another archiver is already restoring into "
                                  f"{self.target['user']}@{self.target['host']} from this "
                                  "archive: wait for it to finish (or stop it) and rerun")
            self._lock_fh = fh
            with translate_os_errors(f"repairing {self.path}"):
                cut_torn_tail(self.path)
        res = read_index(self.path, sink=self.apply)  # folded as read: no list of records
        self._good = res.good_length
        return self

    def apply(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        target = rec.get("target")
        if not isinstance(target, str):
            return
        target = self._names.setdefault(target, target)
        if kind == "folder":
            try:
                self.folders[target] = int(rec["uidvalidity"])
            except (KeyError, TypeError, ValueError):
                return
        elif kind == "landed":
            try:
                folder = str(rec["folder"])
                key = (target, self._names.setdefault(folder, folder), int(rec["uidvalidity"]),
                       int(rec["uid"]))
                ident, size, ts = rec.get("key") or ("", 0, None)
                self.landed[key] = Landed(
                    target, _int(rec.get("to_uidvalidity")), _int(rec.get("to_uid")),
                    (str(ident), int(size), _int(ts)))
            except (KeyError, TypeError, ValueError):
                return

    def forget(self, target: str, folder: str) -> None:
        """Drop what is held in memory about archive ``folder`` in ``target`` (the file keeps it).

        For a run that is done with that folder: the records of every finished
        folder need not stay in memory till the end of a long migrate.
        """
        for key in [k for k in self.landed if k[0] == target and k[1] == folder]:
            del self.landed[key]

    def record(self, records: list[dict[str, Any]]) -> None:
        """Append one durable frame and apply it."""
        if not records:
            return
        with translate_os_errors(f"writing {self.path}"):
            if self._writer is None:
                fresh = not self.path.exists() or self._good == 0
                self._writer = IndexWriter(self.path, self._good)
                if fresh:
                    self._writer.append([{"v": FORMAT_VERSION, "type": "target",
                                          **self.target, "t": timestamp()}])
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


def _int(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
