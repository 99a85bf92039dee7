"""The one durability layer: how bytes and names reach the disk before anything says so.

The rule everywhere: data reaches its final name only by an atomic rename of
a file that was synced first, and the directory holding the new name is
fsynced before anything (the index, the restore journal) says the file
exists.  Every store, the index, ``folders.json``, the snapshot and the
restore journal go through the helpers here, so one test can watch the order
of every sync call (tests/unit/test_durable_order.py).

fsync costs per *file* (each forces a journal commit), so a batch of 500
small messages costs 500 commits.  Two strategies make a batch of files
durable, chosen per DEST by :func:`choose_strategy`:

* :class:`PerFileSync` -- ``fsync`` each file (a few threads at once).
  Correct everywhere.
* :class:`FileSystemSync` -- one Linux ``syncfs(2)`` writes back the whole
  file system and commits once.  Used only where it is trustworthy: Linux
  5.8 or newer (before that, syncfs did not report writeback errors, so an
  I/O error was lost and the index would record data that never reached the
  disk) on a known local file system (not NFS/SMB, FUSE -- which never sees
  syncfs -- or an exFAT/FAT stick).  At run time ENOSYS/EPERM/EINVAL
  (syncfs refused) switch the run to per-file fsync and redo the batch that
  way; any other error (EIO, ENOSPC: pages may already be lost, and a later
  fsync could report success) is raised, so the batch is not recorded and
  the run ends with exit 6.

``ARCHIVER_SYNC=fsync`` forces per-file fsync; ``ARCHIVER_SYNC=syncfs``
forces syncfs wherever the kernel has it (benchmarks, file systems not on
the list).
"""

from __future__ import annotations

import errno
import logging
import os
import platform as _host
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from archiver import platform
from archiver.fsutil import FILE_MODE, open_new, write_all

log = logging.getLogger("archiver.durable")

SYNC_ENV = "ARCHIVER_SYNC"
SYNCFS_MIN_KERNEL = (5, 8)
# Local file systems whose syncfs(2) writes back and commits like fsync does.
SYNCFS_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs",
                                 "bcachefs", "jfs", "reiserfs", "tmpfs"})
_SYNCFS_REFUSED = (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP)
_BULK = 8  # fewer files than this: fsync each (cheaper than writing back a file system)


