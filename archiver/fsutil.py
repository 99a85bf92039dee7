"""Durable file-system primitives used by every store and by the index.

The rule everywhere: data reaches its final name only by an atomic rename of a
file that was fsynced first, and the directory holding the new name is fsynced
before anything (the index) says the file exists.  fsync costs per *file*, not
per byte, so callers batch: many files written, then fsynced together, then
renamed, then one fsync per directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Optional

from archiver.errors import DestinationError

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (new names, renames) durable.  No-op on Windows."""
    if sys.platform == "win32":  # pragma: no cover - Windows cannot open directories
        return
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSystemSync:
    """Make many files durable at once with Linux ``syncfs(2)``, else one fsync per file.

    fsync costs per *file* (each forces a journal commit), so a batch of 500
    small messages costs 500 commits; ``syncfs`` writes back everything dirty
    on that file system and commits once.  It is only used where it exists
    (Linux); callers still rename after it returns and sync again before
    recording, exactly as with per-file fsync.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._syncfs = None
        if enabled and sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                self._syncfs = libc.syncfs
                self._get_errno = ctypes.get_errno
            except (OSError, AttributeError):
                self._syncfs = None

    @property
    def available(self) -> bool:
        return self._syncfs is not None

    def sync(self, fd: int) -> None:
        """Durably write back the whole file system that ``fd`` lives on."""
        assert self._syncfs is not None
        if self._syncfs(fd) != 0:
            err = self._get_errno()
            raise OSError(err, os.strerror(err))


def ensure_dir(path: Path, root: Path) -> list[Path]:
    """Create ``path`` (0700) and missing parents up to ``root``; never through a symlink.

    Returns the directories created, whose parents must be fsynced to make
    them durable (see :func:`fsync_created`).
    """
    created: list[Path] = []
    rel = path.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        try:
            os.mkdir(current, DIR_MODE)
            created.append(current)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise DestinationError(
                    f"{current} exists and is not a directory (or is a symlink); "
                    "move it away and rerun"
                ) from None
    return created


def fsync_created(created: Iterable[Path]) -> None:
    """fsync the parent of every directory in ``created`` (each parent once)."""
    parents = {p.parent for p in created}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(parent)


def open_new(path: str | os.PathLike[str]) -> int:
    """Open a new file for writing, 0600, refusing to follow a planted symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC | _BINARY
    return os.open(path, flags, FILE_MODE)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def truncate_durably(path: Path, length: int) -> None:
    """Cut a file back to ``length`` bytes (a torn tail) and make that durable."""
    fd = os.open(path, os.O_WRONLY | _NOFOLLOW | _CLOEXEC | _BINARY)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path, head_bytes: int = 0) -> tuple[str, int, bytes]:
    """(sha256 hex, size, first ``head_bytes`` bytes) of a file, read in 1 MB pieces."""
    digest = hashlib.sha256()
    head = b""
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            if len(head) < head_bytes:
                head += chunk[: head_bytes - len(head)]
    return digest.hexdigest(), size, head


def set_mtime(path: Path, when: Optional[datetime]) -> None:
    """File mtime = INTERNALDATE (what mail programs show as 'received')."""
    if when is None:
        return
    try:
        ts = when.timestamp()
        os.utime(path, (ts, ts))
    except (OverflowError, OSError, ValueError):
        pass


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably (tmp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = open_new(tmp)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def translate_os_errors(what: str) -> Iterator[None]:
    """Turn a full disk or a read-only destination into a one-line DestinationError."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise DestinationError(
                f"{what}: the destination is full ({exc.strerror}); free some space "
                "and run the same command again"
            ) from exc
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise DestinationError(
                f"{what}: cannot write ({exc.strerror}: {exc.filename}); choose a "
                "writable destination or fix its permissions"
            ) from exc
        if exc.errno == errno.ELOOP:
            # O_NOFOLLOW (or the mbox store's own check) met a planted symlink: this
            # was an uncaught OSError, i.e. a traceback, instead of a one-line refusal.
            raise DestinationError(
                f"{what}: {exc.filename} is a symbolic link; archiver never writes through "
                "one: remove it (check who planted it) and run the same command again"
            ) from exc
        if exc.errno == errno.ENOENT:
            raise DestinationError(
                f"{what}: {exc.filename} disappeared while archiving; check the "
                "destination and run the same command again"
            ) from exc
        raise
