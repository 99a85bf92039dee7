"""``archiver export``: copy an archive into another form, never changing it.

Forms (one module each): ``thunderbird`` (a "Local Folders" tree of mbox
files wrapped in one folder, written by :mod:`~archiver.export.install`),
``mbox`` (mboxrd files in the same tree shape), ``maildir`` (a plain
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

This module holds the run: the message list in a stable order and the
choice of form; :mod:`archiver.export.common` what the forms share (dates,
output files, file names that are safe on Windows and macOS).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from archiver import platform
from archiver.archive import Archive
from archiver.errors import DestinationError, UsageError
from archiver.export.common import FolderJob, Writer, parse_when
from archiver.export.framing import Message, Unreadable
from archiver.fsutil import DIR_MODE, translate_os_errors
from archiver.i18n import _
from archiver.index import POP3_UIDVALIDITY
from archiver.offline.catalog import Item
from archiver.state import record_key

KINDS = ("thunderbird", "mbox", "maildir", "eml")


@dataclass
class ExportReport:
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def check_out(out: Path, dest: Path) -> None:
    """OUT must be new or an empty directory, outside the archive (else exit 6)."""
    real_out, real_dest = out.resolve(), dest.resolve()
    if real_out == real_dest or real_dest in real_out.parents:
        raise DestinationError(_("{out} is inside the archive {dest}: export writes "
                                 "elsewhere; choose a directory outside it").format(
                                 out=out, dest=dest))
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DestinationError(_("{out} exists and is not a directory: choose a new or "
                                     "empty directory for the export").format(out=out))
        if any(out.iterdir()):
            raise DestinationError(_("{out} is not empty: export writes only into a new or "
                                     "empty directory; choose another one or empty it").format(
                                     out=out))
    else:
        with translate_os_errors(_("creating {path}").format(path=out)):
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


def export_archive(archive: Archive, out: Path, kind: str,
                   portable: bool = False, name: Optional[str] = None) -> ExportReport:
    """Write every archived message of ``archive`` into ``out`` in form ``kind``.

    ``portable`` (maildir): name files with ``;2,`` even where OUT takes ``:``.
    ``name`` (thunderbird): the wrapping folder (:mod:`archiver.export.install`).
    """
    if kind not in KINDS:
        raise UsageError(_("unknown export form '{kind}': choose one of {names}").format(
                           kind=kind, names=', '.join(KINDS)))
    from archiver.stores import open_store

    if kind == "thunderbird":
        from archiver.export.install import default_name, install

        check_out(out, archive.dest)
        wrapped = install(archive, out, name or default_name(archive))
        platform.sync_tree(out)
        return wrapped

    jobs = plan(archive, kind)
    check_out(out, archive.dest)
    writer = _writer(kind, out, portable)
    report = ExportReport()
    store = open_store(archive.dest, archive.format)
    try:
        with translate_os_errors(_("writing into {path}").format(path=out)):
            writer.folders(jobs)
            for job in jobs:
                writer.begin(job)
                report.folders += 1
                for item in job.items:
                    try:
                        msg = Message.archived(store, item.entry)
                        writer.add(item, msg)
                    except Unreadable as exc:
                        report.problems.append(_("{folder}: message {id} ({path}) unreadable: "
                                                 "{exc}").format(
                                                 folder=item.folder, id=item.id,
                                                 path=item.entry.path, exc=exc))
                        continue
                    report.messages += 1
                    report.bytes += msg.copied
                writer.end()
    finally:
        store.close()
    platform.sync_tree(out)  # "done" means on disk (one os.sync where there is one)
    return report


def _writer(kind: str, out: Path, portable: bool = False) -> Writer:
    if kind == "mbox":
        from archiver.export.mbox import MboxWriter

        return MboxWriter(out)
    if kind == "maildir":
        from archiver.export.maildir import MaildirWriter
        from archiver.naming import probe

        with translate_os_errors(_("writing into {out}").format(out=out)):
            naming = probe(out, portable)  # OUT is new or empty: its own file system decides
        return MaildirWriter(out, naming.delimiter)
    from archiver.export.eml import EmlWriter

    return EmlWriter(out)


