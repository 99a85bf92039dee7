"""Which damaged messages a listed folder can give back (archiver.repair, pure logic)."""

from __future__ import annotations

from typing import Optional

from archiver.index import uid_for_uidl
from archiver.repair import unrepairable_reason
from archiver.sources.base import MessageMeta
from archiver.state import MessageEntry


def _imap(uidvalidity: int, uid: int) -> MessageEntry:
    return MessageEntry("INBOX", uidvalidity, uid, "INBOX/cur/x", 1, "h", (), ())


def _pop3(uidl: str) -> MessageEntry:
    return MessageEntry("INBOX", 0, uid_for_uidl(uidl), "INBOX/cur/y", 1, "h", (), (),
                        uidl=uidl)


def _reason(entry: MessageEntry, uidvalidity: int, listed: set[int]) -> Optional[str]:
    """``listed``: the UIDs (POP3: numbers from the UIDLs) of a listing of what was archived."""
    return unrepairable_reason(entry, uidvalidity, {uid: _meta(uid, 1) for uid in listed})


def _meta(uid: int, size: int) -> MessageMeta:
    return MessageMeta(uid=uid, flags=(), keywords=(), internaldate=None, size=size)


def test_imap_message_is_fetched_only_under_the_same_uidvalidity_and_uid() -> None:
    assert _reason(_imap(7, 3), 7, {1, 3}) is None
    assert "expunged" in str(_reason(_imap(7, 3), 7, {1, 2}))
    assert "UIDVALIDITY changed" in str(_reason(_imap(7, 3), 8, {3}))


def test_pop3_sight_is_fetched_only_while_its_uidl_is_listed() -> None:
    sight = _pop3("abc")
    assert _reason(sight, 0, {sight.uid}) is None
    assert "UIDL is no longer listed" in str(_reason(sight, 0, set()))


def test_each_protocol_repairs_only_what_it_archived() -> None:
    sight = _pop3("abc")
    assert "pop3s://" in str(_reason(sight, 7, {sight.uid}))
    assert "imaps://" in str(_reason(_imap(7, 3), 0, {3}))
    orphan = _imap(0, 12345)  # an mbox message reindexed without a snapshot
    assert "unknown" in str(_reason(orphan, 7, {12345}))
    assert "unknown" in str(_reason(orphan, 0, {12345}))


def test_a_uid_that_now_names_another_message_is_not_fetched_for_it() -> None:
    """The folder was renumbered without a new UIDVALIDITY: the UID's size is another's."""
    damaged = _imap(7, 3)
    damaged.rfc822_size = 1
    assert unrepairable_reason(damaged, 7, {3: _meta(3, 1)}) is None
    assert "renumbered" in str(unrepairable_reason(damaged, 7, {3: _meta(3, 99)}))
