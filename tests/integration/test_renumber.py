"""A server that renumbers a folder without changing UIDVALIDITY (Courier-IMAP 5 does).

RFC 3501 promises that a UID names one message while UIDVALIDITY stands.  A
server that breaks it made archiver put one message's flags on another and
archive a duplicate instead of the new message.  Reproduced on the real
Dovecot (its ``dovecot-uidlist`` rewritten, see DovecotServer.renumber) and,
for the race Courier shows, on the scripted fake server.  After every
renumbering a rerun must leave the archive byte-exact, every message once,
every flag equal to the server's, ``verify`` clean, and say what it found.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.state import MessageEntry
from archiver.stores import open_store
from archiver.stores.base import norm_hash
from tests.dovecot import DovecotServer, MailUser
from tests.fakeimap import FakeImap
from tests.helpers import (
    archived_files,
    backup,
    index_records,
    keyword_letters,
    password_file,
    run_cli,
)

_INFO = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T",
         "$Forwarded": "P"}


def _message(i: int) -> bytes:
    return (f"From: n{i}@example.jp\r\nSubject: message {i}\r\nMessage-ID: <r{i}@example.jp>"
            f"\r\n\r\n{'本文 ' * (3 * i + 1)}\r\n").encode()


FLAGS = [["\\Seen"], [], ["\\Flagged"], ["\\Seen", "\\Answered"], ["$label1"], ["\\Draft"]]


def _current(dest: Path, folder: str) -> dict[int, MessageEntry]:
    """The archive's messages of ``folder`` still on the server, by UID."""
    entry = Archive.open_existing(dest).state().folders[folder]
    return {uid: m for (uv, uid), m in entry.messages.items() if not m.gone and m.uidl is None}


def _assert_mirrors_server(dovecot: DovecotServer, user: MailUser, dest: Path, folder: str,
                           fmt: str = "maildir") -> None:
    """Every served message archived once, byte-exact, under its UID, with its flags."""
    served = dovecot.fetch_all(user)[folder]
    have = _current(dest, folder)
    assert sorted(have) == [uid for uid, *_ in served]
    reader = open_store(dest, fmt)
    for uid, data, flags, _idate in served:
        m = have[uid]
        assert reader.read_message(m) == data, uid
        assert set(m.flags) | set(m.keywords) == flags, (uid, m.flags, m.keywords, flags)
        if fmt == "maildir":
            letters = "".join(sorted(_INFO[f] for f in flags if f in _INFO))
            letters += keyword_letters(dest / Path(m.path).parent.parent, flags)
            assert m.path.endswith(":2," + letters), (m.path, flags)
    if fmt == "maildir":
        files = [b for p, b in archived_files(dest).items() if p.startswith(folder + "/")]
        assert Counter(files) == Counter(data for _, data, _, _ in served)  # none twice
    assert run_cli(["verify", str(dest)])[0] == 0


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_folder_renumbered_under_the_same_uidvalidity_keeps_every_message_and_flag(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path, fmt: str) -> None:
    u = mail_user
    for i, flags in enumerate(FLAGS):
        dovecot.append(u, "Lists", _message(i), flags)
    dovecot.append(u, "INBOX", b"Subject: untouched\r\n\r\nstays\r\n", ["\\Seen"])
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest, "--format", fmt)[0] == 0
    uidvalidity = dovecot.uidvalidity(u, "Lists")
    dovecot.rotate_uids(u, "Lists")
    assert dovecot.uidvalidity(u, "Lists") == uidvalidity
    code, out, err = backup(dovecot, u, dest, "--format", fmt, "--json")
    assert code == 0, err
    _assert_mirrors_server(dovecot, u, dest, "Lists", fmt)
    summary = json.loads(out)
    assert (summary["new"], summary["flags_updated"], summary["gone"]) == (0, 0, 0), summary
    assert summary["notes"] == ["the server renumbered Lists without changing UIDVALIDITY; "
                                "matched 6 messages (6 by their headers, 0 by their content)"]
    again = json.loads(backup(dovecot, u, dest, "--format", fmt, "--json")[1])
    assert (again["new"], again["flags_updated"], again["notes"]) == (0, 0, [])


