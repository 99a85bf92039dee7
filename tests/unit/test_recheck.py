"""Which landed records a restore rerun may trust (archiver.restore.recheck, pure logic)."""

from __future__ import annotations

from archiver.restore.journal import Landed
from archiver.restore.recheck import still_landed
from archiver.state import MessageEntry


def _landed(uid: int, to_uid: int | None, size: int = 10,
            to_uidvalidity: int = 7) -> tuple[MessageEntry, Landed]:
    m = MessageEntry("F", 5, uid, f"F/cur/5.{uid}", size, f"h{uid}", (), ())
    return m, Landed("F", to_uidvalidity, to_uid, ("m:<x>", size, None))


def _check(confirmed: list[tuple[MessageEntry, Landed]], sizes: dict[int, int]
           ) -> tuple[list[int], list[int]]:
    kept, doubtful = still_landed(confirmed, 7, sizes, lambda m, size: size == m.size + 2)
    return [m.uid for m, _ in kept], [m.uid for m in doubtful]


def test_a_landed_uid_is_trusted_while_it_holds_a_message_of_that_size() -> None:
    assert _check([_landed(1, 11), _landed(2, 12)], {11: 10, 12: 12}) == ([1, 2], [])


def test_a_uid_gone_or_naming_another_size_is_looked_for_again() -> None:
    assert _check([_landed(1, 11), _landed(2, 12)], {11: 99}) == ([], [1, 2])


def test_two_records_claiming_one_uid_are_both_looked_for_again() -> None:
    assert _check([_landed(1, 11), _landed(2, 11)], {11: 10}) == ([], [1, 2])


def test_a_record_without_appenduid_is_left_to_the_dedup_key() -> None:
    assert _check([_landed(1, None)], {}) == ([1], [])
