"""``archiver unpack``: a pack back into the archive tree it was made from, byte for byte.

The tree is written into a hidden directory beside DEST, every file checked
against its SHA-256 as it is written, made durable (each file fsynced, then the
directories), and only then renamed to DEST: an interrupted or failed unpack
leaves no half tree under DEST's name.  DEST must not exist or be an empty
directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from archiver import platform
from archiver.durable import fsync, fsync_dir
from archiver.errors import DestinationError
from archiver.fsutil import DIR_MODE, FILE_MODE, open_new, translate_os_errors, write_all
from archiver.i18n import _
from archiver.pack.reader import PackDamaged, PackReader, open_pack


@dataclass
class UnpackReport:
    files: int = 0
    dirs: int = 0
    bytes: int = 0


def _safe_rel(rel: str) -> list[str]:
    """The components of a path from the pack, refusing any that would leave DEST."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\\" in rel or "\0" in rel:
        raise DestinationError(_("the pack names the path '{path}', which would leave the "
                                 "destination: refusing it").format(path=rel))
    return parts


def unpack(pack: Path, dest: Path) -> UnpackReport:
    """Write the tree held by ``pack`` into ``dest`` (new or empty)."""
    reader = open_pack(pack)
    dest = Path(os.path.abspath(dest))  # "." or "out/" has a name and a parent too
    with translate_os_errors(_("checking {path}").format(path=dest)):
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise DestinationError(_("{dest} is not empty: unpack into a new or empty "
                                     "directory").format(dest=dest))
        parent = dest.parent
        parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    stage = parent / f".{dest.name}.unpacking"
    report = UnpackReport()
    with translate_os_errors(_("writing {path}").format(path=stage)):
        if stage.exists():  # left by an interrupted unpack: ours, started over
            shutil.rmtree(stage)
        stage.mkdir(mode=DIR_MODE)
        try:
            _write_tree(reader, stage, report)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(stage, dest)
        fsync_dir(parent)
    return report


def _write_tree(reader: PackReader, stage: Path, report: UnpackReport) -> None:
    index = reader.index
    for d in index.dirs:
        path = stage.joinpath(*_safe_rel(d.path))
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        report.dirs += 1
    for m in index.files:  # in stream order: each frame is decompressed once
        path = stage.joinpath(*_safe_rel(m.path))
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = open_new(path)
        try:
            digest = hashlib.sha256()
            for piece in reader.iter_range(m.start, m.size):
                digest.update(piece)
                write_all(fd, piece)
            if digest.hexdigest() != m.sha256:
                raise PackDamaged(_("{pack} is damaged: {path} fails its checksum; use "
                                    "another copy of the pack").format(pack=reader.path,
                                                                       path=m.path))
            fsync(fd)
        finally:
            os.close(fd)
        platform.make_private(path, (m.mode & 0o777) or FILE_MODE)
        os.utime(path, ns=(m.mtime_ns, m.mtime_ns))
        report.files += 1
        report.bytes += m.size
    # directories last, deepest first: their mtimes after their files were made
    for d in sorted(index.dirs, key=lambda d: d.path.count("/"), reverse=True):
        path = stage.joinpath(*d.path.split("/"))
        fsync_dir(path)
        platform.make_private(path, (d.mode & 0o777) or DIR_MODE)
        os.utime(path, ns=(d.mtime_ns, d.mtime_ns))
    fsync_dir(stage)
