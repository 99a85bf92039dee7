"""Is an archived message already in the target folder?  Multiset matching, robust to CRLF.

People drag some mail across by hand before restoring, and a restore killed
between an APPEND's OK and its journal record leaves a message the journal
does not know.  Both are found by comparing the target folder's listing with
the archive:

* identity: the Message-ID (decoded as the index records it), else a hash of
  the message's first 1,000 bytes after line-end normalisation (CRLF -> LF,
  NUL -> 0x80) -- for messages without a Message-ID;
* size: the archived size, or the size with bare LFs made CRLF (Dovecot
  stores APPENDed mail with LF and reports RFC822.SIZE with CRLF; a final
  CR may be dropped);
* INTERNALDATE to the second.  A first pass requires it; a second pass lets
  leftovers match without it (some clients do not keep the date when
  copying by hand).

Each target message matches at most one archived message, so two identical
archived messages need two on the target.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from archiver.headers import summarize
from archiver.restore.target import HEAD_BYTES, TargetMessage

IDENT_BYTES = 1000
_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(data: bytes) -> bytes:
    return _BARE_LF.sub(b"\r\n", data)


def head_ident(served_prefix: bytes) -> str:
    """Identity of a message without Message-ID from the first HEAD_BYTES as served (CRLF)."""
    norm = served_prefix[:HEAD_BYTES].replace(b"\r\n", b"\n").replace(b"\0", b"\x80")
    return "h:" + hashlib.sha256(norm[:IDENT_BYTES]).hexdigest()[:32]


def ident_of(message_id: Optional[str], data: Optional[bytes]) -> str:
    """Identity of an archived message: its Message-ID, else a hash of its head."""
    if message_id:
        return "m:" + message_id
    if data is None:
        return ""
    mid = summarize(data).get("message_id")
    if mid:
        return "m:" + mid
    return head_ident(crlf(data[: HEAD_BYTES * 2]))


def target_ident(t: TargetMessage) -> str:
    if t.message_id:
        return "m:" + t.message_id
    return head_ident(t.head or b"")


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
    """An archived message to look for; ``load`` gives its bytes when the size needs them."""

    ident: str
    size: int
    ts: Optional[int]
    load: Optional[Callable[[], bytes]] = None
    _sizes: Optional[set[int]] = field(default=None, repr=False)

    def size_ok(self, size: int) -> bool:
        if size == self.size:
            return True
        if self.load is None:
            return False
        if self._sizes is None:
            try:
                data = self.load()
            except OSError:
                data = b""
            self._sizes = {len(crlf(data)), len(crlf(data.rstrip(b"\r"))), len(data)}
        return size in self._sizes


def match(candidates: Sequence[Candidate], targets: Sequence[TargetMessage]
          ) -> dict[int, TargetMessage]:
    """Pair candidates (by position) with distinct target messages; earlier ones first."""
    pool: dict[str, list[TargetMessage]] = {}
    for t in targets:
        pool.setdefault(target_ident(t), []).append(t)
    out: dict[int, TargetMessage] = {}
    for strict in (True, False):
        for i, cand in enumerate(candidates):
            if i in out or not cand.ident:
                continue
            options = pool.get(cand.ident)
            if not options:
                continue
            for j, t in enumerate(options):
                if strict and epoch(t.internaldate) != cand.ts:
                    continue
                if cand.size_ok(t.size):
                    out[i] = options.pop(j)
                    break
    return out
