"""Decide what a folder needs: pure logic over the server's listing and the index.

No I/O here, so every rule (incremental fetch, flag changes, expunges,
UIDVALIDITY changes matched as a multiset by content hash, a known UID that
no longer names the archived message) is unit-tested without a server.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from archiver.i18n import _
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
    # Known UIDs (POP3: UIDLs) whose listing does not describe the archived message
    # (see same_message): the folder must be matched again (archiver.renumber).
    suspects: list[tuple[MessageEntry, MessageMeta]] = field(default_factory=list)
    retire_reason: str = "uidvalidity"  # the gone reason of what ``reusable`` keeps
    # Set by archiver.renumber: what to tell the user once the folder is done.
    report: Optional[str] = None  # "renumbered", "uidvalidity" or "uidl"
    matched: int = 0  # archived messages paired by their headers
    pool_size: int = 0  # ``reusable`` entries before the bodies came

    @property
    def uidvalidity_changed(self) -> bool:
        return bool(self.reusable)

    def fetch_bytes(self) -> int:
        return sum(m.size for m in self.to_fetch)


class Identity(enum.Enum):
    SAME = "same"  # size and INTERNALDATE are the archived message's
    DIFFERENT = "different"  # the UID (UIDL) now names another message
    UNSURE = "unsure"  # only the stored size differs, and the record has no rfc822_size


def same_instant(recorded: Optional[str], listed: Optional[datetime]) -> bool:
    """The recorded INTERNALDATE (ISO text) is the listed one; unknown on either side
    (POP3, a server that sent none, an unreadable record) is no evidence against."""
    if recorded is None or listed is None:
        return True
    try:
        parsed = datetime.fromisoformat(recorded)  # faster than formatting ``listed``
    except ValueError:
        return True
    if parsed.tzinfo is None or listed.tzinfo is None:
        return True  # naive == aware is simply False: that would be a false alarm
    return parsed == listed


def same_message(entry: MessageEntry, meta: MessageMeta) -> Identity:
    """Does the listing at the archived message's UID (UIDL) still describe it?

    RFC 3501 says a UID names one message while UIDVALIDITY stands, but
    Courier-IMAP renumbers folders under the same UIDVALIDITY, and a POP3
    server may give a UIDL to another message: trusting the UID then puts one
    message's flags on another and never fetches the new one.  The listing
    already carries RFC822.SIZE (POP3: LIST) and INTERNALDATE, so checking costs
    nothing.  A record written before ``rfc822_size`` was kept has only the
    stored size; a server may report another size than it serves, so a
    difference there is UNSURE (settled by the headers), not DIFFERENT.
    """
    if entry.rfc822_size is not None and entry.rfc822_size != meta.size:
        return Identity.DIFFERENT
    if not same_instant(entry.internaldate, meta.internaldate):
        return Identity.DIFFERENT
    if entry.rfc822_size is None and entry.size != meta.size:
        return Identity.UNSURE
    return Identity.SAME


def _checked(entry: MessageEntry, meta: MessageMeta) -> bool:
    """Must ``meta`` be checked against ``entry``?  Not a POP3 sight linked to its
    IMAP twin before links kept the LIST size: its size is the IMAP copy's."""
    return not (entry.linked_to is not None and entry.rfc822_size is None)


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
    suspects: list[tuple[MessageEntry, MessageMeta]] = []
    on_server: set[int] = set()
    for meta in listing:
        on_server.add(meta.uid)
        known = have.get(meta.uid)
        if known is None:
            to_fetch.append(meta)
        elif same_message(known, meta) is not Identity.SAME and _checked(known, meta):
            suspects.append((known, meta))  # never a flag change on an unconfirmed message
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
        suspects=suspects,
    )


def describe(name: str, plan: FolderPlan) -> Optional[str]:
    """The one line a run says about a folder it had to match again (None: nothing)."""
    left = sum(len(pool) for pool in plan.reusable.values())
    by_content = plan.pool_size - left
    matched = plan.matched + by_content
    how = _("({headers} by their headers, {content} by their content)").format(
        headers=plan.matched, content=by_content)
    gone = _("; {n} archived ones not seen again are kept").format(n=left) if left else ""
    if plan.report == "renumbered":
        return _("the server renumbered {name} without changing UIDVALIDITY; matched "
                 "{matched} messages {how}{gone}").format(name=name, matched=matched, how=how,
                                                         gone=gone)
    if plan.report == "uidvalidity":
        return _("the UIDVALIDITY of {name} changed; matched {matched} messages "
                 "{how}{gone}").format(name=name, matched=matched, how=how, gone=gone)
    if plan.report == "uidl":
        return _("the server gave {n} UIDL(s) of {name} to other messages: fetched them as "
                 "new messages, {content} the same as archived{gone}").format(
                     n=len(plan.suspects), name=name, content=by_content, gone=gone)
    return None


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
