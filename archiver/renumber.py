"""A folder whose UIDs may not name the archived messages: match it again, then re-file.

The engine calls :func:`resolve` when :func:`archiver.plan.plan_folder` found
a known UID (POP3: UIDL) whose listing is not the archived message's
(``plan.suspects``: the server renumbered the folder without changing
UIDVALIDITY, or gave a UIDL to another message), or archived messages under
another UIDVALIDITY (the server admitted a renumbering; or parked messages of
an interrupted run).  No UID is then trusted: the listing is matched with the
archive by INTERNALDATE, size and a header digest (:mod:`archiver.rematch`),
fetching only the headers of the candidates; what does not match, or matches
ambiguously, is fetched whole and taken over by SHA-256 as a multiset by the
engine's UIDVALIDITY-change path (``plan.reusable``), so nothing is fetched or
stored twice.

:func:`rearrange` (a pipeline job, sync thread) then re-files the archive in
two steps, each durable before its index frame: first every archived message
filed under a UID the server now gives to another message is *parked*
(renamed to a key no server can use, see ``rematch.PARKED_UIDVALIDITY``), so
no file is ever renamed onto another and no record names a key another
message still holds; then each matched message takes its new UID, the
server's flags and size.  A crash between a rename and its frame leaves a
file the index does not name: the next run's store repair puts it back by
its SHA-256 (``MaildirStore.repair``), and the matching starts again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Optional

from archiver.headers import MAX_HEADER_SCAN, summarize
from archiver.i18n import _
from archiver.index import (
    POP3_UIDVALIDITY,
    gone_record,
    link_record,
    message_key,
    msg_record,
)
from archiver.plan import FolderPlan
from archiver.rematch import (
    PARKED_UIDVALIDITY,
    Arrangement,
    Key,
    arrange,
    epoch,
    header_candidates,
    header_digest,
    key_of,
    match,
    next_parked_uid,
)
from archiver.sources.base import MessageMeta
from archiver.state import FolderEntry, MessageEntry
from archiver.stores.base import Rename, Store

Record = dict[str, Any]


@dataclass
class Rearrangement:
    """What :func:`rearrange` does for one folder, with the archived headers it needs."""

    folder: str
    uidvalidity: int
    arrangement: Arrangement
    heads: dict[Key, bytes] = field(default_factory=dict)  # by the entry's key as recorded
    # POP3 sights linked to an archived IMAP message, by its key: they follow it.
    sights: dict[Key, list[MessageEntry]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.arrangement)

    @property
    def flag_updates(self) -> int:
        """Messages that keep their UID but get a new record (its size learned) with new flags."""
        return sum(1 for e, src, m in self.arrangement.moves
                   if key_of(src) == (self.uidvalidity, m.uid) and _flags_differ(e, m))


def resolve(entry: FolderEntry, plan: FolderPlan, listing: Sequence[MessageMeta],
            fetch_headers: Callable[[list[int]], dict[int, bytes]], store: Store
            ) -> tuple[FolderPlan, Rearrangement]:
    """The folder's plan once no UID is trusted, and the re-filing to do first."""
    uv = plan.uidvalidity
    if uv == POP3_UIDVALIDITY:
        return _resolve_pop3(entry, plan, store)
    distrust = bool(plan.suspects)
    if distrust:  # the whole folder: any UID may name any message now
        pool = [m for key, m in sorted(entry.messages.items())
                if key[0] != POP3_UIDVALIDITY and m.uidl is None and m.counted
                and not m.gone and m.sha256]
        metas = list(listing)
    else:  # only what is new under this UIDVALIDITY, against what older ones hold
        pool = [m for group in plan.reusable.values() for m in group]
        metas = list(plan.to_fetch)
    heads: dict[Key, bytes] = {}
    cands = header_candidates(pool, metas)
    served = fetch_headers([m.uid for m in cands]) if cands else {}
    dates = {epoch(m.internaldate) for m in cands}
    for e in pool:
        if epoch(e.internaldate) in dates:
            _read_head(store, e, heads)
    matching = match(pool, metas, {uid: header_digest(raw) for uid, raw in served.items()},
                     {k: header_digest(raw) for k, raw in heads.items()})
    arranged = arrange(entry, uv, listing, matching, distrust)
    for e, _copy in arranged.parked:
        _read_head(store, e, heads)  # the parked record keeps its decoded headers
    work = Rearrangement(entry.name, uv, arranged, heads)
    for m in entry.messages.values():
        if m.linked_to is not None:
            work.sights.setdefault(m.linked_to, []).append(m)
    if distrust:
        stays = {key_of(e) for e, _ in arranged.stays} | {
            key_of(e) for e, src, m in arranged.moves if key_of(src) == (uv, m.uid)}
        renumbered = any(key_of(e) not in stays for e, _ in plan.suspects)
        new = FolderPlan(uv, matching.unmatched,
                         [(e, m) for e, m in arranged.stays if _flags_differ(e, m)], [],
                         len(listing) - len(matching.unmatched), cross=plan.cross,
                         retire_reason="renumbered" if renumbered else "expunged",
                         report="renumbered" if renumbered else None)
    else:
        real = any(e.uidvalidity != PARKED_UIDVALIDITY for e in pool)
        new = FolderPlan(uv, matching.unmatched, plan.flag_changes, plan.gone,
                         len(listing) - len(matching.unmatched), cross=plan.cross,
                         report="uidvalidity" if real else "renumbered")
    new.reusable = _by_hash(arranged.pool)
    new.matched, new.pool_size = len(matching.pairs), len(arranged.pool)
    return new, work


