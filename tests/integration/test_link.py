"""Full use of a slow link: pipelined commands, several connections, COMPRESS=DEFLATE.

What is sent ahead of its answer, or over another connection, must change
nothing about what is archived: every test compares the archive with what
the server serves.  The real Dovecot answers in order; the scripted fake
server (tests/fakeimap.py) plays the servers that refuse a batch, answer
under another command's tag, or keep the previous folder selected after a
failed EXAMINE.
"""

from __future__ import annotations

import _thread
import hashlib
import imaplib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import archiver.sources.session as imap_mod
from archiver.account import TLSOptions, parse_endpoint
from archiver.archive import Archive
from archiver.connections import auto_count
from archiver.engine import BackupOptions, run_backup
from archiver.errors import Interrupted
from archiver.jobs import Summary
from archiver.sources.imap import ImapSource
from archiver.stores import open_store
from tests.conftest import LoadedUser
from tests.dovecot import DovecotServer, MailUser
from tests.fakeimap import FakeImap, Mailbox
from tests.helpers import index_records, run_cli, source_args
from tests.proxy import Fault, FaultProxy, every, only


def _source(port: int, user: str, password: str, cafile: Path | None = None,
            **kw: Any) -> ImapSource:
    if cafile is None:  # the fake server: plain text
        ep = parse_endpoint(f"imap://{user}@127.0.0.1:{port}", tls=TLSOptions(plaintext=True))
    else:
        ep = parse_endpoint(f"imaps://{user}@127.0.0.1:{port}", tls=TLSOptions(cafile=cafile))
    return ImapSource(ep, password, timeout=10, **kw)


def _dovecot_source(dovecot: DovecotServer, user: MailUser, port: int | None = None,
                    **kw: Any) -> ImapSource:
    return _source(port or dovecot.imaps_port, user.name, user.password, dovecot.cafile, **kw)


def _run(source: ImapSource, dest: Path, **options: Any) -> Summary:
    archive = Archive.create_or_open(dest, "maildir", {"host": "127.0.0.1", "user": "u",
                                                       "protocol": "imap"})
    try:
        return run_backup(source, archive, open_store(dest, "maildir"),
                          BackupOptions(**options))
    finally:
        archive.close()


def _archived(dest: Path) -> Counter[tuple[str, str]]:
    return Counter((r["folder"], r["sha256"]) for r in index_records(dest) if r["type"] == "msg")


def _served(dovecot: DovecotServer, user: MailUser) -> Counter[tuple[str, str]]:
    return Counter((folder, hashlib.sha256(data).hexdigest())
                   for folder, msgs in dovecot.fetch_all(user).items() for _, data, _, _ in msgs)


class _Recorder:
    """Which tagged commands were sent, and when their answers were read (in order)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, bytes, str]] = []
        real_command = imaplib.IMAP4._command
        real_complete = imaplib.IMAP4._command_complete
        events = self.events

        def command(imap: imaplib.IMAP4, name: str, *args: Any) -> bytes:
            tag: bytes = real_command(imap, name, *args)
            events.append(("send", tag, name + " " + " ".join(map(str, args))))
            return tag

        def complete(imap: imaplib.IMAP4, name: str, tag: bytes) -> Any:
            out = real_complete(imap, name, tag)
            events.append(("done", tag, name))
            return out

        monkeypatch.setattr(imaplib.IMAP4, "_command", command)
        monkeypatch.setattr(imaplib.IMAP4, "_command_complete", complete)

    def max_in_flight(self, word: str) -> int:
        """Most commands containing ``word`` sent and not yet answered at one time."""
        open_tags: set[bytes] = set()
        most = 0
        for kind, tag, what in self.events:
            if kind == "send" and word in what:
                open_tags.add(tag)
                most = max(most, len(open_tags))
            elif kind == "done":
                open_tags.discard(tag)
        return most


# ---------------------------------------------------------------- pipelining, real Dovecot


def test_many_fetch_batches_in_flight_archive_every_message_exactly(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny batches, so a folder's fetches are many and several are in flight at once."""
    rec = _Recorder(monkeypatch)
    summary = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a",
                   batch_bytes=4096, batch_count=2, connections=1)
    assert summary.status == "ok", summary.problems
    assert rec.max_in_flight("BODY.PEEK[]") >= 3
    assert _archived(tmp_path / "a") == _served(dovecot, loaded_user.user)


