"""``archiver export``: copy an archive into another form, never changing it.

Forms (one module each): ``thunderbird`` (a "Local Folders" tree of mbox
files), ``mbox`` (mboxrd files in the same tree shape), ``maildir`` (a plain
Maildir tree) and ``eml`` (one ``.eml`` file per message).  Messages are read
only through ``open_store(archive.dest, archive.format).message_chunks(entry)``,
so every archive format exports the same way.

Constant memory: the index is read record by record into the folded state
plus, per message, only what the form needs beyond it (the Date header when
there is no INTERNALDATE; the subject for ``eml``), and each message is
copied in chunks (:mod:`archiver.export.framing`), never held whole.  A
message that cannot be read is reported and whatever of it was written is
taken back.

OUT must not exist or be an empty directory (and must not lie inside the
archive): an export never mixes with other files, and a second export never
half-overwrites the first.  Files are created ``0600`` and directories
``0700`` (it is private mail); the run ends with ``sync()``.

This module holds what the forms share: the message list in a stable order,
dates, output files and file names that are safe on Windows and macOS.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Optional, Protocol

from archiver.archive import Archive
from archiver.errors import DestinationError, UsageError
from archiver.export.framing import Message, Unreadable
from archiver.export.framing import mbox_entry as mbox_entry  # re-exported for the forms
from archiver.fsutil import DIR_MODE, open_new, set_mtime, translate_os_errors, write_all
from archiver.index import POP3_UIDVALIDITY
from archiver.offline.catalog import Item
from archiver.state import FolderEntry, record_key
from archiver.stores.mboxrd import quote, unquote

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

    def add(self, item: Item, msg: Message) -> None:
        """Write one message; if ``msg`` turns out :class:`Unreadable`, leave no trace of it."""


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


_NOTHING: dict[str, Any] = {}  # the (shared, never changed) notes of most messages


def plan(archive: Archive, kind: str = "thunderbird") -> list[FolderJob]:
    """Every folder (implied parents too), parents first, messages in a stable order:
    IMAP messages by (UIDVALIDITY, UID) -- the server's order -- then POP3 ones by date.

    The index is folded record by record; of a ``msg`` record only what
    ``kind`` needs beyond the folded state is kept (see :func:`_notes`).
    """
    notes: dict[tuple[str, int, int], dict[str, Any]] = {}

    def keep(rec: dict[str, Any]) -> None:  # checked by the fold: a folder and a key
        if rec.get("type") == "msg":
            key = (rec["folder"], *record_key(rec))
            note = _notes(rec, kind)
            if note:
                notes[key] = note
            else:
                notes.pop(key, None)

    gc_was_on = gc.isenabled()
    gc.disable()  # tens of thousands of new objects, no cycles: collections only cost time
    try:
        state = archive.read_state(also=keep)
    finally:
        if gc_was_on:
            gc.enable()
    names = set(state.folders)
    for name in list(names):
        parts = name.split("/")
        for i in range(1, len(parts)):
            names.add("/".join(parts[:i]))
    jobs = []
    for name in sorted(names, key=lambda n: n.split("/")):
        folder = state.folders.get(name)
        items = []
        for (uv, uid), entry in (folder.messages.items() if folder else ()):
            if entry.counted and entry.sha256:  # a linked POP3 sight goes as its IMAP twin
                items.append(Item(entry, notes.get((name, uv, uid), _NOTHING)))
        items.sort(key=_order)
        jobs.append(FolderJob(name, folder, items))
    return jobs


def _notes(rec: dict[str, Any], kind: str) -> dict[str, Any]:
    """What an export needs of a ``msg`` record besides the folded state: the Date
    header when INTERNALDATE does not parse (see :func:`received`), the subject
    for ``eml`` names."""
    note: dict[str, Any] = {}
    if parse_when(rec.get("internaldate")) is None and isinstance(rec.get("date"), str):
        note["date"] = rec["date"]
    if kind == "eml" and isinstance(rec.get("subject"), str):
        note["subject"] = rec["subject"]
    return note


def _order(item: Item) -> tuple[int, str, int, int]:
    e = item.entry
    pop3 = e.uidvalidity == POP3_UIDVALIDITY
    return (1 if pop3 else 0, (e.internaldate or "") if pop3 else "", e.uidvalidity, e.uid)


def export_archive(archive: Archive, out: Path, kind: str) -> ExportReport:
    """Write every archived message of ``archive`` into ``out`` in form ``kind``."""
    if kind not in KINDS:
        raise UsageError(f"unknown export form '{kind}': choose one of {', '.join(KINDS)}")
    from archiver.stores import open_store

    jobs = plan(archive, kind)
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
                        msg = Message.archived(store, item.entry)
                        writer.add(item, msg)
                    except Unreadable as exc:
                        report.problems.append(f"{item.folder}: message {item.id} "
                                               f"({item.entry.path}) unreadable: {exc}")
                        continue
                    report.messages += 1
                    report.bytes += msg.copied
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


# ---------------------------------------------------------------- mbox framing

# One mboxrd implementation for the store and the exports.
mboxrd_quote = quote
mboxrd_unquote = unquote


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
