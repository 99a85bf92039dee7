"""The archive's index: append-only zstd frames of JSON Lines (docs/FORMAT.md).

``DEST/.archiver/index.jsonl.zst`` is a concatenation of independent zstd
frames; each frame holds the records of one durable batch, one JSON object a
line.  ``zstdcat`` reads the whole file.  A frame is appended and fsynced only
after the files it mentions are durable, so a torn last frame (a crash while
appending) mentions nothing that a rerun would not redo: the reader detects
it and the writer cuts it off before appending.

This module only reads and writes records; what they mean for a folder is
:class:`IndexState`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import zstandard

from archiver.durable import fsync, fsync_dir, truncate_durably
from archiver.fsutil import open_new, write_all

FORMAT_VERSION = 1
POP3_UIDVALIDITY = 0  # POP3 sights are keyed (0, uid_for_uidl(uidl))


def timestamp() -> str:
    """Now, UTC, ISO 8601 to the second: the ``t`` of every record we write."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def uid_for_uidl(uidl: str) -> int:
    """Stable positive 60-bit number for a UIDL (a UIDL may contain '/' or ':')."""
    return int(hashlib.sha256(uidl.encode("utf-8", "surrogateescape")).hexdigest()[:15], 16)

INDEX_NAME = "index.jsonl.zst"
_MAGIC = b"\x28\xb5\x2f\xfd"


class IndexCorrupt(Exception):
    """A frame in the middle of the index cannot be read (not merely a torn tail)."""


def _frame_length(data: bytes, pos: int) -> int:
    """Length of the zstd frame starting at ``pos``, from its block headers (RFC 8878 3.1.1).

    Raises ValueError when the frame runs past the end of ``data`` (torn).
    Walking block headers is O(blocks), so reading a long index stays linear.
    """
    n = len(data)
    if pos + 5 > n:
        raise ValueError("truncated header")
    fhd = data[pos + 4]
    fcs_flag = fhd >> 6
    single = (fhd >> 5) & 1
    checksum = (fhd >> 2) & 1
    dict_flag = fhd & 3
    if (fhd >> 3) & 1:
        raise ValueError("reserved bit set")
    header = 1 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    header += (1 if single else 0, 2, 4, 8)[fcs_flag]
    p = pos + 4 + header
    while True:
        if p + 3 > n:
            raise ValueError("truncated block header")
        bh = data[p] | (data[p + 1] << 8) | (data[p + 2] << 16)
        last = bh & 1
        btype = (bh >> 1) & 3
        bsize = bh >> 3
        if btype == 3:
            raise ValueError("reserved block type")
        p += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    p += 4 if checksum else 0
    if p > n:
        raise ValueError("truncated frame")
    return p - pos


def _frames(data: bytes) -> Iterator[tuple[int, int, bytes | None]]:
    """Yield (offset, end, decompressed payload or None if torn/corrupt) per frame."""
    pos = 0
    n = len(data)
    dctx = zstandard.ZstdDecompressor()
    while pos < n:
        if data[pos : pos + 4] != _MAGIC:
            yield pos, n, None
            return
        try:
            end = pos + _frame_length(data, pos)
            payload = dctx.decompress(data[pos:end])
        except (zstandard.ZstdError, ValueError):
            yield pos, n, None
            return
        yield pos, end, payload
        pos = end


def valid_length(path: Path) -> tuple[int, int]:
    """(bytes of structurally whole frames, file size), without decompressing.

    Cheap enough to run at every start, so a torn tail is cut even by a run
    that has nothing to write and never reads the index.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != _MAGIC:
            break
        try:
            pos += _frame_length(data, pos)
        except ValueError:
            break
    return pos, len(data)


def cut_torn_tail(path: Path) -> bool:
    """Truncate an index to its last whole frame; True if something was cut."""
    good, total = valid_length(path)
    if good == total:
        return False
    truncate_durably(path, good)
    return True


@dataclass
class ReadResult:
    records: list[dict[str, Any]]
    good_length: int  # bytes of whole, valid frames
    total_length: int
    bad_lines: int = 0

    @property
    def torn(self) -> bool:
        return self.good_length != self.total_length


def read_index(path: Path,
               sink: Optional[Callable[[dict[str, Any]], None]] = None) -> ReadResult:
    """Read every record; stop at (and report) a torn or corrupt tail.

    With ``sink``, each record is handed over as it is decoded and not kept,
    so folding a large index into state needs no list of every record.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReadResult([], 0, 0)
    records: list[dict[str, Any]] = []
    keep = sink if sink is not None else records.append
    good = 0
    bad = 0
    for _start, end, payload in _frames(data):
        if payload is None:
            break
        for line in payload.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(rec, dict):
                keep(rec)
            else:
                bad += 1
        good = end
    return ReadResult(records, good, len(data), bad)


class IndexWriter:
    """Appends one zstd frame per call to :meth:`append`, fsynced before returning."""

    def __init__(self, path: Path, good_length: int) -> None:
        self.path = path
        exists = path.exists()
        if not exists:
            fd = open_new(path)
            os.close(fd)
            fsync_dir(path.parent)
        self._fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        if exists and os.fstat(self._fd).st_size != good_length:
            os.ftruncate(self._fd, good_length)  # drop a torn tail
            fsync(self._fd)
        os.lseek(self._fd, good_length, os.SEEK_SET)
        # The content checksum lets a reader tell a damaged frame from a good one: without
        # it a flipped bit in a raw (stored) block decodes to different JSON unnoticed.
        self._cctx = zstandard.ZstdCompressor(level=3, write_content_size=True,
                                              write_checksum=True)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        payload = b"".join(
            json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
            for r in records
        )
        if not payload:
            return
        write_all(self._fd, self._cctx.compress(payload))
        fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ---------------------------------------------------------------- interpreted state


