"""Hostile or broken servers (tests/fakeimap.py, and a scripted POP3 server).

Whatever a server sends: no traceback, one clear line and a documented exit
code, nothing written outside DEST, nothing recorded that was not fully
stored, and what the server did deliver correctly is kept.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

import archiver.engine
from tests.fakeimap import FakeImap, Mailbox
from tests.fakepop3 import fake_pop3, fake_pop3_args, pop3_mailbox
from tests.helpers import archived_files, index_records, run_cli


def _msg(i: int, extra: bytes = b"") -> bytes:
    return b"Subject: m%d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n%s" % (i, i, i, extra)


def _box() -> Mailbox:
    return {b"INBOX": {1: _msg(1), 2: _msg(2), 3: _msg(3, b"x" * 5000)}}


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from archiver.sources.imap import ImapSource

    monkeypatch.setattr(archiver.engine, "BackupOptions",
                        functools.partial(archiver.engine.BackupOptions, backoff=0.01,
                                          max_reconnects=2))
    monkeypatch.setattr(ImapSource, "connect_backoff", 0.01)


def _run(server: FakeImap, tmp_path: Path, *extra: str) -> tuple[int, str, str, Path]:
    pw = tmp_path / "pw"
    pw.write_text("hostile-secret\n")
    dest = tmp_path / "box" / "dest"
    code, out, err = run_cli(["backup", f"imap://u@127.0.0.1:{server.port}", str(dest),
                              "--plaintext", "--password-file", str(pw), "--timeout", "3",
                              "--quiet", *extra])
    assert "Traceback" not in err, err
    assert "hostile-secret" not in err + out
    return code, out, err, dest


def _outside_untouched(tmp_path: Path) -> None:
    """Nothing but DEST (and our password file) appeared anywhere near DEST (a run that
    fails before its start-of-run checks pass creates not even DEST's parent)."""
    box = tmp_path / "box"
    assert not box.exists() or sorted(os.listdir(box)) in (["dest"], [])
    assert sorted(p.name for p in tmp_path.iterdir()) in (["box", "pw"], ["pw"])


def _recorded_bodies(dest: Path) -> list[bytes]:
    files = archived_files(dest)
    paths = {r["path"] for r in index_records(dest) if r["type"] == "msg"}
    return [files[p] for p in paths if p in files]


def _assert_partial_or_fail(code: int, err: str) -> None:
    assert code in (3, 5), err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert lines, err
    assert all(x.startswith(("problem:", "some messages", "archiver: error")) for x in lines), err


# ---------------------------------------------------------------- FETCH answers


class Malformed(FakeImap):
    def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
        if uid == 2:
            return b"* %d FETCH (UID 2 BODY[] ((garbage\r\n" % seq
        return super().body_item(seq, uid, body)


def test_malformed_fetch_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    with Malformed(_box()) as srv:
        code, _, err, dest = _run(srv, tmp_path)
    _assert_partial_or_fail(code, err)
    for body in _recorded_bodies(dest) if dest.exists() else []:
        assert body in _box()[b"INBOX"].values()
    _outside_untouched(tmp_path)
    with FakeImap(_box()) as good:
        code, _, err, dest = _run(good, tmp_path)
    assert code == 0, err
    assert Counter(archived_files(dest).values()) == Counter(_box()[b"INBOX"].values())


class ShortLiteral(FakeImap):
    """Announces more bytes than the message has: the client eats protocol bytes."""

    def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
        if uid == 3:
            return b"* %d FETCH (UID 3 BODY[] {%d}\r\n%s)\r\n" % (seq, len(body) + 40, body)
        return super().body_item(seq, uid, body)


def test_wrong_literal_length_never_records_a_torn_message(tmp_path: Path) -> None:
    with ShortLiteral(_box()) as srv:
        code, _, err, dest = _run(srv, tmp_path)
    assert code in (0, 3, 5), err
    if dest.exists():
        stored = _recorded_bodies(dest)
        good = set(_box()[b"INBOX"].values())
        # uid 3's literal swallowed the tagged OK: the command never completed
        # cleanly, so nothing of that answer may be recorded as a message.
        assert all(b in good for b in stored), [b[:60] for b in stored if b not in good]
    _outside_untouched(tmp_path)


class SizeLies(FakeImap):
    def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return super().listing_item(seq, uid, body[:5] if uid == 3 else body * 3)


def test_rfc822_size_lies_do_not_lose_or_cut_messages(tmp_path: Path) -> None:
    with SizeLies(_box()) as srv:
        code, _, err, dest = _run(srv, tmp_path)
    assert code == 0, err
    assert Counter(archived_files(dest).values()) == Counter(_box()[b"INBOX"].values())
    assert run_cli(["verify", str(dest)])[0] == 0


class ByeMidFetch(FakeImap):
    def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
        if uid == 2 and self.connections == 1:
            return super().body_item(seq, 1, self.mailbox[b"INBOX"][1])[:20] + \
                b"\r\n* BYE shutting down\r\n"
        return super().body_item(seq, uid, body)


def test_untagged_bye_mid_fetch_reconnects_and_completes(tmp_path: Path) -> None:
    with ByeMidFetch(_box()) as srv:
        code, _, err, dest = _run(srv, tmp_path)
        conns = srv.connections
    assert code in (0, 3), err
    if code == 0:
        assert conns >= 2
        assert Counter(archived_files(dest).values()) == Counter(_box()[b"INBOX"].values())
    with FakeImap(_box()) as good:
        code, _, err, dest = _run(good, tmp_path)
    assert code == 0, err
    assert Counter(archived_files(dest).values()) == Counter(_box()[b"INBOX"].values())


class Backwards(FakeImap):
    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        reply = super().reply_fetch(tag, rest)
        lines = reply.split(b"\r\n* ")
        if b"BODY" in rest.upper():
            return reply
        items = [x if x.startswith(b"* ") else b"* " + x for x in lines]
        body, last = items[:-1], items[-1]
        head, _, tail = last.partition(b"\r\n")
        return b"\r\n".join(reversed(body + [head])) + b"\r\n" + tail


def test_uids_backwards_and_duplicated(tmp_path: Path) -> None:
    box = {b"INBOX": {9: _msg(9), 4: _msg(4), 1: _msg(1)}}
    with Backwards(box) as srv:
        code, _, err, dest = _run(srv, tmp_path)
    assert code == 0, err
    assert Counter(archived_files(dest).values()) == Counter(box[b"INBOX"].values())

    class Dup(FakeImap):
        def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
            return super().listing_item(seq, uid, body) * 2  # every UID listed twice

        def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
            return super().body_item(seq, uid, body) + super().body_item(seq, uid, b"other")

    with Dup(_box()) as srv:
        code, _, err, dest2 = _run(srv, tmp_path / "dup" if (tmp_path / "dup").mkdir() is None
                                   else tmp_path)
    assert code == 0, err
    keys = [(r["uidvalidity"], r["uid"]) for r in index_records(dest2) if r["type"] == "msg"]
    assert len(keys) == len(set(keys)) == 3
    assert run_cli(["verify", str(dest2)])[0] == 0


class UidsGoBack(FakeImap):
    """Second session: the same UIDVALIDITY but different messages under lower UIDs."""

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        if self.connections >= 2:
            self.mailbox = {b"INBOX": {1: _msg(1), 2: b"Subject: new 2\r\n\r\nnew\r\n"}}
        return super().reply_fetch(tag, rest)


def test_uids_reused_backwards_keep_the_old_copies(tmp_path: Path) -> None:
    box = {b"INBOX": {1: _msg(1), 2: _msg(2), 3: _msg(3)}}
    with UidsGoBack(box) as srv:
        code, _, err, dest = _run(srv, tmp_path)
        assert code == 0, err
        code, _, err, dest = _run(srv, tmp_path)
    assert code in (0, 3), err
    stored = list(archived_files(dest).values())
    for body in (_msg(1), _msg(2), _msg(3)):
        assert body in stored, "a message archived earlier was lost"
    assert run_cli(["verify", str(dest)])[0] == 0


# ---------------------------------------------------------------- lines


class HugeLine(FakeImap):
    def reply_list(self, tag: bytes, rest: bytes) -> bytes:
        return b'* LIST () "/" "' + b"A" * 2_000_000 + b'"\r\n' + tag + b" OK done\r\n"


def test_huge_line_is_a_clear_error(tmp_path: Path) -> None:
    with HugeLine(_box()) as srv:
        start = time.monotonic()
        code, _, err, dest = _run(srv, tmp_path)
    assert time.monotonic() - start < 20
    _assert_partial_or_fail(code, err)
    _outside_untouched(tmp_path)


class EndlessLine(FakeImap):
    def body_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return b"* %d FETCH (UID %d FLAGS (" % (seq, uid) + b"x" * 3_000_000


def test_endless_line_does_not_hang_or_eat_memory(tmp_path: Path) -> None:
    with EndlessLine(_box()) as srv:
        start = time.monotonic()
        code, _, err, dest = _run(srv, tmp_path)
    assert time.monotonic() - start < 30
    _assert_partial_or_fail(code, err)
    assert not _recorded_bodies(dest)


# ---------------------------------------------------------------- folder names

NFC = unicodedata.normalize("NFC", "Café").encode()
NFD = unicodedata.normalize("NFD", "Café").encode()
HOSTILE_NAMES = [b"../../etc", b"..", b"/etc/passwd", b"/abs/olute", b"a\x00b",
                 b"N" * 1000, b"Work", b"work", b"WORK", NFC, NFD, b"cur", b".archiver",
                 b"a/../../b", b"INBOX"]


def test_hostile_folder_names_stay_inside_dest_and_apart(tmp_path: Path) -> None:
    box = {name: {1: _msg(i)} for i, name in enumerate(HOSTILE_NAMES)}
    with FakeImap(box) as srv:
        code, _, err, dest = _run(srv, tmp_path)
    assert code in (0, 3), err
    _outside_untouched(tmp_path)
    for p in dest.rglob("*"):
        assert dest in p.resolve().parents or p.resolve() == dest, p
    assert Path("/etc/passwd").stat().st_size > 0  # (and not replaced)
    stored = Counter(archived_files(dest).values())
    served = Counter(m for msgs in box.values() for m in msgs.values())
    assert stored == served or code == 3, "a folder's message went missing silently"
    folders = [r for r in index_records(dest) if r["type"] == "folder"]
    dirs = [r["dir"] for r in folders]
    assert len({d.lower() for d in dirs}) == len(dirs), "two folders share a directory"
    assert run_cli(["verify", str(dest)])[0] == 0


# ---------------------------------------------------------------- POP3 lies


def test_pop3_lies_in_list_and_uidl(tmp_path: Path) -> None:
    body = b"Subject: x\r\n\r\nhello\r\n"

    def liar(line: bytes) -> bytes:
        cmd = line.split(b" ", 1)[0].upper()
        if cmd == b"STAT":
            return b"+OK 3 999\r\n"
        if cmd == b"LIST":  # message 2 missing, 7 does not exist, junk line
            return b"+OK\r\n1 %d\r\n3 x\r\n7 10\r\nfoo\r\n.\r\n" % len(body)
        if cmd == b"UIDL":  # a UIDL for a number never listed, one twice, one with spaces
            return b"+OK\r\n1 aaa\r\n3 aaa\r\n9 zzz\r\n4 with space\r\n.\r\n"
        if cmd == b"TOP" and line.split()[1] not in (b"1", b"3"):
            return b"-ERR no such message\r\n"
        return pop3_mailbox(line, body)

    srv = fake_pop3(liar, b"USER\r\nUIDL\r\nTOP\r\n")
    code, out, err = run_cli(fake_pop3_args(srv, tmp_path) + ["--plaintext"])
    srv.close()
    assert "Traceback" not in err, err
    assert code in (0, 3), err
    dest = tmp_path / "a"
    for rec in index_records(dest):
        if rec["type"] == "msg":
            assert (dest / rec["path"]).read_bytes() == body
    assert run_cli(["verify", str(dest)])[0] == 0
