"""Reading a pack in place: one file, or one byte range of a file, without the rest.

Opening reads the 80-byte footer and the index (checked against the
footer's SHA-256); a read then decompresses only the frames that hold the
bytes asked for, each checked against its own SHA-256 before a byte of it is
handed out.  A damaged pack therefore gives a one-line error naming the
damage (:class:`PackDamaged`, exit 6), never wrong bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import zstandard

from archiver import platform
from archiver.errors import DestinationError
from archiver.i18n import _
from archiver.pack.format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    MAGIC,
    Member,
    PackFormatError,
    PackIndex,
    check_header,
    decode_footer,
    frames_for,
)

CACHE_FRAMES = 4  # decompressed frames kept: consecutive reads mostly hit the same frame


class PackDamaged(DestinationError):
    """The pack's bytes do not match its checksums (or it is no pack at all)."""


def is_pack(path: Path) -> bool:
    """Does ``path`` name a pack file (by its first bytes)?"""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def packed_error(path: Path) -> DestinationError:
    """What a writing command says when it is given a pack."""
    return DestinationError(_("{pack} is a packed archive: unpack it first with archiver "
                              "unpack {pack} DEST").format(pack=path))


class PackReader:
    """An open pack; thread-safe (restore reads from several connections at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        with self._errors():
            self._fd = os.open(path, os.O_RDONLY | platform.O_BINARY)
        try:
            self._open()
        except BaseException:
            os.close(self._fd)
            raise

    def _errors(self) -> _Translate:
        return _Translate(self.path)

    def _open(self) -> None:
        size = os.fstat(self._fd).st_size
        self.size = size
        try:
            check_header(self._pread(0, HEADER_SIZE))
            if size < HEADER_SIZE + FOOTER_SIZE:
                raise PackFormatError("the file is too short to be a pack (cut short?)")
            footer = decode_footer(self._pread(size - FOOTER_SIZE, FOOTER_SIZE), size)
            raw = self._pread(footer.index_offset, footer.index_length)
            if hashlib.sha256(raw).digest() != footer.index_sha256:
                raise PackFormatError("the index fails its checksum")
            try:
                self.index = PackIndex.decode(zstandard.ZstdDecompressor().decompress(raw))
            except zstandard.ZstdError as exc:
                raise PackFormatError(f"the index does not decompress ({exc})") from None
            self._dict: Optional[zstandard.ZstdCompressionDict] = None
            if footer.dict_length:
                data = self._pread(footer.dict_offset, footer.dict_length)
                if hashlib.sha256(data).hexdigest() != self.index.dict_sha256:
                    raise PackFormatError("the dictionary fails its checksum")
                self._dict = zstandard.ZstdCompressionDict(data)
        except PackFormatError as exc:
            raise PackDamaged(_("{pack} is not a readable pack: {reason}; use another copy "
                                "of it").format(pack=self.path, reason=exc)) from None
        self.files: dict[str, Member] = {m.path: m for m in self.index.files}
        self._starts = [f.start for f in self.index.frames]
        self._local = threading.local()  # a decompressor per thread: they are not shareable

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def format(self) -> str:
        return self.index.format

    def _pread(self, offset: int, length: int) -> bytes:
        with self._errors():
            if hasattr(os, "pread"):
                data = os.pread(self._fd, length, offset)
            else:  # pragma: no cover - Windows
                with self._lock:
                    os.lseek(self._fd, offset, os.SEEK_SET)
                    data = os.read(self._fd, length)
        if len(data) != length:
            raise PackFormatError(f"the file ends at byte {self.size}, before byte "
                                  f"{offset + length} (cut short)")
        return data

    # ------------------------------------------------------------ frames

    def frame(self, n: int) -> bytes:
        """Frame ``n`` decompressed and checked (PackDamaged if it is not what the index says)."""
        with self._lock:
            hit = self._cache.get(n)
            if hit is not None:
                self._cache.move_to_end(n)
                return hit
        f = self.index.frames[n]
        try:
            comp = self._pread(f.offset, f.size)
            raw = self._decompressor().decompress(comp, max_output_size=f.length)
            ok = len(raw) == f.length and hashlib.sha256(raw).hexdigest() == f.sha256
        except (PackFormatError, zstandard.ZstdError):
            ok = False
        if not ok:
            raise PackDamaged(_("{pack} is damaged: frame {n} (pack bytes {start}-{end}) fails "
                                "its checksum; nothing was read from it: use another copy of "
                                "the pack").format(pack=self.path, n=n, start=f.offset,
                                                   end=f.offset + f.size - 1))
        with self._lock:
            self._cache[n] = raw
            while len(self._cache) > CACHE_FRAMES:
                self._cache.popitem(last=False)
        return raw

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor(dict_data=self._dict)
        return dctx

    def iter_range(self, start: int, length: int) -> Iterator[bytes]:
        """Stream bytes [start, start+length), one frame's share at a time."""
        end = start + length
        for n in frames_for(self.index.frames, self._starts, start, length):
            f = self.index.frames[n]
            raw = self.frame(n)
            lo = max(start, f.start) - f.start
            hi = min(end, f.start + f.length) - f.start
            if hi > lo:
                yield raw[lo:hi]

    def read_range(self, start: int, length: int) -> bytes:
        return b"".join(self.iter_range(start, length))

    # ------------------------------------------------------------ files

    def member(self, path: str) -> Member:
        m = self.files.get(path)
        if m is None:
            raise FileNotFoundError(2, "not in the pack", f"{self.path}:{path}")
        return m

    def read_file(self, path: str) -> bytes:
        """A whole file, checked against its SHA-256."""
        m = self.member(path)
        data = self.read_range(m.start, m.size)
        self._check(m, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def iter_file(self, path: str) -> Iterator[bytes]:
        """A whole file in frame-sized pieces; the frames are checked before each piece,
        the file's SHA-256 at the end."""
        m = self.member(path)
        digest = hashlib.sha256()
        n = 0
        for piece in self.iter_range(m.start, m.size):
            digest.update(piece)
            n += len(piece)
            yield piece
        self._check(m, digest.hexdigest(), n)

    def read_slice(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` inside a file (an mbox message); cut at its end."""
        m = self.member(path)
        offset = min(max(offset, 0), m.size)
        length = max(0, min(length, m.size - offset))
        return self.read_range(m.start + offset, length)

    def iter_slice(self, path: str, offset: int, length: int) -> Iterator[bytes]:
        m = self.member(path)
        offset = min(max(offset, 0), m.size)
        length = max(0, min(length, m.size - offset))
        return self.iter_range(m.start + offset, length)

    def _check(self, m: Member, digest: str, n: int) -> None:
        if n != m.size or digest != m.sha256:
            raise PackDamaged(_("{pack} is damaged: {path} fails its checksum; use another "
                                "copy of the pack").format(pack=self.path, path=m.path))


class _Translate:
    """OSError reading the pack -> one line naming the pack (exit 6)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if isinstance(exc, OSError):
            from archiver.fsutil import describe_os_error

            raise DestinationError(describe_os_error(
                _("reading {path}").format(path=self.path), exc)) from None


_OPEN: dict[tuple[str, int, int], PackReader] = {}


def open_pack(path: Path) -> PackReader:
    """The pack at ``path``, opened once per process (its index is read once)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        from archiver.fsutil import describe_os_error

        raise DestinationError(describe_os_error(
            _("reading {path}").format(path=path), exc)) from None
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    reader = _OPEN.get(key)
    if reader is None:
        reader = PackReader(path)
        for old in _OPEN.values():  # the pack was replaced: its old reader is done with
            old.close()
        _OPEN.clear()
        _OPEN[key] = reader
    return reader
