"""Where an mbox folder's recorded messages end, when a repair left records behind.

``verify --repair`` can leave a message recorded (the server no longer had it)
at an offset past a file that was cut short, and good copies appended since
can cover that offset.  The crash repair that cuts unrecorded tails must
never cut a recorded message's bytes, and a good copy appended after a
damaged end must start a message of its own for other mbox readers.
"""

from __future__ import annotations

import mailbox
from dataclasses import replace
from pathlib import Path

from archiver.state import MessageEntry
from archiver.stores.base import Incoming
from archiver.stores.mbox import MboxStore


def _append(store: MboxStore, data: bytes, uid: int) -> MessageEntry:
    staged, [done] = store.stage_batch("INBOX", [Incoming(1, uid, (), (), None, data=data)])
    store.commit_staged(staged)
    return MessageEntry("INBOX", 1, uid, "INBOX", done.size, done.sha256, (), (),
                        offset=done.offset, length=done.length)


def _store(tmp_path: Path) -> MboxStore:
    store = MboxStore(tmp_path)
    store.prepare_folder("INBOX")
    return store


def test_a_record_left_inside_newer_copies_does_not_cut_them(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _append(store, b"Subject: a\r\n\r\na\r\n", 1)
    lost = _append(store, b"Subject: b\r\n\r\nb\r\n", 2)  # the server no longer has it
    (tmp_path / "INBOX").write_bytes(b"")  # the file was lost; a repair appends anew
    big = _append(store, b"Subject: c\r\n\r\n" + b"c" * 5000 + b"\r\n", 3)
    size = (tmp_path / "INBOX").stat().st_size
    assert big.offset is not None and lost.offset is not None and lost.offset > big.offset
    assert store.recorded_end("INBOX", [lost, big]) == size
    store.repair("INBOX", [lost, big])
    assert (tmp_path / "INBOX").stat().st_size == size
    assert store.read_message(big) == b"Subject: c\r\n\r\n" + b"c" * 5000 + b"\r\n"


def test_a_record_past_the_end_of_a_cut_file_cuts_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = _append(store, b"Subject: a\r\n\r\na\r\n", 1)
    lost = _append(store, b"Subject: b\r\n\r\n" + b"b" * 900 + b"\r\n", 2)
    assert lost.offset is not None
    with open(tmp_path / "INBOX", "r+b") as fh:
        fh.truncate(lost.offset + 10)
    store.end_cleanly("INBOX")
    good = _append(store, b"Subject: b\r\n\r\n" + b"b" * 900 + b"\r\n", 2)
    size = (tmp_path / "INBOX").stat().st_size
    store.repair("INBOX", [first, replace(lost, uid=3), good])
    assert (tmp_path / "INBOX").stat().st_size == size
    assert store.read_message(good).endswith(b"b" * 900 + b"\r\n")


def test_a_good_copy_after_a_cut_message_is_a_message_of_its_own(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _append(store, b"Subject: a\r\n\r\na\r\n", 1)
    _append(store, b"Subject: b\r\n\r\nno final newline", 2)
    file = tmp_path / "INBOX"
    file.write_bytes(file.read_bytes()[:-8])  # cut inside the last message
    store.end_cleanly("INBOX")
    assert file.read_bytes().endswith(b"\n\n")
    store.end_cleanly("INBOX")  # a file that ends cleanly is left alone
    size = file.stat().st_size
    store.end_cleanly("INBOX")
    assert file.stat().st_size == size
    _append(store, b"Subject: b\r\n\r\nno final newline", 2)
    subjects = [m["subject"] for m in mailbox.mbox(str(file), create=False)]
    assert subjects == ["a", "b", "b"]
