"""Is an archived message already in the target folder?  Multiset matching, robust to rewrites.

People drag some mail across by hand before restoring, a restore killed
between an APPEND's OK and its journal record leaves a message the journal
does not know, and a journal may be lost (or the archive restored from
another PC).  All are found by comparing the target folder's listing with
the archive, allowing for what servers do to a message on APPEND
(:mod:`archiver.restore.normal`: CRLF/LF, bare CRs, NUL -> 0x80, a final
CRLF added):

* identity: the Message-ID (decoded as the index records it); for a target
  message without one, a hash of the start of its normal form -- which an
  archived message *with* a Message-ID also gets compared by, because a
  server may not see a header that only bare CRs separate;
* size: one of the sizes the target may report for the archived bytes;
* INTERNALDATE to the second.  A first pass requires it; a second pass lets
  leftovers match without it (some clients do not keep the date when
  copying by hand).

Bodies are compared (by the hash of the normal form) only where it
matters: when a target message fits two archived messages of different
content (same identity and size -- the target cannot tell which one it
is), or when the caller asks for every match to be checked
(``restore --verify``).  Each target message matches at most one archived
message, so two identical archived messages need two on the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional

from archiver.headers import summarize
from archiver.restore.normal import Profile, head_ident, profile
from archiver.restore.target import TargetMessage


def ident_of(message_id: Optional[str], data: Optional[bytes]) -> str:
    """Identity of an archived message: its Message-ID, else a hash of its head."""
    if message_id:
        return "m:" + message_id
    if data is None:
        return ""
    mid = summarize(data).get("message_id")
    if mid:
        return "m:" + mid
    return profile([data]).head


def target_ident(t: TargetMessage) -> str:
    if t.message_id:
        return "m:" + t.message_id
    head = t.head or b""
    return head_ident(head, complete=len(head) >= t.size)


def epoch(dt: Optional[datetime | str]) -> Optional[int]:
    if dt is None:
        return None
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            return None
    try:
        return int(dt.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


@dataclass
class Candidate:
    """An archived message to look for; ``read`` gives its bytes (in chunks) when needed.

    The bytes are read at most once, and only if the identity or the size
    cannot be decided from the index (no Message-ID; a target size other
    than the archived one) or a body must be compared.
    """

    message_id: Optional[str]
    size: int
    ts: Optional[int]
    sha256: str = ""
    read: Optional[Callable[[], Iterable[bytes]]] = None
    _profile: Optional[Profile] = field(default=None, repr=False)

    def profile(self) -> Optional[Profile]:
        if self._profile is None and self.read is not None:
            try:
                self._profile = profile(self.read())
            except OSError:
                self.read = None
        return self._profile

    @property
    def ident(self) -> str:
        """The identity recorded in the journal's ``key``."""
        return "m:" + self.message_id if self.message_id else self.head()

    def head(self) -> str:
        """The identity by the start of the text (as for a target message without Message-ID)."""
        p = self.profile()
        return p.head if p is not None else ""

    def size_ok(self, size: int) -> bool:
        if size == self.size:
            return True
        p = self.profile()
        return p is not None and size in p.sizes

    def content(self) -> str:
        """What tells two archived messages apart: the normal form's hash (else the bytes')."""
        p = self.profile()
        return p.norm if p is not None else self.sha256

    def body_ok(self, body: Profile) -> bool:
        """Is ``body`` (a downloaded target message) this message, up to the server's rewrites?"""
        p = self.profile()
        return p is not None and body.norm == p.norm


@dataclass(frozen=True)
class Match:
    target: TargetMessage
    altered: Optional[bool]  # the target's bytes differ from the archived ones (None: not fetched)


BodyFetcher = Callable[[Sequence[TargetMessage]], Mapping[int, Profile]]


@dataclass
class Matching:
    """Which candidate (by position) is which target message, and which only nearly are."""

    pairs: dict[int, Match] = field(default_factory=dict)
    # candidates whose identity and size fit a target message whose body turned out different
    differs: set[int] = field(default_factory=set)


def match(candidates: Sequence[Candidate], targets: Sequence[TargetMessage],
          bodies: Optional[BodyFetcher] = None, check_all: bool = False) -> Matching:
    """Pair candidates with distinct target messages; earlier candidates first.

    ``bodies(targets)`` downloads and hashes target messages; it is called for
    the ambiguous ones only, or for every one that fits some candidate when
    ``check_all``.  Without ``bodies`` an ambiguous target is left unmatched
    (so the archived message is uploaded rather than wrongly taken as present).
    """
    by_ident: dict[str, list[TargetMessage]] = {}
    for t in targets:
        by_ident.setdefault(target_ident(t), []).append(t)
    any_heads = any(not k.startswith("m:") for k in by_ident)
    fits: list[list[TargetMessage]] = []
    suitors: dict[int, list[int]] = {}  # target UID -> candidates it fits
    for i, cand in enumerate(candidates):
        keys = ["m:" + cand.message_id] if cand.message_id else []
        if not keys or (keys[0] not in by_ident and any_heads):
            head = cand.head()
            if head:
                keys.append(head)
        options = [t for k in keys for t in by_ident.get(k, ()) if cand.size_ok(t.size)]
        fits.append(options)
        for t in options:
            suitors.setdefault(t.uid, []).append(i)
    need = [t for options in fits for t in options]
    need = list({t.uid: t for t in need
                 if check_all or _contents_differ([candidates[i] for i in suitors[t.uid]])
                 }.values())
    fetched: Mapping[int, Profile] = bodies(need) if need and bodies is not None else {}
    unknown = {t.uid for t in need} - set(fetched)
    result = Matching()
    taken: set[int] = set()
    for strict in (True, False):
        for i, (cand, options) in enumerate(zip(candidates, fits)):
            if i in result.pairs:
                continue
            for t in options:
                if t.uid in taken or t.uid in unknown:
                    continue
                if strict and epoch(t.internaldate) != cand.ts:
                    continue
                body = fetched.get(t.uid)
                if body is not None and not cand.body_ok(body):
                    continue
                # not fetched: a size other than the archived one is the server's rewrite
                # (the size fitted a variant); an equal size says nothing either way
                altered = (body.sha256 != cand.sha256 if body is not None
                           else True if t.size != cand.size else None)
                result.pairs[i] = Match(t, altered)
                taken.add(t.uid)
                break
    result.differs = {i for i, (cand, options) in enumerate(zip(candidates, fits))
                      if i not in result.pairs
                      and any(t.uid in fetched and not cand.body_ok(fetched[t.uid])
                              for t in options)}
    return result


def _contents_differ(cands: list[Candidate]) -> bool:
    """Do these archived messages differ in content?  (Identical twins do not.)"""
    if len({c.sha256 for c in cands}) < 2:
        return False
    return len({c.content() for c in cands}) > 1
