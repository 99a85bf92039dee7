"""``archiver export``: copy an archive into another form, never changing it.

Forms (one module each): ``thunderbird`` (a "Local Folders" tree of mbox
files), ``mbox`` (mboxrd files in the same tree shape), ``maildir`` (a plain
Maildir tree) and ``eml`` (one ``.eml`` file per message).  Messages are read
only through ``open_store(archive.dest, archive.format).read_message(entry)``,
so every archive format exports the same way.

OUT must not exist or be an empty directory (and must not lie inside the
archive): an export never mixes with other files, and a second export never
half-overwrites the first.  Files are created ``0600`` and directories
``0700`` (it is private mail); the run ends with ``sync()``.

This module holds what the forms share: the message list in a stable order,
dates, mbox framing (``From `` lines, mboxrd quoting) and file names that are
safe on Windows and macOS.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Optional, Protocol

from archiver.archive import Archive
from archiver.errors import DestinationError, UsageError
from archiver.fsutil import DIR_MODE, open_new, set_mtime, translate_os_errors, write_all
from archiver.index import POP3_UIDVALIDITY
from archiver.offline.catalog import Item, load
from archiver.state import FolderEntry
from archiver.stores.mbox import quote, unquote

KINDS = ("thunderbird", "mbox", "maildir", "eml")


@dataclass
class ExportReport:
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


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
        if self.entry is None:
            return False
        return not any(a.lower() == "\\noselect" for a in self.entry.attributes)


class Writer(Protocol):
    def folders(self, jobs: list[FolderJob]) -> None:
        """Create the folder tree (every folder, parents and empty ones included)."""

    def begin(self, job: FolderJob) -> None: ...

    def add(self, item: Item, data: bytes) -> None: ...

    def end(self) -> None: ...


# ---------------------------------------------------------------- the run


def check_out(out: Path, dest: Path) -> None:
    """OUT must be new or an empty directory, outside the archive (else exit 6)."""
    real_out, real_dest = out.resolve(), dest.resolve()
    if real_out == real_dest or real_dest in real_out.parents:
        raise DestinationError(f"{out} is inside the archive {dest}: export writes "
                               "elsewhere; choose a directory outside it")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DestinationError(f"{out} exists and is not a directory: choose a new or "
                                   "empty directory for the export")
        if any(out.iterdir()):
            raise DestinationError(f"{out} is not empty: export writes only into a new or "
                                   "empty directory; choose another one or empty it")
    else:
        with translate_os_errors(f"creating {out}"):
            out.mkdir(mode=DIR_MODE, parents=True)


def plan(archive: Archive) -> list[FolderJob]:
    """Every folder (implied parents too), parents first, messages in a stable order:
    IMAP messages by (UIDVALIDITY, UID) -- the server's order -- then POP3 ones by date."""
    cat = load(archive)
    by_folder: dict[str, list[Item]] = {}
    for item in cat.items:
        by_folder.setdefault(item.folder, []).append(item)
    names = set(cat.state.folders)
    for name in list(names):
        parts = name.split("/")
        for i in range(1, len(parts)):
            names.add("/".join(parts[:i]))
    jobs = []
    for name in sorted(names, key=lambda n: n.split("/")):
        items = by_folder.get(name, [])
        items.sort(key=_order)
        jobs.append(FolderJob(name, cat.state.folders.get(name), items))
    return jobs


def _order(item: Item) -> tuple[int, str, int, int]:
    e = item.entry
    pop3 = e.uidvalidity == POP3_UIDVALIDITY
    return (1 if pop3 else 0, item.text("internaldate") if pop3 else "", e.uidvalidity, e.uid)


