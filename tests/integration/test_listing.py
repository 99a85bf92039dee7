"""A big folder's listing is asked in UID ranges, completely, and parsed the same way.

``UID FETCH 1:*`` of a 200,000-message folder held every answer line and its
parse at once; archiver/sources/imap.py ``list_messages`` now asks in ranges
of about ``listing_range`` messages, sized by UIDNEXT so sparse UIDs cost no
more commands, and reads the usual answer shape with a regex.
"""

from __future__ import annotations

import random
import re

import pytest
from imapclient.datetime_util import parse_to_datetime

from archiver.account import TLSOptions, parse_endpoint
from archiver.sources.base import MessageMeta
from archiver.sources.imap import ImapSource
from archiver.sources.imap_listing import _internaldate
from tests.fakeimap import FakeImap, Mailbox


def _list(server: FakeImap, listing_range: int) -> list[MessageMeta]:
    ep = parse_endpoint(f"imap://u@127.0.0.1:{server.port}", tls=TLSOptions(plaintext=True))
    src = ImapSource(ep, "pw")
    src.listing_range = listing_range
    src.connect()
    try:
        inbox = next(f for f in src.folders() if f.name == "INBOX")
        opened = src.open_folder(inbox)
        return src.list_messages(opened.messages)
    finally:
        src.close()


def _listing_commands(server: FakeImap) -> list[str]:
    return [m.group(1).decode() for c in server.commands
            for m in [re.search(rb"UID FETCH (\S+) \(UID FLAGS", c)] if m]


def _box(uids: list[int]) -> Mailbox:
    return {b"INBOX": {u: b"Subject: %d\r\n\r\n%s\r\n" % (u, b"x" * (u % 7)) for u in uids}}


def test_a_folder_is_listed_in_uid_ranges_each_message_once() -> None:
    with FakeImap(_box(list(range(1, 46)))) as srv:
        metas = _list(srv, 10)
    assert [m.uid for m in metas] == list(range(1, 46))
    # UIDNEXT 46 over 45 messages: ranges of ceil(10 * 46 / 45) = 11 UIDs
    assert _listing_commands(srv) == ["1:11", "12:22", "23:33", "34:44", "45:*"]


def test_sparse_uids_cost_no_more_commands() -> None:
    """25 messages spread up to UID 900,000: ranges widen with UIDNEXT / messages."""
    uids = [1, 2, 3, *range(100_000, 100_021), 900_000]
    with FakeImap(_box(uids)) as srv:
        metas = _list(srv, 10)
    assert [m.uid for m in metas] == uids
    assert len(_listing_commands(srv)) <= 2 * len(uids) // 10 + 2, _listing_commands(srv)


class HighUidnext(FakeImap):
    """UIDNEXT far above the highest UID (the newest messages were expunged)."""

    def reply_examine(self, tag: bytes, rest: bytes) -> bytes:
        return super().reply_examine(tag, rest).replace(b"[UIDNEXT 21]", b"[UIDNEXT 100]")


def test_an_open_range_past_the_highest_uid_does_not_list_it_twice() -> None:
    """``51:*`` answers the highest UID (20) again: it is listed once."""
    with HighUidnext(_box(list(range(1, 21)))) as srv:
        metas = _list(srv, 10)
    assert [m.uid for m in metas] == list(range(1, 21))
    assert _listing_commands(srv)[-1].endswith(":*")
    assert len(_listing_commands(srv)) >= 2


class Shapes(FakeImap):
    """Every other answer in another item order (and with keywords): imapclient's
    parser reads those, the regex the rest; both must give the same records."""

    def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
        if uid % 2:
            return (b'* %d FETCH (RFC822.SIZE %d UID %d INTERNALDATE "01-Jan-2024 10:00:00 '
                    b'+0900" FLAGS (\\Seen $Label%d))\r\n' % (seq, len(body), uid, uid % 3))
        return (b'* %d FETCH (UID %d FLAGS (\\Seen $Label%d) INTERNALDATE "01-Jan-2024 '
                b'10:00:00 +0900" RFC822.SIZE %d)\r\n' % (seq, uid, uid % 3, len(body)))


@pytest.mark.parametrize("listing_range", [1000, 3])
def test_both_parsers_give_the_same_listing(listing_range: int) -> None:
    box = _box(list(range(1, 11)))
    with Shapes(box) as srv:
        metas = _list(srv, listing_range)
    assert [(m.uid, m.flags, m.keywords, m.size) for m in metas] == [
        (u, ("\\Seen",), (f"$Label{u % 3}",), len(box[b"INBOX"][u])) for u in range(1, 11)]
    assert len({m.internaldate for m in metas}) == 1
    assert metas[0].internaldate is not None and metas[0].internaldate.utcoffset() is not None
    assert metas[0].internaldate.isoformat() == "2024-01-01T10:00:00+09:00"


def test_listed_dates_share_their_zone() -> None:
    """One tzinfo per offset, not one per message (most of a listing's memory)."""
    with FakeImap(_box(list(range(1, 31)))) as srv:
        metas = _list(srv, 1000)
    assert len({id(m.internaldate.tzinfo) for m in metas if m.internaldate}) == 1


@pytest.mark.parametrize("seed", range(3))
def test_internaldate_reads_as_imapclient_does(seed: int) -> None:
    rng = random.Random(seed)
    months = ["Jan", "feb", "MAR", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    for _ in range(500):
        day = rng.randint(1, 31)
        raw = (f"{day:2d}" if rng.random() < 0.5 else f"{day:02d}") + \
            f"-{rng.choice(months)}-{rng.randint(1970, 2038)} {rng.randint(0, 23):02d}:" \
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {rng.choice('+-')}" \
            f"{rng.randint(0, 14):02d}{rng.choice([0, 30, 45]):02d}"
        try:
            want = parse_to_datetime(raw.encode(), normalise=False)
        except ValueError:
            want = None
        got = _internaldate(raw.encode())
        assert got == want, raw
        if got is not None and want is not None:
            assert got.utcoffset() == want.utcoffset() and got.isoformat() == want.isoformat()