def test_renumbering_that_moves_a_uid_onto_a_new_message_fetches_it_and_keeps_the_old_one(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    """An expunged message's UID goes to a new message, another message gets a fresh UID."""
    u = mail_user
    uids = [dovecot.append(u, "Lists", _message(i), FLAGS[i]) for i in range(4)]
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    expunged = next(b for p, b in archived_files(dest).items() if f".{uids[0]}.archiver" in p)
    dovecot.expunge(u, "Lists", uids[0])
    fresh = dovecot.append(u, "Lists", _message(9), ["\\Flagged"])
    dovecot.renumber(u, "Lists", {fresh: uids[0], uids[1]: fresh + 5})
    code, out, err = backup(dovecot, u, dest, "--json")
    assert code == 0, err
    served = dovecot.fetch_all(u)["Lists"]
    have = _current(dest, "Lists")
    assert sorted(have) == [uid for uid, *_ in served]
    for uid, data, flags, _ in served:
        assert (dest / have[uid].path).read_bytes() == data
        assert set(have[uid].flags) | set(have[uid].keywords) == flags
    gone = [m for m in Archive.open_existing(dest).state().folders["Lists"].messages.values()
            if m.gone]
    assert [(dest / m.path).read_bytes() for m in gone] == [expunged]
    assert Counter(archived_files(dest).values()) == Counter(
        [expunged, *(data for _, data, _, _ in served)])
    assert run_cli(["verify", str(dest)])[0] == 0
    summary = json.loads(out)
    assert (summary["new"], summary["flags_updated"], summary["gone"]) == (1, 0, 1), summary
    assert summary["notes"] == ["the server renumbered Lists without changing UIDVALIDITY; "
                                "matched 3 messages (3 by their headers, 0 by their content); "
                                "1 archived ones not seen again are kept"]


# ---------------------------------------------------------------- the Courier race (fake)


class Renumbering(FakeImap):
    """Serves ``self.mailbox``; per-message flags in ``self.flags`` (uid -> b"(...)")."""

    def __init__(self, mailbox: dict[bytes, dict[int, bytes]]) -> None:
        super().__init__(mailbox)
        self.flags: dict[int, bytes] = {}

    def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return (b'* %d FETCH (UID %d FLAGS %s INTERNALDATE "01-Jan-2024 10:00:00 +0900" '
                b"RFC822.SIZE %d)\r\n" % (seq, uid, self.flags.get(uid, b"()"), len(body)))


def _abcd() -> list[bytes]:
    return [b"Subject: %s\r\nMessage-ID: <%s@x>\r\n\r\n%s\r\n" % (n, n, n * (k + 1))
            for k, n in enumerate((b"A", b"B", b"C", b"D"))]


def _fake_run(srv: FakeImap, dest: Path, tmp_path: Path) -> tuple[int, dict, str]:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    code, out, err = run_cli(["backup", f"imap://u@127.0.0.1:{srv.port}", str(dest),
                              "--plaintext", "--password-file", str(pw), "--timeout", "5",
                              "--json"])
    return code, json.loads(out) if out else {}, err


def test_courier_race_same_uidvalidity_new_message_takes_a_known_uid(tmp_path: Path) -> None:
    """Courier renumbered the folder and reported the same UIDVALIDITY: the new message
    got UID 1 and the archived ones moved up by one.  Trusting the UIDs put neighbours'
    flags on three messages, archived C twice and never D."""
    a, b, c, d = _abcd()
    srv = Renumbering({b"INBOX": {1: a, 2: b, 3: c}})
    srv.flags = {1: b"(\\Seen)", 2: b"()", 3: b"(\\Flagged)"}
    dest = tmp_path / "dest"
    with srv:
        code, first, err = _fake_run(srv, dest, tmp_path)
        assert code == 0 and first["new"] == 3, err
        srv.mailbox = {b"INBOX": {1: d, 2: a, 3: b, 4: c}}  # same UIDVALIDITY (777)
        srv.flags = {1: b"()", 2: b"(\\Seen)", 3: b"(\\Answered)", 4: b"(\\Flagged \\Seen)"}
        code, second, err = _fake_run(srv, dest, tmp_path)
    assert code == 0, err
    have = _current(dest, "INBOX")
    want = {1: (d, ()), 2: (a, ("\\Seen",)), 3: (b, ("\\Answered",)),
            4: (c, ("\\Flagged", "\\Seen"))}
    assert {uid: ((dest / m.path).read_bytes(), m.flags) for uid, m in have.items()} == want
    assert Counter(archived_files(dest).values()) == Counter([a, b, c, d])
    assert (second["new"], second["flags_updated"], second["gone"]) == (1, 0, 0), second
    assert second["notes"] == ["the server renumbered INBOX without changing UIDVALIDITY; "
                               "matched 3 messages (3 by their headers, 0 by their content)"]
    headers_only = [cmd for cmd in srv.commands if b"BODY.PEEK[HEADER]" in cmd]
    bodies = [cmd for cmd in srv.commands if b"BODY.PEEK[]" in cmd]
    assert len(headers_only) == 1 and bodies[-1].split()[3] == b"1", srv.commands
    assert run_cli(["verify", str(dest)])[0] == 0
    records = index_records(dest)
    assert all("rfc822_size" in r for r in records if r["type"] == "msg")


@pytest.mark.parametrize("frames_written", [0, 1])
def test_a_crash_between_the_renames_and_their_index_frame_is_repaired_by_the_rerun(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, frames_written: int) -> None:
    """Files renamed (parked, or moved to their new UIDs) but the frame naming them lost:
    the rerun finds them by content, puts them back and matches the folder again."""
    import archiver.renumber

    u = mail_user
    for i, flags in enumerate(FLAGS):
        dovecot.append(u, "Lists", _message(i), flags)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    dovecot.rotate_uids(u, "Lists")
    real = archiver.renumber.rearrange

    def crashing(store, path, work, record):  # type: ignore[no-untyped-def]
        calls = []

        def record_then_die(records):  # type: ignore[no-untyped-def]
            if len(calls) == frames_written:
                raise RuntimeError("simulated power cut before the index frame")
            calls.append(1)
            record(records)

        return real(store, path, work, record_then_die)

    monkeypatch.setattr(archiver.renumber, "rearrange", crashing)
    code, _, err = backup(dovecot, u, dest)
    assert code == 70, err  # the "bug" exit: the run died where a power cut could strike
    monkeypatch.setattr(archiver.renumber, "rearrange", real)
    code, out, err = backup(dovecot, u, dest, "--json")
    assert code == 0, err
    _assert_mirrors_server(dovecot, u, dest, "Lists")
    assert json.loads(out)["new"] == 0


# ---------------------------------------------------------------- POP3: a reused UIDL


def _pop3(dovecot: DovecotServer, user: MailUser, dest: Path) -> tuple[int, dict, str]:
    pw = password_file(user, dest.parent / ".pw")
    code, out, err = run_cli(["backup", f"pop3s://{user.name}@127.0.0.1:{dovecot.pop3s_port}",
                              str(dest), "--cafile", str(dovecot.cafile), "--password-file",
                              str(pw), "--timeout", "20", "--json"])
    return code, json.loads(out) if out else {}, err


@pytest.mark.parametrize("seen_gone", [False, True])
def test_pop3_uidl_given_to_a_new_message_is_fetched_and_the_archived_one_kept(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path, seen_gone: bool) -> None:
    """Dovecot's UIDLs are made of UID and UIDVALIDITY: a renumbered INBOX hands the UIDL
    of an expunged message (already recorded as gone, or not) to a new one, whose LIST
    size tells it apart."""
    u = mail_user
    uids = [dovecot.append(u, "INBOX", _message(i)) for i in range(3)]
    dest = tmp_path / "a"
    assert _pop3(dovecot, u, dest)[0] == 0
    expunged = next(b for b in archived_files(dest).values() if b"message 0" in b)
    dovecot.expunge(u, "INBOX", uids[0])
    if seen_gone:
        assert _pop3(dovecot, u, dest)[1]["gone"] == 1
    fresh = dovecot.append(u, "INBOX", _message(7))
    dovecot.renumber(u, "INBOX", {fresh: uids[0]})  # the new message now has the old UIDL
    code, summary, err = _pop3(dovecot, u, dest)
    assert code == 0, err
    served = [data for _, data, _, _ in dovecot.fetch_all(u)["INBOX"]]
    assert Counter(norm_hash(b) for b in archived_files(dest).values()) == Counter(
        norm_hash(b) for b in [*served, expunged])  # the new one archived, nothing twice
    assert run_cli(["verify", str(dest)])[0] == 0
    assert (summary["new"], summary["gone"]) == (1, 0 if seen_gone else 1), summary
    assert summary["notes"] == ["the server gave 1 UIDL(s) of INBOX to other messages: fetched "
                                "them as new messages, 0 the same as archived"
                                + ("" if seen_gone else "; 1 archived ones not seen again are "
                                   "kept")]
    again = _pop3(dovecot, u, dest)[1]
    assert (again["new"], again["gone"], again["notes"]) == (0, 0, [])


# ---------------------------------------------------------------- restore: the target's UIDs


def _restore(dest: Path, server: DovecotServer, user: MailUser) -> tuple[int, dict, str]:
    pw = password_file(user, dest.parent / ".pw-target")
    code, out, err = run_cli(["restore", str(dest), f"imaps://{user.name}@127.0.0.1:"
                              f"{server.imaps_port}", "--target-cafile", str(server.cafile),
                              "--target-password-file", str(pw), "--timeout", "20", "--json"])
    return code, json.loads(out) if out else {}, err


def test_restore_rerun_checks_the_journals_uids_on_a_renumbered_target(
        dovecot: DovecotServer, dovecot_new: DovecotServer, mail_user: MailUser,
        tmp_path: Path) -> None:
    """The journal says A and B landed as UIDs 1 and 2; C was put there by hand (or by a
    run killed before its record).  The target then renumbers the folder under the same
    UIDVALIDITY: UID 1 is B, 2 is C, 3 is A.  Trusting the journal kept C (UID 2) out of
    the dedup listing and uploaded it a second time."""
    u, target = mail_user, dovecot_new.new_user("target")
    a, b, c = _message(1), _message(2), _message(3)
    dovecot.append(u, "Lists", a, ["\\Seen"])
    dovecot.append(u, "Lists", b)
    dest = tmp_path / "a"
    assert backup(dovecot, u, dest)[0] == 0
    assert _restore(dest, dovecot_new, target)[0] == 0
    dovecot.append(u, "Lists", c, ["\\Flagged"])
    assert backup(dovecot, u, dest)[0] == 0
    dovecot_new.append(target, "Lists", c, ["\\Flagged"])
    uidvalidity = dovecot_new.uidvalidity(target, "Lists")
    dovecot_new.rotate_uids(target, "Lists")
    assert dovecot_new.uidvalidity(target, "Lists") == uidvalidity
    code, summary, err = _restore(dest, dovecot_new, target)
    assert code == 0, err
    on_target = Counter(data for _, data, _, _ in dovecot_new.fetch_all(target)["Lists"])
    assert sorted(on_target.values()) == [1, 1, 1], on_target  # A, B, C once each
    assert (summary["uploaded"], summary["found"], summary["already"]) == (0, 3, 0), summary
    assert "looked for again" in err


def test_a_new_uidvalidity_is_matched_by_headers_without_fetching_a_body_again(
        tmp_path: Path) -> None:
    """Courier usually does report a new UIDVALIDITY when it renumbers, on every EXAMINE of
    such a folder: each rerun must not download the whole folder again."""
    a, b, c, _ = _abcd()
    srv = Renumbering({b"INBOX": {1: a, 2: b, 3: c}})
    dest = tmp_path / "dest"
    with srv:
        assert _fake_run(srv, dest, tmp_path)[0] == 0
        srv.uidvalidity = 778
        srv.mailbox = {b"INBOX": {5: c, 6: a, 7: b}}
        srv.flags = {5: b"(\\Seen)", 6: b"(\\Flagged)"}
        srv.commands.clear()
        code, summary, err = _fake_run(srv, dest, tmp_path)
    assert code == 0, err
    entry = Archive.open_existing(dest).state().folders["INBOX"]
    have = {k: ((dest / m.path).read_bytes(), m.flags) for k, m in entry.messages.items()}
    assert have == {(778, 5): (c, ("\\Seen",)), (778, 6): (a, ("\\Flagged",)), (778, 7): (b, ())}
    assert Counter(archived_files(dest).values()) == Counter([a, b, c])
    assert not [cmd for cmd in srv.commands if b"BODY.PEEK[]" in cmd], srv.commands
    assert (summary["new"], summary["gone"]) == (0, 0)
    assert summary["notes"] == ["the UIDVALIDITY of INBOX changed; matched 3 messages "
                                "(3 by their headers, 0 by their content)"]
    assert run_cli(["verify", str(dest)])[0] == 0


class SizeNotServed(Renumbering):
    """Reports an RFC822.SIZE 7 bytes larger than the message it serves (as some do)."""

    def listing_item(self, seq: int, uid: int, body: bytes) -> bytes:
        return (b'* %d FETCH (UID %d FLAGS %s INTERNALDATE "01-Jan-2024 10:00:00 +0900" '
                b"RFC822.SIZE %d)\r\n" % (seq, uid, self.flags.get(uid, b"()"), len(body) + 7))


def _forget_rfc822_size(dest: Path) -> None:
    """Make the index what archiver wrote before it kept the server's size."""
    from archiver.index import IndexWriter

    path = dest / ".archiver" / "index.jsonl.zst"
    records = [{k: v for k, v in r.items() if k != "rfc822_size"} for r in index_records(dest)]
    path.unlink()
    writer = IndexWriter(path, 0)
    writer.append(records)
    writer.close()


def test_a_server_reporting_another_size_than_it_serves_is_no_false_alarm(
        tmp_path: Path) -> None:
    """Archived before rfc822_size was kept: the stored size differs from RFC822.SIZE, the
    INTERNALDATE agrees.  The headers confirm each UID once, the server's size is
    recorded, flags are applied, nothing is said; the next pass compares exactly."""
    a, b, c, _ = _abcd()
    srv = SizeNotServed({b"INBOX": {1: a, 2: b, 3: c}})
    dest = tmp_path / "dest"
    with srv:
        assert _fake_run(srv, dest, tmp_path)[0] == 0
        _forget_rfc822_size(dest)
        srv.flags = {2: b"(\\Seen)"}
        code, summary, err = _fake_run(srv, dest, tmp_path)
        assert code == 0, err
        have = _current(dest, "INBOX")
        assert {uid: ((dest / m.path).read_bytes(), m.flags, m.rfc822_size)
                for uid, m in have.items()} == {1: (a, (), len(a) + 7),
                                                2: (b, ("\\Seen",), len(b) + 7),
                                                3: (c, (), len(c) + 7)}
        assert (summary["new"], summary["flags_updated"], summary["notes"]) == (0, 1, [])
        srv.commands.clear()
        code, again, err = _fake_run(srv, dest, tmp_path)
    assert code == 0 and (again["new"], again["flags_updated"], again["notes"]) == (0, 0, [])
    assert not [cmd for cmd in srv.commands if b"BODY.PEEK" in cmd], srv.commands
    assert Counter(archived_files(dest).values()) == Counter([a, b, c])
    assert run_cli(["verify", str(dest)])[0] == 0


class NoHeaders(Renumbering):
    """Refuses BODY.PEEK[HEADER]: whole bodies must decide, by SHA-256."""

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        if b"BODY.PEEK[HEADER]" in rest.upper():
            return tag + b" NO [SERVERBUG] not today\r\n"
        return super().reply_fetch(tag, rest)


def test_courier_race_with_headers_refused_is_matched_by_content(tmp_path: Path) -> None:
    a, b, c, d = _abcd()
    srv = NoHeaders({b"INBOX": {1: a, 2: b, 3: c}})
    dest = tmp_path / "dest"
    with srv:
        assert _fake_run(srv, dest, tmp_path)[0] == 0
        srv.mailbox = {b"INBOX": {1: d, 2: a, 3: b, 4: c}}
        srv.flags = {2: b"(\\Seen)", 4: b"(\\Flagged)"}
        code, summary, err = _fake_run(srv, dest, tmp_path)
    assert code == 0, err
    have = _current(dest, "INBOX")
    assert {uid: ((dest / m.path).read_bytes(), m.flags) for uid, m in have.items()} == {
        1: (d, ()), 2: (a, ("\\Seen",)), 3: (b, ()), 4: (c, ("\\Flagged",))}
    assert Counter(archived_files(dest).values()) == Counter([a, b, c, d])
    assert summary["notes"] == ["the server renumbered INBOX without changing UIDVALIDITY; "
                                "matched 3 messages (0 by their headers, 3 by their content)"]
    assert run_cli(["verify", str(dest)])[0] == 0


def test_pop3_sights_follow_their_imap_message_when_it_is_refiled(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    """INBOX archived over POP3, then over IMAP (each POP3 sight linked to its IMAP copy):
    after the renumbering every link still names the same message."""
    u = mail_user
    for i in range(4):
        dovecot.append(u, "INBOX", _message(i), FLAGS[i])
    dest = tmp_path / "a"
    assert _pop3(dovecot, u, dest)[0] == 0
    assert backup(dovecot, u, dest)[0] == 0
    dovecot.rotate_uids(u, "INBOX")
    code, out, err = backup(dovecot, u, dest, "--json")
    assert code == 0, err
    _assert_mirrors_server(dovecot, u, dest, "INBOX")
    inbox = Archive.open_existing(dest).state().folders["INBOX"]
    sights = [m for m in inbox.messages.values() if m.linked_to is not None]
    assert len(sights) == 4
    for sight in sights:  # its own hash, from its POP3 record, against the linked file
        assert sight.sha256_norm
        imap = inbox.messages[sight.linked_to]
        assert norm_hash((dest / imap.path).read_bytes()) == sight.sha256_norm, sight.uidl
