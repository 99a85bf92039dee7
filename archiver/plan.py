"""Decide what a folder needs: pure logic over the server's listing and the index.

No I/O here, so every rule (incremental fetch, flag changes, expunges,
UIDVALIDITY changes matched as a multiset by content hash) is unit-tested
without a server.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Optional

from archiver.index import POP3_UIDVALIDITY
from archiver.sources.base import MessageMeta
from archiver.state import FolderEntry, MessageEntry


@dataclass
class FolderPlan:
    uidvalidity: int
    to_fetch: list[MessageMeta]
    flag_changes: list[tuple[MessageEntry, MessageMeta]]
    gone: list[MessageEntry]
    already: int
    # UIDVALIDITY changed: what we hold under older UIDVALIDITYs, by sha256.
    # A re-fetched message whose hash is here takes one entry over (multiset).
    reusable: dict[str, list[MessageEntry]] = field(default_factory=dict)
    # The same folder seen over the other protocol (IMAP vs POP3): candidates to
    # link to instead of storing twice, matched by norm hash as a multiset.
    # Never retired: a message missing over one protocol is not gone from the other.
    cross: list[MessageEntry] = field(default_factory=list)
    cross_index: Optional[dict[str, list[MessageEntry]]] = None  # built by the stage thread

    @property
    def uidvalidity_changed(self) -> bool:
        return bool(self.reusable)

    def fetch_bytes(self) -> int:
        return sum(m.size for m in self.to_fetch)


def plan_folder(entry: Optional[FolderEntry], uidvalidity: int,
                listing: Sequence[MessageMeta]) -> FolderPlan:
    """Compare the server's listing with what the index holds for this folder."""
    have = entry.current(uidvalidity) if entry else {}
    orphans: list[MessageEntry] = []
    if uidvalidity == POP3_UIDVALIDITY and have:
        # An mbox message reindexed without a snapshot (UIDVALIDITY 0, no UIDL, UID from
        # its hash): a candidate for a POP3 sight to link to, never a POP3 message gone.
        listed = {meta.uid for meta in listing}
        orphans = [m for uid, m in sorted(have.items())
                   if m.uidl is None and m.offset is not None and uid not in listed]
        dropped = {m.uid for m in orphans}
        have = {uid: m for uid, m in have.items() if uid not in dropped}
    to_fetch: list[MessageMeta] = []
    flag_changes: list[tuple[MessageEntry, MessageMeta]] = []
    on_server: set[int] = set()
    for meta in listing:
        on_server.add(meta.uid)
        known = have.get(meta.uid)
        if known is None:
            to_fetch.append(meta)
        elif (tuple(known.flags), tuple(known.keywords)) != (meta.flags, meta.keywords):
            flag_changes.append((known, meta))
    gone = [m for uid, m in sorted(have.items()) if uid not in on_server and not m.gone]
    reusable: dict[str, list[MessageEntry]] = {}
    cross: list[MessageEntry] = [m for m in orphans if not m.gone and m.counted]
    if entry is not None:
        for (uv, _uid), m in sorted(entry.messages.items()):
            if uv == uidvalidity or m.gone or not m.counted:
                continue
            if (uv == POP3_UIDVALIDITY) != (uidvalidity == POP3_UIDVALIDITY):
                cross.append(m)
            elif m.sha256:
                reusable.setdefault(m.sha256, []).append(m)
    return FolderPlan(
        uidvalidity=uidvalidity,
        to_fetch=to_fetch,
        flag_changes=flag_changes,
        gone=gone,
        already=len(listing) - len(to_fetch),
        reusable=reusable,
        cross=cross,
    )


def batches(metas: Iterable[MessageMeta], max_bytes: int, max_count: int,
            stream_threshold: int) -> Iterator[list[MessageMeta]]:
    """Group messages into fetch batches bounded by bytes (and count).

    A message above ``stream_threshold`` is a batch of its own; the engine
    streams it to disk in pieces instead of holding it in memory.
    """
    current: list[MessageMeta] = []
    size = 0
    for meta in metas:
        if meta.size > stream_threshold:
            if current:
                yield current
                current, size = [], 0
            yield [meta]
            continue
        if current and (size + meta.size > max_bytes or len(current) >= max_count):
            yield current
            current, size = [], 0
        current.append(meta)
        size += meta.size
    if current:
        yield current


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """``--folder``/``--exclude`` globs over the decoded '/'-separated name.

    A glob also selects a folder's children (``--folder Archive`` takes
    ``Archive/2003`` too).  Matching is case-sensitive except for INBOX.
    """

    def match(pattern: str) -> bool:
        cand = name
        if name.upper().startswith("INBOX") and pattern.upper().startswith("INBOX"):
            cand, pattern = "INBOX" + name[5:], "INBOX" + pattern[5:]
        return fnmatch.fnmatchcase(cand, pattern) or fnmatch.fnmatchcase(cand, pattern + "/*")

    if include and not any(match(p) for p in include):
        return False
    return not any(match(p) for p in exclude)
