"""Every call that exists only on some operating systems, each with its portable fallback.

archiver runs on Linux, macOS and Windows, and writes onto whatever file
system DEST is (ext4, APFS, NTFS, an exFAT stick).  Everything that is not
the same everywhere lives here, so the rest of the code never asks which
system it is on:

========================  ===============================  ==========================
call                      where it exists                  fallback
========================  ===============================  ==========================
``O_NOFOLLOW``            POSIX                            0 (Windows has no symlink
                                                           races on plain opens)
``O_CLOEXEC``             POSIX                            0 (not inherited anyway)
``O_BINARY``              Windows                          0 (POSIX has no text mode)
directory fsync           POSIX                            skipped: Windows cannot open
                                                           a directory; NTFS journals
                                                           its own metadata
``syncfs(2)``             Linux (glibc)                    ENOSYS: per-file fsync
``/proc/self/mountinfo``  Linux                            file system type unknown
                                                           (so: per-file fsync)
``flock``                 POSIX                            ``msvcrt.locking``
                                                           (Windows), else an
                                                           ``O_EXCL`` lock file
``chmod`` 0600/0700       POSIX                            skipped (Windows keeps a
                                                           user's files private by
                                                           its ACLs; chmod there only
                                                           toggles read-only)
``os.sync``               POSIX                            fsync each file
``statvfs``               POSIX                            writable = ``os.access``
``:`` in file names       POSIX file systems               never tried on Windows (it
                                                           would create an NTFS
                                                           alternate data stream)
========================  ===============================  ==========================

On Linux every function does exactly what the code did before it moved
here (the durability tests watch the calls).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Optional

WINDOWS = sys.platform == "win32"
LINUX = sys.platform.startswith("linux")

FILE_MODE = 0o600
DIR_MODE = 0o700
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)

# The longest file name where nothing better is known: NTFS, exFAT, ext4, APFS all allow
# 255 (UTF-16 units on the first two, bytes on ext4).
DEFAULT_NAME_MAX = 255


def file_flags(base: int, *, follow: bool = False) -> int:
    """``base`` (O_WRONLY | O_CREAT ...) plus the flags this platform needs for safe,
    binary, not-inherited opens: never through a planted symlink unless ``follow``."""
    return base | O_CLOEXEC | O_BINARY | (0 if follow else O_NOFOLLOW)


# ---------------------------------------------------------------- durability


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (its entries become durable); a no-op on Windows."""
    if WINDOWS:  # pragma: no cover - Windows cannot open a directory
        return
    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_syncfs() -> Optional[Callable[[int], None]]:
    """Linux ``syncfs(2)`` through the C library, or None where there is none."""
    if not LINUX:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        raw = libc.syncfs
    except (OSError, AttributeError):
        return None

    def call(fd: int) -> None:
        if raw(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


def filesystem_type(path: Path, mountinfo: Optional[str] = None) -> Optional[str]:
    """The type of the file system holding ``path`` (``ext4``, ``fuseblk`` ...); None if
    unknown (every system but Linux, unless ``mountinfo`` is given).

    Matched by device number against ``/proc/self/mountinfo``; the last mount
    of that device wins (a later mount hides earlier ones).
    """
    if mountinfo is None and not LINUX:
        return None
    try:
        dev = os.stat(path).st_dev
        text = mountinfo if mountinfo is not None else Path(
            "/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found: Optional[str] = None
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[2] != want or "-" not in fields[6:]:
            continue
        found = fields[fields.index("-", 6) + 1]
    return found


def sync_tree(root: Path) -> None:
    """Make every file under ``root`` durable: one ``os.sync`` where there is one,
    else an fsync of each file (Windows)."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for where, _dirs, files in os.walk(root):  # pragma: no cover - Windows
        for name in files:
            fd = os.open(os.path.join(where, name), os.O_RDWR | O_BINARY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# ---------------------------------------------------------------- locks and modes


def lock_file(fh: IO[bytes]) -> bool:
    """A non-blocking exclusive lock on an open file; False if someone else holds it.

    ``flock`` on POSIX, ``msvcrt.locking`` of the first byte on Windows; both
    go with the process, so a killed archiver never leaves a stale lock.
    """
    if sys.platform == "win32":  # pragma: no cover (spelled out for mypy)
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - neither: an O_EXCL lock file beside it
        return _exclusive_marker(Path(fh.name))
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _exclusive_marker(path: Path) -> bool:  # pragma: no cover - no flock, no msvcrt
    try:
        os.close(os.open(f"{path}.held", os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        return True
    except FileExistsError:
        return False


def make_private(path: str | os.PathLike[str], mode: int = FILE_MODE) -> None:
    """chmod ``path`` to ``mode`` (0600 files, 0700 directories) where modes mean that;
    skipped on Windows, where chmod only toggles the read-only attribute."""
    if WINDOWS:  # pragma: no cover
        return
    os.chmod(path, mode)


def writable(directory: Path) -> bool:
    """Can we create files in ``directory``?  (A read-only mount says no even to root.)"""
    if not os.access(directory, os.W_OK):
        return False
    try:
        return not os.statvfs(directory).f_flag & os.ST_RDONLY
    except (OSError, AttributeError):  # pragma: no cover - no statvfs (Windows)
        return True


# ---------------------------------------------------------------- names


def name_max(directory: Path) -> int:
    """The longest file name ``directory``'s file system takes (``PC_NAME_MAX``), else 255."""
    try:
        value = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # Windows has no pathconf
        return DEFAULT_NAME_MAX
    return value if isinstance(value, int) and value > 0 else DEFAULT_NAME_MAX


def holds_colon(directory: Path, stem: str) -> bool:
    """Can a file name in ``directory`` contain ``:``?  Tried with a temporary file.

    Never tried on Windows: there ``name:x`` is a valid *stream* name on NTFS
    and the probe would wrongly succeed.  exFAT says ENOENT, ntfs-3g with
    ``windows_names`` EINVAL, a FAT/SMB mount EINVAL or EILSEQ: any refusal
    means no.
    """
    if WINDOWS:  # pragma: no cover
        return False
    return _can_create(directory / f"{stem}:2,")


def case_insensitive(directory: Path, stem: str) -> bool:
    """Does ``directory``'s file system take ``aB`` and ``Ab`` as one name?"""
    probe = directory / f"{stem}-aB"
    if not _can_create(probe, keep=True):
        return False
    try:
        return os.path.lexists(directory / f"{stem}-Ab")
    finally:
        _remove(probe)


def _can_create(path: Path, keep: bool = False) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, FILE_MODE)
    except FileExistsError:  # left by a probe that was killed: it could be created
        if not keep:
            _remove(path)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            raise  # not an answer about names: the caller says what is wrong
        return False
    os.close(fd)
    if not keep:
        _remove(path)
    return True


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
