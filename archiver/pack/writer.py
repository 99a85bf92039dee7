"""``archiver pack``: one account's archive tree into one compressed, random-access file.

Every file of the tree goes in -- message files or mbox files, ``archive.json``,
the index, ``folders.json``, side files such as ``dovecot-keywords`` and restore
journals -- except the scratch a running archiver keeps (``.archiver/lock``,
``*.lock`` beside it, ``.archiver/tmp/``), so ``archiver unpack`` gives back the
same tree byte for byte.

The files are laid out as one logical stream, folder by folder and in message
order (similar mail next to similar mail), cut into zstd frames of about
``frame_size`` input bytes; a file is never split between frames unless it is
larger than a frame on its own (then it starts a frame).  A dictionary trained
on a sample of the account's own mail makes each frame small although every
frame can be decompressed alone.  Memory stays bounded by a few frames plus
one small record per file, whatever the archive's size.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import zstandard

from archiver import platform
from archiver.archive import META_DIR
from archiver.durable import fsync, fsync_dir, replace
from archiver.errors import DestinationError, UsageError
from archiver.fsutil import open_new, translate_os_errors, write_all
from archiver.i18n import _
from archiver.pack.format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    Directory,
    Footer,
    Frame,
    Member,
    PackIndex,
    encode_footer,
    encode_header,
    sha256,
)
from archiver.reading import open_archive

FRAME_SIZE = 1 << 20  # input bytes per frame: one frame is what a message read decompresses
LEVEL = 19
DICT_SIZE = 110 * 1024
DICT_K, DICT_D = 1024, 8  # fastCover segment and d-mer sizes (zstd's usual choice)
SAMPLE_PIECE = 32 * 1024  # bytes taken per sample
SAMPLE_BUDGET = 8 << 20  # total sample bytes for training the dictionary
READ_CHUNK = 1 << 20

_DIGITS = re.compile(r"(\d+)")


@dataclass
class PackReport:
    files: int = 0
    dirs: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0
    dict_bytes: int = 0


def scratch(rel: str) -> bool:
    """What a running archiver keeps in ``.archiver/`` for itself alone: not packed."""
    if not rel.startswith(META_DIR + "/"):
        return False
    inner = rel[len(META_DIR) + 1:]
    return inner == "lock" or inner.endswith(".lock") \
        or inner.startswith("tmp/") or inner.endswith(".tmp")


def _order(name: str) -> tuple[object, ...]:
    """Natural order: ``1.10.archiver`` after ``1.9.archiver`` (message order)."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


@dataclass
class _Entry:
    rel: str
    path: Path
    st: os.stat_result


def walk(root: Path) -> tuple[list[_Entry], list[_Entry]]:
    """(directories, files) below ``root`` in pack order: ``.archiver/`` first, then the
    folders in name order, each folder's files in natural (message) order."""
    dirs: list[_Entry] = []
    files: list[_Entry] = []

    def visit(directory: Path, rel: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: (e.name != META_DIR, _order(e.name)))
        subdirs = []
        for e in entries:
            erel = f"{rel}/{e.name}" if rel else e.name
            if scratch(erel):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((e, erel, st))
            elif stat.S_ISREG(st.st_mode):
                files.append(_Entry(erel, Path(e.path), st))
            else:
                raise UsageError(_("{path} is not a plain file or directory (a symlink or "
                                   "device): move it out of the archive and rerun").format(
                                   path=e.path))
        for e, erel, st in subdirs:
            dirs.append(_Entry(erel, Path(e.path), st))
            visit(Path(e.path), erel)

    visit(root, "")
    return dirs, files


