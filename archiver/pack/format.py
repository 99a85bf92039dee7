"""The packed-archive container, byte by byte (docs/FORMAT.md, "Packed archive").

Pure functions and records, no I/O: what the writer puts and the reader
expects.  A pack is::

    header   16 bytes   MAGIC (8) | version u16 LE | 6 zero bytes
    dict     N bytes    a zstd dictionary trained on this account's mail (may be absent)
    frames   ...        independent zstd frames (with the dictionary), each holding a
                        slice of one logical stream: every file of the archive, one
                        after the other
    index    M bytes    one zstd frame (no dictionary) of UTF-8 JSON: files, frames
    footer   80 bytes   FOOTER_MAGIC (8) | version u16 | 6 zero bytes |
                        index offset u64 | index length u64 |
                        dict offset u64 | dict length u64 | SHA-256 of the index bytes

All integers little-endian.  A reader seeks to the end, reads the footer,
checks the index's SHA-256, and from then on seeks straight to the frames a
file (or a byte range of an mbox file) needs.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"ARCHPACK"
FOOTER_MAGIC = b"ARCHPEND"
VERSION = 1
HEADER = struct.Struct("<8sH6x")
FOOTER = struct.Struct("<8sH6xQQQQ32s")
HEADER_SIZE = HEADER.size  # 16
FOOTER_SIZE = FOOTER.size  # 80


class PackFormatError(ValueError):
    """The bytes are not a (whole, undamaged) pack; the message names what is wrong."""


@dataclass(frozen=True)
class Footer:
    index_offset: int
    index_length: int
    dict_offset: int
    dict_length: int
    index_sha256: bytes


@dataclass(frozen=True)
class Frame:
    """One zstd frame: where its compressed bytes are, and which stream bytes it holds."""

    offset: int  # in the pack file
    size: int  # compressed bytes
    start: int  # first byte of the logical stream it holds
    length: int  # uncompressed bytes
    sha256: str  # of the uncompressed bytes

    def to_json(self) -> list[Any]:
        return [self.offset, self.size, self.start, self.length, self.sha256]

    @classmethod
    def from_json(cls, row: Any) -> Frame:
        offset, size, start, length, sha = row
        return cls(int(offset), int(size), int(start), int(length), str(sha))


@dataclass(frozen=True)
class Member:
    """One file of the archive tree: its bytes are stream[start:start+size]."""

    path: str  # relative, '/'-separated, as in the archive
    start: int
    size: int
    sha256: str
    mode: int
    mtime_ns: int

    def to_json(self) -> list[Any]:
        return [self.path, self.start, self.size, self.sha256, self.mode, self.mtime_ns]

    @classmethod
    def from_json(cls, row: Any) -> Member:
        path, start, size, sha, mode, mtime = row
        return cls(str(path), int(start), int(size), str(sha), int(mode), int(mtime))


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int
    mtime_ns: int

    def to_json(self) -> list[Any]:
        return [self.path, self.mode, self.mtime_ns]

    @classmethod
    def from_json(cls, row: Any) -> Directory:
        path, mode, mtime = row
        return cls(str(path), int(mode), int(mtime))


@dataclass
class PackIndex:
    """What the index frame holds (JSON object, ``v`` is the container version)."""

    format: str  # the archive's store format: maildir or mbox
    dirs: list[Directory]
    files: list[Member]
    frames: list[Frame]
    dict_sha256: str = ""

    def encode(self) -> bytes:
        return json.dumps({
            "v": VERSION, "format": self.format, "dict_sha256": self.dict_sha256,
            "dirs": [d.to_json() for d in self.dirs],
            "files": [f.to_json() for f in self.files],
            "frames": [f.to_json() for f in self.frames],
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> PackIndex:
        try:
            obj = json.loads(data)
            if int(obj["v"]) > VERSION:
                raise PackFormatError(f"index version {obj['v']} is newer than this reader")
            return cls(format=str(obj["format"]),
                       dirs=[Directory.from_json(r) for r in obj["dirs"]],
                       files=[Member.from_json(r) for r in obj["files"]],
                       frames=[Frame.from_json(r) for r in obj["frames"]],
                       dict_sha256=str(obj.get("dict_sha256", "")))
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, PackFormatError):
                raise
            raise PackFormatError(f"the index does not parse ({exc})") from None


def encode_header() -> bytes:
    return HEADER.pack(MAGIC, VERSION)


def check_header(data: bytes) -> None:
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise PackFormatError("no pack header (the first bytes are not ARCHPACK)")
    _magic, version = HEADER.unpack(data[:HEADER_SIZE])
    if version > VERSION:
        raise PackFormatError(f"container version {version} is newer than this reader")


def encode_footer(f: Footer) -> bytes:
    return FOOTER.pack(FOOTER_MAGIC, VERSION, f.index_offset, f.index_length,
                       f.dict_offset, f.dict_length, f.index_sha256)


def decode_footer(data: bytes, file_size: int) -> Footer:
    """The footer (the last FOOTER_SIZE bytes), checked against the file's size."""
    if len(data) != FOOTER_SIZE or data[:8] != FOOTER_MAGIC:
        raise PackFormatError("the footer is missing or damaged (the file may be cut short)")
    _m, version, ioff, ilen, doff, dlen, digest = FOOTER.unpack(data)
    if version > VERSION:
        raise PackFormatError(f"container version {version} is newer than this reader")
    body_end = file_size - FOOTER_SIZE
    if not (ioff >= HEADER_SIZE and ioff + ilen == body_end and ilen > 0
            and (dlen == 0 or (doff == HEADER_SIZE and doff + dlen <= ioff))):
        raise PackFormatError("the footer's offsets do not fit the file (it was cut or "
                              "damaged)")
    return Footer(ioff, ilen, doff, dlen, digest)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frames_for(frames: list[Frame], starts: list[int], start: int, length: int
               ) -> range:
    """Indices of the frames holding stream bytes [start, start+length); ``starts`` is
    ``[f.start for f in frames]`` (sorted)."""
    import bisect

    if length <= 0:
        return range(0)
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = bisect.bisect_right(starts, start + length - 1) - 1
    return range(first, min(last, len(frames) - 1) + 1)