@dataclass
class MessageEntry:
    """What the index says about one archived message (latest records applied)."""

    folder: str
    uidvalidity: int
    uid: int
    path: str
    size: int
    sha256: str
    flags: tuple[str, ...]
    keywords: tuple[str, ...]
    gone: bool = False
    uidl: Optional[str] = None  # POP3 sight
    sha256_norm: str = ""  # see stores.base.norm_hash; recorded for POP3 sights
    linked_to: Optional[tuple[int, int]] = None  # a POP3 sight of this IMAP message
    offset: Optional[int] = None  # mbox: start of the quoted message in the file
    length: Optional[int] = None  # mbox: quoted length
    internaldate: Optional[str] = None  # ISO 8601, as recorded (restore sends it back)
    message_id: Optional[str] = None  # as recorded (restore matches the target with it)

    @property
    def counted(self) -> bool:
        """False for a POP3 sight that is the same message as an IMAP one (a link)."""
        return self.linked_to is None


@dataclass
class FolderEntry:
    """A folder's durable facts: its path (fixed once chosen) and its messages."""

    name: str
    path: str
    server_name: str = ""
    separator: str | None = None
    attributes: tuple[str, ...] = ()
    messages: dict[tuple[int, int], MessageEntry] = field(default_factory=dict)

    def current(self, uidvalidity: int) -> dict[int, MessageEntry]:
        return {uid: m for (uv, uid), m in self.messages.items() if uv == uidvalidity}


def _int_or_none(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


class IndexState:
    """All records folded into per-folder state: what we have, with which flags."""

    def __init__(self) -> None:
        self.folders: dict[str, FolderEntry] = {}
        self.pop3: dict[str, MessageEntry] = {}
        self.skipped = 0  # records whose fields did not make sense (see from_records)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> IndexState:
        """Fold records; one whose fields have impossible types is skipped, not fatal.

        A record can pass the frame checks yet be nonsense (an index from a buggy
        or foreign writer, or damage in an old frame without a checksum); a
        traceback there would make every later backup, verify and ls fail.
        """
        state = cls()
        for rec in records:
            try:
                state.apply(rec)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError,
                    OverflowError):  # json.loads accepts Infinity; int(inf) overflows
                state.skipped += 1
        return state

    def apply(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        name = rec.get("folder")
        if not isinstance(name, str):
            return
        if kind == "folder":
            entry = self.folders.get(name)
            if entry is None:
                entry = FolderEntry(name=name, path=str(rec.get("dir", "")))
                self.folders[name] = entry
            entry.server_name = str(rec.get("server_name", name))
            entry.separator = rec.get("separator")
            entry.attributes = tuple(rec.get("attributes") or ())
            return
        folder = self.folders.get(name)
        if folder is None:
            return
        try:
            if isinstance(rec.get("uidl"), str):
                key = (POP3_UIDVALIDITY, uid_for_uidl(rec["uidl"]))
            else:
                key = (int(rec["uidvalidity"]), int(rec["uid"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            return
        if kind == "msg":
            folder.messages[key] = MessageEntry(
                folder=name,
                uidvalidity=key[0],
                uid=key[1],
                path=str(rec.get("path", "")),
                size=int(rec.get("size", 0)),
                sha256=str(rec.get("sha256", "")),
                flags=tuple(rec.get("flags") or ()),
                keywords=tuple(rec.get("keywords") or ()),
                uidl=rec.get("uidl") if isinstance(rec.get("uidl"), str) else None,
                sha256_norm=str(rec.get("sha256_norm") or ""),
                offset=_int_or_none(rec.get("offset")),
                length=_int_or_none(rec.get("length")),
                internaldate=_str_or_none(rec.get("internaldate")),
                message_id=_str_or_none(rec.get("message_id")),
            )
        elif kind == "link":
            target = rec.get("to")
            try:
                to = (int(target[0]), int(target[1]))  # type: ignore[index]
            except (TypeError, ValueError, IndexError, OverflowError):
                return
            imap = folder.messages.get(to)
            pop = folder.messages.get(key)
            if pop is None:
                pop = MessageEntry(name, key[0], key[1], "", 0, "", (), (),
                                   uidl=rec.get("uidl"))
                folder.messages[key] = pop
            pop.linked_to = to
            if imap is not None:
                pop.path, pop.size, pop.sha256 = imap.path, imap.size, imap.sha256
                pop.offset, pop.length = imap.offset, imap.length
        elif kind == "flags" and key in folder.messages:
            m = folder.messages[key]
            m.flags = tuple(rec.get("flags") or ())
            m.keywords = tuple(rec.get("keywords") or ())
            if rec.get("path"):
                m.path = str(rec["path"])
        elif kind == "gone" and key in folder.messages:
            if rec.get("replaced_by"):
                del folder.messages[key]  # the same file now belongs to a newer UIDVALIDITY
            else:
                folder.messages[key].gone = True

    def all_paths(self) -> set[str]:
        # list() copies in one C call: safe while the sync thread adds a folder.
        return {f.path for f in list(self.folders.values())}

    def messages(self) -> Iterator[MessageEntry]:
        for folder in self.folders.values():
            yield from folder.messages.values()
