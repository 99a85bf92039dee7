"""Large messages that survive a cut: resumable spools for the engine's streaming.

A message above ``stream_threshold`` is fetched in ``BODY.PEEK[]<offset.length>``
pieces into a spool file in the store's tmp area.  Over IMAP that spool is
*resumable*: each piece is fsynced and then counted in a sidecar
(``<spool>.json``, see :func:`archiver.stores.base.open_spool`), so a
connection lost in the middle -- or a killed run -- costs at most the piece
in flight.  The engine redoes the folder pass after a reconnect (and a rerun
plans the folder again); both come back here and ask only for the rest.

Safety: a spool is continued only when its sidecar records exactly this
message -- folder, UIDVALIDITY, UID, RFC822.SIZE and INTERNALDATE -- and the
server's answer from ``offset - RESUME_OVERLAP`` repeats the last bytes on
disk.  A sidecar that differs (another message, or this UID with a changed
size or date), a missing or unreadable one, or a differing overlap starts the
message over from byte 0: a stored message is never a splice of two.

POP3 (RETR/TOP) cannot start in the middle of a message: its spool is always
fresh, and a cut POP3 message is fetched again whole.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from archiver.sources.base import FetchFailed, MessageMeta, ResumeMismatch
from archiver.stores.base import Spool, Store

if TYPE_CHECKING:
    from archiver.plan import FolderPlan
    from archiver.sources.base import Source

log = logging.getLogger("archiver.resume")

RESUME_OVERLAP = 4096  # bytes a resumed message must repeat before anything is appended


def spool_ident(path: str, uidvalidity: int, meta: MessageMeta) -> Optional[dict[str, Any]]:
    """What a resumable spool must record to be continued; None: not resumable (POP3, or
    no INTERNALDATE to tell two messages under the same UID apart)."""
    if meta.uidl is not None or meta.internaldate is None:
        return None
    return {"folder": path, "uidvalidity": uidvalidity, "uid": meta.uid,
            "rfc822_size": meta.size, "internaldate": meta.internaldate.isoformat()}


def stream_message(source: Source, store: Store, path: str, uidvalidity: int,
                   meta: MessageMeta, chunk: int) -> Spool:
    """The whole message in a spool (fd open, ready for the store's stage_batch).

    Raises FetchFailed (the spool removed) when the server will not deliver it;
    anything else (ConnectionLost, KeyboardInterrupt) leaves the spool and its
    sidecar for the next attempt.
    """
    ident = spool_ident(path, uidvalidity, meta)
    for _ in range(2):  # a second, fresh attempt after a refused resume
        spool = store.spool(path, uidvalidity, meta.uid, ident)
        try:
            source.fetch_stream(meta.uid, meta.size, spool.write, chunk, offset=spool.size,
                                overlap=spool.tail(min(RESUME_OVERLAP, chunk // 2)))
        except ResumeMismatch as exc:
            spool.discard()
            log.info("%s: %s; fetching the message again from its start", path, exc)
            continue
        except FetchFailed:
            spool.discard()
            raise
        except BaseException:
            spool.close()  # kept, with what its sidecar vouches for
            raise
        return spool
    raise FetchFailed(meta.uid, _("the server's bytes differ from what it sent a moment "
                                "before; run the same command again"))


def prune_partials(store: Store, path: str, plan: FolderPlan, threshold: int) -> None:
    """Partial spools of messages no longer to be fetched (expunged, archived meanwhile, a
    new UIDVALIDITY) go; the others wait for :func:`stream_message`."""
    keep = {(plan.uidvalidity, m.uid) for m in plan.to_fetch
            if m.size > threshold and m.uidl is None}
    store.prune_partials(path, keep)
