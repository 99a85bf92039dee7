"""Is a landed message still where the journal says?  A target's UID is not trusted blindly.

The journal records the UID each APPEND got (APPENDUID).  A target that
renumbers a folder without changing its UIDVALIDITY (Courier-IMAP does), or
loses a message, makes that UID name another message or none.  Trusting it
skips the message although it is not there, and keeps the message that now
has the UID out of the dedup listing, so a message found there is uploaded a
second time.  So before a rerun trusts a ``landed`` record its ``to_uid`` must
be listed with the recorded size (up to the line-end conversions
:mod:`archiver.restore.match` allows), and no other record may claim the same
UID; the rest is looked for by the dedup listing, and uploaded if not found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Optional

from archiver.restore.journal import Landed
from archiver.state import MessageEntry


def still_landed(confirmed: Sequence[tuple[MessageEntry, Landed]], uidvalidity: int,
                 sizes: Mapping[int, int], fits: Callable[[MessageEntry, int], bool]
                 ) -> tuple[list[tuple[MessageEntry, Landed]], list[MessageEntry]]:
    """(records still true, messages to look for again).

    ``sizes``: the target folder's UID -> RFC822.SIZE; ``fits(message, size)``:
    whether a listed size can be the archived message's.  A record without a
    UID (no UIDPLUS) is matched by its key in the dedup, as before.
    """
    claims = Counter(landed.to_uid for _, landed in confirmed if _uid(landed, uidvalidity))
    kept: list[tuple[MessageEntry, Landed]] = []
    doubtful: list[MessageEntry] = []
    for m, landed in confirmed:
        uid = _uid(landed, uidvalidity)
        size = sizes.get(uid) if uid is not None else None
        if uid is None or (size is not None and claims[uid] == 1
                           and (size == landed.key[1] or fits(m, size))):
            kept.append((m, landed))
        else:
            doubtful.append(m)
    return kept, doubtful


def _uid(landed: Landed, uidvalidity: int) -> Optional[int]:
    return landed.to_uid if landed.to_uidvalidity == uidvalidity else None
