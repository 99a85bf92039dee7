"""Planning a folder: incremental, flags, expunges, UIDVALIDITY as a multiset."""

from __future__ import annotations

from archiver.plan import batches, folder_selected, plan_folder
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