def export_archive(archive: Archive, out: Path, kind: str) -> ExportReport:
    """Write every archived message of ``archive`` into ``out`` in form ``kind``."""
    if kind not in KINDS:
        raise UsageError(f"unknown export form '{kind}': choose one of {', '.join(KINDS)}")
    from archiver.stores import open_store

    jobs = plan(archive)
    check_out(out, archive.dest)
    writer = _writer(kind, out)
    report = ExportReport()
    store = open_store(archive.dest, archive.format)
    try:
        with translate_os_errors(f"writing into {out}"):
            writer.folders(jobs)
            for job in jobs:
                writer.begin(job)
                report.folders += 1
                for item in job.items:
                    try:
                        data = bytes(store.read_message(item.entry))
                    except (OSError, ValueError) as exc:
                        report.problems.append(f"{item.folder}: message {item.id} "
                                               f"({item.entry.path}) unreadable: "
                                               f"{getattr(exc, 'strerror', None) or exc}")
                        continue
                    writer.add(item, data)
                    report.messages += 1
                    report.bytes += len(data)
                writer.end()
    finally:
        store.close()
    if hasattr(os, "sync"):
        os.sync()  # "done" means on disk (one call; per-file fsyncs cost ~1 ms each)
    return report


def _writer(kind: str, out: Path) -> Writer:
    if kind == "thunderbird":
        from archiver.export.thunderbird import ThunderbirdWriter

        return ThunderbirdWriter(out)
    if kind == "mbox":
        from archiver.export.mbox import MboxWriter

        return MboxWriter(out)
    if kind == "maildir":
        from archiver.export.maildir import MaildirWriter

        return MaildirWriter(out)
    from archiver.export.eml import EmlWriter

    return EmlWriter(out)


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
    return parse_when(item.rec.get("internaldate")) or parse_when(item.rec.get("date"))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def asctime_utc(when: Optional[datetime]) -> str:
    """``Thu Jan  1 00:00:00 1970`` (C asctime, English names whatever the locale)."""
    d = (when or EPOCH).astimezone(timezone.utc)
    return (f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:2d} "
            f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {d.year}")


def write_message_file(path: Path, data: bytes, when: Optional[datetime]) -> None:
    """One exported message as a new 0600 file, its mtime the received date.

    Not fsynced one by one: an export syncs once at the end.
    """
    fd = open_new(path)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    set_mtime(path, when)


# ---------------------------------------------------------------- mbox framing

# One mboxrd implementation for the store and the exports.
mboxrd_quote = quote
mboxrd_unquote = unquote


def line_end(data: bytes) -> bytes:
    """The message's own line end: CRLF if its first LF follows a CR, else LF."""
    i = data.find(b"\n")
    return b"\r\n" if i > 0 and data[i - 1 : i] == b"\r" else b"\n"


_LF_EMPTY_LINE = re.compile(rb"(?:^|\n)\n")


def mbox_entry(from_line: str, data: bytes, extra_headers: Iterable[str] = (), *,
               lf_blank_line: bool = False) -> bytes:
    """One mbox entry: the ``From `` line (LF), ``extra_headers`` (in the message's own
    line ends), the mboxrd-quoted message, its final line end if it lacked one, and
    the separating empty line (LF).

    ``lf_blank_line``: if the message has no LF-only empty line (every CRLF
    message), add a second empty line.  GNU mailutils ends a header only at an
    LF-only empty line and does not look for ``From `` lines before that, so it
    would take the next message for part of this one.
    """
    eol = line_end(data)
    head = b"".join(h.encode("utf-8") + eol for h in extra_headers)
    body = mboxrd_quote(data)
    if body and not body.endswith(b"\n"):
        body += eol
    sep = b"\n\n" if lf_blank_line and not _LF_EMPTY_LINE.search(head + body) else b"\n"
    return from_line.encode("ascii", "replace") + b"\n" + head + body + sep


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
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}
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
    if name.split(".")[0].upper() in _RESERVED:
        name = name + "_"
    return name


def _cut(text: str, max_chars: int, max_bytes: int) -> str:
    text = text[:max_chars]
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1]
    return text


def fold(name: str) -> str:
    """Names a case-insensitive, normalising file system (Windows, macOS) treats as one."""
    return unicodedata.normalize("NFC", name).casefold()


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
