"""The index folded into per-folder state: what the archive holds, with which flags.

:class:`IndexState` is the one fold every command uses (backup, verify,
ls, search, show, export, restore, the snapshot).  A record can pass the
frame checks yet be nonsense (an index from a buggy or foreign writer, damage
in an old frame written before frames had checksums); :meth:`IndexState.fold`
skips such a record and counts it instead of raising, so a damaged index never
makes a command end in a traceback -- the CLI then says how many were
skipped and how to rebuild (``archiver reindex DEST --force``).

:meth:`IndexState.read` is the one read path: the reader of
:mod:`archiver.index` feeding this fold, with an optional second consumer
that sees every record the fold accepted (the catalogue of headers, the
snapshot's notes) so nothing reads the index twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

from archiver.index import POP3_UIDVALIDITY, ReadResult, read_index, uid_for_uidl
from archiver.sources.base import SLOTS

Record = dict[str, Any]
# What a nonsense field raises when folded: json.loads accepts Infinity and NaN,
# and any JSON type can stand where a number or a list of strings belongs.
_NONSENSE = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


@dataclass(**SLOTS)
class MessageEntry:
    """What the index says about one archived message (latest records applied)."""

    folder: str
    uidvalidity: int
    uid: int
    path: str
    size: int
    sha256: str
    flags: tuple[str, ...]
    keywords: tuple[str, ...]
    gone: bool = False
    uidl: Optional[str] = None  # POP3 sight
    sha256_norm: str = ""  # see stores.base.norm_hash; recorded for POP3 sights
    linked_to: Optional[tuple[int, int]] = None  # a POP3 sight of this IMAP message
    offset: Optional[int] = None  # mbox: start of the quoted message in the file
    length: Optional[int] = None  # mbox: quoted length
    internaldate: Optional[str] = None  # ISO 8601, as recorded (restore sends it back)
    message_id: Optional[str] = None  # as recorded (restore matches the target with it)
    # The size the server reported (IMAP RFC822.SIZE, POP3 LIST); None in records
    # written before it was kept.  Compared with each listing (plan.same_message).
    rfc822_size: Optional[int] = None
    internaldate_source: Optional[str] = None  # POP3: "date", "received" or None

    @property
    def counted(self) -> bool:
        """False for a POP3 sight that is the same message as an IMAP one (a link)."""
        return self.linked_to is None


@dataclass
class FolderEntry:
    """A folder's durable facts: its path (fixed once chosen) and its messages."""

    name: str
    path: str
    server_name: str = ""
    separator: str | None = None
    attributes: tuple[str, ...] = ()
    messages: dict[tuple[int, int], MessageEntry] = field(default_factory=dict)
    # Whose folder it was on the server: "personal" (also every record written before
    # the field existed), "other" or "shared" (archiver/namespaces.py; never restored).
    namespace: str = "personal"

    def current(self, uidvalidity: int) -> dict[int, MessageEntry]:
        return {uid: m for (uv, uid), m in self.messages.items() if uv == uidvalidity}

    @property
    def parent_only(self) -> bool:
        """Listed ``\\Noselect`` or ``\\NonExistent`` (RFC 5258: Dovecot's answer for a
        parent that is only a name above its children): no mail folder of its own."""
        return any(a.lower() in ("\\noselect", "\\nonexistent") for a in self.attributes)


def record_key(rec: Record) -> tuple[int, int]:
    """(uidvalidity, uid) a record speaks of; POP3 sights by a number from their UIDL.

    Raises (TypeError, ValueError, KeyError, OverflowError) for a record with
    no usable key.
    """
    uidl = rec.get("uidl")
    if isinstance(uidl, str):
        return (POP3_UIDVALIDITY, uid_for_uidl(uidl))
    return (_int(rec["uidvalidity"]), _int(rec["uid"]))


def _int(value: Any) -> int:
    if type(value) is int:  # the usual case, first: folding 20,000 records is hot
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"not a whole number: {value!r}")
    return int(value)


