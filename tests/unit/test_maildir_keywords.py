"""Keyword letters in Maildir file names and the ``dovecot-keywords`` file that names them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from archiver.naming import PORTABLE, Naming
from archiver.offline.reindex import _keywords
from archiver.stores.base import Incoming, Rename
from archiver.stores.maildir import MaildirStore, file_name, flags_from_info
from archiver.stores.maildir_keywords import KEYWORDS_FILE, FolderLetters, parse, read_letters

WHEN = datetime(2020, 1, 2, tzinfo=timezone.utc)


def _write(store: MaildirStore, items: list[tuple[int, tuple[str, ...], tuple[str, ...]]]
           ) -> list[str]:
    batch = [Incoming(7, uid, flags, kws, WHEN, data=f"m{uid}".encode())
             for uid, flags, kws in items]
    staged, stored = store.stage_batch("F", batch)
    store.commit_staged(staged)
    return [s.path.rsplit("/", 1)[1] for s in stored]


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    s = MaildirStore(tmp_path)
    s.prepare_folder("F")
    return s


def test_keywords_get_lowercase_letters_sorted_after_the_flags(
        store: MaildirStore, tmp_path: Path) -> None:
    names = _write(store, [(1, ("\\Seen",), ("$Forwarded", "Junk")), (2, (), ("todo", "Junk"))])
    assert (tmp_path / "F" / KEYWORDS_FILE).read_text() == "0 $Forwarded\n1 Junk\n2 todo\n"
    # $Forwarded: P for mutt, its letter for Dovecot; uppercase before lowercase
    assert names == ["7.1.archiver:2,PSab", "7.2.archiver:2,bc"]


def test_a_letter_keeps_its_meaning_across_runs(store: MaildirStore, tmp_path: Path) -> None:
    _write(store, [(1, (), ("zeta",))])
    again = MaildirStore(tmp_path)  # a rerun: a new store reads the file back
    assert _write(again, [(2, (), ("alpha", "zeta"))]) == ["7.2.archiver:2,ab"]
    assert read_letters(tmp_path / "F") == {0: "zeta", 1: "alpha"}


def test_a_flag_change_renames_with_the_right_letters(store: MaildirStore, tmp_path: Path) -> None:
    _write(store, [(1, (), ("one",))])
    assert store.rename("F", [Rename("7.1.archiver", 7, 1, ("\\Seen",), ("two", "one"))]) == [
        "F/cur/7.1.archiver:2,Sab"]
    assert read_letters(tmp_path / "F") == {0: "one", 1: "two"}
    assert store.rename("F", [Rename("7.1.archiver", 7, 1, (), ("two",))]) == [
        "F/cur/7.1.archiver:2,b"]


def test_the_keywords_file_is_written_before_a_name_uses_its_letter(
        store: MaildirStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is durable when stage_batch returns: the renames into cur/ come later."""
    batch = [Incoming(7, 1, (), ("new",), WHEN, data=b"x")]
    staged, stored = store.stage_batch("F", batch)
    assert read_letters(tmp_path / "F") == {0: "new"}
    assert not list((tmp_path / "F" / "cur").iterdir())
    store.commit_staged(staged)
    assert stored[0].path.endswith(":2,a")


def test_past_26_keywords_stay_in_the_index_and_are_noted_once(
        store: MaildirStore, tmp_path: Path) -> None:
    many = tuple(f"k{i:02d}" for i in range(28))
    names = _write(store, [(1, (), many), (2, (), ("k27",))])
    assert names[0] == "7.1.archiver:2," + "abcdefghijklmnopqrstuvwxyz"
    assert names[1] == "7.2.archiver:2,"
    assert len(read_letters(tmp_path / "F")) == 26
    assert len(store.notes) == 1 and "k26, k27" in store.notes[0]
    _write(store, [(3, (), ("k26",))])
    assert len(store.notes) == 1  # once per folder


def test_keywords_differing_only_in_case_share_a_letter(store: MaildirStore) -> None:
    assert _write(store, [(1, (), ("Junk",)), (2, (), ("junk",))]) == [
        "7.1.archiver:2,a", "7.2.archiver:2,a"]


def test_portable_names_carry_no_letters(tmp_path: Path) -> None:
    """No reader sees letters after ';2,', and they would eat the Windows path budget."""
    store = MaildirStore(tmp_path, naming=Naming(PORTABLE))
    store.prepare_folder("F")
    assert _write(store, [(1, ("\\Flagged",), ("x", "$Forwarded"))]) == [
        "7.1.archiver;2,FP"]
    assert not (tmp_path / "F" / KEYWORDS_FILE).exists()
    letters = FolderLetters(tmp_path)
    letters.assign(("$Forwarded", "x"))
    assert file_name(1, 2, ("\\Flagged",), ("x", "$Forwarded"), ":", letters) == \
        "1.2.archiver:2,FPab"


def test_lowercase_letters_are_not_flags() -> None:
    assert flags_from_info("RSab") == ("\\Answered", "\\Seen")


def test_reindex_recovers_keywords_from_the_letters() -> None:
    letters = parse("0 $Forwarded\n1 Junk\n2 todo\nbroken line\n99 out-of-range\n")
    assert letters == {0: "$Forwarded", 1: "Junk", 2: "todo"}
    assert _keywords("PSac", letters, []) == ["$Forwarded", "todo"]
    # a keyword past the 26th (no letter) comes only from the snapshot
    assert _keywords("S", letters, ["Junk", "k27"]) == ["k27"]
    assert _keywords("P", {}, []) == ["$Forwarded"]


def test_letters_of_a_lost_keywords_file_are_never_given_again(
        store: MaildirStore, tmp_path: Path) -> None:
    _write(store, [(1, (), ("one", "two"))])
    (tmp_path / "F" / KEYWORDS_FILE).unlink()
    again = MaildirStore(tmp_path)
    assert _write(again, [(2, (), ("three",))]) == ["7.2.archiver:2,c"]
    assert read_letters(tmp_path / "F") == {2: "three"}
