"""Maildir file names under re-filing: never one message onto another, a crash undone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archiver.errors import DestinationError
from archiver.state import MessageEntry
from archiver.stores.base import Rename
from archiver.stores.maildir import MaildirStore


def _store(tmp_path: Path, files: dict[str, bytes]) -> MaildirStore:
    store = MaildirStore(tmp_path)
    store.prepare_folder("F")
    for name, data in files.items():
        (tmp_path / "F" / "cur" / name).write_bytes(data)
    return store


def _entry(uid: int, name: str, data: bytes) -> MessageEntry:
    return MessageEntry("F", 5, uid, f"F/cur/{name}", len(data),
                        hashlib.sha256(data).hexdigest(), (), ())


def test_a_rename_onto_another_messages_name_is_refused_and_both_stay(tmp_path: Path) -> None:
    store = _store(tmp_path, {"5.1.archiver:2,S": b"one", "5.2.archiver:2,": b"two"})
    with pytest.raises(DestinationError):
        store.rename("F", [Rename("5.1.archiver", 5, 2, (), ())])
    assert sorted(p.read_bytes() for p in (tmp_path / "F" / "cur").iterdir()) == [b"one", b"two"]
    assert store.rename("F", [Rename("5.1.archiver", 5, 1, (), ())]) == ["F/cur/5.1.archiver:2,"]


def test_a_crashs_unrecorded_copy_of_the_same_bytes_under_the_new_name_is_dropped(
        tmp_path: Path) -> None:
    """A fetched copy written, then the run died before recording it: the archived
    file moving to that name replaces it, and no second file with the name is left."""
    store = _store(tmp_path, {"4.1.archiver:2,S": b"same", "5.2.archiver:2,": b"same"})
    assert store.rename("F", [Rename("4.1.archiver", 5, 2, ("\\Seen",), ())]) == [
        "F/cur/5.2.archiver:2,S"]
    assert [p.name for p in (tmp_path / "F" / "cur").iterdir()] == ["5.2.archiver:2,S"]


def test_repair_puts_back_a_file_a_crash_left_under_an_unrecorded_name(tmp_path: Path) -> None:
    """Renamed (e.g. parked) before the frame recording it was written, then a crash."""
    store = _store(tmp_path, {"4294967296.1.archiver:2,S": b"one", "5.9.archiver:2,": b"other"})
    recorded = _entry(1, "5.1.archiver:2,S", b"one")
    store.repair("F", [recorded, _entry(2, "5.2.archiver:2,", b"two")])
    names = sorted(p.name for p in (tmp_path / "F" / "cur").iterdir())
    assert names == ["5.1.archiver:2,S", "5.9.archiver:2,"]  # an unknown file is left alone
    assert (tmp_path / recorded.path).read_bytes() == b"one"
