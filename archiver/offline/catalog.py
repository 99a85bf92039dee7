"""The catalogue: every archived message with its latest state and its ``msg`` record.

Read once from the index; shared by ``search``, ``show`` and ``export``.  The
``msg`` record holds the decoded From/To/Subject/Date, so listing and
searching need nothing but the index.
"""

from __future__ import annotations

import gc
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Optional

from archiver.archive import Archive
from archiver.state import IndexState, MessageEntry, record_key

SHORT_ID = 12  # the short IDs `archiver ls` prints
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")



def normalise(text: str) -> str:
    """NFKC + case folding: what both the needle and the haystack of a search go through
    (here, below :class:`Item`'s kept haystack, so search imports the catalogue only)."""
    return unicodedata.normalize("NFKC", text).casefold()

@dataclass
class Item:
    """One archived message: its latest index state and its ``msg`` record."""

    entry: MessageEntry
    rec: dict[str, Any]

    @property
    def id(self) -> str:
        return self.entry.sha256[:SHORT_ID]

    @property
    def folder(self) -> str:
        return self.entry.folder

    @cached_property
    def date(self) -> Optional[str]:
        """What ``ls`` shows: the Date header when it parsed (ISO), else INTERNALDATE."""
        value = self.rec.get("date")
        if isinstance(value, str) and _ISO_DAY.match(value):
            return value
        idate = self.rec.get("internaldate")
        return idate if isinstance(idate, str) else (value if isinstance(value, str) else None)

    @cached_property
    def day(self) -> Optional[str]:
        d = self.date
        return d[:10] if d and _ISO_DAY.match(d) else None

    def text(self, key: str) -> str:
        value = self.rec.get(key)
        return value if isinstance(value, str) else ""

    @cached_property
    def haystack(self) -> str:
        """Subject, sender and recipients as ``search`` matches them (normalised, NUL
        between the fields so that no match spans two).  Kept: ``archiver ui`` keeps the
        catalogue in memory and searches it again and again."""
        return normalise("\0".join((self.text("subject"), self.text("from"), self.text("to"))))


@dataclass
class Catalog:
    """The index read once: the folded state and every counted message with its record."""

    state: IndexState
    items: list[Item]


def load(archive: Archive, *, include_linked: bool = False) -> Catalog:
    """Read the index once: the records build the state and give each message its
    ``msg`` record (decoded headers, INTERNALDATE).  POP3 sights linked to an IMAP
    copy (the same message, one file) are left out unless ``include_linked``."""
    gc_was_on = gc.isenabled()
    gc.disable()  # tens of thousands of new objects, no cycles: collections only cost time
    try:
        return _load(archive, include_linked)
    finally:
        if gc_was_on:
            gc.enable()


def _load(archive: Archive, include_linked: bool) -> Catalog:
    msgs: dict[tuple[str, int, int], dict[str, Any]] = {}

    def keep(rec: dict[str, Any]) -> None:
        if rec.get("type") == "msg":  # checked by the fold: it has a folder and a key
            msgs[(rec["folder"], *record_key(rec))] = rec

    state = archive.read_state(also=keep)
    out: list[Item] = []
    for folder in state.folders.values():
        name = folder.name
        for (uv, uid), entry in folder.messages.items():
            if (not entry.counted and not include_linked) or not entry.sha256:
                continue
            out.append(Item(entry, msgs.get((name, uv, uid), {})))
    return Catalog(state, out)


def catalog(archive: Archive) -> list[Item]:
    """Every archived message (latest state, linked POP3 sights left out)."""
    return load(archive).items
