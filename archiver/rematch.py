"""Which server message is which archived one, when UIDs cannot say: pure matching.

RFC 3501 promises that a UID names one message for as long as the folder's
UIDVALIDITY stands.  Courier-IMAP 5 breaks it: a folder never SELECTed
read-write is renumbered on every EXAMINE, usually under a new UIDVALIDITY
but sometimes under the same one.  :func:`archiver.plan.same_message` catches
that from the listing (a known UID whose RFC822.SIZE or INTERNALDATE is not
the archived message's); this module then decides, without I/O, how the
server's messages and the archived ones pair up:

1. :func:`header_candidates`: a server message is worth a header fetch when
   an archived one has its INTERNALDATE and size.
2. :func:`match`: with the header digests (:func:`header_digest` of the
   server's ``BODY[HEADER]`` and of the archived bytes), a group of equal
   (INTERNALDATE, digest) with one server and one archived message of a
   compatible size is a pair; so are equal numbers of byte-identical archived
   twins.  Anything else (no partner, or an ambiguous group) is fetched whole
   and matched by SHA-256 as a multiset, as after a UIDVALIDITY change.
3. :func:`arrange`: which archived messages must first move out of the way
   (*parking*, see :data:`PARKED_UIDVALIDITY`) and which move to their new
   UID; the rest become the pool a fetched body may take over.

:mod:`archiver.renumber` does the I/O around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from archiver.headers import header_block
from archiver.sources.base import MessageMeta
from archiver.state import FolderEntry, MessageEntry

# Where an archived message waits while the UID it was filed under goes to another
# message of the same folder.  UIDVALIDITY is a 32-bit number, so no server can
# list this one: parked keys never collide with the server's, and a parked message
# is, to every later pass, a message under an old UIDVALIDITY (matched or retired).
PARKED_UIDVALIDITY = 1 << 32

Key = tuple[int, int]


def header_digest(raw: bytes) -> str:
    """Hash of a message's header block with CRLF as LF: ``BODY[HEADER]`` and the
    archived bytes give the same digest for the same message."""
    return hashlib.sha256(header_block(raw).replace(b"\r\n", b"\n")).hexdigest()


def epoch(value: Optional[datetime | str]) -> Optional[int]:
    """INTERNALDATE as whole epoch seconds (None when unknown or unreadable)."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value) if isinstance(value, str) else value
        return int(dt.timestamp())
    except (ValueError, OverflowError, OSError):
        return None


def size_fits(entry: MessageEntry, meta: MessageMeta) -> bool:
    """The listed size is the archived message's (a record without ``rfc822_size``
    cannot tell: its stored size may differ from what the server reports)."""
    return entry.rfc822_size is None or entry.rfc822_size == meta.size


def key_of(entry: MessageEntry) -> Key:
    return (entry.uidvalidity, entry.uid)


def header_candidates(pool: Iterable[MessageEntry],
                      metas: Iterable[MessageMeta]) -> list[MessageMeta]:
    """Server messages some archived message could be: same INTERNALDATE, fitting size."""
    by_date: dict[Optional[int], list[MessageEntry]] = {}
    for e in pool:
        by_date.setdefault(epoch(e.internaldate), []).append(e)
    return [m for m in metas
            if any(size_fits(e, m) for e in by_date.get(epoch(m.internaldate), ()))]


@dataclass
class Matching:
    """Server messages paired with archived ones, and what is left on each side."""

    pairs: list[tuple[MessageEntry, MessageMeta]] = field(default_factory=list)
    unmatched: list[MessageMeta] = field(default_factory=list)  # fetch the body
    pool: list[MessageEntry] = field(default_factory=list)  # archived, not paired