def _samples(files: list[_Entry]) -> list[bytes]:
    """Pieces of the account's mail (not archiver's own files) to train the dictionary."""
    mail = [f for f in files if not f.rel.startswith(META_DIR + "/") and f.st.st_size > 0]
    total = sum(f.st.st_size for f in mail)
    if not mail or total == 0:
        return []
    # one piece per ``step`` bytes of mail: a small file is taken whole (up to a piece)
    # once the files since the last one taken add up to a step; a large one gives
    # pieces spread through it
    step = max(1, total // max(SAMPLE_BUDGET // SAMPLE_PIECE, 1))
    out: list[bytes] = []
    carry = step  # the first file is always taken
    for f in mail:
        size = f.st.st_size
        with open(f.path, "rb") as fh:
            if size <= SAMPLE_PIECE:
                carry += size
                if carry >= step:
                    carry = 0
                    out.append(fh.read(SAMPLE_PIECE))
                continue
            pos = 0
            while pos < size:
                fh.seek(pos)
                piece = fh.read(SAMPLE_PIECE)
                if piece:
                    out.append(piece)
                pos += max(step, SAMPLE_PIECE)
    return out


def train(files: list[_Entry], size: int = DICT_SIZE) -> Optional[zstandard.ZstdCompressionDict]:
    """A dictionary from the account's own mail, or None when there is too little mail."""
    samples = _samples(files)
    if len(samples) < 16 or sum(map(len, samples)) < size * 4:
        return None
    try:
        # fixed fastCover parameters: letting zstd search for them (k, d unset) took
        # 40 s for half a megabyte of samples, and gained little on mail
        return zstandard.train_dictionary(size, list[Any](samples), k=DICT_K, d=DICT_D,
                                          threads=-1)
    except zstandard.ZstdError:
        return None


class _FrameWriter:
    """Cuts the logical stream into frames, compresses them (on every core) and writes
    them in order.

    zstd releases the GIL, so frames are compressed by a few threads at once, each
    with its own compressor; at most ``2 * workers`` frames are in flight, so memory
    stays a few MiB whatever the archive's size.
    """

    def __init__(self, fd: int, offset: int, make: Callable[[], zstandard.ZstdCompressor],
                 frame_size: int, workers: int) -> None:
        self.fd = fd
        self.offset = offset  # next write position in the pack file
        self.frame_size = frame_size
        self.buf = bytearray()
        self.start = 0  # stream position of buf[0]
        self.frames: list[Frame] = []
        self._local = threading.local()
        self._make = make
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._limit = 2 * workers
        self._pending: deque[tuple[int, int, str, Future[bytes]]] = deque()

    @property
    def position(self) -> int:
        return self.start + len(self.buf)

    def add(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= self.frame_size:
            self._emit(bytes(self.buf[: self.frame_size]))
            del self.buf[: self.frame_size]

    def cut(self) -> None:
        if self.buf:
            self._emit(bytes(self.buf))
            self.buf.clear()

    def finish(self) -> None:
        """Cut the last frame and write every frame still being compressed."""
        self.cut()
        while self._pending:
            self._write_one()
        self._pool.shutdown()

    def abandon(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def _compress(self, raw: bytes) -> bytes:
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = self._make()
        return bytes(cctx.compress(raw))

    def _emit(self, raw: bytes) -> None:
        self._pending.append((self.start, len(raw), sha256(raw),
                              self._pool.submit(self._compress, raw)))
        self.start += len(raw)
        while len(self._pending) > self._limit:
            self._write_one()

    def _write_one(self) -> None:
        start, length, digest, future = self._pending.popleft()
        comp = future.result()
        write_all(self.fd, comp)
        self.frames.append(Frame(self.offset, len(comp), start, length, digest))
        self.offset += len(comp)


def write_pack(src: Path, pack: Path, *, force: bool = False, level: int = LEVEL,
               frame_size: int = FRAME_SIZE, dict_size: int = DICT_SIZE) -> PackReport:
    """Pack the archive at ``src`` into the file ``pack`` (atomically: tmp, fsync, rename)."""
    archive = open_archive(src)
    if not src.is_dir():
        raise UsageError(_("{src} is already a packed archive").format(src=src))
    real_pack, real_src = pack.resolve(), src.resolve()
    if real_src == real_pack or real_src in real_pack.parents:
        raise UsageError(_("{pack} is inside the archive {src}: write the pack somewhere "
                           "else").format(pack=pack, src=src))
    if pack.exists() and not force:
        raise DestinationError(_("{pack} already exists: choose another name, or add --force "
                                 "to replace it").format(pack=pack))
    if pack.is_dir():
        raise DestinationError(_("{pack} is a directory: give a file name for the "
                                 "pack").format(pack=pack))
    try:
        if platform.writable(archive.meta_dir):  # a read-only archive cannot be in use
            archive.acquire_lock()  # a running backup would change files under us: exit 6
        with translate_os_errors(_("reading {path}").format(path=src)):
            dirs, files = walk(src)
            zdict = train(files, dict_size)
        with translate_os_errors(_("writing {path}").format(path=pack)):
            return _write(archive.format, dirs, files, zdict, pack, level, frame_size)
    finally:
        archive.close()


def _write(fmt: str, dirs: list[_Entry], files: list[_Entry],
           zdict: Optional[zstandard.ZstdCompressionDict], pack: Path, level: int,
           frame_size: int) -> PackReport:
    tmp = pack.with_name(pack.name + ".tmp")
    fd = open_new(tmp)
    frames: Optional[_FrameWriter] = None
    done = False
    try:
        write_all(fd, encode_header())
        offset = HEADER_SIZE
        dict_bytes = zdict.as_bytes() if zdict is not None else b""
        write_all(fd, dict_bytes)
        offset += len(dict_bytes)

        def make() -> zstandard.ZstdCompressor:
            return zstandard.ZstdCompressor(level=level, dict_data=zdict, write_checksum=True,
                                            write_content_size=True)

        frames = _FrameWriter(fd, offset, make, frame_size, max(1, os.cpu_count() or 1))
        members: list[Member] = []
        for f in files:
            if frames.buf and len(frames.buf) + f.st.st_size > frame_size:
                frames.cut()  # a file starts a frame rather than straddle two
            start = frames.position
            digest = hashlib.sha256()
            for chunk in _chunks(f.path):
                digest.update(chunk)
                frames.add(chunk)
            members.append(Member(f.rel, start, frames.position - start, digest.hexdigest(),
                                  stat.S_IMODE(f.st.st_mode), f.st.st_mtime_ns))
        frames.finish()
        index = PackIndex(fmt, [Directory(d.rel, stat.S_IMODE(d.st.st_mode), d.st.st_mtime_ns)
                                for d in dirs], members, frames.frames,
                          sha256(dict_bytes) if dict_bytes else "")
        encoded = zstandard.ZstdCompressor(level=level, write_checksum=True).compress(
            index.encode())
        write_all(fd, encoded)
        write_all(fd, encode_footer(Footer(frames.offset, len(encoded),
                                           HEADER_SIZE if dict_bytes else 0, len(dict_bytes),
                                           hashlib.sha256(encoded).digest())))
        fsync(fd)
        report = PackReport(files=len(members), dirs=len(dirs),
                            bytes_in=frames.position,
                            bytes_out=frames.offset + len(encoded) + FOOTER_SIZE,
                            frames=len(frames.frames), dict_bytes=len(dict_bytes))
        done = True
    finally:
        if not done and frames is not None:
            frames.abandon()
        os.close(fd)
        if not done:
            tmp.unlink(missing_ok=True)
    replace(tmp, pack)
    fsync_dir(pack.parent)
    return report


def _chunks(path: Path) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY | platform.O_BINARY | platform.O_NOFOLLOW)
    try:
        while True:
            piece = os.read(fd, READ_CHUNK)
            if not piece:
                return
            yield piece
    finally:
        os.close(fd)