def fsync(fd: int) -> None:
    """Make one open file's bytes durable (not its name: see :func:`fsync_dir`)."""
    os.fsync(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (new names, renames, removals) durable.

    No-op on Windows, which cannot open a directory; NTFS journals its
    metadata itself (:func:`archiver.platform.fsync_dir`).
    """
    platform.fsync_dir(path)


def fsync_parents(created: Sequence[Path]) -> None:
    """fsync the parent of every directory in ``created`` (each parent once, deepest first)."""
    parents = {p.parent for p in created}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(parent)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Atomically give ``src``'s file the name ``dst`` (durable after fsync_dir(dst's dir))."""
    os.replace(src, dst)


def replace_with(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (tmp file, fsync, rename): whichever of the old
    and the new file a power cut leaves, it is whole; the new name is durable only
    after ``fsync_dir(path.parent)`` (:func:`atomic_write`)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = open_new(tmp)
    try:
        write_all(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    replace(tmp, path)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably (tmp file, fsync, rename, fsync dir)."""
    replace_with(path, data)
    fsync_dir(path.parent)


def create_empty(path: Path) -> None:
    """Create an empty file whose name is durable (its directory fsynced)."""
    os.close(open_new(path))
    fsync_dir(path.parent)


def create_if_missing(path: Path) -> bool:
    """Create an empty file unless one is there, its name durable; True if it was made.

    Never truncates (``O_EXCL``, unlike :func:`create_empty`): another thread may
    be appending to the file at that name, and never follows a planted symlink.
    """
    try:
        fd = os.open(path, platform.file_flags(os.O_WRONLY | os.O_CREAT | os.O_EXCL), FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    fsync_dir(path.parent)
    return True


def truncate_durably(path: Path, length: int) -> None:
    """Cut a file back to ``length`` bytes (a torn tail) and make that durable."""
    fd = os.open(path, platform.file_flags(os.O_WRONLY))
    try:
        os.ftruncate(fd, length)
        fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- syncfs


_SYNCFS = platform.load_syncfs()


def syncfs(fd: int) -> None:
    """Write back and commit the whole file system ``fd`` lives on (Linux ``syncfs(2)``)."""
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, "syncfs is not available here")
    _SYNCFS(fd)


def kernel_version(release: Optional[str] = None) -> tuple[int, int]:
    """(major, minor) of the running kernel, (0, 0) if it cannot be read."""
    text = release if release is not None else _host.release()
    parts = text.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def filesystem_type(path: Path, mountinfo: Optional[str] = None) -> Optional[str]:
    """The type of the file system holding ``path`` (Linux only; see
    :func:`archiver.platform.filesystem_type`)."""
    return platform.filesystem_type(path, mountinfo)


# ---------------------------------------------------------------- strategies


class SyncStrategy(Protocol):
    name: str

    def sync(self, fds: Sequence[int]) -> None:
        """Return only when the data of every file in ``fds`` is durable."""
        ...

    def close(self) -> None: ...


class PerFileSync:
    """fsync each file; a few threads overlap the journal commits of many small files."""

    name = "fsync"

    def __init__(self, threads: int = 4) -> None:
        self._threads = threads
        self._pool: Optional[ThreadPoolExecutor] = None

    def sync(self, fds: Sequence[int]) -> None:
        if len(fds) > 1 and self._threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fsync")
            list(self._pool.map(fsync, fds))
        else:
            for fd in fds:
                fsync(fd)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class FileSystemSync:
    """One ``syncfs`` per batch; falls back to :class:`PerFileSync` when syncfs is refused."""

    name = "syncfs"

    def __init__(self, fallback: Optional[PerFileSync] = None) -> None:
        self._fallback = fallback or PerFileSync()
        self._refused: Optional[OSError] = None

    def sync(self, fds: Sequence[int]) -> None:
        if self._refused is not None or len(fds) < _BULK:
            self._fallback.sync(fds)
            return
        try:
            syncfs(fds[0])
        except OSError as exc:
            if exc.errno not in _SYNCFS_REFUSED:
                raise  # EIO, ENOSPC, ...: the batch is not durable; never retried blindly
            self._refused = exc
            log.info("syncfs refused (%s): per-file fsync for the rest of this run",
                     exc.strerror)
            self._fallback.sync(fds)

    def close(self) -> None:
        self._fallback.close()


@dataclass(frozen=True)
class Choice:
    strategy: SyncStrategy
    reason: str


def choose_strategy(dest: Path, mode: Optional[str] = None,
                    fs_type: Optional[str] = None,
                    kernel: Optional[tuple[int, int]] = None) -> Choice:
    """The strategy for ``dest`` and why (logged), from ``ARCHIVER_SYNC`` and the platform."""
    mode = (mode if mode is not None else os.environ.get(SYNC_ENV, "auto")).strip().lower()
    if mode == "fsync" or _SYNCFS is None:
        why = "asked for" if mode == "fsync" else "no syncfs on this system"
        return Choice(PerFileSync(), f"per-file fsync ({why})")
    if mode == "syncfs":
        return Choice(FileSystemSync(), f"syncfs ({SYNC_ENV}=syncfs)")
    kernel = kernel if kernel is not None else kernel_version()
    if kernel < SYNCFS_MIN_KERNEL:
        return Choice(PerFileSync(), f"per-file fsync (Linux {kernel[0]}.{kernel[1]}: syncfs "
                                     "reports no write errors before 5.8)")
    fs_type = fs_type if fs_type is not None else filesystem_type(dest)
    if fs_type not in SYNCFS_FILE_SYSTEMS:
        return Choice(PerFileSync(), f"per-file fsync ({fs_type or 'unknown'} file system)")
    return Choice(FileSystemSync(), f"syncfs ({fs_type}, Linux {kernel[0]}.{kernel[1]})")