def match(pool: Sequence[MessageEntry], metas: Sequence[MessageMeta],
          server: dict[int, str], archived: dict[Key, str]) -> Matching:
    """Pair by (INTERNALDATE, header digest) and size; see the module docstring.

    ``server``: UID -> digest of the fetched ``BODY[HEADER]``; ``archived``:
    key -> digest of the archived header (an entry without one, e.g. a missing
    file, is never paired by headers).
    """
    groups: dict[tuple[Optional[int], str], tuple[list[MessageMeta], list[MessageEntry]]] = {}
    for m in metas:
        digest = server.get(m.uid)
        if digest is not None:
            groups.setdefault((epoch(m.internaldate), digest), ([], []))[0].append(m)
    for e in pool:
        digest = archived.get(key_of(e))
        group = groups.get((epoch(e.internaldate), digest)) if digest is not None else None
        if group is not None:
            group[1].append(e)
    out = Matching()
    paired_metas: set[int] = set()
    paired: set[Key] = set()
    for served, held in groups.values():
        if not held:
            continue
        served.sort(key=lambda m: m.uid)
        held.sort(key=key_of)
        twins = len(served) == len(held) and len({e.sha256 for e in held}) == 1
        if (len(served) == 1 or twins) and len(served) == len(held) and all(
                size_fits(e, m) for e, m in zip(held, served)):
            # One each, or byte-identical archived twins: any pairing gives the right bytes.
            out.pairs.extend(zip(held, served))
            paired_metas.update(m.uid for m in served)
            paired.update(key_of(e) for e in held)
    out.unmatched = [m for m in metas if m.uid not in paired_metas]
    out.pool = [e for e in pool if key_of(e) not in paired]
    return out


@dataclass
class Arrangement:
    """What to do on disk and in the index before any body is fetched."""

    # Archived messages filed under a UID the server now gives to another message:
    # (the entry, its copy under PARKED_UIDVALIDITY).  Done first, in a frame of its own.
    parked: list[tuple[MessageEntry, MessageEntry]] = field(default_factory=list)
    # An archived message (parked copy, if parked) and the server message it is: it
    # takes the server's UID, flags and size.  Same key: only the record is renewed.
    moves: list[tuple[MessageEntry, MessageEntry, MessageMeta]] = field(default_factory=list)
    stays: list[tuple[MessageEntry, MessageMeta]] = field(default_factory=list)  # same UID
    pool: list[MessageEntry] = field(default_factory=list)  # left for the bodies (parked copies)

    def __bool__(self) -> bool:
        return bool(self.parked or self.moves)


def next_parked_uid(entry: FolderEntry) -> int:
    """First parked UID of the folder not yet used (parked keys are never reused)."""
    return max((uid for uv, uid in entry.messages if uv == PARKED_UIDVALIDITY), default=0) + 1


def arrange(entry: FolderEntry, uidvalidity: int, listing: Sequence[MessageMeta],
            matching: Matching, distrust: bool) -> Arrangement:
    """Park what is in the way, move what was matched, keep the rest as a pool.

    With ``distrust`` (the folder was renumbered under the same UIDVALIDITY) every
    archived message filed under a UID the server lists, and not confirmed as that
    UID's message, is parked first: its name (and index key) is about to name
    another message.  Then each pair moves to the server's UID; a pair that keeps
    its UID moves only when its record lacks the server's size (learned now).
    """
    out = Arrangement()
    listed = {m.uid for m in listing}
    stays = {key_of(e) for e, m in matching.pairs if key_of(e) == (uidvalidity, m.uid)}
    parked: dict[Key, MessageEntry] = {}
    if distrust:
        uid = next_parked_uid(entry)
        for key, e in sorted(entry.messages.items()):
            if key[0] == uidvalidity and key[1] in listed and key not in stays and e.counted:
                copy = dataclasses.replace(e, uidvalidity=PARKED_UIDVALIDITY, uid=uid)
                out.parked.append((e, copy))
                parked[key] = copy
                uid += 1
    for e, m in matching.pairs:
        if key_of(e) in stays and e.rfc822_size == m.size:
            out.stays.append((e, m))
        else:
            out.moves.append((e, parked.get(key_of(e), e), m))
    out.pool = [parked.get(key_of(e), e) for e in matching.pool]
    return out
