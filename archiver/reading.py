"""Open an archive to read it, wherever it lives: a directory or a pack.

Readers (``ls``, ``search``, ``show``, ``export``, ``restore``, ``verify``,
the web page) take either; this is the one place that tells them apart, so
:mod:`archiver.archive` does not import the pack modules that build on it.
"""

from __future__ import annotations

from pathlib import Path

from archiver.archive import Archive
from archiver.pack.reader import is_pack


def open_archive(dest: Path) -> Archive:
    """The archive at ``dest`` for reading, no lock: a directory
    (:meth:`Archive.open_existing`) or a pack read in place
    (:class:`archiver.pack.view.PackedArchive`, which refuses writing)."""
    if is_pack(dest):
        from archiver.pack.view import PackedArchive

        return PackedArchive(dest)
    return Archive.open_existing(dest)
