"""``archiver search``: find archived messages offline, from the index (and bodies).

The index's ``msg`` records already hold the decoded From/To/Subject/Date, so
a search without ``--body`` reads nothing but the index.  Matching is a
case-insensitive substring test after Unicode NFKC normalisation, so
full-width and half-width forms (``ＡＢＣ``/``ABC``, ``ｺｳｷﾞ``/``コウギ``) match
each other.  ``--body`` also reads each remaining candidate through the
store and searches its decoded text parts (see :func:`archiver.offline.show.body_text`).

The catalogue of messages comes from :mod:`archiver.offline.catalog`.
"""

from __future__ import annotations

import gc
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Optional

from archiver.archive import Archive
from archiver.errors import UsageError
from archiver.i18n import _
from archiver.offline.catalog import Item, load
from archiver.state import MessageEntry


def normalise(text: str) -> str:
    """NFKC + case folding: what both the needle and the haystack go through."""
    return unicodedata.normalize("NFKC", text).casefold()


def parse_day(value: Optional[str], option: str) -> Optional[str]:
    """``YYYY-MM-DD`` -> the same string, validated; anything else is a usage error."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise UsageError(_("{option} wants a date as YYYY-MM-DD (e.g. 2003-04-01), not "
                           "'{value}'").format(option=option, value=value)) from None


@dataclass
class Query:
    terms: Sequence[str] = ()  # each must match subject, from or to (or the body with --body)
    sender: Optional[str] = None
    subject: Optional[str] = None
    since: Optional[str] = None  # YYYY-MM-DD, inclusive
    before: Optional[str] = None  # YYYY-MM-DD, exclusive
    folders: Sequence[str] = ()  # globs, a folder's children included
    body: bool = False
    _norm: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def prepared(self) -> Query:
        self._norm = {
            "terms": [normalise(t) for t in self.terms if t.strip()],
            "from": [normalise(self.sender)] if self.sender else [],
            "subject": [normalise(self.subject)] if self.subject else [],
        }
        return self


def _folder_ok(name: str, globs: Sequence[str]) -> bool:
    if not globs:
        return True
    from archiver.plan import folder_selected

    return folder_selected(name, list(globs), [])


def search(archive: Archive, query: Query) -> Iterator[Item]:
    """Messages matching every criterion of ``query``, oldest first."""
    gc_was_on = gc.isenabled()
    gc.disable()  # see load(): the index pass allocates much and frees nothing
    try:
        candidates = _candidates(archive, query.prepared())
    finally:
        if gc_was_on:
            gc.enable()
    store = None
    try:
        for item, missing in candidates:
            if missing:
                if store is None:
                    from archiver.stores import open_store

                    store = open_store(archive.dest, archive.format)
                if not _body_has(store, item.entry, missing):
                    continue
            yield item
    finally:
        if store is not None:
            store.close()


def _candidates(archive: Archive, q: Query) -> list[tuple[Item, list[str]]]:
    """Index-only filtering: (item, terms still to find in its body) per candidate."""
    terms, senders, subjects = q._norm["terms"], q._norm["from"], q._norm["subject"]
    folder_cache: dict[str, bool] = {}
    candidates: list[tuple[Item, list[str]]] = []
    for item in load(archive).items:
        ok = folder_cache.get(item.folder)
        if ok is None:
            ok = folder_cache[item.folder] = _folder_ok(item.folder, q.folders)
        if not ok:
            continue
        if q.since or q.before:
            day = item.day
            if day is None or (q.since and day < q.since) or (q.before and day >= q.before):
                continue
        if senders and senders[0] not in normalise(item.text("from")):
            continue
        if subjects and subjects[0] not in normalise(item.text("subject")):
            continue
        missing = terms
        if terms:
            hay = normalise("\n".join((item.text("subject"), item.text("from"),
                                       item.text("to"))))
            missing = [t for t in terms if t not in hay]
            if missing and not q.body:
                continue
        candidates.append((item, missing))
    candidates.sort(key=lambda c: (c[0].date or "", c[0].folder, c[0].entry.path))
    return candidates


def _body_has(store: Any, entry: MessageEntry, terms: list[str]) -> bool:
    from archiver.offline.show import body_text

    try:
        data = store.read_message(entry)
    except (OSError, ValueError):
        return False  # a missing file is `archiver verify`'s business
    text = normalise(body_text(data))
    return all(t in text for t in terms)


def as_dict(item: Item) -> dict[str, Any]:
    """The ``--json`` line of a hit."""
    e = item.entry
    return {"id": item.id, "sha256": e.sha256, "date": item.date,
            "internaldate": item.rec.get("internaldate"), "folder": e.folder,
            "from": item.rec.get("from"), "to": item.rec.get("to"),
            "subject": item.rec.get("subject"), "message_id": item.rec.get("message_id"),
            "flags": list(e.flags), "keywords": list(e.keywords), "size": e.size,
            "gone": e.gone, "path": e.path}


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def fit(text: str, width: int) -> str:
    """Pad or cut to ``width`` terminal columns (Japanese characters take two)."""
    if display_width(text) <= width:
        return text + " " * (width - display_width(text))
    out: list[str] = []
    used = 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…" + " " * (width - used - 1)


def format_line(item: Item, folder_width: int) -> str:
    """``ID  DATE  FOLDER  FROM  SUBJECT`` (the ID is the one `archiver ls` prints)."""
    day = (item.date or "")[:10]
    return (f"{item.id}  {day:10}  {fit(item.folder, folder_width)}  "
            f"{fit(item.text('from'), 30)}  {item.text('subject')}"
            + ("  [gone]" if item.entry.gone else ""))
