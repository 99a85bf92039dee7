"""The archive's index: append-only zstd frames of JSON Lines (docs/FORMAT.md).

``DEST/.archiver/index.jsonl.zst`` is a concatenation of independent zstd
frames; each frame holds the records of one durable batch, one JSON object a
line.  ``zstdcat`` reads the whole file.  A frame is appended and fsynced only
after the files it mentions are durable, so a torn last frame (a crash while
appending) mentions nothing that a rerun would not redo: the reader detects
it and the writer cuts it off before appending.

This module reads and writes records and builds them (the constructors at
the end are the only place records are made); what they mean for a folder
is :class:`archiver.state.IndexState`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import zstandard

from archiver import platform
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


def frame_length(data: bytes, pos: int) -> int:
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


def frames(data: bytes) -> Iterator[tuple[int, int, bytes | None]]:
    """Yield (offset, end, decompressed payload or None if torn/corrupt) per frame."""
    pos = 0
    n = len(data)
    dctx = zstandard.ZstdDecompressor()
    while pos < n:
        if data[pos : pos + 4] != _MAGIC:
            yield pos, n, None
            return
        try:
            end = pos + frame_length(data, pos)
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
            pos += frame_length(data, pos)
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


def _parse_frame(payload: bytes) -> tuple[list[Any], int]:
    """A frame's records; one ``json.loads`` for the whole frame when every line is good.

    Parsing a frame as one JSON array is about twice as fast as line by
    line; a frame with a bad or empty line falls back to lines, skipping the
    bad ones (counted).
    """
    try:
        batch = json.loads(b"[" + payload.strip().replace(b"\n", b",") + b"]")
        if isinstance(batch, list):
            return batch, 0
    except ValueError:
        pass
    out: list[Any] = []
    bad = 0
    for line in payload.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            bad += 1
    return out, bad


def read_index(path: Path,
               sink: Optional[Callable[[dict[str, Any]], None]] = None,
               data: Optional[bytes] = None) -> ReadResult:
    """Read every record; stop at (and report) a torn or corrupt tail.

    The one reader of index-format files (the index, the restore journal).
    With ``sink``, each record is handed over as it is decoded and not kept,
    so folding a large index into state needs no list of every record.  What
    the records *mean* -- and skipping nonsense ones -- is
    :class:`archiver.state.IndexState`'s job.  ``data``: the file's bytes, read
    elsewhere (from a pack).
    """
    if data is None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return ReadResult([], 0, 0)
    records: list[dict[str, Any]] = []
    keep = sink if sink is not None else records.append
    good = 0
    bad = 0
    for _start, end, payload in frames(data):
        if payload is None:
            break
        batch, bad_lines = _parse_frame(payload)
        bad += bad_lines
        for rec in batch:
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
        self._fd = os.open(path, platform.file_flags(os.O_WRONLY))
        if exists and os.fstat(self._fd).st_size != good_length:
            os.ftruncate(self._fd, good_length)  # drop a torn tail
            fsync(self._fd)
        os.lseek(self._fd, good_length, os.SEEK_SET)
        self.end = good_length  # bytes of whole frames, the appended ones included
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
        frame = self._cctx.compress(payload)
        write_all(self._fd, frame)
        fsync(self._fd)
        self.end += len(frame)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ---------------------------------------------------------------- records
#
# Every record archiver writes is built here, so docs/FORMAT.md has one
# place to match.  ``t`` (when it was written) always comes last.

Record = dict[str, Any]


def message_key(uidvalidity: int, uid: int, uidl: Optional[str] = None) -> Record:
    """How a record names a message: its UIDL (POP3) or UIDVALIDITY and UID (IMAP)."""
    return {"uidl": uidl} if uidl is not None else {"uidvalidity": uidvalidity, "uid": uid}


def _stamped(kind: str, folder: str, fields: Record) -> Record:
    rec: Record = {"v": FORMAT_VERSION, "type": kind, "folder": folder}
    rec.update(fields)
    rec["t"] = timestamp()
    return rec


def folder_record(folder: str, path: str, server_name: str, separator: Optional[str],
                  attributes: Iterable[str], **extra: Any) -> Record:
    """A folder and the path it keeps for ever (written before its first message)."""
    return _stamped("folder", folder, {"dir": path, "server_name": server_name,
                                       "separator": separator,
                                       "attributes": list(attributes), **extra})


def msg_record(folder: str, key: Record, *, path: str, size: int, sha256: str,
               internaldate: Optional[str], flags: Iterable[str], keywords: Iterable[str],
               offset: Optional[int] = None, length: Optional[int] = None,
               rfc822_size: Optional[int] = None, **extra: Any) -> Record:
    """A message is archived (durably) at ``path`` (mbox: at offset/length in it).

    ``rfc822_size``: the size the server reported when listing it (IMAP
    RFC822.SIZE, POP3 LIST), kept beside ``size`` (the bytes stored) because a
    server may report another number than it serves; the next pass compares
    it with the listing to tell whether the UID (UIDL) still names this message.
    ``extra``: POP3 fields (flags_known, internaldate_source, sha256_norm), the
    decoded header summary, ``reindexed``.
    """
    fields: Record = {**key, "path": path, "size": size}
    if rfc822_size is not None:
        fields["rfc822_size"] = rfc822_size
    fields["sha256"] = sha256
    if offset is not None:
        fields["offset"], fields["length"] = offset, length
    fields.update(internaldate=internaldate, flags=list(flags), keywords=list(keywords))
    fields.update(extra)
    return _stamped("msg", folder, fields)


def flags_record(folder: str, key: Record, flags: Iterable[str], keywords: Iterable[str],
                 path: str) -> Record:
    """A message's flags changed on the server (Maildir: its file was renamed to ``path``)."""
    return _stamped("flags", folder, {**key, "flags": list(flags), "keywords": list(keywords),
                                      "path": path})


def gone_record(folder: str, key: Record, reason: str,
                replaced_by: Optional[tuple[int, int]] = None, **extra: Any) -> Record:
    """The server no longer has the message (expunged), or a new UIDVALIDITY took it over."""
    fields: Record = {**key, "reason": reason}
    if replaced_by is not None:
        fields["replaced_by"] = list(replaced_by)
    fields.update(extra)
    return _stamped("gone", folder, fields)


def link_record(folder: str, uidl: Optional[str], to: tuple[int, int],
                rfc822_size: Optional[int] = None, **extra: Any) -> Record:
    """A POP3 sight (``uidl``) is the same message as the IMAP one ``to`` (one file).

    ``rfc822_size``: the sight's POP3 LIST size (see :func:`msg_record`).
    """
    fields: Record = {"uidl": uidl, "to": list(to)}
    if rfc822_size is not None:
        fields["rfc822_size"] = rfc822_size
    return _stamped("link", folder, {**fields, **extra})


def damaged_record(folder: str, key: Record, problem: str, path: str, sha256: str,
                   moved_to: list[str], offset: Optional[int] = None,
                   length: Optional[int] = None) -> Record:
    """``verify --repair`` took a damaged copy in hand (moved to ``moved_to``, or left in
    an mbox file); the re-fetched copy's ``msg`` record follows (docs/FORMAT.md)."""
    fields: Record = {**key, "problem": problem, "path": path, "sha256": sha256}
    if offset is not None:
        fields["offset"], fields["length"] = offset, length
    fields["moved_to"] = moved_to
    return _stamped("damaged", folder, fields)
