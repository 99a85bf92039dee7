"""The catalogue: every archived message with its latest state and its ``msg`` record.

Read once from the index; shared by ``search``, ``show`` and ``export``.  The
``msg`` record holds the decoded From/To/Subject/Date, so listing and
searching need nothing but the index.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from archiver.archive import Archive
from archiver.index import POP3_UIDVALIDITY, IndexState, MessageEntry, _frames, uid_for_uidl

SHORT_ID = 12  # the short IDs `archiver ls` prints
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


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


def record_key(rec: dict[str, Any]) -> Optional[tuple[int, int]]:
    """(uidvalidity, uid) of a record, as IndexState keys it (POP3: from the UIDL)."""
    try:
        if isinstance(rec.get("uidl"), str):
            return (POP3_UIDVALIDITY, uid_for_uidl(rec["uidl"]))
        return (int(rec["uidvalidity"]), int(rec["uid"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


@dataclass
class Catalog:
    """The index read once: the folded state and every counted message with its record."""

    state: IndexState
    items: list[Item]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The index's records, like :func:`archiver.index.read_index` (stopping at a torn
    or corrupt frame), but parsing each frame with one ``json.loads``: ~2x faster."""
    return list(iter_records(path))


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """:func:`read_records` one record at a time: only one frame's records are held."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for _start, _end, payload in _frames(data):
        if payload is None:
            break
        try:
            batch = json.loads(b"[" + payload.strip().replace(b"\n", b",") + b"]")
        except ValueError:  # an empty or bad line: parse line by line, skipping it
            batch = []
            for line in payload.splitlines():
                try:
                    batch.append(json.loads(line))
                except ValueError:
                    continue
        yield from (r for r in batch if isinstance(r, dict))


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
    state = IndexState()
    apply = state.apply
    msgs: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for rec in iter_records(archive.index_path):
        apply(rec)
        if rec.get("type") == "msg":
            uidl = rec.get("uidl")
            if isinstance(uidl, str):
                msgs[(rec.get("folder"), POP3_UIDVALIDITY, uid_for_uidl(uidl))] = rec
            else:
                msgs[(rec.get("folder"), rec.get("uidvalidity"), rec.get("uid"))] = rec
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