def test_status_of_every_folder_in_one_round_trip_equals_asking_one_by_one(
        dovecot: DovecotServer, loaded_user: LoadedUser,
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = _dovecot_source(dovecot, loaded_user.user)
    src.connect()
    try:
        folders = [f for f in src.folders() if f.selectable]
        rec = _Recorder(monkeypatch)
        from_list = src.status_many(folders)  # Dovecot has LIST-STATUS: no STATUS at all
        assert rec.max_in_flight("STATUS") == 0
        src._listed.clear()  # as on a server without LIST-STATUS
        together = src.status_many(folders)
        assert rec.max_in_flight("STATUS") == len(folders) > 5
        apart = {f.name: src.status(f) for f in folders}
        assert from_list == together
    finally:
        src.close()
    assert together == apart
    assert all(v is not None for v in together.values())


def test_examine_and_listing_together_equal_them_apart(
        dovecot: DovecotServer, loaded_user: LoadedUser) -> None:
    src = _dovecot_source(dovecot, loaded_user.user)
    src.connect()
    try:
        for folder in (f for f in src.folders() if f.selectable):
            status = src.status(folder)
            opened, listing = src.open_and_list(folder, status)
            again = src.open_folder(folder)
            assert (opened, listing) == (again, src.list_messages(again.messages))
    finally:
        src.close()


# ---------------------------------------------------------------- pipelining, odd servers


def _mailbox(folders: dict[bytes, int]) -> Mailbox:
    return {name: {uid: b"Subject: %s %d\r\n\r\n%s\r\n" % (name, uid, b"x" * (100 + uid))
                   for uid in range(1, count + 1)} for name, count in folders.items()}


class _RefusesBatches(FakeImap):
    """Refuses a body FETCH naming UID 5 among others, and any naming UID 7."""

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        uids = self.uids(rest.split(b" ")[2])
        if b"BODY" in rest and (7 in uids or (5 in uids and len(uids) > 1)):
            return tag + b" NO [SERVERBUG] cannot\r\n"
        return super().reply_fetch(tag, rest)


def test_a_refused_batch_is_fetched_one_by_one_after_the_others(tmp_path: Path) -> None:
    mailbox = _mailbox({b"INBOX": 12})
    with _RefusesBatches(mailbox) as server:
        summary = _run(_source(server.port, "u", "p"), tmp_path / "a", batch_bytes=300,
                       batch_count=3, connections=1)
    archived = {r["uid"]: r["sha256"] for r in index_records(tmp_path / "a")
                if r["type"] == "msg"}
    expected = {uid: hashlib.sha256(body).hexdigest() for uid, body in mailbox[b"INBOX"].items()
                if uid != 7}
    assert archived == expected
    assert len(summary.problems) == 1 and "UID 7" in summary.problems[0]


class _AnswersEarly(FakeImap):
    """Answers the first body FETCH with one extra message that a later command asks for,
    and leaves it out of that later answer (a server that reorders its work)."""

    given_early: set[int] = set()

    def reply_fetch(self, tag: bytes, rest: bytes) -> bytes:
        if b"BODY.PEEK[]" not in rest:
            return super().reply_fetch(tag, rest)
        uids = self.uids(rest.split(b" ")[2])
        msgs = self.mailbox[self.selected or b""]
        extra = [] if self.given_early else [max(msgs)]
        self.given_early.update(extra)
        out = b""
        for uid in [u for u in uids if u not in self.given_early] + extra:
            body = msgs[uid]
            out += b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n" % (uid, uid, len(body), body)
        return out + tag + b" OK done\r\n"


def test_an_answer_that_comes_under_another_commands_tag_is_kept_for_its_batch(
        tmp_path: Path) -> None:
    mailbox = _mailbox({b"INBOX": 9})
    _AnswersEarly.given_early = set()
    with _AnswersEarly(mailbox) as server:
        summary = _run(_source(server.port, "u", "p"), tmp_path / "a", batch_bytes=250,
                       batch_count=2, connections=1)
    assert summary.status == "ok", summary.problems
    assert _AnswersEarly.given_early == {9}
    assert sorted(r["uid"] for r in index_records(tmp_path / "a") if r["type"] == "msg") == \
        list(range(1, 10))


class _LaxExamine(FakeImap):
    """EXAMINE of ``Gone`` fails but the previous folder stays selected (a lax server),
    so a pipelined ``UID FETCH 1:*`` lists the previous folder's messages."""

    def reply_list(self, tag: bytes, rest: bytes) -> bytes:
        return (b"".join(self.list_line(n) for n in [*self.mailbox, b"Gone"])
                + tag + b" OK done\r\n")

    def reply_status(self, tag: bytes, rest: bytes) -> bytes:
        if self.folder_arg(rest) == b"Gone":
            return (b'* STATUS "Gone" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 5)\r\n'
                    + tag + b" OK done\r\n")
        return super().reply_status(tag, rest)


def test_a_failed_examine_never_takes_the_previous_folders_listing(tmp_path: Path) -> None:
    mailbox = _mailbox({b"INBOX": 3})
    with _LaxExamine(mailbox) as server:
        summary = _run(_source(server.port, "u", "p"), tmp_path / "a", connections=1)
    records = [r for r in index_records(tmp_path / "a") if r["type"] == "msg"]
    assert sorted((r["folder"], r["uid"]) for r in records) == [("INBOX", 1), ("INBOX", 2),
                                                              ("INBOX", 3)]
    assert len(summary.problems) == 1 and "Gone" in summary.problems[0]


# ---------------------------------------------------------------- several connections


def test_three_connections_archive_exactly_what_one_does(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    one = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "one", connections=1)
    three = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "three",
                 connections=3, batch_bytes=8192)
    assert one.status == three.status == "ok"
    assert (one.new, one.folders) == (three.new, three.folders)
    assert _archived(tmp_path / "three") == _archived(tmp_path / "one") == \
        _served(dovecot, loaded_user.user)
    rerun = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "three", connections=3)
    assert rerun.new == 0 and rerun.status == "ok"
    code, out, err = run_cli(["verify", str(tmp_path / "three")])
    assert code == 0, out + err