def _int_or_none(value: Any) -> Optional[int]:
    return None if value is None else _int(value)


def _str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


_NO_STRS: tuple[str, ...] = ()


def _strs(value: Any) -> tuple[str, ...]:
    if not value:
        if value is None or value == []:
            return _NO_STRS
        raise TypeError(f"not a list of strings: {value!r}")
    if type(value) is not list or not all(type(v) is str for v in value):
        raise TypeError(f"not a list of strings: {value!r}")
    # A folder of 200,000 messages has a handful of distinct flag sets: one tuple each.
    return _interned(_SHARED_STRS, tuple(value), 4096)


_SHARED_STRS: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_INTS: dict[int, int] = {}
_T = TypeVar("_T")


def _interned(cache: dict[_T, _T], value: _T, limit: int) -> _T:
    """The one object kept for ``value`` (an equal one seen before), so that many
    records share it; at most ``limit`` are kept."""
    shared = cache.get(value)
    if shared is not None:
        return shared
    if len(cache) < limit:
        cache[value] = value
    return value


def _shared_int(value: int) -> int:
    """One int object per UIDVALIDITY (the same in every record of a folder)."""
    return _interned(_SHARED_INTS, value, 65536)


@dataclass
class FolderFacts:
    path: str
    server_name: str
    separator: Optional[str]
    attributes: tuple[str, ...]
    namespace: str = "personal"


@dataclass
class Parsed:
    """One record, checked field by field (see :func:`parse_record`)."""

    kind: str
    name: str
    key: tuple[int, int] = (0, 0)
    folder: Optional[FolderFacts] = None
    message: Optional[MessageEntry] = None
    flags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    path: str = ""
    uidl: Optional[str] = None
    link_to: Optional[tuple[int, int]] = None
    replaced: bool = False
    rfc822_size: Optional[int] = None  # a link's POP3 LIST size


INDEX_KINDS = ("folder", "msg", "flags", "gone", "link")


def parse_record(rec: Record) -> Optional[Parsed]:
    """Check a record's fields; None for a kind the index does not fold (future, foreign).

    Raises (TypeError, ValueError, ...) for a record of a known kind whose
    fields are nonsense; :meth:`IndexState.fold` counts those.
    """
    kind = rec.get("type")
    if kind not in INDEX_KINDS:
        return None
    name = rec.get("folder")
    if not isinstance(name, str):
        raise TypeError("a record without a folder name")
    if kind == "folder":
        separator = rec.get("separator")
        if separator is not None and not isinstance(separator, str):
            raise TypeError("separator")
        return Parsed("folder", name, folder=FolderFacts(
            _str(rec.get("dir")), _str(rec.get("server_name"), name), separator,
            _strs(rec.get("attributes")), _str(rec.get("namespace"), "personal")))
    uv, uid = record_key(rec)
    key = (_shared_int(uv), uid)  # the key tuple outlives the record: share its UIDVALIDITY
    uidl = _str_or_none(rec.get("uidl"))
    if kind == "msg":
        return Parsed("msg", name, key, message=_message(name, key, rec))
    if kind == "flags":
        return Parsed("flags", name, key, flags=_strs(rec.get("flags")),
                      keywords=_strs(rec.get("keywords")), path=_str(rec.get("path")))
    if kind == "link":
        target = rec.get("to")
        if not isinstance(target, list) or len(target) != 2:
            raise TypeError("a link without a target")
        return Parsed("link", name, key, uidl=uidl, link_to=(_int(target[0]), _int(target[1])),
                      rfc822_size=_int_or_none(rec.get("rfc822_size")))
    return Parsed("gone", name, key, replaced=bool(rec.get("replaced_by")))


