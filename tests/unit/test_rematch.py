"""Matching a folder whose UIDs cannot be trusted (archiver.rematch, pure logic)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from archiver.rematch import (
    PARKED_UIDVALIDITY,
    arrange,
    header_candidates,
    header_digest,
    match,
)
from archiver.sources.base import MessageMeta
from archiver.state import FolderEntry, MessageEntry

WHEN = datetime(2004, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=9)))


def held(uid: int, size: int = 10, sha: str = "", when: datetime = WHEN,
         rfc822_size: Optional[int] = None, uv: int = 5, gone: bool = False) -> MessageEntry:
    e = MessageEntry("F", uv, uid, f"F/cur/{uv}.{uid}", size, sha or f"h{uid}", (), (), gone)
    e.internaldate, e.rfc822_size = when.isoformat(), rfc822_size if rfc822_size else size
    return e


def served(uid: int, size: int = 10, when: datetime = WHEN,
           flags: tuple[str, ...] = ()) -> MessageMeta:
    return MessageMeta(uid=uid, flags=flags, keywords=(), internaldate=when, size=size)


def folder(*entries: MessageEntry) -> FolderEntry:
    f = FolderEntry(name="F", path="F")
    for e in entries:
        f.messages[(e.uidvalidity, e.uid)] = e
    return f


def test_header_digest_is_the_same_for_body_header_and_the_stored_message() -> None:
    stored = b"Subject: x\r\nFrom: a\r\n\r\nbody\r\n"
    assert header_digest(b"Subject: x\r\nFrom: a\r\n\r\n") == header_digest(stored)
    assert header_digest(b"Subject: x\nFrom: a\n\nbody\n") == header_digest(stored)
    assert header_digest(b"Subject: y\r\nFrom: a\r\n\r\n") != header_digest(stored)


def test_only_messages_an_archived_one_could_be_are_header_candidates() -> None:
    pool = [held(1, size=10), held(2, size=20, when=WHEN + timedelta(days=1))]
    metas = [served(7, size=10), served(8, size=20), served(9, size=11)]
    assert [m.uid for m in header_candidates(pool, metas)] == [7]
    legacy = held(3, size=10)
    legacy.rfc822_size = None  # its stored size may not be what the server reports
    assert [m.uid for m in header_candidates([legacy], metas)] == [7, 8, 9]


def test_pairs_need_the_same_date_digest_and_size() -> None:
    a, b, c = held(1, size=10), held(2, size=20), held(3, size=30)
    metas = [served(11, size=20), served(12, size=10), served(13, size=31)]
    got = match([a, b, c], metas, {11: "B", 12: "A", 13: "C"},
                {(5, 1): "A", (5, 2): "B", (5, 3): "C"})
    assert sorted((e.uid, m.uid) for e, m in got.pairs) == [(1, 12), (2, 11)]
    assert [m.uid for m in got.unmatched] == [13]  # its size is not the archived one's
    assert [e.uid for e in got.pool] == [3]


def test_an_ambiguous_group_is_fetched_whole() -> None:
    """Two server messages with one archived message's headers: the body decides."""
    got = match([held(1)], [served(7), served(8)], {7: "A", 8: "A"}, {(5, 1): "A"})
    assert not got.pairs and [m.uid for m in got.unmatched] == [7, 8]
    assert [e.uid for e in got.pool] == [1]


def test_identical_twins_pair_up_but_lookalikes_with_other_bodies_do_not() -> None:
    twins = [held(1, sha="same"), held(2, sha="same")]
    got = match(twins, [served(8), served(7)], {7: "T", 8: "T"}, {(5, 1): "T", (5, 2): "T"})
    assert sorted((e.uid, m.uid) for e, m in got.pairs) == [(1, 7), (2, 8)]
    lookalikes = [held(1, sha="x"), held(2, sha="y")]
    got = match(lookalikes, [served(7), served(8)], {7: "T", 8: "T"},
                {(5, 1): "T", (5, 2): "T"})
    assert not got.pairs and len(got.unmatched) == 2


def test_a_missing_archived_file_is_never_paired_by_headers() -> None:
    got = match([held(1)], [served(7)], {7: "A"}, {})
    assert not got.pairs and [m.uid for m in got.unmatched] == [7]


def test_renumbered_folder_parks_what_a_listed_uid_now_names_and_moves_the_rest() -> None:
    a, b, c = held(1, size=10), held(2, size=20), held(3, size=30)
    expunged = held(4, size=40, gone=True)
    earlier = held(1, uv=PARKED_UIDVALIDITY, gone=True)  # parked by an earlier run
    f = folder(a, b, c, expunged, earlier)
    listing = [served(1, size=20), served(2, size=30), served(4, size=10), served(3, size=99)]
    got = match([a, b, c], listing, {1: "B", 2: "C", 4: "A", 3: "N"},
                {(5, 1): "A", (5, 2): "B", (5, 3): "C"})
    plan = arrange(f, 5, listing, got, distrust=True)
    # Every archived message under a listed UID steps aside first, the expunged one too.
    assert [(e.uid, c.uidvalidity, c.uid) for e, c in plan.parked] == [
        (1, PARKED_UIDVALIDITY, 2), (2, PARKED_UIDVALIDITY, 3), (3, PARKED_UIDVALIDITY, 4),
        (4, PARKED_UIDVALIDITY, 5)]
    moves = {(e.uid, (src.uidvalidity, src.uid), m.uid) for e, src, m in plan.moves}
    assert moves == {(2, (PARKED_UIDVALIDITY, 3), 1), (3, (PARKED_UIDVALIDITY, 4), 2),
                     (1, (PARKED_UIDVALIDITY, 2), 4)}
    assert not plan.pool and not plan.stays


def test_a_confirmed_uid_stays_and_learns_the_servers_size() -> None:
    same = held(1, size=10)
    legacy = held(2, size=20)
    legacy.rfc822_size = None
    listing = [served(1, size=10, flags=("\\Seen",)), served(2, size=21)]
    got = match([same, legacy], listing, {1: "A", 2: "B"}, {(5, 1): "A", (5, 2): "B"})
    plan = arrange(folder(same, legacy), 5, listing, got, distrust=True)
    assert not plan.parked
    assert [(e.uid, m.uid) for e, m in plan.stays] == [(1, 1)]  # a flag change, nothing more
    assert [(src.uid, m.uid, m.size) for _, src, m in plan.moves] == [(2, 2, 21)]  # re-recorded


def test_unmatched_archived_messages_are_the_pool_under_their_parked_keys() -> None:
    a = held(1, size=10)
    listing = [served(1, size=55)]
    got = match([a], listing, {}, {(5, 1): "A"})
    plan = arrange(folder(a), 5, listing, got, distrust=True)
    assert [(e.uidvalidity, e.uid) for e in plan.pool] == [(PARKED_UIDVALIDITY, 1)]
    assert plan.pool[0] is plan.parked[0][1]