def _resolve_pop3(entry: FolderEntry, plan: FolderPlan, store: Store
                  ) -> tuple[FolderPlan, Rearrangement]:
    """POP3: a UIDL whose LIST size is not the archived message's names a new message.

    It is fetched; the archived copy is parked first (its file name is the
    UIDL's) and kept -- taken back if the fetched bytes are the same after all
    (an expunged one keeps its gone mark).  A sight linked to its IMAP twin has
    no file of its own: nothing to park.
    """
    arranged = Arrangement()
    uid = next_parked_uid(entry)
    heads: dict[Key, bytes] = {}
    for e, _m in plan.suspects:
        if e.linked_to is None and e.sha256:  # an expunged one too: its file is in the way
            arranged.parked.append((e, _parked(e, uid)))
            if not e.gone:
                arranged.pool.append(arranged.parked[-1][1])
            _read_head(store, e, heads)
            uid += 1
    to_fetch = sorted([*plan.to_fetch, *(m for _, m in plan.suspects)], key=lambda m: m.uid)
    new = FolderPlan(plan.uidvalidity, to_fetch, [], plan.gone, plan.already - len(plan.suspects),
                     reusable=_by_hash(arranged.pool), cross=plan.cross,
                     suspects=plan.suspects, retire_reason="renumbered", report="uidl",
                     pool_size=len(arranged.pool))
    return new, Rearrangement(entry.name, plan.uidvalidity, arranged, heads)


def _parked(e: MessageEntry, uid: int) -> MessageEntry:
    return replace(e, uidvalidity=PARKED_UIDVALIDITY, uid=uid, uidl=None, linked_to=None)


def _flags_differ(e: MessageEntry, m: MessageMeta) -> bool:
    return (tuple(e.flags), tuple(e.keywords)) != (m.flags, m.keywords)


def _by_hash(pool: list[MessageEntry]) -> dict[str, list[MessageEntry]]:
    out: dict[str, list[MessageEntry]] = {}
    for e in pool:
        out.setdefault(e.sha256, []).append(e)
    return out


def _read_head(store: Store, e: MessageEntry, heads: dict[Key, bytes]) -> None:
    """The archived header, if its file can be read (a missing one is never paired)."""
    if key_of(e) not in heads:
        try:
            heads[key_of(e)] = store.read_head(e, MAX_HEADER_SCAN)
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------- re-filing (sync thread)


