"""An archived message as an APPEND: its bytes (whole or streamed), flags and date.

Split from :mod:`archiver.restore.upload`, which decides *what* goes where;
this decides how one message is put on the wire.

Memory: a message up to ``WHOLE_MAX`` is read whole (and checked against its
recorded size) before its APPEND begins; a larger one is only checked to be
all there (a stat) and then streamed from the archive in chunks.  Either way
its bytes are let go once sent: a retry reads them again.
"""

from __future__ import annotations

from archiver.i18n import _
from archiver.restore.mapping import parse_date
from archiver.restore.match import ident_of
from archiver.restore.target import AppendItem, valid_keyword
from archiver.state import MessageEntry
from archiver.stores.base import CHUNK, ShortMessage, Store

WHOLE_MAX = CHUNK  # bytes: a message up to this size is read whole; larger ones are streamed
STREAM_CHUNK = CHUNK  # bytes read from the archive at a time when streaming
HEAD_MAX = 256 * 1024  # bytes of a streamed message read to identify it without Message-ID


def target_flags(m: MessageEntry, keywords_allowed: bool,
                 permanent: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """The flags the target can store, and how many keywords had to be left out.

    A keyword goes when it is a valid atom and the target takes any keyword
    (``\\*`` in PERMANENTFLAGS) or lists this one; else the APPEND would be refused.
    """
    allowed = {p.lower() for p in permanent}
    keep: list[str] = []
    dropped = 0
    for kw in m.keywords:
        if valid_keyword(kw) and (keywords_allowed or kw.lower() in allowed):
            keep.append(kw)
        else:
            dropped += 1
    return tuple(m.flags) + tuple(keep), dropped


def append_item(store: Store, m: MessageEntry, flags: tuple[str, ...]) -> AppendItem:
    """The APPEND of one archived message, its size checked before anything is sent.

    The token is ``(message, identity)``: the identity (Message-ID, or a hash of
    the head) is the journal key's first part.
    """
    data: bytes | None = None
    head: bytes | None = None  # for the journal key of a message without Message-ID
    if m.size <= WHOLE_MAX:
        data = head = store.read_message(m)
        if len(data) != m.size:
            raise ShortMessage(_("the archive holds {size} bytes, not the {recorded} "
                                 "recorded").format(size=len(data), recorded=m.size))
    else:
        store.check_message(m)
        if not m.message_id:
            head = read_head(store, m)
    chunk = STREAM_CHUNK
    return AppendItem(m.size, flags, parse_date(m.internaldate),
                      (m, ident_of(m.message_id, head)), data=data,
                      read=lambda: store.message_chunks(m, chunk))


def read_head(store: Store, m: MessageEntry) -> bytes:
    """The first HEAD_MAX bytes of a message (its header, as the backup decoded it)."""
    pieces: list[bytes] = []
    have = 0
    for piece in store.message_chunks(m, STREAM_CHUNK):
        pieces.append(piece)
        have += len(piece)
        if have >= HEAD_MAX:
            break
    return b"".join(pieces)[:HEAD_MAX]
