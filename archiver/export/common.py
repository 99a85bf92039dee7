"""What the export forms share: folder jobs, dates, output files, safe file names.

Used by :mod:`archiver.export` (the run) and by each form
(:mod:`~archiver.export.thunderbird`, :mod:`~archiver.export.mbox`,
:mod:`~archiver.export.maildir`, :mod:`~archiver.export.eml`), which import
this module, never the package, so no form depends on the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Optional, Protocol

from archiver.export.framing import Message, Unreadable
from archiver.fsutil import DIR_MODE, open_new, set_mtime, write_all
from archiver.names import fold_key, is_device_name
from archiver.offline.catalog import Item
from archiver.state import FolderEntry


@dataclass
class FolderJob:
    """One folder to export: its logical name, index entry (if any) and messages."""

    name: str
    entry: Optional[FolderEntry]  # None: a parent implied by its children's names
    items: list[Item]

    @property
    def components(self) -> list[str]:
        return self.name.split("/")

    @property
    def selectable(self) -> bool:
        return self.entry is not None and not self.entry.parent_only


class Writer(Protocol):
    def folders(self, jobs: list[FolderJob]) -> None:
        """Create the folder tree (every folder, parents and empty ones included)."""

    def begin(self, job: FolderJob) -> None: ...

    def add(self, item: Item, msg: Message) -> None:
        """Write one message; if ``msg`` turns out :class:`Unreadable`, leave no trace of it."""


    def end(self) -> None: ...


# ---------------------------------------------------------------- the run


# ---------------------------------------------------------------- dates


def parse_when(value: object) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def received(item: Item) -> Optional[datetime]:
    """INTERNALDATE, else the Date header, else None (never the current time)."""
    return parse_when(item.entry.internaldate) or parse_when(item.rec.get("date"))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def asctime_utc(when: Optional[datetime]) -> str:
    """``Thu Jan  1 00:00:00 1970`` (C asctime, English names whatever the locale)."""
    d = (when or EPOCH).astimezone(timezone.utc)
    return (f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:2d} "
            f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {d.year}")


def write_message_file(path: Path, msg: Message, when: Optional[datetime]) -> None:
    """One exported message as a new 0600 file, its mtime the received date.

    Not fsynced one by one: an export syncs once at the end.  A message that
    turns out unreadable half way leaves no file behind.
    """
    fd = open_new(path)
    try:
        for chunk in msg.chunks():
            write_all(fd, chunk)
    except Unreadable:
        os.close(fd)
        fd = -1
        path.unlink()
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    set_mtime(path, when)


class FolderFiles:
    """One open output file per folder, created with :func:`open_new` (0600, no symlinks)."""

    def __init__(self) -> None:
        self.fh: Optional[BinaryIO] = None

    def open(self, path: Path) -> None:
        self.close()
        self.fh = os.fdopen(open_new(path), "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        assert self.fh is not None
        self.fh.write(data)

    @contextlib.contextmanager
    def entry(self) -> Iterator[None]:
        """Write one message; if it turns out unreadable, cut the file back to before it."""
        assert self.fh is not None
        start = self.fh.tell()
        try:
            yield
        except Unreadable:
            self.fh.flush()
            self.fh.truncate(start)
            self.fh.seek(start)
            raise

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def make_dirs(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def touch(path: Path) -> None:
    if not path.exists():
        os.close(open_new(path))


# ---------------------------------------------------------------- safe names

_UNSAFE = set('<>:"/\\|?*')
MAX_NAME_CHARS = 150
MAX_NAME_BYTES = 240  # ext4 and most others: 255 bytes per name


def safe_name(text: str, *, max_chars: int = 100, max_bytes: int = 200) -> str:
    """A file/directory name that is valid on Windows, macOS and Linux.

    Keeps Japanese and other letters; replaces only ``<>:"/\\|?*``, control
    characters and lone surrogates (with ``_``), a leading ``.``, a trailing
    ``.`` or space, and Windows device names (``CON``...); NFC; cut to
    ``max_chars`` characters and ``max_bytes`` UTF-8 bytes.
    """
    text = unicodedata.normalize("NFC", text)
    chars = ["_" if (c in _UNSAFE or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F
                     or 0xD800 <= ord(c) <= 0xDFFF) else c for c in text]
    name = "".join(chars)
    name = _cut(name, max_chars, max_bytes)
    if name.startswith("."):
        name = "_" + name[1:]
    name = re.sub(r"[. ]+$", lambda m: "_" * len(m.group(0)), name)
    if not name:
        name = "_"
    if is_device_name(name):  # CON, nul.txt: "CON_", "nul_.txt" (the extension kept)
        stem, dot, rest = name.partition(".")
        name = stem + "_" + dot + rest
    return name


def _cut(text: str, max_chars: int, max_bytes: int) -> str:
    text = text[:max_chars]
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1]
    return text


def fold(name: str) -> str:
    """Names a case-insensitive, normalising file system (Windows, macOS) treats as one."""
    return fold_key(name)


class NameSpace:
    """Hands out names unique within one directory (compared with :func:`fold`)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, base: str, ext: str = "", also: Iterable[str] = ()) -> str:
        """``base + ext``, or ``base (2) + ext``, ...; ``also`` are suffixes to reserve
        with it (``.sbd``: a folder's file and its children's directory)."""
        n = 1
        while True:
            name = base + ext if n == 1 else f"{base} ({n}){ext}"
            keys = [fold(name)] + [fold(name + a) for a in also]
            if not any(k in self.taken for k in keys):
                self.taken.update(keys)
                return name
            n += 1


def tree_names(jobs: list[FolderJob], reserve: Iterable[str] = ()) -> dict[str, list[str]]:
    """Each folder's safe path components, unique per directory (parents first)."""
    also = list(reserve)
    spaces: dict[tuple[str, ...], NameSpace] = {}
    out: dict[str, list[str]] = {}
    for job in jobs:
        comps = job.components
        parent = "/".join(comps[:-1])
        parent_path = out.get(parent, []) if len(comps) > 1 else []
        base = safe_name(comps[-1])
        if any(fold(base).endswith(s) for s in (".msf", ".sbd")):
            base += "_"  # Thunderbird would take it for an index or a children directory
        name = spaces.setdefault(tuple(parent_path), NameSpace()).claim(base, also=also)
        out[job.name] = [*parent_path, name]
    return out
