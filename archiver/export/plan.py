"""What an export writes, in which order: the folders (implied parents too) and
their messages, read from the index in constant memory, and the report.

Kept apart from the run (:mod:`archiver.export`) so that the forms that need
the plan (:mod:`archiver.export.install`) import it without importing the run.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from archiver.archive import Archive
from archiver.export.common import FolderJob, parse_when
from archiver.index import POP3_UIDVALIDITY
from archiver.offline.catalog import Item
from archiver.state import record_key


@dataclass
class ExportReport:
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


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
