"""Which archives the page can show, and each one's index read once per process.

URLs never carry a file system path: every archive the page knows gets a
short key (``1``, ``2``, ...) in a :class:`Registry` -- the DEST given on the
command line, the archives found in the default folder, and those a guided
backup writes -- and a URL names the key.  So a crafted URL cannot make the
server open a directory nobody chose.

:class:`Browsable` is the catalogue (:mod:`archiver.offline.catalog`, the
same read as ``archiver ls``/``search``/``show``) kept in memory with the
lookups the pages need: each folder's messages sorted newest first, and the
copies of each message by SHA-256.  Reading the index of a 100k-message
archive takes seconds; the pages then slice lists.  It is read again when the
index file's size or mtime changes (a backup appended to it).
"""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from archiver.archive import META_DIR, Archive
from archiver.offline.catalog import Catalog, Item, load
from archiver.reading import open_archive
from archiver.state import FolderEntry

ARCHIVES_ENV = "ARCHIVER_UI_HOME"  # the default folder (tests point it elsewhere)


def default_home() -> Path:
    """Where new archives go and where the start page looks: ``Documents/MailArchive``."""
    explicit = os.environ.get(ARCHIVES_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_documents_dir()) / "MailArchive"


def is_archive(path: Path) -> bool:
    try:
        return (path / META_DIR / "archive.json").is_file()
    except OSError:
        return False


@dataclass
class FolderRow:
    """One line of the folder tree."""

    name: str  # the full decoded name ("受信箱/講義"); None-like "" for a bare parent
    label: str  # the last component, shown indented
    depth: int
    messages: int
    unread: int
    exists: bool  # False: a parent shown only to hold its children


@dataclass
class Browsable:
    """One archive's catalogue, read once, with the lookups the pages use."""

    archive: Archive
    catalog: Catalog
    stamp: tuple[int, int]
    by_folder: dict[str, list[Item]] = field(default_factory=dict)  # newest first
    by_sha: dict[str, list[Item]] = field(default_factory=dict)
    total_bytes: int = 0
    _rows: Optional[list[FolderRow]] = None

    @classmethod
    def read(cls, path: Path) -> Browsable:
        gc_was_on = gc.isenabled()
        gc.disable()  # as catalog.load: 100k new objects, no cycles; collections only cost time
        try:
            return cls._read(path)
        finally:
            if gc_was_on:
                gc.enable()

    @classmethod
    def _read(cls, path: Path) -> Browsable:
        archive = open_archive(path)
        stamp = _stamp(archive.index_path)
        catalog = load(archive)
        out = cls(archive, catalog, stamp)
        for item in catalog.items:
            out.by_folder.setdefault(item.folder, []).append(item)
            out.by_sha.setdefault(item.entry.sha256, []).append(item)
        for items in out.by_folder.values():
            items.sort(key=lambda i: (i.date or "", i.entry.path), reverse=True)
        out.total_bytes = sum(i.entry.size for i in catalog.items)
        out._rows = out._folder_rows()
        return out

    def folder_rows(self) -> list[FolderRow]:
        """The folders as an indented tree (INBOX first), parents filled in."""
        if self._rows is None:
            self._rows = self._folder_rows()
        return self._rows

    def _folder_rows(self) -> list[FolderRow]:
        folders: dict[str, FolderEntry] = self.catalog.state.folders
        rows: list[FolderRow] = []
        seen: set[str] = set()
        names = sorted(folders, key=lambda n: (n.upper() != "INBOX", n))
        for name in names:
            sep = folders[name].separator or "/"
            parts = name.split(sep) if sep else [name]
            for depth in range(1, len(parts)):
                parent = sep.join(parts[:depth])
                if parent not in seen and parent not in folders:
                    seen.add(parent)
                    rows.append(FolderRow(parent, parts[depth - 1], depth - 1, 0, 0, False))
            seen.add(name)
            items = self.by_folder.get(name, [])
            unread = sum(1 for i in items if "\\Seen" not in i.entry.flags)
            rows.append(FolderRow(name, parts[-1], len(parts) - 1, len(items), unread, True))
        return rows

    def find_folder(self, name: str) -> Optional[str]:
        if name in self.catalog.state.folders:
            return name
        return None


def _stamp(index: Path) -> tuple[int, int]:
    try:
        st = index.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


class Registry:
    """Archive keys <-> directories, and each archive's cached :class:`Browsable`."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}
        self._cache: dict[str, Browsable] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def register(self, path: Path) -> str:
        """The key of ``path`` (a new one the first time it is seen)."""
        path = path.expanduser().resolve()
        with self._lock:
            for key, known in self._paths.items():
                if known == path:
                    return key
            key = str(len(self._paths) + 1)
            self._paths[key] = path
            return key

    def path(self, key: str) -> Optional[Path]:
        return self._paths.get(key)

    def known(self) -> list[tuple[str, Path]]:
        return list(self._paths.items())

    def scan(self, home: Path) -> list[tuple[str, Path]]:
        """Register the archives in ``home`` (and ``home`` itself if it is one); all known."""
        found: list[Path] = []
        if is_archive(home):
            found.append(home)
        try:
            found.extend(sorted(p for p in home.iterdir() if p.is_dir() and is_archive(p)))
        except OSError:
            pass
        for path in found:
            self.register(path)
        return self.known()

    def browsable(self, key: str) -> Optional[Browsable]:
        """The archive's catalogue: cached, read again when its index changed."""
        path = self._paths.get(key)
        if path is None or not is_archive(path):
            return None
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one reader per archive; the others wait for its result
            cached = self._cache.get(key)
            if cached is not None and cached.stamp == _stamp(cached.archive.index_path):
                return cached
            fresh = Browsable.read(path)
            self._cache[key] = fresh
            return fresh

    def forget(self, key: str) -> None:
        """Drop the cached catalogue (a backup wrote to the archive)."""
        self._cache.pop(key, None)