def rearrange(store: Store, path: str, work: Rearrangement,
              record: Callable[[list[Record]], None]) -> list[str]:
    """Park, then move (each step durable before its frame); returns problems to report."""
    name, uv, arranged = work.folder, work.uidvalidity, work.arrangement
    problems: list[str] = []
    if arranged.parked:
        moved = store.rename(path, [Rename(store.base_name(e.uidvalidity, e.uid),
                                           c.uidvalidity, c.uid, e.flags, e.keywords)
                                    for e, c in arranged.parked])
        records: list[Record] = []
        for (e, c), newpath in zip(arranged.parked, moved):
            c.path = newpath or e.path  # the pool holds ``c``: later renames start here
            records.append(_rerecord(name, e, message_key(c.uidvalidity, c.uid), c.path,
                                     e.flags, e.keywords, e.rfc822_size, e.internaldate,
                                     work.heads.get(key_of(e))))
            records.append(gone_record(name, message_key(e.uidvalidity, e.uid, e.uidl),
                                       "renumbered", replaced_by=(c.uidvalidity, c.uid)))
            if e.gone:
                records.append(gone_record(name, message_key(c.uidvalidity, c.uid), "expunged"))
            records += _relink(name, work.sights.get(key_of(e), ()), key_of(c))
        record(records)
    if arranged.moves:
        moved = store.rename(path, [Rename(store.base_name(src.uidvalidity, src.uid), uv,
                                           m.uid, m.flags, m.keywords)
                                    for _entry, src, m in arranged.moves])
        records = []
        for (e, src, m), newpath in zip(arranged.moves, moved):
            if not newpath:
                problems.append(_("{name}: the file of UID {uid} is missing from the archive; "
                                  "run 'archiver verify'").format(name=name, uid=e.uid))
            records.append(_rerecord(name, e, message_key(uv, m.uid, m.uidl),
                                     newpath or src.path, m.flags, m.keywords, m.size,
                                     _iso(m.internaldate) or e.internaldate,
                                     work.heads.get(key_of(e))))
            if key_of(src) != (uv, m.uid):
                reason = "uidvalidity" if src.uidvalidity not in (uv, PARKED_UIDVALIDITY) \
                    else "renumbered"
                records.append(gone_record(name, message_key(src.uidvalidity, src.uid), reason,
                                           replaced_by=(uv, m.uid)))
            records += _relink(name, work.sights.get(key_of(e), ()), (uv, m.uid))
        record(records)
    return problems


def _relink(name: str, sights: Sequence[MessageEntry], to: Key) -> list[Record]:
    """The POP3 sights of a re-filed IMAP message point at its new key (one file)."""
    return [link_record(name, s.uidl, to, rfc822_size=s.rfc822_size) for s in sights]


def _iso(dt: Optional[datetime]) -> Optional[str]:
    return dt.isoformat() if dt is not None else None


def _rerecord(name: str, e: MessageEntry, key: Record, path: str, flags: Sequence[str],
              keywords: Sequence[str], rfc822_size: Optional[int],
              internaldate: Optional[str], head: Optional[bytes]) -> Record:
    """A ``msg`` record for an archived message filed under ``key`` now: its bytes as
    recorded, its decoded headers again (from the archived head)."""
    extra: dict[str, Any] = {}
    if e.uidl is not None:
        extra.update(flags_known=False, internaldate_source=e.internaldate_source)
    if e.sha256_norm:
        extra["sha256_norm"] = e.sha256_norm
    summary: dict[str, Any] = summarize(head or b"")
    summary["message_id"] = summary["message_id"] or e.message_id
    return msg_record(name, key, path=path, size=e.size, sha256=e.sha256,
                      internaldate=internaldate, flags=flags, keywords=keywords,
                      offset=e.offset, length=e.length, rfc822_size=rfc822_size,
                      **extra, **summary)
