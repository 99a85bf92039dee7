"""Planning a folder: incremental, flags, expunges, UIDVALIDITY as a multiset."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from archiver.plan import Identity, batches, folder_selected, plan_folder, same_message
from archiver.sources.base import MessageMeta
from archiver.state import FolderEntry, MessageEntry


def meta(uid: int, flags: tuple[str, ...] = (), size: int = 10,
         keywords: tuple[str, ...] = ()) -> MessageMeta:
    return MessageMeta(uid=uid, flags=flags, keywords=keywords, internaldate=None, size=size)


def entry(uv: int, uid: int, sha: str = "", flags: tuple[str, ...] = (),
          gone: bool = False) -> MessageEntry:
    return MessageEntry("F", uv, uid, f"F/cur/{uv}.{uid}", 10, sha or f"h{uid}", flags, (), gone)


def folder(*entries: MessageEntry) -> FolderEntry:
    f = FolderEntry(name="F", path="F")
    for e in entries:
        f.messages[(e.uidvalidity, e.uid)] = e
    return f


def test_first_run_fetches_everything() -> None:
    plan = plan_folder(None, 5, [meta(1), meta(2)])
    assert [m.uid for m in plan.to_fetch] == [1, 2] and plan.already == 0


def test_rerun_fetches_only_new_uids() -> None:
    plan = plan_folder(folder(entry(5, 1), entry(5, 2)), 5, [meta(1), meta(2), meta(3)])
    assert [m.uid for m in plan.to_fetch] == [3]
    assert plan.already == 2 and not plan.flag_changes and not plan.gone


def test_flag_and_keyword_changes_are_noticed() -> None:
    plan = plan_folder(folder(entry(5, 1), entry(5, 2, flags=("\\Seen",))), 5,
                       [meta(1, ("\\Seen",)), meta(2, ("\\Seen",), keywords=("$Junk",))])
    assert sorted(m.uid for _, m in plan.flag_changes) == [1, 2]


def test_expunged_messages_are_gone_once() -> None:
    plan = plan_folder(folder(entry(5, 1), entry(5, 2), entry(5, 3, gone=True)), 5, [meta(1)])
    assert [m.uid for m in plan.gone] == [2]


def test_uidvalidity_change_refetches_and_offers_old_copies_as_a_multiset() -> None:
    old = folder(entry(5, 1, sha="same"), entry(5, 2, sha="same"), entry(5, 3, sha="other"))
    plan = plan_folder(old, 9, [meta(10), meta(11)])
    assert [m.uid for m in plan.to_fetch] == [10, 11]
    assert len(plan.reusable["same"]) == 2 and len(plan.reusable["other"]) == 1
    assert plan.uidvalidity_changed and not plan.gone


def test_batches_are_bounded_by_bytes_and_big_ones_stand_alone() -> None:
    metas = [meta(i, size=s) for i, s in enumerate([40, 40, 40, 500, 10, 10], 1)]
    got = [[m.uid for m in b] for b in batches(metas, max_bytes=100, max_count=10,
                                                  stream_threshold=200)]
    assert got == [[1, 2], [3], [4], [5, 6]]


def test_folder_globs_match_children_and_inbox_case() -> None:
    assert folder_selected("Archive/2003", ["Archive"], [])
    assert not folder_selected("Sent", ["Archive"], [])
    assert not folder_selected("Archive/2003", [], ["Archive/*"])
    assert folder_selected("INBOX", ["inbox"], [])
    assert folder_selected("受信箱/講義", ["受信箱*"], [])


# ---------------------------------------------------------------- is a known UID still its message?

WHEN = datetime(2004, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=9)))


def dated(uid: int, size: int = 10, when: datetime = WHEN, flags: tuple[str, ...] = (),
          rfc822_size: Optional[int] = 10) -> tuple[MessageEntry, MessageMeta]:
    e = entry(5, uid, flags=flags)
    e.size, e.internaldate, e.rfc822_size = 10, WHEN.isoformat(), rfc822_size
    return e, MessageMeta(uid=uid, flags=(), keywords=(), internaldate=when, size=size)


def test_a_known_uid_keeps_its_message_when_size_and_internaldate_agree() -> None:
    e, m = dated(1)
    assert same_message(e, m) is Identity.SAME
    e, m = dated(1, when=WHEN.astimezone(timezone.utc))  # the same instant, another offset
    assert same_message(e, m) is Identity.SAME


def test_another_rfc822_size_or_internaldate_means_the_uid_names_another_message() -> None:
    assert same_message(*dated(1, size=11)) is Identity.DIFFERENT
    assert same_message(*dated(1, when=WHEN + timedelta(seconds=1))) is Identity.DIFFERENT


def test_a_record_without_rfc822_size_compares_the_stored_size_and_is_only_unsure() -> None:
    """A server may report another RFC822.SIZE than the bytes it serves: no false alarm."""
    assert same_message(*dated(1, size=10, rfc822_size=None)) is Identity.SAME
    assert same_message(*dated(1, size=12, rfc822_size=None)) is Identity.UNSURE
    assert same_message(*dated(1, size=12, rfc822_size=None,
                               when=WHEN + timedelta(hours=1))) is Identity.DIFFERENT


def test_an_unknown_internaldate_is_no_evidence() -> None:
    e, m = dated(1)
    e.internaldate = None
    assert same_message(e, m) is Identity.SAME
    pop3 = MessageMeta(uid=1, flags=(), keywords=(), internaldate=None, size=10, uidl="u")
    assert same_message(dated(1)[0], pop3) is Identity.SAME


def test_suspect_uids_are_never_flag_changes() -> None:
    a, ma = dated(1, flags=("\\Seen",))
    b, mb = dated(2, size=99)  # UID 2 names another message now
    plan = plan_folder(folder(a, b), 5, [ma, MessageMeta(2, ("\\Flagged",), (), WHEN, 99)])
    assert [m.uid for _, m in plan.flag_changes] == [1]
    assert [(e.uid, m.uid) for e, m in plan.suspects] == [(2, 2)]


def test_a_pop3_sight_linked_before_links_kept_the_list_size_is_not_checked() -> None:
    sight = MessageEntry("F", 0, 7, "F/cur/x", 10, "h", (), (), uidl="u", linked_to=(5, 1))
    listed = MessageMeta(uid=7, flags=(), keywords=(), internaldate=None, size=12, uidl="u")
    assert not plan_folder(folder(sight), 0, [listed]).suspects
    sight.rfc822_size = 10
    assert plan_folder(folder(sight), 0, [listed]).suspects