def test_a_server_refusing_extra_connections_means_fewer_connections_not_a_problem(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImapSource) -> None:
        raise imap_mod.ServerUnavailable("127.0.0.1 refused the login for now "
                                         "([UNAVAILABLE] too many connections)")

    real_clone = ImapSource.clone

    def clone(self: ImapSource) -> ImapSource:
        other = real_clone(self)
        monkeypatch.setattr(other, "connect", refuse.__get__(other))
        return other  # type: ignore[return-value]

    monkeypatch.setattr(ImapSource, "clone", clone)
    summary = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a", connections=3)
    assert summary.status == "ok", summary.problems
    assert _archived(tmp_path / "a") == _served(dovecot, loaded_user.user)


def test_a_connection_cut_among_several_is_resumed_without_duplicates(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    with FaultProxy(dovecot.imaps_port, only({2, 3}, Fault(cut_after=60_000))) as proxy:
        summary = _run(_dovecot_source(dovecot, loaded_user.user, port=proxy.port),
                       tmp_path / "a", connections=3, batch_bytes=16384, backoff=0.05)
    assert summary.status == "ok", summary.problems
    assert _archived(tmp_path / "a") == _served(dovecot, loaded_user.user)


def test_ctrl_c_with_several_connections_keeps_what_arrived_and_a_rerun_completes(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = ImapSource.fetch_many
    calls = [0]

    def fetch_many(self: ImapSource, groups: Any, batch_bytes: int) -> Any:
        for answers in real(self, groups, batch_bytes):
            calls[0] += 1
            if calls[0] == 4:
                _thread.interrupt_main()  # Ctrl-C arrives in the main thread only
                time.sleep(1)  # ... which tells every connection to stop
            yield answers

    monkeypatch.setattr(ImapSource, "fetch_many", fetch_many)
    with pytest.raises(Interrupted):
        _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a", connections=3,
             batch_bytes=1)
    partial = _archived(tmp_path / "a")
    served = _served(dovecot, loaded_user.user)
    assert 0 < sum(partial.values()) < sum(served.values())
    assert not partial - served
    monkeypatch.setattr(ImapSource, "fetch_many", real)
    summary = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a", connections=3)
    assert summary.status == "ok"
    assert _archived(tmp_path / "a") == served


def test_a_failure_on_one_connection_stops_them_all_and_a_rerun_repairs(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.engine import Backup

    real = Backup._stage_batch
    seen = [0]

    def stage(self: Backup, *args: Any) -> Any:
        seen[0] += 1
        if seen[0] == 3:
            raise OSError(28, "No space left on device")
        return real(self, *args)

    monkeypatch.setattr(Backup, "_stage_batch", stage)
    from archiver.errors import ArchiverError

    with pytest.raises((ArchiverError, OSError)):
        _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a", connections=3,
             batch_bytes=8192)
    monkeypatch.setattr(Backup, "_stage_batch", real)
    summary = _run(_dovecot_source(dovecot, loaded_user.user), tmp_path / "a", connections=3)
    assert summary.status == "ok"
    assert _archived(tmp_path / "a") == _served(dovecot, loaded_user.user)
    code, out, err = run_cli(["verify", str(tmp_path / "a")])
    assert code == 0, out + err


# ---------------------------------------------------------------- the link itself


def test_compress_deflate_archives_every_message_exactly(
        dovecot: DovecotServer, loaded_user: LoadedUser, tmp_path: Path) -> None:
    src = _dovecot_source(dovecot, loaded_user.user, compress="on")
    summary = _run(src, tmp_path / "a", connections=1)
    assert src.compressed
    assert summary.status == "ok"
    assert _archived(tmp_path / "a") == _served(dovecot, loaded_user.user)


def test_on_loopback_auto_uses_one_connection_and_no_compression(
        dovecot: DovecotServer, mail_user: MailUser) -> None:
    src = _dovecot_source(dovecot, mail_user)
    src.connect()
    try:
        assert "COMPRESS=DEFLATE" in src.capabilities  # offered, and not taken
        assert not src.compressed and not src.slow_link
        assert auto_count(src, 30) == 1
    finally:
        src.close()


def test_a_slow_link_turns_on_compression_and_several_connections(
        dovecot: DovecotServer, mail_user: MailUser) -> None:
    with FaultProxy(dovecot.imaps_port, every(Fault(delay=0.02))) as proxy:
        src = _dovecot_source(dovecot, mail_user, port=proxy.port)
        src.connect()
        try:
            assert src.slow_link and src.compressed
            assert auto_count(src, 30) == 3
            assert auto_count(src, 2) == 2
        finally:
            src.close()


def test_connections_and_compress_options_are_checked(
        dovecot: DovecotServer, mail_user: MailUser, tmp_path: Path) -> None:
    code, out, err = run_cli(["backup", *source_args(dovecot, mail_user, tmp_path / "a"),
                              "--connections", "9"])
    assert code == 2 and "from 1 to 8" in err
    code, out, err = run_cli(["backup", *source_args(dovecot, mail_user, tmp_path / "a"),
                              "--connections", "2", "--compress", "on", "--json"])
    assert code == 0, out + err
