"""``archiver search``: find archived messages offline, from the index (and bodies).

The index's ``msg`` records already hold the decoded From/To/Subject/Date, so
a search without ``--body`` reads nothing but the index.  Matching is a
case-insensitive substring test after Unicode NFKC normalisation, so
full-width and half-width forms (``ＡＢＣ``/``ABC``, ``ｺｳｷﾞ``/``コウギ``) match
each other.  ``--body`` also reads each remaining candidate through the
store and searches its decoded text parts (see :func:`archiver.offline.show.body_text`).

Japanese is written without spaces between words, so there is no word
splitting at all: every TEXT is a substring.  A space a user types between
two Japanese words (``"講義 資料"``, as one would quote a phrase) matches no
whitespace or any (so both 講義資料 and 講義　資料 are found, and a body
wrapped between the two words too): whitespace in a query with a CJK
character on either side becomes ``\\s*``.  Between two non-CJK characters
(``"annual report"``) a space stays a literal space, as before.

The catalogue of messages comes from :mod:`archiver.offline.catalog`.
"""

from __future__ import annotations

import gc
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Optional

from archiver.archive import Archive
from archiver.errors import UsageError
from archiver.i18n import _
from archiver.offline.catalog import Item, load, normalise
from archiver.state import MessageEntry

# Scripts written without spaces between words (after NFKC: half-width kana are full-width)
_CJK_RANGES = (
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3000, 0x30FF),  # CJK punctuation, hiragana, katakana
    (0x3100, 0x31FF),  # bopomofo, kanbun, katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # what NFKC leaves of half-/full-width forms
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


def is_cjk(ch: str) -> bool:
    """Is ``ch`` from a script that puts no spaces between words?"""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


@dataclass(frozen=True)
class Needle:
    """One search text, normalised; a pattern when it has a space next to CJK text."""

    text: str
    pattern: Optional[re.Pattern[str]] = None

    def found_in(self, haystack: str) -> bool:
        """``haystack`` must already have been through :func:`normalise`."""
        if self.pattern is not None:
            return self.pattern.search(haystack) is not None
        return self.text in haystack


def needle(text: str) -> Needle:
    """The matcher for one TEXT: substring, with flexible spaces between CJK words."""
    norm = normalise(text).strip()
    pieces = re.split(r"(\s+)", norm)
    flexible = False
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2 and (is_cjk(pieces[i - 1][-1]) or is_cjk(pieces[i + 1][0])):
            out.append(r"\s*")
            flexible = True
        else:
            out.append(re.escape(piece))
    return Needle(norm, re.compile("".join(out)) if flexible else None)


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
    _norm: dict[str, list[Needle]] = field(default_factory=dict, repr=False)

    def prepared(self) -> Query:
        self._norm = {
            "terms": [needle(t) for t in self.terms if t.strip()],
            "from": [needle(self.sender)] if self.sender and self.sender.strip() else [],
            "subject": [needle(self.subject)] if self.subject and self.subject.strip() else [],
        }
        return self


def _folder_ok(name: str, globs: Sequence[str]) -> bool:
    if not globs:
        return True
    from archiver.plan import folder_selected

    return folder_selected(name, list(globs), [])


def search(archive: Archive, query: Query,
           items: Optional[Sequence[Item]] = None) -> Iterator[Item]:
    """Messages matching every criterion of ``query``, oldest first.

    ``items``: the catalogue already in memory (``archiver ui`` keeps it per
    archive), instead of reading the index again.
    """
    gc_was_on = gc.isenabled()
    gc.disable()  # see load(): the index pass allocates much and frees nothing
    try:
        candidates = _candidates(archive, query.prepared(), items)
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


def _candidates(archive: Archive, q: Query, items: Optional[Sequence[Item]] = None
                ) -> list[tuple[Item, list[Needle]]]:
    """Index-only filtering: (item, terms still to find in its body) per candidate."""
    terms, senders, subjects = q._norm["terms"], q._norm["from"], q._norm["subject"]
    folder_cache: dict[str, bool] = {}
    candidates: list[tuple[Item, list[Needle]]] = []
    for item in load(archive).items if items is None else items:
        ok = folder_cache.get(item.folder)
        if ok is None:
            ok = folder_cache[item.folder] = _folder_ok(item.folder, q.folders)
        if not ok:
            continue
        if q.since or q.before:
            day = item.day
            if day is None or (q.since and day < q.since) or (q.before and day >= q.before):
                continue
        if senders and not senders[0].found_in(normalise(item.text("from"))):
            continue
        if subjects and not subjects[0].found_in(normalise(item.text("subject"))):
            continue
        missing = terms
        if terms:
            hay = item.haystack  # NUL between the fields: no match spans two
            missing = [t for t in terms if not t.found_in(hay)]
            if missing and not q.body:
                continue
        candidates.append((item, missing))
    candidates.sort(key=lambda c: (c[0].date or "", c[0].folder, c[0].entry.path))
    return candidates


def _body_has(store: Any, entry: MessageEntry, terms: list[Needle]) -> bool:
    from archiver.offline.show import body_text

    try:
        data = store.read_message(entry)
    except (OSError, ValueError):
        return False  # a missing file is `archiver verify`'s business
    text = normalise(body_text(data))
    return all(t.found_in(text) for t in terms)


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