def _message(name: str, key: tuple[int, int], rec: Record) -> MessageEntry:
    size = _int(rec.get("size", 0))
    offset, length = _int_or_none(rec.get("offset")), _int_or_none(rec.get("length"))
    if size < 0 or (offset is not None and offset < 0) or (length is not None and length < 0):
        raise ValueError("a negative size or offset")
    rfc822_size = _int_or_none(rec.get("rfc822_size"))
    if rfc822_size == size:
        rfc822_size = size  # one int object for both (usually equal), not two
    return MessageEntry(
        folder=name, uidvalidity=key[0], uid=key[1],
        path=_str(rec.get("path")), size=size, sha256=_str(rec.get("sha256")),
        flags=_strs(rec.get("flags")), keywords=_strs(rec.get("keywords")),
        uidl=_str_or_none(rec.get("uidl")), sha256_norm=_str(rec.get("sha256_norm")),
        offset=offset, length=length,
        internaldate=_str_or_none(rec.get("internaldate")),
        message_id=_str_or_none(rec.get("message_id")),
        rfc822_size=rfc822_size,
        internaldate_source=_str_or_none(rec.get("internaldate_source")),
    )


class IndexState:
    """All records folded into per-folder state: what we have, with which flags."""

    def __init__(self) -> None:
        self.folders: dict[str, FolderEntry] = {}
        self.skipped = 0  # records that did not make sense (see fold)

    @classmethod
    def read(cls, path: Path, also: Optional[Callable[[Record], None]] = None,
             data: Optional[bytes] = None) -> tuple[IndexState, ReadResult]:
        """Fold the index at ``path``; ``also`` sees every record the fold accepted."""
        state = cls()
        fold = state.fold

        def sink(rec: Record) -> None:
            if fold(rec) and also is not None:
                also(rec)

        res = read_index(path, sink=sink, data=data)
        state.skipped += res.bad_lines
        return state, res

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> IndexState:
        state = cls()
        for rec in records:
            state.fold(rec)
        return state

    def fold(self, rec: Record) -> bool:
        """Apply one record; False (and counted in ``skipped``) if it is nonsense."""
        try:
            parsed = parse_record(rec)
        except _NONSENSE:
            self.skipped += 1
            return False
        if parsed is not None:
            self._apply(parsed)
        return True

    def _apply(self, p: Parsed) -> None:
        if p.kind == "folder":
            assert p.folder is not None
            entry = self.folders.get(p.name)
            if entry is None:
                entry = FolderEntry(name=p.name, path=p.folder.path)
                self.folders[p.name] = entry
            entry.server_name = p.folder.server_name
            entry.separator, entry.attributes = p.folder.separator, p.folder.attributes
            entry.namespace = p.folder.namespace
            return
        folder = self.folders.get(p.name)
        if folder is None:
            return  # a folder record always comes first; this one's was lost
        key = p.key
        if p.kind == "msg":
            assert p.message is not None
            p.message.folder = folder.name  # one string per folder, not per message
            folder.messages[key] = p.message
        elif p.kind == "link":
            assert p.link_to is not None
            imap = folder.messages.get(p.link_to)
            pop = folder.messages.get(key)
            if pop is None:
                pop = MessageEntry(folder.name, key[0], key[1], "", 0, "", (), (), uidl=p.uidl)
                folder.messages[key] = pop
            pop.linked_to = p.link_to
            if p.rfc822_size is not None:
                pop.rfc822_size = p.rfc822_size
            if imap is not None:
                pop.path, pop.size, pop.sha256 = imap.path, imap.size, imap.sha256
                pop.offset, pop.length = imap.offset, imap.length
        elif p.kind == "flags":
            m = folder.messages.get(key)
            if m is not None:
                m.flags, m.keywords = p.flags, p.keywords
                if p.path:
                    m.path = p.path
        elif p.kind == "gone" and key in folder.messages:
            if p.replaced:
                del folder.messages[key]  # the same file now belongs to a newer UIDVALIDITY
            else:
                folder.messages[key].gone = True

    def all_paths(self) -> set[str]:
        # list() copies in one C call: safe while the sync thread adds a folder.
        return {f.path for f in list(self.folders.values())}

    def messages(self) -> Iterator[MessageEntry]:
        for folder in self.folders.values():
            yield from folder.messages.values()
