"""File-system primitives: safe creation, whole writes, hashing, locks, error wording.

The platform calls (O_NOFOLLOW, O_BINARY, flock/msvcrt locking, chmod) are
in :mod:`archiver.platform`; :mod:`archiver.durable` holds everything about
*when* bytes and names become durable.  Every OSError met on the destination becomes a
one-line :class:`~archiver.errors.DestinationError` (exit 6) through
:func:`translate_os_errors`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Optional

from archiver import platform
from archiver.errors import DestinationError
from archiver.i18n import _
from archiver.platform import DIR_MODE, FILE_MODE

__all__ = ["DIR_MODE", "FILE_MODE"]  # re-exported: the modes' old home


def ensure_dir(path: Path, root: Path) -> list[Path]:
    """Create ``path`` (0700) and missing parents up to ``root``; never through a symlink.

    Returns the directories created, whose parents must be fsynced to make
    them durable (see :func:`archiver.durable.fsync_parents`).
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
                    _("{current} exists and is not a directory (or is a symlink); move it "
                      "away and rerun").format(current=current)
                ) from None
    return created


def open_new(path: str | os.PathLike[str]) -> int:
    """Open a new file for writing, 0600, refusing to follow a planted symlink."""
    return os.open(path, platform.file_flags(os.O_WRONLY | os.O_CREAT | os.O_TRUNC), FILE_MODE)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def hash_file(path: str | os.PathLike[str], head_bytes: int = 0) -> tuple[str, int, bytes]:
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


def hold_lock(path: Path, busy: str) -> IO[bytes]:
    """Open (0600) and lock ``path`` until the returned file is closed; LockedError if held.

    ``busy`` is the message for the user when another archiver holds it.
    """
    from archiver.errors import LockedError

    with translate_os_errors(_("locking {path}").format(path=path)):
        fh = open(path, "ab")  # noqa: SIM115 - returned to the caller, who closes it
        platform.make_private(path, FILE_MODE)
    if not platform.lock_file(fh):
        fh.close()
        raise LockedError(busy)
    return fh


def describe_os_error(what: str, exc: OSError) -> str:
    """One line for an OSError met on the destination: what failed, why, and the fix."""
    name = f" ({exc.filename})" if exc.filename else ""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return _("{what}: the destination is full ({reason}); free some space and run the "
                 "same command again").format(what=what, reason=exc.strerror)
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return _("{what}: cannot write ({reason}: {path}); choose a writable destination or "
                 "fix its permissions").format(what=what, reason=exc.strerror,
                                               path=exc.filename)
    if code == errno.ELOOP:
        # O_NOFOLLOW (or the mbox store's own check) met a planted symlink.
        return _("{what}: {path} is a symbolic link; archiver never writes through one: "
                 "remove it (check who planted it) and run the same command again").format(
                     what=what, path=exc.filename)
    if code == errno.ENOENT:
        return _("{what}: {path} disappeared while archiving; check the destination and run "
                 "the same command again").format(what=what, path=exc.filename)
    if code == errno.EIO:
        return _("{what}: the disk reported an input/output error{name}; what was recorded "
                 "before is safe, this batch was not recorded: check the disk or stick (and "
                 "its cable), then run the same command again").format(what=what, name=name)
    if code in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        return _("{what}: the destination's file system refused a name or an operation "
                 "({reason}){name}; use a destination on a local disk formatted ext4, APFS "
                 "or NTFS, or report this if it is one").format(what=what,
                                                                reason=exc.strerror, name=name)
    return _("{what}: {reason}{name}; check the destination and run the same command "
             "again").format(what=what, reason=exc.strerror or exc, name=name)


@contextlib.contextmanager
def translate_os_errors(what: str) -> Iterator[None]:
    """Every OSError on the destination becomes a one-line DestinationError (exit 6)."""
    try:
        yield
    except OSError as exc:
        raise DestinationError(describe_os_error(what, exc)) from exc
